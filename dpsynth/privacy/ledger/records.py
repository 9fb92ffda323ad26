"""What a ledger stores, independent of where: records, their canonical hash, the value types.

A ledger is an append-only sequence of records (a dataset's creation with its
caps, a spend with its DpEvent, a spend's status), each carrying the sha256
of the previous one. This module owns the record layout (``_COLUMNS``), the
canonical JSON every hash is taken over, the public value types read back
from a ledger (:class:`LedgerEntry`, :class:`DatasetBudget`,
:class:`VerifyResult`), the composition of a dataset's spends, and the
steps every storage takes the same way (build and hash a record, summarise);
the chain's checks (verify, and what a reserve checks) are in
:mod:`~dpsynth.privacy.ledger.chain`. Storage lives in its own module (``sqlite``, ``postgres``) and
calls these, so both storages hold the same records under the same hash and
verify them with the same code.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import dp_accounting as dpa

from dpsynth._files import json_default
from dpsynth.errors import LedgerError, PrivacyAccountingError, UsageError
from dpsynth.params import POSITIVE, Constraint, Interval, Satisfies, validate_params
from dpsynth.privacy.accountant import compose, epsilon_for
from dpsynth.privacy.cost import PrivacyCost, event_from_dict, event_to_dict

LEDGER_FORMAT = "dpsynth-ledger"
LEDGER_VERSION = "1"
GENESIS_HASH = "0" * 64
DEFAULT_TIMEOUT = 30.0
STATUSES = ("reserved", "released", "withheld", "failed", "awaiting-approval")
# A spend's outcome, recorded once. ``awaiting-approval``: the gate passed under a policy that
# requires a reviewer's decision, which follows as a decision record (see ``DECISIONS``).
FINAL_STATUSES = ("released", "withheld", "failed", "awaiting-approval")
# A reviewer's decision on a spend's release: a status record of its own (who, why and the
# sha256 of each file reviewed in ``details_json``), separate from the release's outcome.
DECISIONS = ("approved", "rejected")

# Columns of the single, append-only ``entries`` table. Every column except
# ``hash`` enters the record's hash, so no field can change unnoticed.
_COLUMNS = (
    "id",
    "kind",
    "dataset_id",
    "created_at",
    "epsilon_cap",
    "delta_cap",  # kind = dataset
    "mechanism",
    "generator",
    "purpose",
    "epsilon",
    "delta",  # kind = spend
    "accountant",
    "event_json",
    "details_json",
    "parameters_json",
    "total_epsilon_after",
    "ref_id",
    "status",  # kind = status
    "prev_hash",
    "hash",
)
_REAL_COLUMNS = {"epsilon_cap", "delta_cap", "epsilon", "delta", "total_epsilon_after"}


# -- public value types ------------------------------------------------------------------
@dataclass(frozen=True)
class LedgerEntry:
    """One record of the ledger: a dataset's creation, a spend, or a spend's status change.

    For a spend, ``status`` is its current status (the latest status record
    about it, else ``reserved``) and ``hash`` is the ledger's head hash right
    after the spend was written: what a release manifest records.
    """

    id: int
    kind: str
    dataset_id: str
    created_at: str
    hash: str
    prev_hash: str
    epsilon_cap: float | None = None
    delta_cap: float | None = None
    mechanism: str | None = None
    generator: str | None = None
    purpose: str | None = None
    epsilon: float | None = None
    delta: float | None = None
    accountant: str | None = None
    event: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    total_epsilon_after: float | None = None
    ref_id: int | None = None
    status: str | None = None
    decision: str | None = None  # for a spend: a reviewer's decision on it (approved / rejected), if any

    @property
    def state(self) -> str | None:
        """A spend's state as ``budget show`` gives it: the decision if there is one, else the status."""
        return self.decision or self.status

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class DatasetBudget:
    """A dataset's caps and what has been spent on it.

    ``spent_epsilon`` composes every stored event with the accountant named
    in ``accountant`` at ``delta_cap``: the dataset has so far been released
    under an (spent_epsilon, delta_cap)-DP guarantee. ``naive_sum_epsilon``
    adds the per-entry epsilons (each at its own delta) for comparison;
    ``spent_delta`` adds the per-entry deltas, for information only.
    ``remaining_epsilon`` is ``epsilon_cap - spent_epsilon``; because
    composition is sub-additive a new spend whose own epsilon is larger may
    still fit -- :meth:`Ledger.reserve` decides by composing.
    """

    dataset_id: str
    epsilon_cap: float
    delta_cap: float
    created_at: str
    spent_epsilon: float
    accountant: str
    naive_sum_epsilon: float
    spent_delta: float
    remaining_epsilon: float
    entries: list[LedgerEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["entries"] = [e.to_dict() for e in self.entries]
        return out


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`Ledger.verify`: ``ok`` and one message per problem.

    Each message starts with ``entry N:`` naming the record at fault (or
    ``ledger:`` for a problem with the file as a whole); ``bad_entry_ids``
    lists those N. ``head_hash`` is the hash of the last record: anchor it
    outside the ledger and pass it back as ``expected_head`` later.
    """

    ok: bool
    problems: list[str]
    bad_entry_ids: list[int]
    entries: int
    head_id: int
    head_hash: str


# -- canonical form and hashing ----------------------------------------------------------
def _canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, ASCII, no NaN/inf."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False, default=json_default
    )


def _entry_hash(row: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of every column but ``hash`` (``prev_hash`` included)."""
    content = {k: row.get(k) for k in _COLUMNS if k != "hash"}
    return hashlib.sha256(_canonical_json(content).encode("ascii")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def composed_epsilon(events: list[dpa.DpEvent], delta: float) -> tuple[float, str]:
    """Epsilon of the composition of ``events`` at ``delta``, and the accountant that computed it."""
    if not events:
        return 0.0, "none"
    return _cached_epsilon(_canonical_json(event_to_dict(compose(events, regroup=True))), delta)


@lru_cache(maxsize=64)
def _cached_epsilon(event_json: str, delta: float) -> tuple[float, str]:
    # PLD takes seconds on long histories, and a release asks for the same total twice
    # (reserve, then summary for the manifest): remember results by the exact event.
    epsilon, accountant = epsilon_for(event_from_dict(json.loads(event_json)), delta, with_accountant=True)
    return float(epsilon), accountant


def _check_dataset_id(dataset_id: Any) -> str:
    if (
        not isinstance(dataset_id, str)
        or not dataset_id.strip()
        or len(dataset_id) > 200
        or any(ord(c) < 32 for c in dataset_id)
    ):
        raise UsageError(
            f"dataset id must be a non-empty printable string of at most 200 characters, got {dataset_id!r}"
        )
    return dataset_id


#: A dataset's caps. delta = 0 is refused: the accountants report an infinite epsilon there even for Laplace noise.
CAP_CONSTRAINTS: dict[str, list[Constraint]] = {
    "epsilon_cap": [POSITIVE],
    "delta_cap": [
        Satisfies(Interval(float, 0, 1, closed="neither").accepts, "a number in (0, 1), e.g. 1e-6 (well below 1/n)")
    ],
}


def _check_caps(epsilon_cap: Any, delta_cap: Any) -> tuple[float, float]:
    validate_params({"epsilon_cap": epsilon_cap, "delta_cap": delta_cap}, CAP_CONSTRAINTS, owner="ledger")
    return float(epsilon_cap), float(delta_cap)


def _to_json_text(value: Any, what: str) -> str:
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return _canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be JSON-serialisable without NaN or infinity: {exc}") from exc


def _load_event(row: dict[str, Any]) -> dpa.DpEvent:
    """A stored event, through the allow-list only; refusal names the record."""
    try:
        return event_from_dict(json.loads(row["event_json"]))
    except (PrivacyAccountingError, ValueError, TypeError, RecursionError) as exc:
        raise LedgerError(f"entry {row['id']}: stored privacy event refused: {exc}") from exc


def _dataset_row(rows: list[dict[str, Any]], dataset_id: str, path: Path) -> dict[str, Any]:
    for row in rows:
        if row["kind"] == "dataset" and row["dataset_id"] == dataset_id:
            return row
    raise _unknown(path, dataset_id, [r["dataset_id"] for r in rows if r["kind"] == "dataset"])


def _to_entry(row: dict[str, Any], status: str | None = None) -> LedgerEntry:
    def parsed(key: str) -> dict[str, Any] | None:
        return json.loads(row[key]) if row.get(key) is not None else None

    return LedgerEntry(
        id=row["id"],
        kind=row["kind"],
        dataset_id=row["dataset_id"],
        created_at=row["created_at"],
        hash=row["hash"],
        prev_hash=row["prev_hash"],
        epsilon_cap=row["epsilon_cap"],
        delta_cap=row["delta_cap"],
        mechanism=row["mechanism"],
        generator=row["generator"],
        purpose=row["purpose"],
        epsilon=row["epsilon"],
        delta=row["delta"],
        accountant=row["accountant"],
        event=parsed("event_json"),
        details=parsed("details_json"),
        parameters=parsed("parameters_json"),
        total_epsilon_after=row["total_epsilon_after"],
        ref_id=row["ref_id"],
        status=status if status is not None else row["status"],
    )


def _unknown(path: Path, dataset_id: str, known: list[str]) -> LedgerError:
    listed = ", ".join(repr(k) for k in known) or "none"
    return LedgerError(
        f"dataset {dataset_id!r} has no budget in ledger {path} (datasets: {listed}); add it with "
        f"`dpsynth budget init {path} --dataset {dataset_id} --epsilon CAP --delta CAP`"
    )


def _already(path: Path, dataset_id: str, epsilon_cap: float, delta_cap: float) -> LedgerError:
    return LedgerError(
        f"dataset {dataset_id!r} already has a budget in ledger {path} (cap epsilon={epsilon_cap:g}, "
        f"delta={delta_cap:g}). A budget is never re-initialised or reset: its spends stand. "
        "Use a different dataset id for a different table."
    )


# -- what every storage does the same way -------------------------------------------------
def _new_row(content: dict[str, Any], last_id: int, prev_hash: str) -> dict[str, Any]:
    """The complete record that follows entry ``last_id`` (hash ``prev_hash``): every column, hashed."""
    row = {k: None for k in _COLUMNS}
    row.update(content)
    row.update(id=last_id + 1, created_at=_now(), prev_hash=prev_hash)
    for key in _REAL_COLUMNS:
        if row[key] is not None:
            row[key] = float(row[key])
    row["hash"] = _entry_hash(row)
    return row


def _spend_content(
    cost: PrivacyCost, purpose: str, generator: str, parameters: dict[str, Any] | None
) -> tuple[dict[str, Any], dpa.DpEvent]:
    """A spend's record content (without its composed total) and the event as it will be reloaded."""
    if not isinstance(cost, PrivacyCost):
        raise UsageError(f"cost must be a PrivacyCost, got {type(cost).__name__}")
    if not (math.isfinite(cost.epsilon) and cost.epsilon >= 0) or not 0 <= cost.delta < 1:
        raise UsageError(f"privacy cost has an invalid epsilon={cost.epsilon!r} or delta={cost.delta!r}")
    for name, value in (("purpose", purpose), ("generator", generator)):
        if not isinstance(value, str):
            raise UsageError(f"{name} must be a string, got {type(value).__name__}")
    # What we count must be exactly what we store and will reload: round-trip it now.
    event_json = _canonical_json(event_to_dict(cost.event))
    new_event = event_from_dict(json.loads(event_json))
    content = {
        "kind": "spend",
        "mechanism": str(cost.mechanism),
        "generator": generator,
        "purpose": purpose,
        "epsilon": float(cost.epsilon),
        "delta": float(cost.delta),
        "accountant": str(cost.accountant),
        "event_json": event_json,
        "details_json": _to_json_text(cost.details, "cost details"),
        "parameters_json": _to_json_text(parameters or {}, "parameters"),
    }
    return content, new_event


def _decision_details(decision: str, by: str, reason: str, files: dict[str, str] | None) -> str:
    """The ``details_json`` of a decision record: who decided, why, and the sha256 of each file reviewed."""
    if decision not in DECISIONS:
        raise UsageError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if not isinstance(by, str) or not by.strip():
        raise UsageError(f"the approver's name must be a non-empty string, got {by!r}")
    if not isinstance(reason, str):
        raise UsageError(f"reason must be a string, got {type(reason).__name__}")
    files = dict(files or {})
    for name, digest in files.items():
        if (
            not isinstance(name, str)
            or not isinstance(digest, str)
            or len(digest) != 64
            or any(c not in "0123456789abcdef" for c in digest)
        ):
            raise UsageError(f"reviewed file {name!r}: expected a sha256 hex digest, got {digest!r}")
    return _to_json_text({"by": by, "reason": reason, "files": files}, "decision details")


def _summaries(rows: list[dict[str, Any]], dataset_id: str | None, where: Any) -> list[DatasetBudget]:
    """``Ledger.summary`` on records read from any storage."""
    datasets = [r for r in rows if r["kind"] == "dataset"]
    if dataset_id is not None:
        datasets = [r for r in datasets if r["dataset_id"] == dataset_id]
        if not datasets:
            raise _unknown(where, dataset_id, [r["dataset_id"] for r in rows if r["kind"] == "dataset"])
    statuses = {r["ref_id"]: r["status"] for r in rows if r["kind"] == "status" and r["status"] in FINAL_STATUSES}
    decisions = {r["ref_id"]: r["status"] for r in rows if r["kind"] == "status" and r["status"] in DECISIONS}
    out = []
    for ds in datasets:
        spends = [r for r in rows if r["kind"] == "spend" and r["dataset_id"] == ds["dataset_id"]]
        spent, accountant = composed_epsilon([_load_event(r) for r in spends], ds["delta_cap"])
        out.append(
            DatasetBudget(
                dataset_id=ds["dataset_id"],
                epsilon_cap=ds["epsilon_cap"],
                delta_cap=ds["delta_cap"],
                created_at=ds["created_at"],
                spent_epsilon=float(spent),
                accountant=accountant,
                naive_sum_epsilon=float(sum(r["epsilon"] for r in spends)),
                spent_delta=float(sum(r["delta"] for r in spends)),
                remaining_epsilon=max(0.0, ds["epsilon_cap"] - float(spent)),
                entries=[
                    replace(_to_entry(r, status=statuses.get(r["id"], "reserved")), decision=decisions.get(r["id"]))
                    for r in spends
                ],
            )
        )
    return out
