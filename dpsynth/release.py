"""One release, end to end: the only place that orchestrates.

::

    private table -> engine: coerce, check, encode (dpsynth.engines) -> split train / holdout
      -> ledger.reserve (refuses over the cap; never refunded)
      -> fit on train -> sample -> audits.run(train, holdout, synthetic)
      -> policy decision
           PASS: DIR/ synthetic.csv + manifest.json + report.html; ledger "released"
                 (policy [release] approval_required: ledger "awaiting-approval", exit 5)
           FAIL: DIR/ manifest.json + report.html (no data); ledger "withheld"
      -> with an operator (--as NAME): bundle.json (index of every file, ledger spend)
         signed with the operator's Ed25519 key -> bundle.sig.json (dpsynth.evidence)

The release directory is assembled under a temporary name beside ``out`` and
renamed into place at the end, so it is complete or absent. The budget is
reserved before the data is touched by the generator and is never given back:
a crash, a refusal or a failed fit all keep the spend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import audits
from audits.sources import RealRows
from dpsynth._files import atomic_write_json, atomic_write_text, sha256_file, staged_directory
from dpsynth.disclosure import INTERNAL_NOTICE, public_privacy_statement
from dpsynth.engines import ENGINES, EncodedTable, audit_tables, read_table
from dpsynth.errors import GateFailed, UsageError
from dpsynth.evidence.bundle import build_index, write_signed_bundle
from dpsynth.evidence.keys import load_identity
from dpsynth.holdout import split_encoded
from dpsynth.manifest import build_manifest, jsonable_params
from dpsynth.panel import check_panel, pivot
from dpsynth.params import Interval, Options, Satisfies, validate_params
from dpsynth.person import n_units, release_unit, split_table
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.ledger import open_ledger
from dpsynth.profiles import load_policy
from dpsynth.schema import Schema
from dpsynth.steps import NO_STEPS, Steps, current_steps
from dpsynth.synthesizers import make_synthesizer
from dpsynth.synthesizers.base import Synthesizer, check_privacy_parameters, check_within_plan

Progress = Callable[[str], None]


@dataclass
class ReleaseRequest:
    """Everything ``dpsynth release`` needs; validated by :func:`run_release`."""

    data: Path | str | None  # CSV / Parquet path, duckdb:PATH?table=NAME, or (with sql) None / duckdb:PATH
    schema: Path
    generator: str
    epsilon: float
    delta: float
    ledger: Path | str  # a ledger file or a postgresql:// URL
    dataset_id: str
    out: Path
    holdout_fraction: float = 0.2
    policy: Path | str | None = None  # a shipped profile name (dpsynth.profiles) or a policy TOML path
    seed: int | None = None
    rows: int | None = None
    accept_private_schema: bool = False
    generator_params: dict[str, Any] = field(default_factory=dict)
    tier: str | None = None
    # who runs the release: signs bundle.json with their key (dpsynth.evidence); None: no signed bundle
    operator: str | None = None
    keys_dir: Path | None = None
    pdf: bool = False  # also write report.pdf (headless Chromium), listed in the bundle like report.html
    # how the table is read (dpsynth.engines): None is the default engine (duckdb when installed)
    engine: str | None = None
    sql: str | None = None  # a SELECT giving the private table, run in DuckDB (in the database ``data`` names)
    # person-level privacy (dpsynth.privacy.unit): the identifier column (or the schema's) and the bound K
    privacy_unit: str | None = None
    max_rows_per_unit: int | None = None
    panel_time: str | None = None  # a balanced panel's time column: fit one wide row per person (dpsynth.panel)
    spark_master: str | None = None  # --engine spark's cluster: local[N] or spark://HOST:PORT (None: local[2])


@dataclass
class ReleaseOutcome:
    decision: str
    out: Path
    manifest: dict[str, Any]
    status: str = ""  # the ledger outcome: released, withheld or awaiting-approval

    @property
    def released(self) -> bool:
        return self.decision == "PASS"

    @property
    def awaiting_approval(self) -> bool:
        return self.status == "awaiting-approval"


def split_holdout(df: pd.DataFrame, fraction: float, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / holdout split by one independent coin flip per row: holdout with probability ``fraction``.

    The holdout is never shown to the generator. Independent flips keep the
    ledger's neighbouring relation honest: adding or removing one row of the
    source table adds or removes at most that row from the training table
    and moves no other row (a fixed-size shuffle does not: one more row can
    push a training row into the holdout). So a mechanism that is
    (epsilon, delta)-DP on the training table under add/remove-one is
    (epsilon, delta)-DP on the source table (docs/threat-model.md).
    """
    in_holdout = rng.random(len(df)) < fraction
    holdout = df.loc[in_holdout].reset_index(drop=True)
    train = df.loc[~in_holdout].reset_index(drop=True)
    if len(train) == 0 or len(holdout) == 0:
        raise UsageError(
            f"the table's {len(df)} rows split into {len(train)} training and {len(holdout)} holdout "
            f"rows (holdout fraction {fraction:g}); both must be non-empty: use a larger table"
        )
    return train, holdout


def read_private_table(request: ReleaseRequest, schema: Schema, unit_column: str | None = None) -> EncodedTable:
    """The private table read, checked against ``schema`` and encoded by the request's engine.

    Out-of-domain data (text in a numeric column, an unknown category without
    ``other``) is refused here, before any budget is spent. With
    ``unit_column`` the table carries person codes of that identifier.
    """
    return read_table(
        request.data,
        schema,
        engine=request.engine,
        sql=request.sql,
        unit_column=unit_column,
        spark_master=request.spark_master,
    )


def check_delta_cap(delta_cap: float, n_rows: int, dataset_id: str) -> None:
    """Refuse a dataset whose delta cap is not below 1/n: the ledger would allow releasing records outright.

    The same rule as for one release (``check_privacy_parameters``), applied to
    the dataset's total, since the ledger composes every spend at that delta.
    """
    if delta_cap >= 1 / n_rows:
        raise UsageError(
            f"dataset {dataset_id!r} has a delta cap of {delta_cap:g}, which is not below 1/n = {1 / n_rows:.3g} for "
            f"this table of {n_rows} rows: composed at such a delta, the budget would allow releasing whole "
            "records. Release under a dataset whose delta cap is well below 1/n (e.g. 1e-6 for up to ~100,000 "
            "rows; caps are never changed, so add a new dataset id with `dpsynth budget init`)."
        )


REQUEST_CONSTRAINTS = {
    "holdout_fraction": [Interval(float, 0.05, 0.5)],
    "rows": [Interval(int, 1, None), None],
    "seed": [Interval(int, 0, None), None],
    "dataset_id": [Satisfies(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty dataset id")],
    "tier": [Options("quick", "thorough"), None],
    "engine": [Options(*ENGINES), None],
}


def _validate(request: ReleaseRequest) -> None:
    check_privacy_parameters(request.epsilon, request.delta)
    validate_params(vars(request), REQUEST_CONSTRAINTS, owner="release")
    if request.spark_master is not None:  # a bad master is refused before the ledger is opened
        from dpsynth.engines.spark_session import check_master

        check_master(request.spark_master)
    if request.pdf:
        from dpsynth.report.browser import find_browser

        find_browser()  # a missing Chromium refuses the release before any budget is spent
    if request.out.exists():
        raise UsageError(
            f"out directory {request.out} already exists; releases are never overwritten: choose a new directory",
            parameter="out",
        )


def generator_factory(
    generator: str, params: dict[str, Any], schema: Schema, epsilon: float, delta: float, accept_private_schema: bool
) -> Callable[[pd.DataFrame, int, int], pd.DataFrame]:
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


def run_release(
    request: ReleaseRequest, progress: Progress | None = None, steps: Steps | None = None
) -> ReleaseOutcome:
    """Run one release; raise :class:`GateFailed` after writing a refused release, or another DpsynthError.

    ``steps`` records each stage (read, split, prepare, plan, reserve, fit, sample, audit, manifest,
    report, bundle) for a progress display and a JSON log (:mod:`dpsynth.steps`); by default the
    recorder of an enclosing step, if any, else nothing.
    """
    say = progress or (lambda message: None)
    steps = steps if steps is not None else current_steps()
    _validate(request)
    schema = Schema.load(request.schema)
    schema.require_public(request.accept_private_schema)
    loaded = load_policy(request.policy)
    policy = loaded.policy
    tier = request.tier or policy.tier
    needs_approval = loaded.rules.approval_required
    loaded.rules.check_request(request.epsilon, tier, loaded.label)  # ceilings: before any budget is reserved
    # the operator's key is loaded before any budget is spent: a missing key refuses the release (exit 2)
    operator = load_identity(request.operator, request.keys_dir) if request.operator is not None else None
    if needs_approval and operator is None:
        raise UsageError(
            "the policy requires approval ([release] approval_required), which needs a signed release: "
            "name the operator (release --as NAME)",
            parameter="operator",
        )
    unit, generator_params = release_unit(
        request.generator,
        request.privacy_unit,
        request.max_rows_per_unit,
        schema,
        request.generator_params,
        request.panel_time,
    )
    ledger = open_ledger(request.ledger)
    _, delta_cap = ledger.caps(request.dataset_id)

    say(f"reading {request.sql if request.data is None else request.data}")
    with steps.step("read") as read_step:
        table = read_private_table(request, schema, unit.column)
        read_step.rows = len(table)
    long_schema, panel = schema, None
    if request.panel_time is not None:  # one wide row per person from here on; unpivoted when written
        panel = check_panel(schema, request.panel_time, unit.column)
        table, schema = pivot(table, panel), panel.wide_schema
    check_delta_cap(delta_cap, n_units(table), request.dataset_id)
    loaded.rules.check_delta(request.delta, n_units(table), loaded.label)
    seeds = np.random.SeedSequence(request.seed) if request.seed is not None else np.random.SeedSequence()
    split_seed, fit_seed, audit_seed = (int(s.generate_state(1)[0]) for s in seeds.spawn(3))
    with steps.step("split", rows=len(table)):
        train_codes, holdout_codes = split_table(
            table, unit, request.holdout_fraction, np.random.default_rng(split_seed)
        )
    del table
    check_privacy_parameters(request.epsilon, request.delta, n_units(train_codes))
    with steps.step("prepare", rows=len(train_codes) + len(holdout_codes)):
        train, holdout = audit_tables(train_codes, holdout_codes)  # pandas frames, or tables left on the cluster

    with steps.step("plan", generator=request.generator):
        synthesizer: Synthesizer = make_synthesizer(
            request.generator,
            epsilon=request.epsilon,
            delta=request.delta,
            random_state=fit_seed if request.seed is not None else None,
            **generator_params,
        )
        planned: PrivacyCost = synthesizer.planned_cost(len(train), schema)
        if unit.is_person:  # the ledger records the unit per spend and refuses a mix (dpsynth.privacy.ledger)
            planned = replace(planned, details={**planned.details, "privacy_unit": unit.to_dict()})

    say(f"reserving epsilon={planned.epsilon:.4g}, delta={planned.delta:.3g} on dataset {request.dataset_id!r}")
    with steps.step("reserve", epsilon=planned.epsilon, delta=planned.delta):
        entry = ledger.reserve(
            request.dataset_id,
            planned,
            generator=request.generator,
            parameters=jsonable_params(synthesizer.get_params()),
            purpose=f"release to {request.out}",
        )
    try:
        say(f"fitting {request.generator} on the training rows")
        with steps.step("fit", rows=len(train), generator=request.generator):
            synthesizer.fit(train_codes, schema, accept_private_schema=request.accept_private_schema)
            check_within_plan(synthesizer.privacy_cost_, planned, delta_cap, what=f"{request.generator} fit")
        # the exact training count is private: publish --rows (public) or the generator's DP estimate
        n_rows = request.rows if request.rows is not None else synthesizer.n_rows_estimate_
        say(f"sampling {n_rows} synthetic rows")
        with steps.step("sample", rows=n_rows):
            synthetic = synthesizer.sample(n_rows)

        say(f"auditing ({tier} tier)")
        with steps.step("audit", rows=len(synthetic), tier=tier) as audit_step:
            spec = audits.TableSpec.from_schema_dict(schema.to_dict())
            factory = None
            if tier == "thorough":
                factory = generator_factory(
                    request.generator,
                    generator_params,
                    schema,
                    request.epsilon,
                    request.delta,
                    request.accept_private_schema,
                )
            report = audits.run(
                train,
                holdout,
                synthetic,
                spec,
                policy=policy,
                tier=tier,
                generator=factory,
                claimed_epsilon=synthesizer.privacy_cost_.epsilon,
                seed=audit_seed,
                on_test=steps.audit_callback(),
                # person-level: targets are persons (all their rows); the split above is by person
                units={"train": train_codes.units, "holdout": holdout_codes.units} if unit.is_person else None,
            )
            audit_step.set(decision=report.decision)
    except BaseException:
        ledger.mark(entry.id, "failed")
        raise

    with steps.step("manifest"):
        audit = report.to_dict()
        decision = audit["decision"]
        budget = ledger.summary(request.dataset_id)[0]
        manifest = build_manifest(
            request,
            long_schema,
            synthesizer,
            planned,
            entry,
            budget,
            audit,
            report,
            train,
            holdout,
            n_rows,
            ledger,
            unit,
        )
        manifest["policy"] = loaded.record(tier)
        if panel is not None:  # rows.train / holdout / synthetic count persons (wide rows); the files are long
            manifest["panel"] = {"time": panel.time, "times": list(panel.times), "rows_per_person": len(panel.times)}
            synthetic, train, schema = panel.unpivot(synthetic), panel.unpivot(train, with_ids=False), long_schema
        status = ("awaiting-approval" if needs_approval else "released") if decision == "PASS" else "withheld"
        manifest["approval"] = {
            "required": needs_approval,
            "status": status,
            "operator": operator.name if operator else None,
            "operator_key_id": operator.key_id if operator else None,
        }
        public = public_privacy_statement(request, schema, synthesizer, manifest) if decision == "PASS" else None
        if public is not None:
            public["status"] = status
    say(f"decision: {decision}; writing {request.out}")
    sign = None
    if operator is not None:

        def sign(staging: Path) -> None:
            ledger_ref = {
                "location": ledger.location,
                "entry_id": entry.id,
                "entry_hash": entry.hash,
                "head_hash": manifest["ledger"]["head_hash"],
            }
            index = build_index(
                staging,
                release_id=manifest["release_id"],
                dataset_id=request.dataset_id,
                created_at=manifest["created_at"],
                status=status,
                approval_required=needs_approval,
                operator=operator,
                ledger=ledger_ref,
            )
            write_signed_bundle(staging, index, operator)

    _write_release_dir(
        request.out,
        manifest,
        audit,
        train,
        synthetic if decision == "PASS" else None,
        schema,
        public,
        finish=sign,
        pdf=request.pdf,
        progress=say,
        steps=steps,
    )
    ledger.mark(entry.id, status)
    outcome = ReleaseOutcome(decision=decision, out=request.out, manifest=manifest, status=status)
    if decision != "PASS":
        raise GateFailed(
            "release refused by the gate: "
            + "; ".join(manifest["reasons"])
            + f". Report: {request.out / 'report.html'}. The budget stays spent."
        )
    return outcome


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


def _write_release_dir(
    out: Path,
    manifest: dict[str, Any],
    audit: dict,
    train: pd.DataFrame | RealRows,
    synthetic: pd.DataFrame | None,
    schema: Schema,
    public: dict[str, Any] | None,
    finish: Callable[[Path], None] | None = None,
    pdf: bool = False,
    progress: Progress | None = None,
    steps: Steps = NO_STEPS,
) -> None:
    """Assemble the release in a staged directory renamed into place at the end (``finish`` runs last, in it).

    With ``pdf``, report.pdf is printed from report.html before the bundle is signed, so it is sealed too.
    """
    with staged_directory(out) as staging:
        if synthetic is not None:
            synthetic_path = staging / "synthetic.csv"
            atomic_write_text(synthetic_path, synthetic_csv_text(synthetic, schema))
            manifest["synthetic_sha256"] = sha256_file(synthetic_path)
            manifest["files"]["synthetic.csv"] = manifest["synthetic_sha256"]
        if public is not None:
            public["synthetic_sha256"] = manifest.get("synthetic_sha256")
            atomic_write_json(staging / "privacy.json", public)
            manifest["files"]["privacy.json"] = sha256_file(staging / "privacy.json")
        atomic_write_json(staging / "audit.json", {"classification": "internal", "notice": INTERNAL_NOTICE, **audit})
        kinds = {c.name: c.kind for c in schema}
        bounds = {c.name: (c.lower, c.upper) for c in schema if c.kind == "numeric"}
        with steps.step("report"):
            from dpsynth.report import write_report  # matplotlib: imported (seconds) only when a report is written

            real = train if isinstance(train, pd.DataFrame) else train.frame_for_report()
            html = write_report(staging / "report.html", manifest, audit, real, synthetic, kinds, bounds=bounds)
        if pdf:
            with steps.step("pdf"):
                from dpsynth.report.browser import html_to_pdf

                html_to_pdf(html.read_text(encoding="utf-8"), staging / "report.pdf", progress=progress)
        for name in ("audit.json", "report.html") + (("report.pdf",) if pdf else ()):
            manifest["files"][name] = sha256_file(staging / name)
        atomic_write_json(staging / "manifest.json", manifest)
        if finish is not None:
            with steps.step("bundle"):
                finish(staging)


__all__ = [
    "ReleaseOutcome",
    "ReleaseRequest",
    "check_delta_cap",
    "generator_factory",
    "read_private_table",
    "run_release",
    "split_encoded",
    "split_holdout",
]
