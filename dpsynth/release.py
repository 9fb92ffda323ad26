"""One release, end to end: the only place that orchestrates.

::

    private table -> schema check -> split train / holdout
      -> ledger.reserve (refuses over the cap; never refunded)
      -> fit on train -> sample -> audits.run(train, holdout, synthetic)
      -> policy decision
           PASS: DIR/ synthetic.csv + manifest.json + report.html; ledger "released"
           FAIL: DIR/ manifest.json + report.html (no data); ledger "withheld"

The release directory is assembled under a temporary name beside ``out`` and
renamed into place at the end, so it is complete or absent. The budget is
reserved before the data is touched by the generator and is never given back:
a crash, a refusal or a failed fit all keep the spend.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import audits
from dpsynth._files import atomic_write_text
from dpsynth.errors import GateFailed, UsageError
from dpsynth.privacy.cost import PrivacyCost, event_to_dict
from dpsynth.privacy.ledger import Ledger
from dpsynth.schema import Schema
from dpsynth.synthesizers import make_synthesizer
from dpsynth.synthesizers.base import Synthesizer, check_privacy_parameters
from dpsynth.tables import prepare, read_csv

Progress = Callable[[str], None]


@dataclass
class ReleaseRequest:
    """Everything ``dpsynth release`` needs; validated by :func:`run_release`."""

    data: Path
    schema: Path
    generator: str
    epsilon: float
    delta: float
    ledger: Path
    dataset_id: str
    out: Path
    holdout_fraction: float = 0.2
    policy: Path | None = None
    seed: int | None = None
    rows: int | None = None
    accept_private_schema: bool = False
    generator_params: dict[str, Any] = field(default_factory=dict)
    tier: str | None = None


@dataclass
class ReleaseOutcome:
    decision: str
    out: Path
    manifest: dict[str, Any]

    @property
    def released(self) -> bool:
        return self.decision == "PASS"


def split_holdout(df: pd.DataFrame, fraction: float, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random train / holdout split; the holdout is never shown to the generator."""
    order = rng.permutation(len(df))
    n_holdout = int(round(len(df) * fraction))
    holdout = df.iloc[order[:n_holdout]].reset_index(drop=True)
    train = df.iloc[order[n_holdout:]].reset_index(drop=True)
    return train, holdout


def _validate(request: ReleaseRequest) -> None:
    check_privacy_parameters(request.epsilon, request.delta)
    if not 0.05 <= request.holdout_fraction <= 0.5:
        raise UsageError(f"--holdout-fraction must be between 0.05 and 0.5, got {request.holdout_fraction}")
    if request.rows is not None and request.rows < 1:
        raise UsageError(f"--rows must be a positive integer, got {request.rows}")
    if request.seed is not None and request.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {request.seed}")
    if request.out.exists():
        raise UsageError(f"--out {request.out} already exists; releases are never overwritten: choose a new directory")
    if not request.dataset_id:
        raise UsageError("--dataset must name the source dataset whose budget this release spends")


def _versions() -> dict[str, str]:
    names = ["dpsynth", "numpy", "pandas", "scikit-learn", "mbi", "dp-accounting", "opacus", "torch"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def generator_factory(generator: str, params: dict[str, Any], schema: Schema, epsilon: float, delta: float,
                      accept_private_schema: bool) -> Callable[[pd.DataFrame, int, int], pd.DataFrame]:
    """A ``fit_sample(df, n_rows, seed)`` callable for the shadow-model and canary audits.

    It refits the same generator with the same budget on reference data
    (holdout-derived), never on the training table, so it costs the
    training table no budget.
    """

    def fit_sample(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
        model = make_synthesizer(generator, epsilon=epsilon, delta=delta, random_state=seed, **params)
        if hasattr(model, "progress"):
            model.progress = False
        n_ref = max(len(df), 1)
        if delta >= 1 / n_ref:
            model.delta = 1 / (10 * n_ref)
        model.fit(df, schema, accept_private_schema=accept_private_schema)
        return model.sample(n_rows)

    return fit_sample


def run_release(request: ReleaseRequest, progress: Progress | None = None) -> ReleaseOutcome:
    """Run one release; raise :class:`GateFailed` after writing a refused release, or another DpsynthError."""
    say = progress or (lambda message: None)
    _validate(request)
    schema = Schema.load(request.schema)
    schema.require_public(request.accept_private_schema)
    policy = audits.Policy.load(request.policy) if request.policy else audits.Policy.default()
    tier = request.tier or policy.tier
    ledger = Ledger(request.ledger)
    ledger.require_dataset(request.dataset_id)

    say(f"reading {request.data}")
    table = read_csv(request.data, schema)
    seeds = np.random.SeedSequence(request.seed) if request.seed is not None else np.random.SeedSequence()
    split_seed, fit_seed, audit_seed = (int(s.generate_state(1)[0]) for s in seeds.spawn(3))
    train, holdout = split_holdout(table, request.holdout_fraction, np.random.default_rng(split_seed))
    check_privacy_parameters(request.epsilon, request.delta, len(train))
    prepare(table, schema, source=str(request.data))  # refuse out-of-domain data before any budget is spent

    synthesizer: Synthesizer = make_synthesizer(
        request.generator, epsilon=request.epsilon, delta=request.delta,
        random_state=fit_seed if request.seed is not None else None, **request.generator_params)
    planned: PrivacyCost = synthesizer.planned_cost(len(train), schema)

    say(f"reserving epsilon={planned.epsilon:.4g}, delta={planned.delta:.3g} on dataset {request.dataset_id!r}")
    entry = ledger.reserve(request.dataset_id, planned, generator=request.generator,
                           parameters=_jsonable(synthesizer.get_params()), purpose=f"release to {request.out}")
    try:
        say(f"fitting {request.generator} on {len(train)} training rows")
        synthesizer.fit(train, schema, accept_private_schema=request.accept_private_schema)
        # the exact training count is private: publish --rows (public) or the generator's DP estimate
        n_rows = request.rows if request.rows is not None else synthesizer.n_rows_estimate_
        say(f"sampling {n_rows} synthetic rows")
        synthetic = synthesizer.sample(n_rows)

        say(f"auditing ({tier} tier)")
        spec = audits.TableSpec.from_schema_dict(schema.to_dict())
        factory = None
        if tier == "thorough":
            factory = generator_factory(request.generator, request.generator_params, schema, request.epsilon,
                                        request.delta, request.accept_private_schema)
        report = audits.run(train, holdout, synthetic, spec, policy=policy, tier=tier, generator=factory,
                            claimed_epsilon=synthesizer.privacy_cost_.epsilon, seed=audit_seed)
    except BaseException:
        ledger.mark(entry.id, "failed")
        raise

    audit = report.to_dict()
    decision = audit["decision"]
    budget = ledger.summary(request.dataset_id)[0]
    manifest = _manifest(request, schema, synthesizer, planned, entry, budget, audit, report, train, holdout,
                         n_rows, ledger)
    say(f"decision: {decision}; writing {request.out}")
    _write_release_dir(request.out, manifest, audit, train, synthetic if decision == "PASS" else None, schema)
    ledger.mark(entry.id, "released" if decision == "PASS" else "withheld")
    outcome = ReleaseOutcome(decision=decision, out=request.out, manifest=manifest)
    if decision != "PASS":
        raise GateFailed("release refused by the gate: " + "; ".join(manifest["reasons"])
                         + f". Report: {request.out / 'report.html'}. The budget stays spent.")
    return outcome


def _manifest(request: ReleaseRequest, schema: Schema, synthesizer: Synthesizer, planned: PrivacyCost, entry,
              budget, audit: dict, report, train: pd.DataFrame, holdout: pd.DataFrame, n_rows: int,
              ledger: Ledger) -> dict[str, Any]:
    realised = synthesizer.privacy_cost_
    return {
        "format": "dpsynth-release/1",
        "decision": audit["decision"],
        "reasons": [failure.message for failure in report.failures()],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset_id": request.dataset_id,
        "generator": request.generator,
        "parameters": _jsonable(synthesizer.get_params()),
        "privacy": {
            "epsilon": planned.epsilon, "delta": planned.delta, "accountant": planned.accountant,
            "event": event_to_dict(planned.event), "neighbouring": "add or remove one record",
            "realised": realised.to_dict(),
        },
        "budget": {
            "epsilon_cap": budget.epsilon_cap, "delta_cap": budget.delta_cap,
            "spent_epsilon": budget.spent_epsilon, "remaining_epsilon": budget.remaining_epsilon,
            "naive_sum_epsilon": budget.naive_sum_epsilon, "accountant": budget.accountant,
        },
        "ledger": {"path": str(request.ledger), "entry_id": entry.id, "entry_hash": entry.hash,
                   "head_hash": ledger.head_hash()},
        "schema": {"name": schema.name, "source": schema.source, "leaked_domain": not schema.is_public,
                   "sha256": hashlib.sha256(json.dumps(schema.to_dict(), sort_keys=True).encode()).hexdigest()},
        "domain_report": synthesizer.domain_report_.to_dict(),
        "rows": {"train": len(train), "holdout": len(holdout), "synthetic": n_rows,
                 "row_count": "public (--rows)" if request.rows is not None else "dp-estimate"},
        "seed": request.seed,
        "noise_source": synthesizer.noise_source_,
        "audit": {"tier": audit.get("tier"), "decision": audit["decision"],
                  "results": [{k: r.get(k) for k in ("name", "family", "value", "ci_low", "ci_high", "threshold",
                                                      "direction", "passed")} for r in audit["results"]]},
        "versions": _versions(),
        "files": {},
    }


def synthetic_csv_text(synthetic: pd.DataFrame, schema: Schema) -> str:
    """CSV text of a synthetic table that reads back under its own schema.

    Nulls are written as the schema's first null marker (``na_values[0]``,
    e.g. ``"N"`` for the NIST excerpts) rather than pandas' default empty
    string, which a schema without ``""`` among its ``na_values`` would reject
    as a non-numeric value or an unknown category (``dpsynth audit`` on the
    released file then failed). Integer columns are written as whole numbers
    (``54``, not ``54.0``).
    """
    out = synthetic.copy()
    for column in schema:
        if column.kind == "numeric" and column.integer and column.name in out.columns:
            out[column.name] = pd.to_numeric(out[column.name]).round().astype("Int64")
    null_marker = schema.na_values[0] if schema.na_values else ""
    return out.to_csv(index=False, na_rep=null_marker)


def _write_release_dir(out: Path, manifest: dict[str, Any], audit: dict, train: pd.DataFrame,
                       synthetic: pd.DataFrame | None, schema: Schema) -> None:
    """Assemble the release under a temporary name, then rename it into place."""
    from dpsynth.report import write_report

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        if synthetic is not None:
            synthetic_path = staging / "synthetic.csv"
            atomic_write_text(synthetic_path, synthetic_csv_text(synthetic, schema))
            manifest["synthetic_sha256"] = _sha256(synthetic_path)
            manifest["files"]["synthetic.csv"] = manifest["synthetic_sha256"]
        atomic_write_text(staging / "audit.json", json.dumps(audit, indent=2, default=_json_default) + "\n")
        kinds = {c.name: c.kind for c in schema}
        bounds = {c.name: (c.lower, c.upper) for c in schema if c.kind == "numeric"}
        write_report(staging / "report.html", manifest, audit, train, synthetic, kinds, bounds=bounds)
        for name in ("audit.json", "report.html"):
            manifest["files"][name] = _sha256(staging / name)
        atomic_write_text(staging / "manifest.json", json.dumps(manifest, indent=2, default=_json_default) + "\n")
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(params, default=lambda v: repr(v)))


__all__ = ["ReleaseOutcome", "ReleaseRequest", "generator_factory", "run_release", "split_holdout"]
