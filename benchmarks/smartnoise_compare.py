"""Time one DP-CTGAN training epoch: dpsynth against smartnoise-synth, same rows, same batch size.

smartnoise-synth pins opacus 0.14 (and through it an old privacy-engine API),
so it runs in its OWN virtual environment, created here on first use
(``benchmarks/.venvs/smartnoise``); it is never a dependency of dpsynth. The
venv gets the same torch version as the main environment first (so pip does
not pull a CUDA build), then ``smartnoise-synth`` and ``packaging`` (imported
by snsynth but not declared).

What is timed, in fresh processes with the same number of torch threads:

* **smartnoise**: ``Synthesizer.create("dpctgan", epochs=E, batch_size=B)`` fitted on
  the Adult training split. An epoch runs from the privacy engine's attach (the end of
  preprocessing) to its "Epoch k" line, and between consecutive lines after that.
  Its default noise (sigma = 5) is fixed, so epsilon does not change the work per
  epoch; ``--sn-epsilon`` only has to be large enough that it does not stop early.
* **dpsynth**: ``DPCTGAN(epochs=E, batch_size=B, epsilon=1)``; the training loop's own
  per-epoch wall times (after calibration, before sampling).

Both see the same rows: Adult without ``fnlwgt``, a seeded 80% split (seed 0). Per
epoch both pass over the training rows once in batches of about B.

Usage (from the repository root, main environment)::

    PYTHONPATH=. /tmp/dpenv/bin/python benchmarks/smartnoise_compare.py \\
        --data ../shared/data/adult/adult.csv --schema benchmarks/adult.schema.json \\
        --batch-size 500 --epochs 3 --threads 1 --out benchmarks/results/smartnoise_compare.json

Prints one JSON object: both sides' per-epoch wall and CPU times, the ratios
(smartnoise / dpsynth: mean and fastest epoch wall time, mean epoch CPU time; CPU
time is the steadier measure on a shared machine) and each side's peak resident
memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / "benchmarks" / ".venvs" / "smartnoise"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "adult" / "adult.csv"
DEFAULT_SCHEMA = REPO / "benchmarks" / "adult.schema.json"

SMARTNOISE_CHILD = r"""
import builtins, json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
args = json.loads(sys.argv[1])
import torch
if args["threads"]:
    torch.set_num_threads(args["threads"])
import opacus, pandas as pd
import snsynth, snsynth.pytorch.nn.dpctgan as module
from importlib.metadata import version
marks = []
attach = opacus.PrivacyEngine.attach
def timed_attach(self, *a, **k):
    marks.append((time.perf_counter(), time.process_time()))
    return attach(self, *a, **k)
opacus.PrivacyEngine.attach = timed_attach
def timed_print(*a, **k):
    if a and isinstance(a[0], str) and a[0].startswith("Epoch "):
        marks.append((time.perf_counter(), time.process_time()))
module.print = timed_print
df = pd.read_csv(args["train_csv"])
synth = snsynth.Synthesizer.create("dpctgan", epsilon=args["epsilon"], epochs=args["epochs"],
                                   batch_size=args["batch_size"], verbose=True)
start = time.perf_counter()
synth.fit(df, categorical_columns=args["categorical"], continuous_columns=args["continuous"],
          preprocessor_eps=args["preprocessor_eps"])
fit_seconds = time.perf_counter() - start
print(json.dumps({"epoch_seconds": [b[0] - a[0] for a, b in zip(marks[:-1], marks[1:])],
                  "epoch_cpu_seconds": [b[1] - a[1] for a, b in zip(marks[:-1], marks[1:])],
                  "fit_seconds": fit_seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "versions": {p: version(p) for p in ("smartnoise-synth", "opacus", "torch")},
                  "threads": torch.get_num_threads()}))
"""

DPSYNTH_CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
args = json.loads(sys.argv[1])
import pandas as pd, torch
from importlib.metadata import version
from dpsynth.schema import Schema
from dpsynth.synthesizers.dpctgan import DPCTGAN
schema = Schema.load(args["schema"])
df = pd.read_csv(args["train_csv"])
model = DPCTGAN(epsilon=1.0, delta=1e-6, epochs=args["epochs"], batch_size=args["batch_size"], random_state=0,
                progress=False, num_threads=args["threads"] or None)
start = time.perf_counter()
model.fit(df, schema)
fit_seconds = time.perf_counter() - start
print(json.dumps({"epoch_seconds": model.training_.epoch_seconds,
                  "epoch_cpu_seconds": model.training_.epoch_cpu_seconds, "fit_seconds": fit_seconds,
                  "epsilon": model.privacy_cost_.epsilon, "steps": model.training_.steps,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "versions": {p: version(p) for p in ("opacus", "torch")},
                  "grad_sample_mode": model.grad_sample_mode, "threads": args["threads"] or torch.get_num_threads()}))
"""


def ensure_venv(venv: Path, python: str, torch_version: str) -> dict:
    """Create the smartnoise venv if needed; return what was installed or why it failed."""
    bin_python = venv / "bin" / "python"
    log: dict = {"path": str(venv)}
    if not bin_python.exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    check = subprocess.run([str(bin_python), "-c", "import snsynth, opacus, packaging"], capture_output=True)
    if check.returncode != 0:
        started = time.perf_counter()
        install = subprocess.run(
            [str(bin_python), "-m", "pip", "install", f"torch=={torch_version}", "smartnoise-synth", "packaging"],
            capture_output=True,
            text=True,
        )
        log["install_seconds"] = round(time.perf_counter() - started, 1)
        if install.returncode != 0:
            log["install_error"] = install.stderr[-3000:]
    return log


def run_child(python: str, code: str, args: dict, env: dict | None = None) -> dict:
    proc = subprocess.run([python, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-3000:]}
    return json.loads(lines[-1])


def summarise(result: dict) -> dict:
    for key in ("epoch_seconds", "epoch_cpu_seconds"):
        values = result.get(key) or []
        if values:
            result[f"mean_{key}"] = sum(values) / len(values)
            result[f"min_{key}"] = min(values)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    parser.add_argument("--batch-size", type=int, default=500, help="both sides (smartnoise's default is 500)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed on each side")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads on both sides (0: torch's default)"
    )
    parser.add_argument(
        "--sn-epsilon",
        type=float,
        default=3.0,
        help="smartnoise's epsilon, only so that it does not stop before --epochs",
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--venv-python", default="python3", help="interpreter that creates the venv")
    parser.add_argument("--skip-smartnoise", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    from dpsynth.schema import Schema
    from dpsynth.tables import read_csv

    schema = Schema.load(args.schema)
    df = read_csv(args.data, schema)  # drops columns the schema does not declare (fnlwgt)
    order = np.random.default_rng(0).permutation(len(df))
    train = df.iloc[order[: int(0.8 * len(df))]].reset_index(drop=True)

    report: dict = {
        "data": str(args.data),
        "train_rows": len(train),
        "batch_size": args.batch_size,
        "epochs_timed": args.epochs,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        train_csv = Path(tmp) / "train.csv"
        train.to_csv(train_csv, index=False)
        common = {
            "train_csv": str(train_csv),
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "threads": args.threads,
        }
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        report["dpsynth"] = summarise(
            run_child(sys.executable, DPSYNTH_CHILD, {**common, "schema": str(args.schema)}, env)
        )
        if not args.skip_smartnoise:
            venv = ensure_venv(args.venv, args.venv_python, torch.__version__.split("+")[0])
            report["smartnoise_venv"] = venv
            if "install_error" not in venv:
                categorical = [c.name for c in schema if c.kind == "categorical"]
                continuous = [c.name for c in schema if c.kind == "numeric"]
                sn_args = {
                    **common,
                    "epsilon": args.sn_epsilon,
                    "preprocessor_eps": 0.1,
                    "categorical": categorical,
                    "continuous": continuous,
                }
                clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                report["smartnoise"] = summarise(
                    run_child(str(args.venv / "bin" / "python"), SMARTNOISE_CHILD, sn_args, clean_env)
                )
    report["load_average_end"] = os.getloadavg()
    for key in ("mean_epoch_seconds", "min_epoch_seconds", "mean_epoch_cpu_seconds"):
        ours, theirs = report["dpsynth"].get(key), report.get("smartnoise", {}).get(key)
        if ours and theirs:
            report[f"speedup_{key.removesuffix('_seconds')}"] = theirs / ours
    text = json.dumps(report, indent=2, default=float)
    print(text)
    if args.out:
        from dpsynth._files import atomic_write_text

        atomic_write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
