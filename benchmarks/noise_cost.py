"""Cost of the secure noise sampler on MST / AIM fit time (issue 7, item 2).

Fits one generator on a table read through its schema (columns outside the
schema, such as Adult's ``fnlwgt``, are dropped) and prints fit wall / CPU
seconds, plus -- on code that has :mod:`dpsynth.privacy.noise` -- the time
spent inside the noise source and how many counts and selections it drew.
The same script runs against the code before the change (point ``PYTHONPATH``
at an older checkout: noise time is then not measured separately).

    PYTHONPATH=. python benchmarks/noise_cost.py --data ../shared/data/adult/adult.csv \\
        --schema benchmarks/adult.schema.json --generator mst --epsilon 1 --seed 0 [--secure-noise]
    PYTHONPATH=. python benchmarks/noise_cost.py ... --generator aim --param max_seconds=60
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--schema", type=Path, required=True)
    parser.add_argument("--generator", default="mst")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--secure-noise", action="store_true", help="seeded sampling stream, OpenDP noise (new code only)"
    )
    parser.add_argument("--param", action="append", default=[], help="key=value generator parameter")
    args = parser.parse_args()

    from dpsynth.schema import Schema
    from dpsynth.synthesizers import make_synthesizer
    from dpsynth.tables import prepare, read_csv

    schema = Schema.load(args.schema)
    table, _ = prepare(read_csv(args.data, schema), schema)
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    if args.secure_noise:
        params["secure_noise"] = True
    noise_seconds, counts, selections = _instrument()
    model = make_synthesizer(args.generator, epsilon=args.epsilon, delta=args.delta, random_state=args.seed, **params)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(table, schema)
    out = {
        "generator": args.generator,
        "epsilon": args.epsilon,
        "seed": args.seed,
        "params": params,
        "rows": len(table),
        "fit_seconds": round(time.perf_counter() - wall, 2),
        "fit_cpu_seconds": round(time.process_time() - cpu, 2),
        "noise_source": getattr(model, "noise_source_", None),
    }
    if noise_seconds is not None:
        out.update(noise_seconds=round(noise_seconds[0], 3), noisy_counts=counts[0], selections=selections[0])
    details = model.privacy_cost_.details
    out["rounds"] = details.get("rounds")
    print(json.dumps(out))


def _instrument():
    """Wrap the NoiseSource methods to time them (None when the code predates the noise source)."""
    try:
        from dpsynth.privacy.noise import NoiseSource
    except ImportError:
        return None, None, None
    seconds, counts, selections = [0.0], [0], [0]
    dg, nm = NoiseSource.discrete_gaussian, NoiseSource.noisy_max_gumbel

    def discrete_gaussian(self, values, sigma):
        start = time.perf_counter()
        try:
            return dg(self, values, sigma)
        finally:
            seconds[0] += time.perf_counter() - start
            counts[0] += len(values)

    def noisy_max_gumbel(self, scores, scale):
        start = time.perf_counter()
        try:
            return nm(self, scores, scale)
        finally:
            seconds[0] += time.perf_counter() - start
            selections[0] += 1

    NoiseSource.discrete_gaussian, NoiseSource.noisy_max_gumbel = discrete_gaussian, noisy_max_gumbel
    return seconds, counts, selections


if __name__ == "__main__":
    main()
