"""What a DP-discovered schema costs in utility: DP schema + MST against a public schema + MST.

Same table, same train / test split (seeded shuffle, 20% held out) and the
same MST seed for every configuration:

* ``public``: the hand-written public schema (benchmarks/adult.schema.json),
  MST at (1.0, 1e-6);
* ``public-0.9``: the same schema, MST at (0.9, 9e-7): how much of the gap is
  only the budget the discovery takes away;
* ``dp``: DP domain discovery (dpsynth.discovery) on the training rows at
  (0.1, 1e-7), with the integer columns and generic public outer ranges as
  hints (age 0-120, education_num 0-20, capital gain and loss 0-1e6, hours
  0-168: facts about the world, not about this table), then MST at
  (0.9, 9e-7) with that schema;
* ``dp-grid``: the same without ranges (the default powers-of-ten grid).

The two DP spends are reserved in a scratch ledger capped at (1.0, 1e-6):
``ledger_epsilon`` is their composed cost by dpsynth's accountant.

Scores are always against the *real* values (typed with the public schema, so
a category the DP schema folded into "(other)" counts against it): mean
2-way marginal TVD against the training rows (numeric columns in 10 quantile
bins of the real values) and TSTR ROC AUC on the held-out rows (target
``income``). For the DP configurations ``tvd_2way_in_dp_domain`` also
compares with the real rows mapped into the DP schema's domain (rare
categories as "(other)", numbers clipped): the fidelity MST achieves at the
resolution the DP schema allows, separating it from what the coarser domain
itself costs. Discovery noise comes from OpenDP's CSPRNG and cannot be seeded,
so every configuration is repeated ``--repeats`` times (MST seed ``seed + r``)
and reported as mean and standard deviation.

Example (from the repository root, a few minutes on 2 cores)::

    python benchmarks/dp_schema.py --data ../shared/data/adult/adult.csv --repeats 5 \\
        --out benchmarks/results/dp_schema.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

INTEGER = ["age", "education_num", "capital_gain", "capital_loss", "hr_per_week"]
RANGES = {
    "age": (0, 120),
    "education_num": (0, 20),
    "capital_gain": (0, 1e6),
    "capital_loss": (0, 1e6),
    "hr_per_week": (0, 168),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "adult" / "adult.csv")
    parser.add_argument("--schema", type=Path, default=REPO / "benchmarks" / "adult.schema.json")
    parser.add_argument("--target", default="income")
    parser.add_argument("--drop", default="fnlwgt", help="comma-separated columns left out (default: %(default)s)")
    parser.add_argument("--epsilon", type=float, default=1.0, help="total epsilon (default: %(default)s)")
    parser.add_argument("--discovery-epsilon", type=float, default=0.1, help="epsilon of the DP schema")
    parser.add_argument("--delta", type=float, default=1e-6, help="total delta; discovery gets a tenth")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dp_schema.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    import pandas as pd

    from dpsynth.discovery import plan_discovery, run_discovery
    from dpsynth.privacy.ledger import Ledger
    from dpsynth.schema import Schema
    from dpsynth.synthesizers.mst import MST
    from dpsynth.tables import coerce, prepare
    from dpsynth.utility import marginal_tvd, tstr_auc

    args = parse_args(argv)
    public = Schema.load(args.schema)
    raw = pd.read_csv(args.data, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw = raw.drop(columns=[c for c in args.drop.split(",") if c], errors="ignore")
    order = np.random.default_rng(args.seed).permutation(len(raw))
    cut = len(raw) - int(round(0.2 * len(raw)))
    raw_train = raw.iloc[order[:cut]].reset_index(drop=True)
    raw_test = raw.iloc[order[cut:]].reset_index(drop=True)
    real_train, _ = prepare(coerce(raw_train, public), public)
    real_test, _ = prepare(coerce(raw_test, public), public)
    eps_rest, eps_disc = args.epsilon - args.discovery_epsilon, args.discovery_epsilon
    delta_disc, delta_rest = args.delta / 10, args.delta * 9 / 10

    def score(synthetic: pd.DataFrame, seed: int) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auc = tstr_auc(synthetic, real_test, args.target, random_state=seed)
        return {"tvd_2way": marginal_tvd(real_train, synthetic, 2, seed=seed), "tstr_auc": auc}

    def fit(schema: Schema, train: pd.DataFrame, epsilon: float, delta: float, seed: int) -> pd.DataFrame:
        return MST(epsilon=epsilon, delta=delta, random_state=seed).fit(train, schema).sample(len(train))

    def coarsen(real: pd.DataFrame, schema: Schema) -> pd.DataFrame:
        """Real values as the DP schema sees them: rare categories in "other", numbers clipped to its bounds."""
        out = real.copy()
        for column in schema:
            if column.kind == "numeric":
                out[column.name] = out[column.name].clip(column.lower, column.upper)
            else:
                labels = out[column.name].astype(object)
                out[column.name] = labels.where(labels.isin(column.categories) | labels.isna(), column.other)
        return out

    runs: list[dict] = []
    for r in range(args.repeats):
        seed = args.seed + r
        for name, eps in (("public", args.epsilon), ("public-0.9", eps_rest)):
            delta = args.delta if name == "public" else delta_rest
            started = time.perf_counter()
            row = {"config": name, "repeat": r, **score(fit(public, real_train, eps, delta, seed), seed)}
            runs.append({**row, "seconds": time.perf_counter() - started})
            print(json.dumps(runs[-1]), flush=True)
        for name, ranges in (("dp", RANGES), ("dp-grid", {})):
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as scratch:
                ledger = Ledger.create(Path(scratch) / "ledger.sqlite", "adult", args.epsilon, args.delta)
                plan = plan_discovery(list(raw.columns), eps_disc, delta_disc, integer=INTEGER, ranges=ranges)
                ledger.reserve("adult", plan.cost, purpose="schema discovery")
                schema = run_discovery(raw_train, plan, name="adult-dp", target=args.target)
                train, report = prepare(coerce(raw_train, schema), schema)
                model = MST(epsilon=eps_rest, delta=delta_rest, random_state=seed)
                ledger.reserve("adult", model.planned_cost(len(train), schema), purpose="mst")
                synthetic = model.fit(train, schema).sample(len(train))
                total = ledger.summary("adult")[0]
            # fidelity at the DP schema's own resolution: real rows mapped into its domain
            coarse = marginal_tvd(coarsen(real_train, schema), synthetic, 2, seed=seed)
            row = {
                "config": name,
                "repeat": r,
                **score(synthetic, seed),
                "tvd_2way_in_dp_domain": coarse,
                "discovery_epsilon": plan.cost.epsilon,
                "discovery_accountant": plan.cost.accountant,
                "ledger_epsilon": total.spent_epsilon,
                "ledger_accountant": total.accountant,
                "threshold": plan.cost.details["threshold"],
                "categories_kept": {c.name: len(c.categories) - 1 for c in schema if c.kind == "categorical"},
                "numeric": {c.name: [c.lower, c.upper, c.n_bins] for c in schema if c.kind == "numeric"},
                "train_rows_mapped_to_other": int(sum(report.mapped_to_other.values())),
                "train_values_clipped": int(sum(report.clipped_low.values()) + sum(report.clipped_high.values())),
                "seconds": time.perf_counter() - started,
            }
            runs.append(row)
            print(json.dumps(row), flush=True)

    summary = {}
    for name in ("public", "public-0.9", "dp", "dp-grid"):
        rows = [x for x in runs if x["config"] == name]
        summary[name] = {
            key: {
                "mean": statistics.fmean(x[key] for x in rows),
                "sd": statistics.stdev(x[key] for x in rows) if len(rows) > 1 else 0.0,
            }
            for key in ("tvd_2way", "tstr_auc", "tvd_2way_in_dp_domain", "ledger_epsilon", "discovery_epsilon")
            if key in rows[0]
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real_auc = tstr_auc(real_train, real_test, args.target, random_state=args.seed)
    result = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": str(args.data),
        "schema": str(args.schema),
        "n_train": len(raw_train),
        "n_test": len(raw_test),
        "epsilon": args.epsilon,
        "delta": args.delta,
        "discovery": [eps_disc, delta_disc],
        "mst_after_discovery": [eps_rest, delta_rest],
        "integer_hints": INTEGER,
        "range_hints": RANGES,
        "real_auc": real_auc,
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
