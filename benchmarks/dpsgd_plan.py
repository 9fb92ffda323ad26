"""Time DP-SGD planning (noise calibration, budget cap) and, optionally, a full DP-CTGAN fit on Adult.

Uses only the public estimator API (``planned_cost``, ``fit``, ``plan_``), so
the same script measures any checkout: put it first on ``PYTHONPATH``::

    PYTHONPATH=/work/main .venv/bin/python benchmarks/dpsgd_plan.py --fit   # before
    PYTHONPATH=$PWD       .venv/bin/python benchmarks/dpsgd_plan.py --fit   # after

The plan is timed at Adult-sized settings (24,000 rows, batch 1000, 12
epochs, epsilon 1, delta 1e-6) on a fresh estimator, so nothing is cached.
The fit reads ``--data`` through ``--schema`` as ``run_generators.py`` does
(columns outside the schema, such as ``fnlwgt``, dropped; 20% held out, seed 0)
and fits DP-CTGAN with its default settings. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=24_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1e-6)
    parser.add_argument("--fit", action="store_true", help="also time a full DP-CTGAN fit on --data")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/adult/adult.csv"))
    parser.add_argument("--schema", type=Path, default=REPO / "benchmarks" / "adult.schema.json")
    args = parser.parse_args(argv)

    import dpsynth
    from dpsynth.schema import Schema
    from dpsynth.synthesizers import make_synthesizer

    schema = Schema.load(args.schema)
    out: dict = {"dpsynth": str(Path(dpsynth.__file__).parent.parent)}
    model = make_synthesizer(
        "dpctgan",
        epsilon=args.epsilon,
        delta=args.delta,
        epochs=args.epochs,
        batch_size=args.batch_size,
        progress=False,
    )
    start = time.perf_counter()
    planned = model.planned_cost(args.rows, schema)
    out["plan"] = {
        "seconds": round(time.perf_counter() - start, 3),
        "noise_multiplier": planned.details["noise_multiplier"],
        "steps_allowed": planned.details["steps_allowed"],
        "epsilon": planned.epsilon,
    }
    if args.fit:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from run_generators import load_split

        _, train, _ = load_split(args.data, args.schema, 0.2, 0)
        model = make_synthesizer("dpctgan", epsilon=args.epsilon, delta=args.delta, random_state=0, progress=False)
        start = time.perf_counter()
        model.fit(train, schema)
        cost = model.privacy_cost_
        out["fit"] = {
            "seconds": round(time.perf_counter() - start, 2),
            "rows": len(train),
            "train_seconds": cost.details["train_seconds"],
            "steps": cost.details["steps"],
            "noise_multiplier": cost.details["noise_multiplier"],
            "epsilon": cost.epsilon,
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
