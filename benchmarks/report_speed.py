"""Time the HTML report on Adult against a baseline run in the same script.

The report renders every column's distribution and the attack plots; the baseline is the bare
matplotlib cost of drawing one empty figure per column, so the ratio says how much the report
adds on top of plotting itself, independent of the machine's speed.

    python benchmarks/report_speed.py --data ../shared/data/adult/adult.csv
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dpsynth.report import write_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    df = pd.read_csv(args.data).drop(columns=["fnlwgt"], errors="ignore")
    kinds = {c: "numeric" if pd.api.types.is_numeric_dtype(df[c]) else "categorical" for c in df.columns}
    synthetic = df.sample(len(df), replace=True, random_state=0)
    manifest = {
        "decision": "PASS",
        "generator": "mst",
        "dataset_id": "adult",
        "privacy": {"epsilon": 1.0, "delta": 1e-6},
        "budget": {},
        "schema": {},
        "rows": {},
    }
    audit = {"decision": "PASS", "results": []}
    report_s, baseline_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            start = time.perf_counter()
            for _ in kinds:
                figure = plt.figure(figsize=(4, 3))
                figure.savefig(Path(tmp) / "empty.png")
                plt.close(figure)
            baseline_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            write_report(Path(tmp) / f"report{i}.html", manifest, audit, df, synthetic, kinds)
            report_s.append(time.perf_counter() - start)
    best_report, best_baseline = min(report_s), min(baseline_s)
    print(
        f"report {best_report:.2f} s, baseline (one empty figure per column) {best_baseline:.2f} s, "
        f"ratio {best_report / best_baseline:.1f}x (best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
