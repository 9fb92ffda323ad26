"""``dpsynth audit``: attack any synthetic table against its train and holdout tables.

The synthetic table may come from any tool. It is read with the same schema
as the real tables; values outside the schema's domain are clipped or mapped
as for training, so every table is compared on one footing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import audits
from dpsynth._files import atomic_write_json, staged_directory
from dpsynth.engines import audit_tables, read_table
from dpsynth.errors import UsageError
from dpsynth.profiles import load_policy
from dpsynth.schema import Schema
from dpsynth.steps import NO_STEPS, Steps, current_steps


def run_audit(
    train_path: Path,
    holdout_path: Path,
    synthetic_path: Path,
    schema_path: Path,
    out: Path,
    policy_path: Path | str | None = None,
    tier: str = "quick",
    seed: int = 0,
    steps: Steps | None = None,
    engine: str | None = None,
    privacy_unit: str | None = None,
) -> tuple[str, list[str]]:
    """Audit, write ``out/audit.json`` and ``out/report.html``; return the decision and failure messages.

    With ``privacy_unit`` (the person identifier column of train and holdout) the audit is person-level:
    targets are persons, scored by their most exposed row; a person in both tables is refused.

    ``steps`` records each stage (read per table, audit with one sub-step per test, report; :mod:`dpsynth.steps`).
    Each table is read, checked and encoded by ``engine`` (:mod:`dpsynth.engines`; ``None``: the default, DuckDB),
    as ``dpsynth release`` reads the private table, so a table of millions of rows never becomes object columns.
    """
    steps = steps if steps is not None else current_steps()
    if tier != "quick":
        raise UsageError(
            "--tier thorough refits the generator (shadow models, canaries); it runs inside "
            "`dpsynth release`. `dpsynth audit` runs the quick tier on any synthetic table."
        )
    if out.exists():
        raise UsageError(f"--out {out} already exists; choose a new directory (audit results are never overwritten)")
    schema = Schema.load(schema_path)
    loaded = load_policy(policy_path)  # a shipped profile name, a TOML path, or None: the default
    if loaded.rules.required_tier == "thorough":
        raise UsageError(
            f"{loaded.label} requires the thorough audit tier (release.required_tier), which refits the generator: "
            "it runs inside `dpsynth release`; `dpsynth audit` runs the quick tier only"
        )
    policy = loaded.policy
    tables = {}
    read = {}
    for label, path in (("train", train_path), ("holdout", holdout_path), ("synthetic", synthetic_path)):
        with steps.step("read", table=label) as read_step:
            read[label] = read_table(path, schema, engine=engine)
            read_step.rows = len(read[label])
    # a Spark engine's real tables stay on the cluster, where the audits' searches run (docs/spark.md)
    if privacy_unit is None:
        tables["train"], tables["holdout"] = audit_tables(read["train"], read["holdout"])
    else:
        tables["train"], tables["holdout"] = read["train"].frame(), read["holdout"].frame()
    tables["synthetic"] = read.pop("synthetic").frame()
    units = None if privacy_unit is None else _person_codes(privacy_unit, train_path, holdout_path)
    spec = audits.TableSpec.from_schema_dict(schema.to_dict())
    with steps.step("audit", rows=len(tables["synthetic"]), tier="quick") as audit_step:
        report = audits.run(
            tables["train"],
            tables["holdout"],
            tables["synthetic"],
            spec,
            policy=policy,
            tier="quick",
            seed=seed,
            on_test=steps.audit_callback(),
            units=units,
        )
        audit_step.set(decision=report.decision)
    audit = report.to_dict()
    manifest = {
        "decision": audit["decision"],
        "reasons": [f.message for f in report.failures()],
        "schema": {"name": schema.name, "source": schema.source, "leaked_domain": not schema.is_public},
        "rows": {k: len(v) for k, v in tables.items()},
    }
    _write_dir(out, audit, manifest, tables, schema, steps)
    return audit["decision"], manifest["reasons"]


def _person_codes(column: str, train_path: Path, holdout_path: Path) -> dict:
    """Person codes of train and holdout rows, one code space for both (identifiers are never kept)."""
    import numpy as np
    import pandas as pd

    from dpsynth.errors import DataError
    from dpsynth.privacy.unit import unit_codes

    values = []
    for path in (train_path, holdout_path):
        header = [str(c).strip() for c in pd.read_csv(path, dtype=str, nrows=0).columns]
        if column not in header:
            raise DataError(f"{path} lacks the privacy unit column {column!r}; it has {header}")
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            usecols=lambda name: str(name).strip() == column,
        )
        values.append(frame.iloc[:, 0])
    codes = unit_codes(pd.concat(values, ignore_index=True), column, "train + holdout")
    train, holdout = codes[: len(values[0])], codes[len(values[0]) :]
    if np.intersect1d(train, holdout).size:
        raise DataError(f"a person-level audit needs a split by person: some {column!r} is in both train and holdout")
    return {"train": train, "holdout": holdout}


def _write_dir(out: Path, audit: dict, manifest: dict, tables: dict, schema: Schema, steps: Steps = NO_STEPS) -> None:
    from dpsynth.report import write_report

    with staged_directory(out) as staging:
        internal = {
            "classification": "internal",
            "notice": "INTERNAL: audit figures computed on the private tables without noise. Do not publish.",
        }
        atomic_write_json(staging / "audit.json", {**internal, **audit})
        with steps.step("report"):
            train = tables["train"]
            write_report(
                staging / "report.html",
                manifest,
                audit,
                train if isinstance(train, pd.DataFrame) else train.frame_for_report(),
                tables["synthetic"],
                {c.name: c.kind for c in schema},
                bounds={c.name: (c.lower, c.upper) for c in schema if c.kind == "numeric"},
            )
