"""Release steps on Adult-shaped tables of millions of rows: the DuckDB engine against today's pandas path.

Makes Adult-shaped tables (rows of ../shared/data/adult/adult.csv resampled
with replacement, numbers jittered, seeded) of each ``--sizes`` row count as
CSV (and Parquet with ``--parquet``), then runs every configuration in its
own subprocess and reports each step's seconds and the process's peak
resident memory (``ru_maxrss``, also after each step):

* ``duckdb``: the engine path of ``dpsynth release`` (dpsynth.engines): read
  + coerce + encode in one DuckDB query, split by coins, pandas Categorical
  frames for the audits, MST fitted on the codes (``GROUP BY`` counts).
* ``pandas-engine``: the same path with ``--engine pandas`` (reads through pandas).
* ``spark``: the same path with ``--engine spark`` in local mode (``--spark-master``, default
  ``local[2]``; Parquet only, so pass ``--format parquet``): the JVM's start is its own step,
  then read + encode on Spark (codes cached there), split by a join on the row index, MST's
  counts as Spark ``GROUP BY GROUPING SETS`` jobs, the audits' searches and lookups on the
  executors (dpsynth.engines.spark_audit) and the report's real columns from their marginals.
* ``pandas``: today's path as it was before the engines: ``read_csv`` (object
  columns), ``split_holdout`` on the frame, ``prepare`` of the whole table,
  MST fitted on the pandas frame. It is the baseline the others are compared
  with; it runs up to ``--pandas-max-rows`` rows.

Every configuration fits MST (epsilon 1) with the public schema
benchmarks/adult.schema.json, samples as many rows as its DP estimate of
the training rows, runs the quick audit tier (``--skip-audit`` leaves it
out: on millions of rows it needs the scalable nearest-neighbour search),
and writes synthetic.csv and report.html as a release does.

    python benchmarks/scale.py --adult ../shared/data/adult/adult.csv --sizes 1000000 10000000 --skip-audit
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "adult.schema.json"
CONFIGS = ("duckdb", "pandas-engine", "pandas", "spark")
ENGINE = {"duckdb": "duckdb", "pandas-engine": "pandas", "spark": "spark"}
CHUNK = 1_000_000


# -- the tables -----------------------------------------------------------------------------------
def make_table(adult: Path, n_rows: int, out: Path, seed: int, parquet: bool) -> None:
    """``n_rows`` Adult rows drawn with replacement, numeric columns jittered inside the public bounds."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from dpsynth.schema import Schema

    schema = Schema.load(SCHEMA)
    base = pd.read_csv(adult, dtype=str, keep_default_na=False, skipinitialspace=True)
    rng = np.random.default_rng(seed)
    bounds = {c.name: (c.lower, c.upper) for c in schema if c.kind == "numeric"}
    numeric = {name: pd.to_numeric(base[name], errors="coerce").to_numpy() for name in [*bounds, "fnlwgt"]}
    writers: list = []
    try:
        for start in range(0, n_rows, CHUNK):
            n = min(CHUNK, n_rows - start)
            rows = rng.integers(0, len(base), n)
            columns = {}
            for name in base.columns:
                if name in numeric:
                    x = numeric[name][rows].astype(float)
                    if name in ("age", "hr_per_week"):
                        x = x + rng.integers(-2, 3, n)
                    elif name in ("capital_gain", "capital_loss", "fnlwgt"):
                        x = np.where(x > 0, np.round(x * np.exp(rng.normal(0, 0.1, n))), x)
                    if name in bounds:
                        x = np.clip(x, *bounds[name])
                    columns[name] = pa.array(x.astype(np.int64))
                else:
                    columns[name] = pa.array(base[name].to_numpy(dtype=object)[rows], type=pa.string())
            batch = pa.table(columns)
            if not writers:
                options = pacsv.WriteOptions(quoting_style="needed")
                writers.append(pacsv.CSVWriter(out.with_suffix(".csv.part"), batch.schema, write_options=options))
                if parquet:
                    writers.append(pq.ParquetWriter(out.with_suffix(".parquet.part"), batch.schema))
            for writer in writers:
                writer.write_table(batch)
    finally:
        for writer in writers:
            writer.close()
    os.replace(out.with_suffix(".csv.part"), out.with_suffix(".csv"))
    if parquet:
        os.replace(out.with_suffix(".parquet.part"), out.with_suffix(".parquet"))


def regroup(parquet: Path, row_group_rows: int) -> Path:
    """The same rows as ``parquet`` in row groups of ``row_group_rows`` (a writer's layout; DuckDB's is 122,880).

    Spark and DuckDB read a Parquet file one row group per task or thread, so a file written as one
    group per million rows (pyarrow's default, as :func:`make_table` writes) is read by one core.
    """
    import pyarrow.parquet as pq

    out = parquet.with_name(f"{parquet.stem}-rg{row_group_rows}.parquet")
    if not out.exists():
        part = out.with_suffix(".part")
        pq.write_table(pq.read_table(parquet), part, row_group_size=row_group_rows)
        os.replace(part, out)
    return out


# -- one configuration, in its own process -----------------------------------------------------
class Steps:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}
        self._start = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._start, 2)
        self.peak_mb[step] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(f"  {step}: {self.seconds[step]} s, peak {self.peak_mb[step]} MB", file=sys.stderr, flush=True)
        self._start = time.perf_counter()


def run_one(config: str, data: Path, skip_audit: bool, seed: int, spark_master: str | None = None) -> dict:
    import audits
    from dpsynth.engines import audit_tables, read_table
    from dpsynth.holdout import split_encoded
    from dpsynth.release import split_holdout, synthetic_csv_text
    from dpsynth.report import write_report
    from dpsynth.schema import Schema
    from dpsynth.synthesizers.mst import MST
    from dpsynth.tables import prepare, read_csv

    schema = Schema.load(SCHEMA)
    steps = Steps()
    rng = np.random.default_rng(seed)
    if config == "pandas":
        table = read_csv(data, schema)
        steps.done("read")
        train, holdout = split_holdout(table, 0.2, rng)
        prepare(table, schema, source=str(data))  # today's release checks the whole table's domain here
        del table
        fit_input = train
        steps.done("split")
    else:
        if config == "spark":
            from dpsynth.engines.spark_session import spark_session

            spark_session(spark_master)
            steps.done("spark start")
        encoded = read_table(data, schema, engine=ENGINE[config], spark_master=spark_master)
        steps.done("read+encode")
        train_codes, holdout_codes = split_encoded(encoded, 0.2, rng)
        del encoded
        train, holdout = audit_tables(train_codes, holdout_codes)  # a Spark side stays on the cluster
        fit_input = train_codes
        steps.done("split")
    model = MST(epsilon=1.0, delta=1e-9, random_state=seed).fit(fit_input, schema)
    del fit_input
    steps.done("fit")
    synthetic = model.sample()
    steps.done("sample")
    # without the audit the report renders as refused (the gate cannot pass what was not attacked)
    audit: dict = {"decision": "FAIL", "results": []}
    if not skip_audit:
        spec = audits.TableSpec.from_schema_dict(schema.to_dict())
        report = audits.run(train, holdout, synthetic, spec, tier="quick", seed=seed)
        audit = report.to_dict()
        steps.done("audit")
    with tempfile.TemporaryDirectory() as tmp:
        text = synthetic_csv_text(synthetic, schema)
        Path(tmp, "synthetic.csv").write_text(text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        del text
        steps.done("write synthetic.csv")
        manifest = {"decision": audit["decision"], "generator": "mst", "dataset_id": "adult-scale"}
        manifest["reasons"] = ["the audit was not run (benchmarks/scale.py --skip-audit)"] if skip_audit else []
        manifest |= {"privacy": {"epsilon": 1.0, "delta": 1e-9}, "budget": {}, "schema": {}, "rows": {}}
        kinds = {c.name: c.kind for c in schema}
        bounds = {c.name: (c.lower, c.upper) for c in schema if c.kind == "numeric"}
        real = train if isinstance(train, pd.DataFrame) else train.frame_for_report()
        write_report(Path(tmp, "report.html"), manifest, audit, real, synthetic, kinds, bounds=bounds)
        steps.done("report")
    return {
        "config": config,
        "rows": len(train) + len(holdout),
        "synthetic_rows": len(synthetic),
        "seconds": steps.seconds,
        "total_seconds": round(sum(steps.seconds.values()), 1),
        "peak_rss_mb": max(steps.peak_mb.values()),
        "peak_rss_mb_after": steps.peak_mb,
        "audit": "skipped" if skip_audit else audit["decision"],
        "synthetic_sha256": digest,  # same seed, same schema: the same table whichever engine read the data
    }


# -- driver ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adult", type=Path, default=HERE.parent.parent / "shared/data/adult/adult.csv")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--pandas-max-rows", type=int, default=1_000_000, help="Largest table today's path runs on.")
    parser.add_argument("--skip-audit", action="store_true", help="Leave out the quick audit tier.")
    parser.add_argument("--parquet", action="store_true", help="Also write Parquet tables (read with --format).")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument(
        "--row-group-rows", type=int, help="Read a copy of each Parquet table in row groups of this many rows."
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dpsynth-scale")
    parser.add_argument("--timeout", type=float, default=3600, help="Seconds before a configuration is abandoned.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spark-master", default=None, help="The spark configuration's master (local[2]).")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale.json")
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.data, args.skip_audit, args.seed, args.spark_master)))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        stem = args.workdir / f"adult-{size}-seed{args.seed}"
        if not stem.with_suffix(f".{args.format}").exists():
            start = time.perf_counter()
            make_table(args.adult, size, stem, args.seed, parquet=args.parquet or args.format == "parquet")
            print(f"made {stem}.{args.format} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        data = stem.with_suffix(f".{args.format}")
        if args.row_group_rows:
            if args.format != "parquet":
                parser.error("--row-group-rows is for --format parquet")
            data = regroup(data, args.row_group_rows)
        for config in args.configs:
            if config == "pandas" and size > args.pandas_max_rows:
                results.append({"config": config, "rows": size, "skipped": "over --pandas-max-rows"})
                continue
            print(f"{config} on {size:,} rows", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--one", config, "--data", str(data)]
            command += ["--seed", str(args.seed)] + (["--skip-audit"] if args.skip_audit else [])
            command += ["--spark-master", args.spark_master] if args.spark_master else []
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
            except subprocess.TimeoutExpired:
                results.append({"config": config, "rows": size, "failed": f"did not finish in {args.timeout:.0f} s"})
                continue
            sys.stderr.write(done.stderr[-4000:])
            if done.returncode != 0:
                results.append({"config": config, "rows": size, "failed": done.stderr.strip().splitlines()[-1:]})
                continue
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    for r in results:
        if "seconds" not in r:
            print(f"{r['config']:>14} {r['rows']:>11,} rows: {r.get('skipped') or r.get('failed')}")
            continue
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items())
        total, peak = r["total_seconds"], r["peak_rss_mb"]
        print(f"{r['config']:>14} {r['rows']:>11,} rows: {total:7.1f} s, peak {peak:7.0f} MB ({steps})")
    for size in args.sizes:
        by = {r["config"]: r for r in results if r["rows"] == size and "seconds" in r}
        if len(by) > 1:
            same = len({r["synthetic_sha256"] for r in by.values()}) == 1
            print(f"{size:,} rows: synthetic tables of {', '.join(by)} {'identical' if same else 'DIFFER'}")
        if "pandas" in by:
            base = by["pandas"]
            for config in [c for c in by if c != "pandas"]:
                time_ratio = by[config]["total_seconds"] / base["total_seconds"]
                memory_ratio = by[config]["peak_rss_mb"] / base["peak_rss_mb"]
                print(f"{size:,} rows, {config} / pandas: time {time_ratio:.2f}x, peak memory {memory_ratio:.2f}x")
        if "spark" in by and "duckdb" in by:
            spark, duck = by["spark"], by["duckdb"]
            ratio = spark["total_seconds"] / duck["total_seconds"]
            print(f"{size:,} rows, spark / duckdb: time {ratio:.2f}x (in-process peak memory, JVM not included)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "skip_audit": args.skip_audit, "format": args.format, "seed": args.seed}
    meta["row_group_rows"] = args.row_group_rows or CHUNK
    meta["spark_master"] = args.spark_master or "local[2]"
    args.out.write_text(json.dumps({"machine": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
