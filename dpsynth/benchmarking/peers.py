"""Peers: smartnoise-synth's MST, AIM and DP-CTGAN on the same training rows, scored in the same tables.

smartnoise-synth pins old versions of opacus and torch, so it runs from its
own virtual environment (``benchmarks/.venvs/smartnoise``, or
``$DPSYNTH_SMARTNOISE_VENV``), created as docs/benchmark.md (Peers) says;
it is never a dependency of dpsynth. A peer whose environment is absent is
skipped with a message (in results.json and the report), not an error.

The peer's budget: smartnoise spends ``preprocessor_eps`` of its ``epsilon``
only on inferring the bounds of *continuous* columns (non-integer numeric ones
here; its transformer subtracts what it spent, and nothing if no column needs
bounds). So the planned split gives ``PREPROCESSOR_SHARE`` = 10% to the
preprocessor when the schema has a continuous column and 0 otherwise, and each
peer row also carries the split smartnoise itself reported after its fit
(``budget_split_reported``: its odometer's spend and the epsilon left for
training). Integer numeric columns are ordinal to smartnoise, and it reads the
categories of every categorical and ordinal column from the training rows
(its default ``LabelTransformer``), outside its DP claim; the row says so
(``peer_notes``). Its guarantee is taken at its word as (epsilon, delta)-DP
and charged to the ledger as such (an ``EpsilonDeltaDpEvent``, which composes
by the worst case), because the fit runs on the private training rows like
any other. smartnoise takes no seed: a peer's repeats differ by chance. The
synthetic table comes back as CSV and is scored in this process exactly like
a dpsynth run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpsynth.errors import UsageError
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.events import EpsilonDeltaDpEvent

if TYPE_CHECKING:
    from dpsynth.benchmarking.grid import Plan, Run
    from dpsynth.schema import Schema

PEERS = {"smartnoise-mst": "mst", "smartnoise-aim": "aim", "smartnoise-dpctgan": "dpctgan"}
PREPROCESSOR_SHARE = 0.1
VENV_ENV = "DPSYNTH_SMARTNOISE_VENV"
DEFAULT_VENV = Path(__file__).resolve().parents[2] / "benchmarks" / ".venvs" / "smartnoise"

CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
args = json.loads(open(sys.argv[1]).read())
import pandas as pd
import snsynth
from importlib.metadata import version
df = pd.read_csv(args["train_csv"], dtype=str, keep_default_na=False)
for c in args["ordinal"] + args["continuous"]:
    df[c] = pd.to_numeric(df[c], errors="coerce")  # the null marker becomes NaN
synth = snsynth.Synthesizer.create(args["synth"], epsilon=args["epsilon"], delta=args["delta"])
start = time.perf_counter()
synth.fit(df, categorical_columns=args["categorical"], ordinal_columns=args["ordinal"],
          continuous_columns=args["continuous"], preprocessor_eps=args["preprocessor_eps"],
          nullable=bool(df.isna().any().any()))
fit = time.perf_counter() - start
spent = float(synth._transformer.odometer.spent[0]) if getattr(synth, "_transformer", None) is not None else None
start = time.perf_counter()
out = synth.sample(args["rows"])
sample = time.perf_counter() - start
out.to_csv(args["out_csv"], index=False)
print(json.dumps({"fit_seconds": fit, "sample_seconds": sample,
                  "budget_split": {"preprocessor_eps": spent, "synthesis_eps": float(synth.epsilon)},
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "versions": {p: version(p) for p in ("smartnoise-synth", "opacus", "torch")}}))
"""


def venv_python() -> Path:
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV) / "bin" / "python"


def _environment_problem(python: Path) -> str | None:
    """Why the smartnoise environment cannot run a peer, or None if it imports snsynth."""
    hint = f"(create it as docs/benchmark.md, Peers, says, or set ${VENV_ENV})"
    if not python.exists():
        return f"no smartnoise environment at {python.parent.parent} {hint}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        check = subprocess.run([str(python), "-c", "import snsynth"], capture_output=True, timeout=120, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the smartnoise environment at {python.parent.parent} does not start: {exc} {hint}"
    if check.returncode != 0:
        return f"the smartnoise environment at {python.parent.parent} cannot import snsynth {hint}"
    return None


def continuous_columns(schema: Schema | None) -> list[str]:
    """The columns smartnoise must bound with ``preprocessor_eps``: numeric, not integer (integers are ordinal)."""
    return [c.name for c in schema if c.kind == "numeric" and not c.integer] if schema is not None else []


def budget_split(epsilon: float, schema: Schema | None) -> dict[str, float]:
    """How smartnoise will divide ``epsilon``: 10% to bound continuous columns if there are any, else all to synthesis.

    Without a schema the split is priced as if a column needed bounds (the
    preprocessor share is then the most it can take).
    """
    share = PREPROCESSOR_SHARE if schema is None or continuous_columns(schema) else 0.0
    return {"preprocessor_eps": share * epsilon, "synthesis_eps": (1 - share) * epsilon}


def plan_peers(
    peers: list[str], epsilons: list[float], repeats: int, delta: float, schema: Schema | None = None
) -> tuple[list[Run], list[dict]]:
    """One run per peer x epsilon x repeat, or a skip message per peer whose venv is absent."""
    from dpsynth.benchmarking.grid import Run

    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise UsageError(f"--peer: unknown {unknown}; choose from {', '.join(PEERS)}")
    runs, skipped = [], []
    python = venv_python()
    problem = _environment_problem(python) if peers else None
    for peer in peers:
        if problem is not None:
            skipped.append({"peer": peer, "message": f"skipped: {problem}"})
            continue
        for epsilon in epsilons:
            for repeat in range(repeats):
                split = budget_split(epsilon, schema)
                cost = PrivacyCost.of(peer, EpsilonDeltaDpEvent(epsilon, delta), delta, budget_split=split)
                runs.append(
                    Run(
                        run_id=f"{peer}-eps{epsilon:g}-r{repeat}",
                        generator=peer,
                        epsilon=epsilon,
                        delta=delta,
                        repeat=repeat,
                        seed=repeat,
                        params={"budget_split": split},
                        planned=cost,
                        peer=True,
                    )
                )
    return runs, skipped


def run_peer(run: Run, spec: dict[str, Any], plan: Plan, timeout: float) -> tuple[str, str, dict[str, Any]]:
    """Fit the peer in its venv on the training rows, read its synthetic CSV back, score it like our own runs."""
    from dpsynth.benchmarking.worker import score_synthetic
    from dpsynth.release import synthetic_csv_text
    from dpsynth.tables import prepare, read_csv

    schema = plan.schema
    numeric = [c for c in schema if c.kind == "numeric"]
    with tempfile.TemporaryDirectory(prefix="dpsynth-peer-") as tmp:
        work = Path(tmp)
        (work / "train.csv").write_text(synthetic_csv_text(plan.train, schema), encoding="utf-8")
        args = {
            "train_csv": str(work / "train.csv"),
            "out_csv": str(work / "synthetic.csv"),
            "synth": PEERS[run.generator],
            "epsilon": run.epsilon,
            "delta": run.delta,
            "preprocessor_eps": run.params["budget_split"]["preprocessor_eps"],
            "categorical": [c.name for c in schema if c.kind == "categorical"],
            "ordinal": [c.name for c in numeric if c.integer],
            "continuous": [c.name for c in numeric if not c.integer],
            "rows": plan.request.rows or len(plan.train),
        }
        (work / "args.json").write_text(json.dumps(args), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                [str(venv_python()), "-c", CHILD, str(work / "args.json")],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return "timeout", f"no result within the time limit of {timeout:g} s", {}
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-3:]
            return "error", f"smartnoise exited with code {proc.returncode}: " + " | ".join(tail), {}
        measured = json.loads(lines[-1])
        synthetic, _ = prepare(read_csv(work / "synthetic.csv", schema), schema)
    scores = score_synthetic(spec, plan.train, plan.holdout, synthetic, schema, run.epsilon)
    scores["cost"].update({k: measured[k] for k in ("fit_seconds", "sample_seconds", "peak_rss_mb")})
    scores["cost"]["wall_seconds"] = time.perf_counter() - started
    reported = measured.get("budget_split")
    planned = run.params["budget_split"]
    if reported and reported.get("preprocessor_eps") is not None:
        if reported["preprocessor_eps"] > planned["preprocessor_eps"] + 1e-9 * run.epsilon:
            return "error", f"smartnoise reports spending {reported} on preprocessing, more than planned {planned}", {}
    return (
        "ok",
        "",
        {
            "peer_versions": measured.get("versions"),
            "budget_split": planned,
            "budget_split_reported": reported,
            "peer_notes": peer_notes(schema),
            **scores,
        },
    )


def peer_notes(schema: Schema) -> list[str]:
    """What differs in how smartnoise sees the table, stated in each peer row."""
    continuous = continuous_columns(schema)
    notes = [
        "smartnoise reads the categories of categorical and integer (ordinal) columns from the training rows "
        "(its default LabelTransformer), outside its DP claim; dpsynth's generators take them from the schema",
        "smartnoise takes no seed",
    ]
    if continuous:
        notes.append(f"bounds of {', '.join(continuous)} inferred by smartnoise with preprocessor_eps")
    else:
        notes.append("no continuous column: preprocessor_eps 0, the whole epsilon goes to synthesis")
    return notes


__all__ = ["PEERS", "PREPROCESSOR_SHARE", "budget_split", "continuous_columns", "plan_peers", "run_peer", "venv_python"]
