"""Every check a ledger's chain must pass, whatever the storage: hashes, links, record semantics, caps.

:func:`_verify_rows` is ``Ledger.verify`` for both storages; :func:`_check_spend`
is what ``reserve`` checks inside its transaction before it appends a spend
(the chain verifies, the dataset exists, the composed total fits the cap).
"""

from __future__ import annotations

from typing import Any

import dp_accounting as dpa

from dpsynth.errors import BudgetExceeded, LedgerError, PrivacyAccountingError, UsageError
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.ledger.records import (
    DECISIONS,
    FINAL_STATUSES,
    GENESIS_HASH,
    VerifyResult,
    _check_caps,
    _dataset_row,
    _entry_hash,
    _load_event,
    composed_epsilon,
)


def _chain_problems(rows: list[dict[str, Any]], meta: dict[str, str]) -> list[tuple[list[int], str]]:
    """Every way the records fail the hash chain or contradict each other, as (entry ids at fault, message)."""
    problems: list[tuple[list[int], str]] = []
    prev_id, prev_hash = 0, GENESIS_HASH
    datasets: dict[str, int] = {}
    spends: dict[int, str] = {}
    marked: set[int] = set()
    decided: set[int] = set()
    for row in rows:
        i = row["id"]
        if i != prev_id + 1:
            missing = list(range(prev_id + 1, min(i, prev_id + 101)))
            problems.append(
                (
                    [*missing, i],
                    f"entry {i}: follows entry {prev_id} (ids {prev_id + 1}..{i - 1} are "
                    "missing): records were deleted or renumbered",
                )
            )
        if row["prev_hash"] != prev_hash:
            problems.append(
                (
                    [i],
                    f"entry {i}: its link to the previous record does not match entry {prev_id}'s "
                    "hash: a record before it was deleted, inserted, edited or moved",
                )
            )
        if _entry_hash(row) != row["hash"]:
            problems.append(([i], f"entry {i}: content does not match its hash: the record was edited"))
        problems.extend(([i], f"entry {i}: {m}") for m in _semantic_problems(row, datasets, spends, marked, decided))
        prev_id, prev_hash = i, row["hash"]
    if rows and rows[0]["kind"] != "dataset":
        problems.append(([rows[0]["id"]], f"entry {rows[0]['id']}: a ledger must begin with a dataset record"))
    head = (str(rows[-1]["id"]), rows[-1]["hash"]) if rows else ("0", GENESIS_HASH)
    if (meta.get("head_id"), meta.get("head_hash")) != head:
        problems.append(
            (
                [],
                f"ledger: the head recorded in the file (entry {meta.get('head_id')}) is not the "
                f"last record (entry {head[0]}): records were deleted from the end, or added "
                "outside dpsynth",
            )
        )
    return problems


def _semantic_problems(
    row: dict[str, Any], datasets: dict[str, int], spends: dict[int, str], marked: set[int], decided: set[int]
) -> list[str]:
    """Checks a record against the ones before it; updates the running state."""
    kind, ds = row["kind"], row["dataset_id"]
    if kind == "dataset":
        if ds in datasets:
            return [f"dataset {ds!r} is created a second time (first in entry {datasets[ds]})"]
        datasets[ds] = row["id"]
        try:
            _check_caps(row["epsilon_cap"], row["delta_cap"])
        except UsageError as exc:
            return [f"invalid caps: {exc}"]
        return []
    if kind == "spend":
        out = []
        if ds not in datasets:
            out.append(f"spend on dataset {ds!r}, which has no earlier dataset record")
        try:
            _load_event(row)
        except LedgerError as exc:
            out.append(str(exc).split(": ", 1)[1])
        if not isinstance(row["epsilon"], float) or not isinstance(row["delta"], float):
            out.append("spend without a numeric epsilon and delta")
        spends[row["id"]] = ds
        return out
    if kind == "status":
        ref = row["ref_id"]
        if ref not in spends or spends[ref] != ds:
            return [f"status record for entry {ref}, which is not an earlier spend on dataset {ds!r}"]
        if row["status"] in DECISIONS:
            if ref in decided:
                return [f"second decision record for spend {ref}"]
            decided.add(ref)
            return []
        if row["status"] not in FINAL_STATUSES:
            return [f"unknown status {row['status']!r}"]
        if ref in marked:
            return [f"second status record for spend {ref}"]
        marked.add(ref)
        return []
    return [f"unknown record kind {kind!r}"]


def _check_spend(
    rows: list[dict[str, Any]],
    meta: dict[str, str],
    dataset_id: str,
    cost: PrivacyCost,
    new_event: dpa.DpEvent,
    where: Any,
) -> float:
    """The composed total after the spend, or ``BudgetExceeded`` / ``LedgerError``: the reserve decision.

    ``rows`` and ``meta`` must be read under the storage's write lock, and the
    spend appended under the same lock, so that no other spend slips between
    this decision and the record.
    """
    problems = _chain_problems(rows, meta)
    if problems:
        raise LedgerError(
            f"ledger {where} fails verification; no budget is spent from a ledger "
            "that may have been altered:\n  "
            + "\n  ".join(p for _, p in problems[:10])
            + "\nRun `dpsynth budget verify` for the full list."
        )
    dataset = _dataset_row(rows, dataset_id, where)
    epsilon_cap, delta_cap = dataset["epsilon_cap"], dataset["delta_cap"]
    if cost.delta > delta_cap:
        raise BudgetExceeded(
            f"dataset {dataset_id!r}: the release needs delta={cost.delta:.3g} but the dataset's delta cap "
            f"is {delta_cap:.3g}. Nothing was spent. Use a smaller delta."
        )
    _check_unit(rows, dataset_id, cost, where)
    stored = [_load_event(r) for r in rows if r["kind"] == "spend" and r["dataset_id"] == dataset_id]
    total, accountant = composed_epsilon(stored + [new_event], delta_cap)
    if not total <= epsilon_cap:
        spent, _ = composed_epsilon(stored, delta_cap)
        raise BudgetExceeded(
            f"dataset {dataset_id!r}: spending epsilon={cost.epsilon:.4g} (delta={cost.delta:.3g}) would "
            f"bring the composed total to epsilon={total:.4g} at delta={delta_cap:.3g} ({accountant}), over "
            f"the cap epsilon={epsilon_cap:.4g}. Already spent: epsilon={spent:.4g} by {len(stored)} "
            f"release(s); remaining: {max(0.0, epsilon_cap - spent):.4g}. Nothing was spent. "
            "Use a smaller epsilon, or a new dataset."
        )
    return float(total)


def _check_unit(rows: list[dict[str, Any]], dataset_id: str, cost: PrivacyCost, where: Any) -> None:
    """Refuse a spend whose unit of privacy (record, or person by an identifier column) differs from earlier ones.

    Each spend stores its unit in ``details_json["privacy_unit"]`` (absent:
    record-level, as before units existed). Spends compose into one guarantee
    only under one neighbouring relation: record-level spends protect a person
    with m rows only at about m times their epsilon, so mixing them with
    person-level spends would make the dataset's total mean neither. Spends
    on the same identifier with different bounds K compose: each trims every
    person to its own K before counting, so each is DP for adding or removing
    a whole person.
    """
    import json

    from dpsynth.privacy.unit import PrivacyUnit

    new = PrivacyUnit.from_dict(cost.details.get("privacy_unit"))
    for row in rows:
        if row["kind"] != "spend" or row["dataset_id"] != dataset_id:
            continue
        try:
            details = json.loads(row["details_json"] or "{}")
        except (TypeError, ValueError):
            details = {}
        old = PrivacyUnit.from_dict(details.get("privacy_unit") if isinstance(details, dict) else None)
        if old.column != new.column:
            raise LedgerError(
                f"dataset {dataset_id!r} in ledger {where}: spend {row['id']} was made with the unit of privacy "
                f"'{old.neighbouring_relation}'"
                + (f" (identifier column {old.column!r})" if old.column else "")
                + f", but this release asks for '{new.neighbouring_relation}'"
                + (f" (identifier column {new.column!r})" if new.column else "")
                + ". A dataset's spends compose into one guarantee only under one unit; nothing was spent. "
                "Use the same --privacy-unit as the earlier releases, or a new dataset id."
            )


def _budget_problems(rows: list[dict[str, Any]]) -> list[tuple[list[int], str]]:
    """Datasets whose stored spends compose to more than their cap (a spend written past the reserve check).

    The reserve decision is made by the writer (a client, for a shared
    database); this recomposition is how a reader catches a writer that lied.
    Datasets with a stored event that does not load are skipped: the chain
    checks report that record already.
    """
    problems: list[tuple[list[int], str]] = []
    for ds in (r for r in rows if r["kind"] == "dataset"):
        spends = [r for r in rows if r["kind"] == "spend" and r["dataset_id"] == ds["dataset_id"]]
        if not spends or not isinstance(ds["epsilon_cap"], float) or not isinstance(ds["delta_cap"], float):
            continue
        try:
            events = [_load_event(r) for r in spends]
            total, accountant = composed_epsilon(events, ds["delta_cap"])
        except (LedgerError, PrivacyAccountingError, UsageError):
            continue
        if total > ds["epsilon_cap"] * (1 + 1e-9):
            last = spends[-1]["id"]
            problems.append(
                (
                    [last],
                    f"entry {last}: dataset {ds['dataset_id']!r}'s spends compose to "
                    f"epsilon={total:.4g} at delta={ds['delta_cap']:.3g} ({accountant}), over its "
                    f"cap epsilon={ds['epsilon_cap']:.4g}: a spend was written past the reserve "
                    "check",
                )
            )
    return problems


def _verify_rows(rows: list[dict[str, Any]], meta: dict[str, str], expected_head: str | None) -> VerifyResult:
    """Every check of ``Ledger.verify``, on records read from any storage (see its docstring)."""
    problems = _chain_problems(rows, meta) + _budget_problems(rows)
    head_id, head_hash = (rows[-1]["id"], rows[-1]["hash"]) if rows else (0, GENESIS_HASH)
    if expected_head is not None:
        if not isinstance(expected_head, str):
            raise UsageError(f"expected head must be a hex string, got {type(expected_head).__name__}")
        anchor = expected_head.strip().lower()
        if len(anchor) < 12 or any(c not in "0123456789abcdef" for c in anchor):
            raise UsageError(f"expected head must be a hex hash (at least 12 digits), got {expected_head!r}")
        if not any(r["hash"].startswith(anchor) for r in rows):
            problems.append(
                (
                    [],
                    f"ledger: the anchored head hash {anchor[:16]}... is not in the chain: "
                    "records were removed or the chain was rewritten",
                )
            )
    messages = [p for _, p in problems]
    bad = sorted({i for ids, _ in problems for i in ids})
    return VerifyResult(
        ok=not problems, problems=messages, bad_entry_ids=bad, entries=len(rows), head_id=head_id, head_hash=head_hash
    )
