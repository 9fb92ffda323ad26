"""Time the quick audit tier on UCI Adult (24k train / 6k holdout / 24k synthetic) and print JSON.

The synthetic table is "holdout-like": a bootstrap of rows the generator never
saw, so every attack does its full amount of work. A second, disjoint split
(12k / 6k / 12k, synthetic = an independent split) checks that an honest
release passes; its decision and values are printed too.

Usage: python benchmarks/audit_speed.py [--adult PATH] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import audits  # noqa: E402

DEFAULT_ADULT = Path(__file__).resolve().parents[1].parent / "shared/data/adult/adult.csv"


def load_adult(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, skipinitialspace=True, na_values=["?"])
    return df.drop(columns=[c for c in ("fnlwgt",) if c in df.columns])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adult", type=Path, default=Path(os.environ.get("ADULT_CSV", DEFAULT_ADULT)))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.adult.exists():
        print(json.dumps({"error": f"Adult CSV not found at {args.adult}"}))
        return 2
    df = load_adult(args.adult)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(df))
    spec = audits.TableSpec.infer(df, quasi_identifiers=["age", "sex", "race"], secret="income", name="adult")

    train, holdout = df.iloc[perm[:24000]], df.iloc[perm[24000:]]
    synthetic = holdout.sample(n=24000, replace=True, random_state=args.seed)
    timings: dict[str, float] = {}

    def progress(name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if progress.last is not None:  # type: ignore[attr-defined]
            timings[progress.last] = now - progress.t  # type: ignore[attr-defined]
        progress.last, progress.t = (name if name != "done" else None), now  # type: ignore[attr-defined]

    progress.last, progress.t = None, time.perf_counter()  # type: ignore[attr-defined]
    start = time.perf_counter()
    report = audits.run(train, holdout, synthetic, spec, tier="quick", seed=args.seed, progress=progress)
    total = time.perf_counter() - start

    # Honest check on disjoint splits.
    tr2, ho2, sy2 = df.iloc[perm[:12000]], df.iloc[perm[12000:18000]], df.iloc[perm[18000:30000]]
    honest = audits.run(tr2, ho2, sy2, spec, tier="quick", seed=args.seed)
    out = {
        "dataset": "adult", "rows": {"train": len(train), "holdout": len(holdout), "synthetic": len(synthetic)},
        "cores": os.cpu_count(), "tier": "quick", "total_seconds": round(total, 2),
        "seconds_per_attack": {k: round(v, 2) for k, v in timings.items()},
        "bootstrap_holdout_decision": report.decision,
        "honest_split_12k_6k_12k": {
            "decision": honest.decision, "seconds": round(honest.seconds, 2),
            "values": {r.name: None if r.value is None else round(r.value, 4) for r in honest.results},
            "ci_high": {r.name: None if r.ci_high is None else round(r.ci_high, 4) for r in honest.results},
            "failures": honest.failure_messages(),
        },
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
