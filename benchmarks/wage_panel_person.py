"""Person-level releases of a real panel: linearmodels' wage_panel (NLSY, 545 persons x 8 years, 4,360 rows).

Three MST (``--generator aim``: AIM) releases at epsilon 1 (``--epsilon``; delta 1e-6), each a full ``run_release``
(engine read, split, ledger, fit, quick audit, files), per seed:

* ``row``: record-level, no ``--privacy-unit``: epsilon 1 per *row*. Its noise
  re-accounted for a person with 8 rows (every count vector moves by L2 <= 8,
  every selection score by <= 8) is ``row_noise_person_epsilon``.
* ``person``: ``--privacy-unit nr --max-rows-per-unit 8``: the long table,
  sensitivity 8 (sigma 8 times larger); rows are not linked to persons.
* ``panel``: ``--privacy-unit nr --panel-time year``: one wide row per person
  (variables x 8 years), K = 8; synthetic persons keep trajectories.

Measured against the whole real table (long form): the mean 2-way TVD over
the long columns' pairs (dpsynth.utility.marginal_tvd, 10 quantile bins),
the lag-1 correlation of log wage (mean over the 7 pairs of consecutive
years of corr(lwage_t, lwage_t+1) across persons; only the panel release
has persons to correlate), and the audit results (quick tier; person-level
for ``person`` and ``panel``, row-level for ``row``).

    python benchmarks/wage_panel_person.py --seeds 0 1 2 --out benchmarks/results/wage_panel_person.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["nr", "year", "married", "union", "lwage"]
SCHEMA = {
    "name": "wage_panel",
    "source": "public",
    "description": "NLSY wage panel (Vella & Verbeek 1998), as shipped by linearmodels; bounds from the codebook",
    "columns": [
        {"name": "year", "kind": "categorical", "categories": [str(y) for y in range(1980, 1988)]},
        {"name": "married", "kind": "categorical", "categories": ["0", "1"]},
        {"name": "union", "kind": "categorical", "categories": ["0", "1"]},
        {"name": "lwage", "kind": "numeric", "lower": -1.0, "upper": 4.0, "bins": 10},
    ],
}
AUDIT_KEYS = (
    "dcr_share",
    "nndr_ratio",
    "exact_copy_rate",
    "mia_distance",
    "mia_domias",
    "linkage_risk",
    "singling_out_risk",
    "attribute_inference_risk",
)
CONFIGS = {
    "row": {},
    "person": {"privacy_unit": "nr", "max_rows_per_unit": 8},
    "panel": {"privacy_unit": "nr", "panel_time": "year"},
}


def lag1_correlation(long: pd.DataFrame) -> float:
    """Mean over consecutive years of corr(lwage_t, lwage_t+1) across persons (``nr`` links a person's rows)."""
    wide = long.pivot(index="nr", columns="year", values="lwage")
    years = sorted(wide.columns)
    return float(np.mean([wide[a].corr(wide[b]) for a, b in zip(years, years[1:])]))


def row_noise_person_epsilon(manifest: dict, k: int = 8, delta: float = 1e-6) -> float:
    """The row-level fit's realised noise priced for a person with ``k`` rows (L2 sensitivity k, selections k)."""
    import dp_accounting as dpa

    from dpsynth.privacy.accountant import epsilon_for
    from dpsynth.privacy.events import DiscreteGaussianVectorDpEvent

    details = manifest["privacy"]["realised"]["details"]
    d = len(SCHEMA["columns"])
    event = dpa.ComposedDpEvent(
        [
            dpa.SelfComposedDpEvent(DiscreteGaussianVectorDpEvent(details["sigma_one_way"], float(k)), d),
            dpa.SelfComposedDpEvent(DiscreteGaussianVectorDpEvent(details["sigma_two_way"], float(k)), d - 1),
            dpa.SelfComposedDpEvent(dpa.ZCDpEvent((k * details["epsilon_selection"]) ** 2 / 8), d - 1),
        ]
    )
    return float(epsilon_for(event, delta))


def run(
    config: str,
    seed: int,
    data: Path,
    schema: Path,
    work: Path,
    iters: int,
    epsilon: float = 1.0,
    generator: str = "mst",
) -> dict:
    from dpsynth.privacy.ledger import init_ledger
    from dpsynth.release import ReleaseRequest, run_release
    from dpsynth.utility import marginal_tvd

    ledger = work / f"{config}-{seed}.sqlite"
    init_ledger(ledger, "wage_panel", epsilon, 1e-5)
    out = work / f"{config}-{seed}"
    from dpsynth.errors import GateFailed

    start = time.perf_counter()
    request = ReleaseRequest(
        data=data,
        schema=schema,
        generator=generator,
        epsilon=epsilon,
        delta=1e-6,
        ledger=ledger,
        dataset_id="wage_panel",
        out=out,
        seed=seed,
        generator_params={"iters": iters} if generator == "mst" else {"max_iters": iters},
        **CONFIGS[config],
    )
    try:
        run_release(request)
    except GateFailed:
        pass  # reported below from the manifest; a withheld release has no synthetic.csv
    seconds = time.perf_counter() - start
    manifest = json.loads((out / "manifest.json").read_text())
    audit = json.loads((out / "audit.json").read_text())
    results = {r["name"]: r for r in audit["results"]}
    row = {
        "config": config,
        "seed": seed,
        "decision": manifest["decision"],
        "reasons": manifest["reasons"],
        "seconds": round(seconds, 1),
        "neighbouring": manifest["privacy"]["neighbouring"],
        "epsilon": manifest["privacy"]["epsilon"],
        "audit": {k: results[k]["value"] for k in AUDIT_KEYS if k in results},
        "audit_passed": {k: results[k]["passed"] for k in AUDIT_KEYS if k in results},
        "audit_sizes": audit.get("sizes"),
    }
    if (out / "synthetic.csv").exists():
        real = pd.read_csv(data, dtype={"year": str, "married": str, "union": str})
        synthetic = pd.read_csv(out / "synthetic.csv", dtype={"year": str, "married": str, "union": str})
        columns = [c["name"] for c in SCHEMA["columns"]]
        row["tvd_2way"] = marginal_tvd(real[columns], synthetic[columns], way=2)
        row["tvd_1way"] = marginal_tvd(real[columns], synthetic[columns], way=1)
        row["lag1_corr_lwage"] = lag1_correlation(synthetic) if config == "panel" else None
        row["synthetic_rows"] = len(synthetic)
    if config == "row" and generator == "mst":
        row["row_noise_person_epsilon"] = row_noise_person_epsilon(manifest)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--generator", default="mst", choices=["mst", "aim"])
    parser.add_argument(
        "--epsilon", type=float, default=1.0, help="each release's epsilon (person level for person, panel)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    from linearmodels.datasets import wage_panel

    frame = wage_panel.load()[COLUMNS]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, schema = work / "wage_panel.csv", work / "wage_panel.schema.json"
        frame.to_csv(data, index=False)
        schema.write_text(json.dumps(SCHEMA))
        real = pd.read_csv(data, dtype={"year": str})
        rows = [
            run(config, seed, data, schema, work, args.iters, args.epsilon, args.generator)
            for config in args.configs
            for seed in args.seeds
        ]
    summary = {
        "generator": args.generator,
        "epsilon": args.epsilon,
        "real_lag1_corr_lwage": lag1_correlation(real),
        "runs": rows,
    }
    for config in args.configs:
        mine = [r for r in rows if r["config"] == config]
        summary[config] = {
            key: float(np.mean([r[key] for r in mine]))
            for key in ("tvd_2way", "tvd_1way", "lag1_corr_lwage", "row_noise_person_epsilon", "seconds")
            if mine and all(r.get(key) is not None for r in mine)
        }
        summary[config]["audit"] = {k: float(np.mean([r["audit"][k] for r in mine])) for k in mine[0]["audit"]}
        summary[config]["decisions"] = [r["decision"] for r in mine]
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
