"""The benchmark grid: plan, price, reserve and run generator x epsilon x repeat, one worker process per run.

::

    private table -> schema (optionally a subset of its columns) -> split train / holdout ONCE
      -> plan: one planned PrivacyCost per run (generator.planned_cost on the training rows)
         composed with the ledger's accountant at the dataset's delta cap, with what is
         already spent: refused (BudgetExceeded, exit 4) if it does not fit the cap
      -> per run: ledger.reserve(planned) -> worker process (time limit) -> row
         (ok / error / timeout); the spend is never refunded, a crash marks it "failed"
      -> reference row (the real training rows scored like a synthetic table), peers
      -> results.json after every row (atomic), report.html at the end

Every fit on the private table is a real DP computation and is charged like a
release. With ``public_proxy`` the table is a public stand-in: nothing is
charged and no ledger is needed. Holdout rows are never fitted; all utility
scores and audits compare against them.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dpsynth._files import atomic_write_json
from dpsynth.errors import BudgetExceeded, UsageError
from dpsynth.params import Interval, Options, validate_params
from dpsynth.privacy.cost import PrivacyCost, event_from_dict
from dpsynth.privacy.ledger.records import composed_epsilon  # the ledger's own composition rule
from dpsynth.schema import Schema
from dpsynth.synthesizers import GENERATORS, make_synthesizer

Progress = Callable[[str], None]
FORMAT = "dpsynth-benchmark/1"


@dataclass
class BenchmarkRequest:
    """Everything ``dpsynth benchmark`` needs; validated by :func:`plan_benchmark`."""

    data: Path
    schema: Path
    generators: list[str]
    epsilons: list[float]
    out: Path
    repeats: int = 1
    ledger: str | None = None
    dataset_id: str | None = None
    delta: float | None = None  # per run; default min(1e-6, delta cap / 10)
    public_proxy: bool = False
    holdout_fraction: float = 0.2
    seed: int | None = None
    target: str | None = None
    columns: list[str] | None = None
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    tier: str | None = "quick"  # None: no audit
    policy: Path | None = None
    timeout: float = 3600.0
    rows: int | None = None
    peers: list[str] = field(default_factory=list)
    accept_private_schema: bool = False
    command: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One cell of the grid: which generator at which epsilon, which repeat, and what it will cost."""

    run_id: str
    generator: str
    epsilon: float
    delta: float
    repeat: int
    seed: int
    params: dict[str, Any]
    planned: PrivacyCost
    peer: bool = False


@dataclass
class Plan:
    request: BenchmarkRequest
    schema: Schema
    train: pd.DataFrame
    holdout: pd.DataFrame
    runs: list[Run]
    delta_cap: float
    epsilon_cap: float | None
    spent_before: float
    grid_composed: float
    total_after: float
    naive_sum: float
    accountant: str
    skipped_peers: list[dict[str, str]] = field(default_factory=list)

    @property
    def charged(self) -> bool:
        return not self.request.public_proxy

    def summary_lines(self) -> list[str]:
        """What the grid will spend, composed and naively summed, for the CLI to show before asking."""
        runs = len(self.runs)
        lines = [
            f"{runs} run(s): {', '.join(sorted({r.generator for r in self.runs}))} x epsilon "
            f"{', '.join(f'{e:g}' for e in sorted({r.epsilon for r in self.runs}))} x {self.request.repeats} "
            f"repeat(s) on {len(self.train)} training rows ({len(self.holdout)} held out, never fitted)",
            f"grid cost composed at delta={self.delta_cap:.3g} ({self.accountant}): epsilon={self.grid_composed:.4g} "
            f"(naive sum {self.naive_sum:.4g})",
        ]
        if not self.charged:
            lines.append("--public-proxy: the table is a public stand-in; nothing is charged to any ledger")
        else:
            lines.append(
                f"ledger {self.request.ledger}, dataset {self.request.dataset_id!r}: spent {self.spent_before:.4g}, "
                f"after the grid {self.total_after:.4g} of the cap {self.epsilon_cap:.4g}"
            )
        return lines


REQUEST_CONSTRAINTS = {
    "holdout_fraction": [Interval(float, 0.05, 0.5)],
    "repeats": [Interval(int, 1, 100)],
    "timeout": [Interval(float, 1, None)],
    "rows": [Interval(int, 1, None), None],
    "seed": [Interval(int, 0, None), None],
    "tier": [Options("quick", "thorough"), None],
}


def _validate(request: BenchmarkRequest) -> None:
    validate_params(vars(request), REQUEST_CONSTRAINTS, owner="benchmark")
    unknown = [g for g in request.generators if g not in GENERATORS]
    if unknown or not (request.generators or request.peers):
        raise UsageError(f"--generators: unknown {unknown or 'none given'}; choose from {', '.join(GENERATORS)}")
    if len(set(request.generators)) != len(request.generators):
        raise UsageError("--generators: a generator is listed twice")
    if not request.epsilons or not all(math.isfinite(e) and e > 0 for e in request.epsilons):
        raise UsageError(f"--epsilons must be positive numbers, got {request.epsilons}")
    extra = sorted(set(request.params) - set(request.generators))
    if extra:
        raise UsageError(f"--param given for generator(s) {extra} that are not in --generators")
    if not request.public_proxy and (not request.ledger or not request.dataset_id):
        raise UsageError(
            "a benchmark on a private table spends budget: give --ledger and --dataset "
            "(or --public-proxy for a public stand-in table, which charges nothing)"
        )
    if request.out.exists() and (not request.out.is_dir() or any(request.out.iterdir())):
        raise UsageError(f"--out {request.out} exists and is not empty: choose a new directory", parameter="out")


def _load(request: BenchmarkRequest) -> tuple[Schema, pd.DataFrame]:
    from dpsynth.tables import prepare, read_csv

    schema = Schema.load(request.schema)
    schema.require_public(request.accept_private_schema)
    if request.columns:
        missing = [c for c in request.columns if c not in schema.names]
        if missing:
            raise UsageError(f"--columns: {missing} not in the schema; it has {schema.names}")
        schema = schema.subset(request.columns)
    target = request.target or schema.target
    if target is not None and target not in schema.names:
        raise UsageError(f"--target {target!r} is not a column of the (subset) schema {schema.names}")
    table = read_csv(request.data, schema)
    table, _ = prepare(table, schema, source=str(request.data))
    return schema, table


def plan_benchmark(request: BenchmarkRequest) -> Plan:
    """Validate, read, split once and price the whole grid; nothing is spent yet."""
    from dpsynth.benchmarking.peers import plan_peers
    from dpsynth.privacy.ledger import open_ledger
    from dpsynth.release import check_delta_cap, split_holdout
    from dpsynth.synthesizers.base import check_privacy_parameters

    _validate(request)
    schema, table = _load(request)
    epsilon_cap, spent_before, stored = None, 0.0, []
    if request.public_proxy:
        delta_cap = request.delta if request.delta is not None else min(1e-6, 0.1 / len(table))
    else:
        ledger = open_ledger(request.ledger)
        epsilon_cap, delta_cap = ledger.caps(request.dataset_id)
        check_delta_cap(delta_cap, len(table), request.dataset_id)
        budget = ledger.summary(request.dataset_id)[0]
        spent_before = budget.spent_epsilon
        stored = [event_from_dict(e.event) for e in budget.entries]
    delta = request.delta if request.delta is not None else min(1e-6, delta_cap / 10)
    n_runs = len(request.generators) * len(request.epsilons) * request.repeats
    split_seeds, *run_seeds = np.random.SeedSequence(request.seed).spawn(1 + n_runs)
    split_seed = int(split_seeds.generate_state(1)[0])
    train, holdout = split_holdout(table, request.holdout_fraction, np.random.default_rng(split_seed))
    runs = []
    for generator in request.generators:
        params = request.params.get(generator, {})
        for epsilon in request.epsilons:
            check_privacy_parameters(epsilon, delta, len(train))
            for repeat in range(request.repeats):
                seed = int(run_seeds[len(runs)].generate_state(1)[0] >> 1)
                model = make_synthesizer(generator, epsilon=epsilon, delta=delta, random_state=seed, **params)
                runs.append(
                    Run(
                        run_id=f"{generator}-eps{epsilon:g}-r{repeat}",
                        generator=generator,
                        epsilon=epsilon,
                        delta=delta,
                        repeat=repeat,
                        seed=seed,
                        params=params,
                        planned=model.planned_cost(len(train), schema),
                    )
                )
    peer_runs, skipped = plan_peers(request.peers, request.epsilons, request.repeats, delta, schema)
    runs.extend(peer_runs)
    events = [r.planned.event for r in runs]
    grid_composed, accountant = composed_epsilon(events, delta_cap)
    total_after, _ = composed_epsilon(stored + events, delta_cap) if not request.public_proxy else (grid_composed, "")
    plan = Plan(
        request=request,
        schema=schema,
        train=train,
        holdout=holdout,
        runs=runs,
        delta_cap=delta_cap,
        epsilon_cap=epsilon_cap,
        spent_before=spent_before,
        grid_composed=grid_composed,
        total_after=total_after,
        naive_sum=float(sum(r.planned.epsilon for r in runs)),
        accountant=accountant,
        skipped_peers=skipped,
    )
    if plan.charged and not total_after <= epsilon_cap:
        raise BudgetExceeded(
            f"dataset {request.dataset_id!r}: the grid's {len(runs)} run(s) compose to epsilon={grid_composed:.4g} "
            f"at delta={delta_cap:.3g} ({accountant}; naive sum {plan.naive_sum:.4g}); with the {spent_before:.4g} "
            f"already spent that is {total_after:.4g}, over the cap {epsilon_cap:.4g}. Nothing was spent. "
            "Use fewer generators, epsilons or repeats, or --public-proxy on a public stand-in table."
        )
    return plan


def _versions() -> dict[str, str]:
    from dpsynth.manifest import package_versions as release_versions

    return release_versions()


def _clean(value: Any) -> Any:
    """JSON-safe: NaN / inf become null (results.json is read by pipelines that reject NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _spawn(spec_path: Path, timeout: float) -> tuple[str, str]:
    """Run the worker; ``(status, message)`` with status ok, error or timeout. Kills its whole process group."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "dpsynth.benchmarking.worker", str(spec_path)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout", f"no result within the time limit of {timeout:g} s (worker killed)"
    if proc.returncode != 0:
        tail = [line for line in stderr.strip().splitlines() if line.strip()][-3:]
        return "error", f"worker exited with code {proc.returncode}: " + " | ".join(tail)
    return "ok", ""


def _run_spec(plan: Plan, run: Run, work: Path, target: str | None) -> dict[str, Any]:
    request = plan.request
    return {
        "run_id": run.run_id,
        "generator": run.generator,
        "epsilon": run.epsilon,
        "delta": run.delta,
        "seed": run.seed,
        "params": run.params,
        "train": str(work / "train.pkl"),
        "holdout": str(work / "holdout.pkl"),
        "schema": plan.schema.to_dict(),
        "target": target,
        "tier": request.tier,
        "policy": str(request.policy) if request.policy else None,
        "rows": request.rows,
        "planned": run.planned.to_dict(),
        "delta_cap": plan.delta_cap,
        "accept_private_schema": request.accept_private_schema,
        "result": str(work / f"{run.run_id}.json"),
    }


def _reference(plan: Plan, target: str | None, seed: int) -> dict[str, Any]:
    """The real training rows scored as if they were a synthetic table: the ceiling for every utility score."""
    from dpsynth.benchmarking.consistency import violation_rates
    from dpsynth.benchmarking.metrics import utility_scores

    return {
        "name": "real training rows",
        "utility": utility_scores(plan.holdout, plan.train, plan.schema, target, seed=seed),
        "consistency": violation_rates(plan.train, plan.schema.rules),
    }


def _execute(plan: Plan, run: Run, work: Path, target: str | None, say: Progress) -> tuple[str, str, dict]:
    """One run after its reservation: ``(status, message, measured)``; any failure of the run is a status."""
    spec = _run_spec(plan, run, work, target)
    if run.peer:
        from dpsynth.benchmarking.peers import run_peer

        say(f"{run.run_id}: peer in its own environment")
        try:
            return run_peer(run, spec, plan, plan.request.timeout)
        except Exception as exc:  # the peer's table does not read back, or scoring it fails: a row, not the end
            return "error", f"{type(exc).__name__}: {exc}", {}
    spec_path = work / f"{run.run_id}.spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    say(f"{run.run_id}: fitting in a worker process")
    status, message = _spawn(spec_path, plan.request.timeout)
    return status, message, json.loads((work / f"{run.run_id}.json").read_text()) if status == "ok" else {}


def run_benchmark(plan: Plan, progress: Progress | None = None, render_pdf: Callable | None = None) -> dict[str, Any]:
    """Run every planned run (reserving each one's spend first), write results.json and report.html."""
    from dpsynth.benchmarking.report import recommend, write_report
    from dpsynth.privacy.ledger import open_ledger

    say = progress or (lambda message: None)
    request = plan.request
    target = request.target or plan.schema.target
    out = request.out
    out.mkdir(parents=True, exist_ok=True)
    ledger = open_ledger(request.ledger) if plan.charged else None
    results: dict[str, Any] = {
        "format": FORMAT,
        "classification": "internal",
        "notice": "scores computed on the benchmarked table (not differentially private); do not publish.",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(request.command) if request.command else None,
        "versions": _versions(),
        "data": str(request.data),
        "schema": {"name": plan.schema.name, "columns": plan.schema.names, "rules": len(plan.schema.rules)},
        "target": target,
        "rows": {"train": len(plan.train), "holdout": len(plan.holdout)},
        "seed": request.seed,
        "tier": request.tier,
        "policy": str(request.policy) if request.policy else "default",
        "budget": {
            "charged": plan.charged,
            "ledger": request.ledger if plan.charged else None,
            "dataset_id": request.dataset_id if plan.charged else None,
            "delta_cap": plan.delta_cap,
            "epsilon_cap": plan.epsilon_cap,
            "spent_before": plan.spent_before,
            "grid_composed_epsilon": plan.grid_composed,
            "total_after_epsilon": plan.total_after,
            "naive_sum_epsilon": plan.naive_sum,
            "accountant": plan.accountant,
        },
        "skipped_peers": plan.skipped_peers,
        "reference": None,
        "runs": [],
    }

    def save() -> None:
        results["recommendations"] = recommend(results["runs"])
        atomic_write_json(out / "results.json", _clean(results))

    with tempfile.TemporaryDirectory(prefix="dpsynth-benchmark-") as tmp:  # 0700: holds private rows
        work = Path(tmp)
        plan.train.to_pickle(work / "train.pkl")
        plan.holdout.to_pickle(work / "holdout.pkl")
        save()
        for index, run in enumerate(plan.runs, 1):
            say(f"[{index}/{len(plan.runs)}] {run.run_id}: reserving epsilon={run.planned.epsilon:.4g}")
            entry, started = None, time.perf_counter()
            try:
                if ledger is not None:
                    entry = ledger.reserve(
                        request.dataset_id,
                        run.planned,
                        generator=run.generator,
                        parameters=json.loads(json.dumps({**run.params, "epsilon": run.epsilon, "delta": run.delta})),
                        purpose=f"benchmark {out} run {run.run_id}",
                    )
                status, message, measured = _execute(plan, run, work, target, say)
            except BudgetExceeded as exc:  # another spend landed since the plan: this run is refused, not spent
                status, message, measured = "over-budget", str(exc), {}
            except BaseException:
                if entry is not None:
                    ledger.mark(entry.id, "failed")
                raise
            if entry is not None:
                ledger.mark(entry.id, "withheld" if status == "ok" else "failed")
            results["runs"].append(
                {
                    "run_id": run.run_id,
                    "generator": run.generator,
                    "peer": run.peer,
                    "epsilon": run.epsilon,
                    "delta": run.delta,
                    "repeat": run.repeat,
                    "seed": run.seed,
                    "params": run.params,
                    "planned": {"epsilon": run.planned.epsilon, "delta": run.planned.delta, **run.planned.details},
                    "ledger_entry": entry.id if entry is not None else None,
                    "status": status,
                    "message": message,
                    "wall_seconds": time.perf_counter() - started,
                    **measured,
                }
            )
            save()
            say(f"[{index}/{len(plan.runs)}] {run.run_id}: {status}{': ' + message if message else ''}")
    say("scoring the real training rows as the reference")
    results["reference"] = _reference(plan, target, request.seed or 0)
    if ledger is not None:
        budget = ledger.summary(request.dataset_id)[0]
        results["budget"]["spent_after"] = budget.spent_epsilon
        results["budget"]["head_hash"] = ledger.head_hash()
    save()
    say(f"writing {out / 'report.html'}")
    write_report(out, _clean(results), render_pdf=render_pdf)
    return results


__all__ = ["BenchmarkRequest", "Plan", "Run", "plan_benchmark", "run_benchmark"]
