"""How much the canary audit catches: its epsilon lower bound for honest and broken MST on UCI Adult.

Each run fits MST once (``dpsynth.release.generator_factory``, as the
thorough tier does) at the claimed epsilon on ``--reference-rows`` Adult rows
plus the included canaries, with one of the mutations of
tests/mst_mutations.py active; the accountant still reports the claimed
epsilon, so a bound above it is what the release gate refuses. Prints one JSON
line per (mutation, seed) and a summary table (median, min, max bound and the
correct guesses) at the end. The figures are quoted in docs/canary-audit.md.

Usage: python benchmarks/canary_power.py [--adult PATH] [--seeds 3] [--epsilon 1]
       [--mutations honest,noise_x0.01,...] [--canaries 400] [--reference-rows 500] [--mst-iters 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import audits  # noqa: E402
from dpsynth.release import generator_factory  # noqa: E402
from dpsynth.schema import Schema  # noqa: E402
from tests.mst_mutations import MUTATIONS, mutated  # noqa: E402

DEFAULT_ADULT = REPO.parent / "shared/data/adult/adult.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adult", type=Path, default=DEFAULT_ADULT)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--mutations", default=",".join(MUTATIONS))
    parser.add_argument("--canaries", type=int, default=400)
    parser.add_argument("--reference-rows", type=int, default=500)
    parser.add_argument("--mst-iters", type=int, default=1000)
    args = parser.parse_args(argv)
    names = [m for m in args.mutations.split(",") if m]
    unknown = [m for m in names if m not in MUTATIONS]
    if unknown:
        parser.error(f"--mutations: unknown {unknown}; known: {sorted(MUTATIONS)}")
    if not args.adult.is_file():
        parser.error(f"--adult: file not found: {args.adult}")

    schema = Schema.load(REPO / "benchmarks" / "adult.schema.json")
    spec = audits.TableSpec.from_schema_dict(schema.to_dict())
    table = pd.read_csv(args.adult, skipinitialspace=True, na_values=["?"]).drop(columns=["fnlwgt"])
    fit_sample = generator_factory("mst", {"iters": args.mst_iters}, schema, args.epsilon, 1e-6, False)
    summary: dict[str, list[dict]] = {}
    for name in names:
        for seed in range(args.seeds):
            # A fresh 1,000 / 2,000 split per seed; the canary fit reads the 2,000 holdout rows only.
            sample = table.sample(n=3000, random_state=seed).reset_index(drop=True)
            data = audits.AuditData(sample.iloc[:1000], sample.iloc[1000:], sample.iloc[1000:], spec, seed=seed)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = audits.canary_audit(
                    data,
                    mutated(fit_sample, MUTATIONS[name]),
                    n_canaries=args.canaries,
                    reference_rows=args.reference_rows,
                    claimed_epsilon=args.epsilon,
                    delta=1e-6,
                )
            row = {
                "mutation": name,
                "seed": seed,
                "bound": round(r.value, 3),
                "correct": r.details["correct"],
                "guesses": r.details["guesses"],
                "leaky_features": r.details.get("leaky_features"),
                "seconds": round(time.perf_counter() - start, 1),
            }
            summary.setdefault(name, []).append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\nclaimed epsilon {args.epsilon}, {args.canaries} canaries (half guessed), "
        f"{args.reference_rows} reference rows, MST iters {args.mst_iters}"
    )
    print(f"{'mutation':24s} {'median':>7s} {'min':>6s} {'max':>6s}  correct")
    for name, rows in summary.items():
        bounds = [row["bound"] for row in rows]
        correct = ", ".join(f"{row['correct']}/{row['guesses']}" for row in rows)
        print(f"{name:24s} {statistics.median(bounds):7.2f} {min(bounds):6.2f} {max(bounds):6.2f}  {correct}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
