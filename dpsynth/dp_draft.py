"""A DP schema draft as a budgeted flow: the schema's counterpart of :mod:`dpsynth.release`.

::

    header + public options -> plan (every mechanism and its cost, no value read)
      -> check the table against the plan (bad input refused before any spend)
      -> ledger.reserve(plan.cost)   (refuses over the cap; never refunded)
      -> run the mechanisms -> schema.json ("source": "dp"); ledger "released" (or "failed")

The mechanisms and their accounting live in :mod:`dpsynth.discovery`; this
module only orders the steps so that a crash keeps the spend and a bad
input spends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpsynth.discovery import DiscoveryPlan, check_table, plan_discovery, run_discovery
from dpsynth.errors import DataError, UsageError
from dpsynth.privacy.ledger import DatasetBudget, LedgerEntry, open_ledger
from dpsynth.release import check_delta_cap
from dpsynth.schema import DEFAULT_NA_VALUES, Schema
from dpsynth.steps import Steps, current_steps
from dpsynth.synthesizers.base import check_privacy_parameters
from dpsynth.tables import read_raw_csv


@dataclass
class DraftRequest:
    """Everything ``dpsynth schema draft --epsilon`` needs; the hints are public facts, not read from data."""

    data: Path
    output: Path
    epsilon: float
    delta: float
    ledger: str
    dataset_id: str
    name: str = ""
    bins: int = 10
    na_values: tuple[str, ...] = ()
    numeric: list[str] = field(default_factory=list)
    integer: list[str] = field(default_factory=list)
    nullable: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    edges: str = "quantiles"
    target: str | None = None


@dataclass
class DraftOutcome:
    schema: Schema
    plan: DiscoveryPlan
    entry: LedgerEntry
    budget: DatasetBudget


def draft_dp_schema(request: DraftRequest, steps: Steps | None = None) -> DraftOutcome:
    """Plan, check, reserve, discover and write the schema; a crash after the reservation keeps the spend.

    ``steps`` records read, check, reserve, discover and write (:mod:`dpsynth.steps`).
    """
    r = request
    steps = steps if steps is not None else current_steps()
    if not r.data.exists():
        raise DataError(f"data file not found: {r.data}")
    if not r.output.parent.is_dir():
        raise UsageError(f"-o {r.output}: directory {r.output.parent} does not exist")
    if r.target is not None and r.target in r.drop:
        raise UsageError(f"--target {r.target!r} is also in --drop")
    ledger = open_ledger(r.ledger)
    ledger.require_dataset(r.dataset_id)
    with steps.step("read") as read_step:
        table = read_raw_csv(r.data)
        read_step.rows = len(table)
    if r.target is not None and r.target not in [str(c).strip() for c in table.columns]:
        raise UsageError(f"--target {r.target!r} is not a column of {r.data}")
    plan = plan_discovery(
        [str(c) for c in table.columns],
        r.epsilon,
        r.delta,
        numeric=r.numeric,
        integer=r.integer,
        nullable=r.nullable,
        drop=r.drop,
        ranges=r.ranges,
        bins=r.bins,
        edges=r.edges,
        na_values=tuple(dict.fromkeys([*DEFAULT_NA_VALUES, *r.na_values])),
    )
    with steps.step("check", rows=len(table)):
        check_table(table, plan, source=str(r.data))
    check_privacy_parameters(r.epsilon, r.delta, len(table))
    check_delta_cap(ledger.caps(r.dataset_id)[1], len(table), r.dataset_id)
    parameters: dict[str, Any] = {"epsilon": r.epsilon, "delta": r.delta, **plan.cost.details}
    with steps.step("reserve", epsilon=plan.cost.epsilon, delta=plan.cost.delta):
        entry = ledger.reserve(
            r.dataset_id,
            plan.cost,
            purpose=f"schema discovery for {r.data} -> {r.output}",
            generator="schema-discovery",
            parameters=parameters,
        )
    try:
        with steps.step("discover", rows=len(table)):
            schema = run_discovery(table, plan, name=r.name or r.data.stem, target=r.target)
        with steps.step("write"):
            schema.save(r.output)
    except BaseException:
        ledger.mark(entry.id, "failed")
        raise
    ledger.mark(entry.id, "released")
    return DraftOutcome(schema=schema, plan=plan, entry=entry, budget=ledger.summary(r.dataset_id)[0])


__all__ = ["DraftOutcome", "DraftRequest", "draft_dp_schema"]
