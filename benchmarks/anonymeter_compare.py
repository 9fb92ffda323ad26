"""Run anonymeter's three evaluators and our re-identification attacks on the same Adult triple.

anonymeter is never a project dependency (it pins numpy<1.27): this script
creates its own virtual environment (default /tmp/anonymeter-venv, or
$ANONYMETER_VENV), installs anonymeter there with pip, and runs it in a
subprocess on CSV files this script writes. Ours runs in the current
interpreter. Both results are printed side by side as JSON.

Triple: Adult is split (seeded) into train / control (holdout) / spare.
``--synthetic PATH`` uses a given CSV as the synthetic table; without it two
reference cases run: ``honest`` (the spare split, an independent sample) and
``leaky`` (train rows with 1% numeric jitter).

``--mst``: the triple of ``benchmarks/audit_speed.py --generator mst`` instead:
Adult read with the public schema ``benchmarks/adult.schema.json``, split
24,000 train / 6,162 control as ``dpsynth release`` splits it, and 24,000 rows
of MST at ``--epsilon`` (default 1) fitted on train as the synthetic table.

Attacks, matched as closely as the two designs allow:
- singling out: anonymeter multivariate mode (n_cols=3) vs ours (rarest-first
  conjunctions of up to 3 columns);
- linkability: aux columns = (QIs, the other columns) for both;
- inference: secret = income from the QIs for both.

Usage: python benchmarks/anonymeter_compare.py [--synthetic CSV | --mst [--epsilon 1]] [--n-attacks 500]
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

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import audits  # noqa: E402

DEFAULT_ADULT = Path(__file__).resolve().parents[1].parent / "shared/data/adult/adult.csv"
ANONYMETER_VERSION = "1.1.0"
QIS = ["age", "sex", "race"]
SECRET = "income"

_CHILD = r"""
import json, sys, time, warnings
import pandas as pd
from anonymeter.evaluators import InferenceEvaluator, LinkabilityEvaluator, SinglingOutEvaluator
warnings.filterwarnings("ignore")
ori, syn, control = (pd.read_csv(p) for p in sys.argv[1:4])
qis, secret, n = json.loads(sys.argv[4]), sys.argv[5], int(sys.argv[6])
others = [c for c in ori.columns if c not in qis]
out = {}

def pack(ev, seconds):
    res = ev.results()
    risk = res.risk()
    return {"risk": risk.value, "ci": list(risk.ci), "attack_rate": res.attack_rate.value,
            "control_rate": None if res.control_rate is None else res.control_rate.value,
            "baseline_rate": res.baseline_rate.value, "seconds": round(seconds, 2)}

t = time.perf_counter()
ev = SinglingOutEvaluator(ori=ori, syn=syn, control=control, n_attacks=n, n_cols=3, seed=0).evaluate("multivariate")
out["singling_out"] = pack(ev, time.perf_counter() - t)
t = time.perf_counter()
ev = LinkabilityEvaluator(ori=ori, syn=syn, control=control, n_attacks=n, aux_cols=(qis, others)).evaluate(n_jobs=2)
out["linkability"] = pack(ev, time.perf_counter() - t)
t = time.perf_counter()
ev = InferenceEvaluator(ori=ori, syn=syn, control=control, aux_cols=qis, secret=secret, n_attacks=n).evaluate(n_jobs=2)
out["inference"] = pack(ev, time.perf_counter() - t)
print(json.dumps(out))
"""


def ensure_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if python.exists():
        check = subprocess.run([str(python), "-c", "import anonymeter"], capture_output=True)
        if check.returncode == 0:
            return python
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"anonymeter=={ANONYMETER_VERSION}"], check=True)
    return python


def run_anonymeter(
    python: Path, train: pd.DataFrame, synthetic: pd.DataFrame, control: pd.DataFrame, n_attacks: int
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, df in (("ori", train), ("syn", synthetic), ("control", control)):
            p = Path(tmp) / f"{name}.csv"
            df.to_csv(p, index=False)
            paths.append(str(p))
        proc = subprocess.run(
            [str(python), "-c", _CHILD, *paths, json.dumps(QIS), SECRET, str(n_attacks)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "anonymeter failed"}
        return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ours(
    train: pd.DataFrame, synthetic: pd.DataFrame, control: pd.DataFrame, spec: audits.TableSpec, n_attacks: int
) -> dict:
    data = audits.AuditData(train, control, synthetic, spec, seed=0)
    out = {}
    for key, fn in (
        ("singling_out", lambda: audits.singling_out_attack(data, n_attacks=n_attacks)),
        ("linkability", lambda: audits.linkage_attack(data, n_attacks=n_attacks)),
        ("inference", lambda: audits.attribute_inference_attack(data, n_attacks=n_attacks)),
    ):
        t = time.perf_counter()
        r = fn()
        out[key] = {
            "risk": r.value,
            "ci": [r.ci_low, r.ci_high],
            "attack_rate": r.details["success_rate_train"],
            "control_rate": r.details["success_rate_control"],
            "seconds": round(time.perf_counter() - t, 2),
        }
    return out


def mst_triple(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, audits.TableSpec]:
    """Train / control / MST synthetic, as in ``audit_speed.py --generator mst`` (same seed, same split)."""
    from dpsynth.release import split_holdout
    from dpsynth.schema import Schema
    from dpsynth.synthesizers.mst import MST
    from dpsynth.tables import read_csv

    schema = Schema.load(Path(__file__).resolve().parent / "adult.schema.json")
    table = read_csv(args.adult, schema)
    train, control = split_holdout(table, 1 - 24000 / len(table), np.random.default_rng(args.seed))
    model = MST(epsilon=args.epsilon, delta=1e-6, random_state=args.seed, iters=args.mst_iters).fit(train, schema)
    synthetic = model.sample(len(train))
    spec = audits.TableSpec.from_schema_dict(schema.to_dict()).with_roles(QIS, SECRET)
    return train, control, synthetic, spec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adult", type=Path, default=Path(os.environ.get("ADULT_CSV", DEFAULT_ADULT)))
    parser.add_argument("--synthetic", type=Path, default=None, help="synthetic CSV with Adult's columns")
    parser.add_argument("--n-attacks", type=int, default=500)
    parser.add_argument("--venv", type=Path, default=Path(os.environ.get("ANONYMETER_VENV", "/tmp/anonymeter-venv")))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mst", action="store_true", help="24k/6k triple with MST synthetic data (see above)")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--mst-iters", type=int, default=2000)
    args = parser.parse_args()
    df = pd.read_csv(args.adult, skipinitialspace=True, na_values=["?"]).drop(columns=["fnlwgt"])
    perm = np.random.default_rng(args.seed).permutation(len(df))
    train, control, spare = (
        df.iloc[perm[a:b]].reset_index(drop=True) for a, b in ((0, 12000), (12000, 18000), (18000, 30000))
    )
    spec = audits.TableSpec.infer(df, quasi_identifiers=QIS, secret=SECRET, name="adult")
    if args.mst:
        train, control, synthetic, spec = mst_triple(args)
        cases = {f"mst_epsilon_{args.epsilon:g}": synthetic}
    elif args.synthetic is not None:
        cases = {"given": pd.read_csv(args.synthetic, skipinitialspace=True, na_values=["?"])[list(df.columns)]}
    else:
        rng = np.random.default_rng(args.seed)
        leaky = train.sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
        for c in leaky.columns:
            if pd.api.types.is_numeric_dtype(leaky[c]):
                leaky[c] = leaky[c] + rng.normal(0, 0.01 * float(leaky[c].max() - leaky[c].min()), len(leaky))
        cases = {"honest": spare, "leaky": leaky}
    python = ensure_venv(args.venv)
    out = {
        "anonymeter_version": ANONYMETER_VERSION,
        "quasi_identifiers": QIS,
        "secret": SECRET,
        "triple": "24k/6k + MST (audit_speed.py --generator mst)" if args.mst else "12k/6k Adult split",
        "sizes": {"train": len(train), "control": len(control)},
        "n_attacks": args.n_attacks,
        "cases": {},
    }
    for name, synthetic in cases.items():
        out["cases"][name] = {
            "synthetic_rows": len(synthetic),
            "anonymeter": run_anonymeter(python, train, synthetic, control, args.n_attacks),
            "dpsynth_audits": run_ours(train, synthetic, control, spec, args.n_attacks),
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
