"""Benchmark DP generators: fidelity, downstream utility, time and memory.

For every generator x epsilon, in a fresh Python process of its own (so that
peak memory is that run's alone, and one generator's JAX or torch state never
leaks into the next), the worker:

1. reads the table through the schema (columns outside the schema, such as
   Adult's ``fnlwgt``, are dropped) and holds out a fixed fraction of rows
   (seeded shuffle) that the generator never sees;
2. fits the generator on the rest and samples as many synthetic rows;
3. scores the synthetic table: mean 1/2/3-way marginal TVD against the
   training rows (numeric columns in 10 quantile bins of the real values) and
   train-on-synthetic / test-on-held-out ROC AUC for the schema's target.

The real-data AUC baseline (train on the same training rows, test on the same
held-out rows) is computed once. Peak memory is the worker's maximum resident
set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), which unlike
``tracemalloc`` includes JAX and torch buffers. ``*_cpu_seconds`` are process
CPU time (all threads), a steadier measure than wall time on a shared machine.

Example (from the repository root)::

    python benchmarks/run_generators.py --data ../shared/data/adult/adult.csv \\
        --schema benchmarks/adult.schema.json --generators mst,aim --epsilons 0.3,1,3 \\
        --delta 1e-6 --seed 0 --out benchmarks/results/generators.json \\
        --params dpctgan:epochs=5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MEMORY_METHOD = "resource.getrusage(RUSAGE_SELF).ru_maxrss of a fresh worker process per run"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data" / "adult" / "adult.csv",
        help="CSV table (default: %(default)s)",
    )
    parser.add_argument(
        "--schema",
        type=Path,
        default=REPO / "benchmarks" / "adult.schema.json",
        help="public schema JSON (default: %(default)s)",
    )
    parser.add_argument(
        "--generators", default="mst,aim", help="comma-separated generator names (default: %(default)s)"
    )
    parser.add_argument("--epsilons", default="0.3,1,3", help="comma-separated epsilons (default: %(default)s)")
    parser.add_argument("--delta", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0, help="seed for the split, the generators and the metrics")
    parser.add_argument("--target", default=None, help="label column for TSTR AUC (default: the schema's target)")
    parser.add_argument("--holdout", type=float, default=0.2, help="fraction of rows held out (default: %(default)s)")
    parser.add_argument(
        "--params",
        action="append",
        default=[],
        metavar="GEN:KEY=VALUE[,KEY=VALUE]",
        help="generator parameters, e.g. dpctgan:epochs=5 (repeatable; values parsed as JSON when possible)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "generators.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one run, as JSON
    return parser.parse_args(argv)


def parse_params(specs: list[str]) -> dict[str, dict[str, Any]]:
    """``["dpctgan:epochs=5,batch_size=500"]`` -> ``{"dpctgan": {"epochs": 5, "batch_size": 500}}``."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        generator, sep, assignments = spec.partition(":")
        if not sep or not generator:
            raise SystemExit(f"--params {spec!r}: expected GENERATOR:KEY=VALUE[,KEY=VALUE...]")
        for assignment in filter(None, assignments.split(",")):
            key, eq, value = assignment.partition("=")
            if not eq or not key:
                raise SystemExit(f"--params {spec!r}: {assignment!r} is not KEY=VALUE")
            try:
                parsed: Any = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
            out.setdefault(generator.strip(), {})[key.strip()] = parsed
    return out


def load_split(data: Path, schema_path: Path, holdout: float, seed: int):
    """(schema, training rows, held-out rows), both prepared to the schema."""
    import numpy as np

    from dpsynth.schema import Schema
    from dpsynth.tables import prepare, read_csv

    schema = Schema.load(schema_path)
    table, _ = prepare(read_csv(data, schema), schema)
    order = np.random.default_rng(seed).permutation(len(table))
    cut = len(table) - int(round(holdout * len(table)))
    train = table.iloc[order[:cut]].reset_index(drop=True)
    test = table.iloc[order[cut:]].reset_index(drop=True)
    return schema, train, test


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit, sample and score one generator at one epsilon (runs inside the worker process)."""
    from dpsynth.synthesizers import make_synthesizer
    from dpsynth.utility import marginal_tvd, tstr_auc

    schema, train, test = load_split(Path(spec["data"]), Path(spec["schema"]), spec["holdout"], spec["seed"])
    model = make_synthesizer(
        spec["generator"], epsilon=spec["epsilon"], delta=spec["delta"], random_state=spec["seed"], **spec["params"]
    )
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(train, schema)
    fit_seconds, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall, cpu = time.perf_counter(), time.process_time()
    synthetic = model.sample(len(train))
    sample_seconds, sample_cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    cost = model.privacy_cost_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auc = tstr_auc(synthetic, test, spec["target"], random_state=spec["seed"])
    return {
        "epsilon_reported": cost.epsilon,
        "accountant": cost.accountant,
        "tvd_1way": marginal_tvd(train, synthetic, 1, seed=spec["seed"]),
        "tvd_2way": marginal_tvd(train, synthetic, 2, seed=spec["seed"]),
        "tvd_3way": marginal_tvd(train, synthetic, 3, seed=spec["seed"]),
        "tstr_auc": auc,
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu,
        "sample_seconds": sample_seconds,
        "sample_cpu_seconds": sample_cpu,
        "peak_rss_mb": peak_mb,
        "n_train": len(train),
        "n_test": len(test),
        "n_synthetic": len(synthetic),
        "details": {k: v for k, v in cost.details.items() if isinstance(v, (int, float, str, list, dict, type(None)))},
    }


def run_in_subprocess(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result within {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"status": "error", "error": " | ".join(tail)}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["status"] = "ok"
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return 0

    from dpsynth._files import atomic_write_text
    from dpsynth.utility import tstr_auc

    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    epsilons = [float(e) for e in args.epsilons.split(",") if e.strip()]
    params = parse_params(args.params)
    schema, train, test = load_split(args.data, args.schema, args.holdout, args.seed)
    target = args.target or schema.target
    if target is None:
        raise SystemExit("the schema declares no target: pass --target COLUMN")
    real_auc = tstr_auc(train, test, target, random_state=args.seed)
    print(f"{len(train)} training rows, {len(test)} held out; real-data AUC for {target!r}: {real_auc:.4f}")

    rows = []
    for generator in generators:
        for epsilon in epsilons:
            spec = {
                "generator": generator,
                "epsilon": epsilon,
                "delta": args.delta,
                "seed": args.seed,
                "params": params.get(generator, {}),
                "data": str(args.data.resolve()),
                "schema": str(args.schema.resolve()),
                "holdout": args.holdout,
                "target": target,
            }
            result = run_in_subprocess(spec, args.timeout)
            row = {
                "generator": generator,
                "epsilon": epsilon,
                "delta": args.delta,
                "seed": args.seed,
                "params": spec["params"],
                "real_auc": real_auc,
                **result,
            }
            rows.append(row)
            if row["status"] == "ok":
                print(
                    f"{generator:8s} eps={epsilon:<5g} AUC {row['tstr_auc']:.4f}  TVD 1/2/3-way "
                    f"{row['tvd_1way']:.4f}/{row['tvd_2way']:.4f}/{row['tvd_3way']:.4f}  "
                    f"fit {row['fit_seconds']:.1f} s "
                    f"(cpu {row['fit_cpu_seconds']:.1f} s)  sample {row['sample_seconds']:.1f} s  "
                    f"peak {row['peak_rss_mb']:.0f} MB  reported eps {row['epsilon_reported']:.4f}",
                    flush=True,
                )
            else:
                print(f"{generator:8s} eps={epsilon:<5g} {row['status']}: {row['error']}", flush=True)

    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": str(args.data),
        "schema": str(args.schema),
        "target": target,
        "holdout": args.holdout,
        "seed": args.seed,
        "n_train": len(train),
        "n_test": len(test),
        "real_auc": real_auc,
        "memory_method": MEMORY_METHOD,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": list(os.getloadavg()),
        },
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
