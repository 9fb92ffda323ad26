"""Time the audit tiers on UCI Adult (24k train / 6k holdout / 24k synthetic) and print JSON.

Default (``--generator bootstrap --tier quick``): the synthetic table is
"holdout-like", a bootstrap of rows the generator never saw, so every attack
does its full amount of work. A second, disjoint split (12k / 6k / 12k,
synthetic = an independent split) checks that an honest release passes; its
decision and values are printed too.

``--generator mst``: the synthetic table is a real MST release (epsilon from
``--epsilon``, public schema ``benchmarks/adult.schema.json``), and the
thorough tier gets its generator the way ``dpsynth release`` does
(``dpsynth.release.generator_factory``: the same synthesizer and budget refit
on holdout-derived reference data). The output adds the fit time, every
attack's seconds, the canary epsilon lower bound and the decision.

Usage: python benchmarks/audit_speed.py [--adult PATH] [--seed N]
       python benchmarks/audit_speed.py --tier thorough --generator mst [--epsilon 1] [--mst-iters 2000]
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


class _Timer:
    """Progress callback that records the seconds each attack took."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.last: str | None = None
        self.t = time.perf_counter()

    def __call__(self, name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.timings[self.last] = round(now - self.t, 2)
        self.last, self.t = (name if name != "done" else None), now


def _summary(report: audits.AuditReport) -> dict:
    return {
        "decision": report.decision,
        "seconds": round(report.seconds, 2),
        "values": {r.name: None if r.value is None else round(r.value, 4) for r in report.results},
        "ci": {r.name: None if r.ci_low is None else [round(r.ci_low, 4), round(r.ci_high, 4)] for r in report.results},
        "failures": report.failure_messages(),
    }


def run_mst(args: argparse.Namespace) -> dict:
    """Fit MST on a 24k Adult split, sample 24k rows, audit at the requested tier."""
    from dpsynth.release import generator_factory, split_holdout
    from dpsynth.schema import Schema
    from dpsynth.synthesizers.mst import MST
    from dpsynth.tables import read_csv

    schema = Schema.load(args.schema)
    table = read_csv(args.adult, schema)
    train, holdout = split_holdout(table, 1 - 24000 / len(table), np.random.default_rng(args.seed))
    t0 = time.perf_counter()
    model = MST(epsilon=args.epsilon, delta=args.delta, random_state=args.seed, iters=args.mst_iters)
    model.fit(train, schema)
    synthetic = model.sample(len(train))
    fit_seconds = time.perf_counter() - t0
    factory = None
    if args.tier == "thorough":
        raw = generator_factory("mst", {"iters": args.mst_iters}, schema, args.epsilon, args.delta, False)
        calls: list[float] = []

        def factory(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
            t = time.perf_counter()
            out = raw(df, n_rows, seed)
            calls.append(time.perf_counter() - t)
            return out

    timer = _Timer()
    spec = audits.TableSpec.from_schema_dict(schema.to_dict())
    start = time.perf_counter()
    report = audits.run(
        train,
        holdout,
        synthetic,
        spec,
        tier=args.tier,
        generator=factory,
        claimed_epsilon=model.privacy_cost_.epsilon,
        claimed_delta=args.delta,
        seed=args.seed,
        progress=timer,
    )
    total = time.perf_counter() - start
    out = {
        "dataset": "adult",
        "generator": "mst",
        "epsilon": args.epsilon,
        "delta": args.delta,
        "mst_iters": args.mst_iters,
        "rows": {"train": len(train), "holdout": len(holdout), "synthetic": len(synthetic)},
        "cores": os.cpu_count(),
        "tier": args.tier,
        "fit_and_sample_seconds": round(fit_seconds, 2),
        "audit_seconds": round(total, 2),
        "seconds_per_attack": timer.timings,
        **_summary(report),
    }
    if args.tier == "thorough":
        eps = report.result("epsilon_lower_bound")
        out["generator_refits"] = {
            "count": len(calls),
            "seconds": round(sum(calls), 2),
            "mean_seconds": round(float(np.mean(calls)), 2) if calls else None,
        }
        out["canary"] = {k: eps.details.get(k) for k in ("n_canaries", "guesses", "correct", "confidence")}
        out["canary"]["epsilon_lower_bound"] = eps.value
        out["canary"]["claimed_epsilon"] = report.claimed_epsilon
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adult", type=Path, default=Path(os.environ.get("ADULT_CSV", DEFAULT_ADULT)))
    parser.add_argument("--schema", type=Path, default=Path(__file__).resolve().parent / "adult.schema.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tier", choices=("quick", "thorough"), default="quick")
    parser.add_argument(
        "--generator",
        choices=("bootstrap", "mst"),
        default="bootstrap",
        help="bootstrap: holdout rows resampled (no refits); mst: a real MST release",
    )
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1e-6)
    parser.add_argument("--mst-iters", type=int, default=2000)
    args = parser.parse_args()
    if not args.adult.exists():
        print(json.dumps({"error": f"Adult CSV not found at {args.adult}"}))
        return 2
    if args.generator == "mst":
        print(json.dumps(run_mst(args), indent=2))
        return 0
    if args.tier == "thorough":
        print(json.dumps({"error": "the thorough tier refits a generator: use --generator mst"}))
        return 2
    df = load_adult(args.adult)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(df))
    spec = audits.TableSpec.infer(df, quasi_identifiers=["age", "sex", "race"], secret="income", name="adult")

    train, holdout = df.iloc[perm[:24000]], df.iloc[perm[24000:]]
    synthetic = holdout.sample(n=24000, replace=True, random_state=args.seed)
    timer = _Timer()
    start = time.perf_counter()
    report = audits.run(train, holdout, synthetic, spec, tier="quick", seed=args.seed, progress=timer)
    total = time.perf_counter() - start

    # Honest check on disjoint splits.
    tr2, ho2, sy2 = df.iloc[perm[:12000]], df.iloc[perm[12000:18000]], df.iloc[perm[18000:30000]]
    honest = audits.run(tr2, ho2, sy2, spec, tier="quick", seed=args.seed)
    out = {
        "dataset": "adult",
        "rows": {"train": len(train), "holdout": len(holdout), "synthetic": len(synthetic)},
        "cores": os.cpu_count(),
        "tier": "quick",
        "total_seconds": round(total, 2),
        "seconds_per_attack": timer.timings,
        "bootstrap_holdout_decision": report.decision,
        "honest_split_12k_6k_12k": _summary(honest),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
