"""The quick audit at scale: seconds and peak memory by table size, the exact index against all pairs, calibration.

Tables are "Adult-shaped": rows of UCI Adult (read through the public schema
``benchmarks/adult.schema.json``) drawn with replacement, with seeded jitter
(age +-2 years, hours +-3, non-zero capital gain / loss times a log-normal
factor of sd 5%), so categorical signatures and the duplicate structure stay
Adult's while the size grows. ``n`` rows are split like ``dpsynth release``
(20% holdout by independent coin flips, ``dpsynth.release.split_holdout``).

Calibration runs on both jitters: with ``discrete`` jitter most unseen rows
already have an exact copy in training at 1M rows (the table has only
Adult's 30k base records), which no record-level re-identification attack
can tell from a leak; ``continuous`` jitter keeps near twins but no copies.

Every measurement runs in a fresh subprocess so its peak resident memory
(``ru_maxrss``, which includes the interpreter, pandas and the tables
themselves) is its own:

- ``index``: the quick tier as shipped (nearest neighbours through
  :class:`audits.neighbours.GowerIndex`);
- ``brute``: the same audit with every nearest-neighbour search forced to all
  pairs (the former behaviour), at the sizes in ``--brute-sizes``;
- calibration at ``--calibration-size``: ``leaky`` (synthetic = the training
  rows, shuffled) must fail every family; ``honest`` (synthetic = as many
  fresh draws of the same distribution, not in training) must pass;
- ``--mst-size N``: the audit of a real MST release (epsilon 1) of ``N`` rows,
  with the fit and sample time.

Synthetic tables are as large as the training table (what a release samples).

Usage: python benchmarks/audit_scale.py [--sizes 100000,300000,1000000] [--brute-sizes 30000,100000]
           [--calibration-size 1000000] [--mst-size 0] [--out benchmarks/results/audit_scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_ADULT = ROOT.parent / "shared/data/adult/adult.csv"
SCHEMA = ROOT / "benchmarks/adult.schema.json"


def adult_shaped(base: pd.DataFrame, n: int, seed: int, jitter: str = "discrete") -> pd.DataFrame:
    """``n`` rows of ``base`` drawn with replacement, numerics jittered (see the module docstring).

    ``discrete`` keeps whole numbers (many exact duplicates, as in Adult);
    ``continuous`` adds the same spread without rounding, so resampled rows
    are near twins of their base row, not exact copies.
    """
    rng = np.random.default_rng(seed)
    df = base.iloc[rng.integers(0, len(base), n)].reset_index(drop=True)
    if jitter == "discrete":
        age, hours = rng.integers(-2, 3, n), rng.integers(-3, 4, n)
    else:
        age, hours = rng.uniform(-2.5, 2.5, n), rng.uniform(-3.5, 3.5, n)
    df["age"] = np.clip(df["age"].to_numpy(float) + age, 17, 90)
    df["hr_per_week"] = np.clip(df["hr_per_week"].to_numpy(float) + hours, 1, 99)
    for col, upper in (("capital_gain", 99999), ("capital_loss", 4356)):
        v = df[col].to_numpy(float) * np.exp(rng.normal(0, 0.05, n))
        df[col] = np.clip(np.round(v) if jitter == "discrete" else v, 0, upper)
    return df


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, synthetic: str, method: str, adult: Path, seed: int, jitter: str = "discrete") -> dict:
    """One audit (run in its own process by :func:`main`)."""
    import audits
    import audits.data
    import audits.embedding
    from dpsynth.release import split_holdout
    from dpsynth.schema import Schema
    from dpsynth.tables import read_csv

    if method == "brute":  # every search over all pairs, as before the index
        for module in (audits.embedding, audits.data):
            module.BRUTE_FORCE_PAIRS = float("inf")
        audits.MixedEncoder.index = lambda self, ref: ref
    schema = Schema.load(SCHEMA)
    base = read_csv(adult, schema)
    table = adult_shaped(base, n, seed, jitter)
    train, holdout = split_holdout(table, 0.2, np.random.default_rng(seed))
    fit_seconds = None
    if synthetic == "leaky":
        syn = train.sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)
    elif synthetic == "mst":  # a real release: MST at epsilon 1 on the public schema
        from dpsynth.synthesizers.mst import MST

        t0 = time.perf_counter()
        model = MST(epsilon=1.0, delta=1e-6, random_state=seed)
        model.fit(train, schema)
        syn = model.sample(len(train))
        fit_seconds = round(time.perf_counter() - t0, 1)
    else:
        syn = adult_shaped(base, len(train), seed + 1000, jitter)  # fresh draws of the same distribution
    del table
    spec = audits.TableSpec.from_schema_dict(schema.to_dict())
    rss_before = _rss_mb()
    timings: dict[str, float] = {}
    last = {"name": None, "t": time.perf_counter()}

    def progress(name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if last["name"]:
            timings[last["name"]] = round(now - last["t"], 2)
        last["name"], last["t"] = (None if name == "done" else name), now

    start, cpu = time.perf_counter(), time.process_time()
    report = audits.run(train, holdout, syn, spec, tier="quick", seed=seed, progress=progress)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = sorted({r.family for r in report.results if r.passed is False})
    return {
        "rows": n,
        "train": len(train),
        "holdout": len(holdout),
        "synthetic_rows": len(syn),
        "synthetic": synthetic,
        "method": method,
        "jitter": jitter,
        "mst_fit_and_sample_seconds": fit_seconds,
        "audit_seconds": round(seconds, 1),
        "audit_cpu_seconds": round(cpu, 1),  # all threads; steadier than wall time on a shared machine
        "seconds_per_attack": timings,
        "peak_rss_mb": round(_rss_mb()),
        "rss_before_audit_mb": round(rss_before),
        "decision": report.decision,
        "failed_families": failed,
        "values": {r.name: None if r.value is None else round(r.value, 4) for r in report.results},
        "status": {r.name: r.status for r in report.results},
    }


def _child(n: int, synthetic: str, method: str, args: argparse.Namespace, jitter: str = "discrete") -> dict:
    cmd = [sys.executable, __file__, "--one", f"{n}:{synthetic}:{method}:{jitter}", "--adult", str(args.adult)]
    cmd += ["--seed", str(args.seed)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        return {"rows": n, "synthetic": synthetic, "method": method, "error": proc.stderr[-2000:]}
    out = json.loads(proc.stdout)
    out["process_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out), file=sys.stderr, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adult", type=Path, default=Path(os.environ.get("ADULT_CSV", DEFAULT_ADULT)))
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--brute-sizes", default="30000,100000")
    parser.add_argument("--calibration-size", type=int, default=1_000_000)
    parser.add_argument("--mst-size", type=int, default=0, help="also audit an MST release of this many rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # N:SYNTHETIC:METHOD:JITTER, in a subprocess
    args = parser.parse_args()
    if not args.adult.exists():
        print(json.dumps({"error": f"Adult CSV not found at {args.adult}"}))
        return 2
    if args.one:
        n, synthetic, method, jitter = args.one.split(":")
        print(json.dumps(measure(int(n), synthetic, method, args.adult, args.seed, jitter)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    brute_sizes = [int(s) for s in args.brute_sizes.split(",") if s]
    runs: list[dict] = []
    for n in sorted(set(sizes) | set(brute_sizes)):
        if n in brute_sizes or n in sizes:
            runs.append(_child(n, "honest", "index", args))
        if n in brute_sizes:
            runs.append(_child(n, "honest", "brute", args))
    speedups = {}
    for n in brute_sizes:
        pair = {r["method"]: r for r in runs if r["rows"] == n and "error" not in r}
        if {"index", "brute"} <= set(pair):
            b, i = pair["brute"], pair["index"]
            speedups[n] = {
                "seconds_ratio_brute_over_index": round(b["audit_seconds"] / i["audit_seconds"], 2),
                "cpu_ratio_brute_over_index": round(b["audit_cpu_seconds"] / i["audit_cpu_seconds"], 2),
                "peak_rss_mb_brute_vs_index": [b["peak_rss_mb"], i["peak_rss_mb"]],
                "same_values": b["values"] == i["values"],
            }
    calibration = {}
    for jitter in ("discrete", "continuous") if args.calibration_size else ():
        n = args.calibration_size
        same = [r for r in runs if r["rows"] == n and r["method"] == "index" and r.get("jitter") == jitter]
        leaky = _child(n, "leaky", "index", args, jitter)
        honest = same[0] if same else _child(n, "honest", "index", args, jitter)
        calibration[jitter] = {
            "rows": n,
            "leaky_decision": leaky.get("decision"),
            "leaky_failed_families": leaky.get("failed_families"),
            "leaky_fails_every_family": leaky.get("failed_families") == ["distance", "membership", "reidentification"],
            "honest_decision": honest.get("decision"),
            "honest_failed_families": honest.get("failed_families"),
            "honest_passes": honest.get("decision") == "PASS",
            "leaky": leaky,
            "honest": honest,
        }
    if args.mst_size:
        runs.append(_child(args.mst_size, "mst", "index", args))
    out = {"cores": os.cpu_count(), "load_average_end": os.getloadavg(), "runs": runs, "brute_vs_index": speedups}
    out["calibration"] = calibration
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
