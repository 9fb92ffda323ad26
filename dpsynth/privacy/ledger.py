"""The persistent privacy-budget ledger: caps per dataset, atomic spends, a hash chain.

One SQLite file (stdlib ``sqlite3``) may hold several datasets, each with its
own (epsilon, delta) cap. Every spend stores the mechanism's DpEvent (as the
allow-listed JSON of :mod:`dpsynth.privacy.cost`), and the amount spent on a
dataset is always recomputed by composing *all* of its stored events with
the accountant (PLD where it supports every event, else RDP) at the dataset's
delta cap -- never by adding up per-release epsilons, which overstates the
total, and never from a running counter, which could drift from the events.

Guarantees, and how they are kept:

* **Never over the cap.** :meth:`Ledger.reserve` reads the stored events,
  composes them with the new one, checks the cap and inserts the spend in one
  ``BEGIN IMMEDIATE`` transaction: SQLite's write lock serialises concurrent
  processes, so two releases can never both pass a cap only one fits under.
  A writer waits for the lock (busy timeout, 30 s by default) instead of
  failing at once.
* **Never refunded.** A spend is recorded before the data is touched; the
  release outcome (``released`` / ``withheld`` / ``failed``) is appended later
  as a separate status record. Nothing is ever updated or deleted.
* **Tamper-evident.** Every record (dataset creation, spend, status) carries
  the sha256 of the previous record and its own sha256 over a canonical JSON
  of its content and that previous hash. :meth:`Ledger.verify` finds edited,
  deleted and reordered records and edited caps. A hash chain cannot stop
  someone with write access from rewriting the *whole* chain; the head hash
  must therefore be anchored outside the file (release manifests record it)
  and checked with ``verify(expected_head=...)``. See docs/ledger.md.

Neighbouring relation throughout: add or remove one record.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import dp_accounting as dpa

from dpsynth.errors import BudgetExceeded, LedgerError, PrivacyAccountingError, UsageError
from dpsynth.privacy.accountant import compose, epsilon_for
from dpsynth.privacy.cost import PrivacyCost, event_from_dict, event_to_dict

LEDGER_FORMAT = "dpsynth-ledger"
LEDGER_VERSION = "1"
GENESIS_HASH = "0" * 64
DEFAULT_TIMEOUT = 30.0
STATUSES = ("reserved", "released", "withheld", "failed")
FINAL_STATUSES = ("released", "withheld", "failed")

# Columns of the single, append-only ``entries`` table. Every column except
# ``hash`` enters the record's hash, so no field can change unnoticed.
_COLUMNS = (
    "id", "kind", "dataset_id", "created_at",
    "epsilon_cap", "delta_cap",                                   # kind = dataset
    "mechanism", "generator", "purpose", "epsilon", "delta",      # kind = spend
    "accountant", "event_json", "details_json", "parameters_json", "total_epsilon_after",
    "ref_id", "status",                                           # kind = status
    "prev_hash", "hash",
)
_REAL_COLUMNS = {"epsilon_cap", "delta_cap", "epsilon", "delta", "total_epsilon_after"}

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('dataset', 'spend', 'status')),
    dataset_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    epsilon_cap REAL, delta_cap REAL,
    mechanism TEXT, generator TEXT, purpose TEXT, epsilon REAL, delta REAL,
    accountant TEXT, event_json TEXT, details_json TEXT, parameters_json TEXT, total_epsilon_after REAL,
    ref_id INTEGER, status TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX entries_dataset ON entries (dataset_id, kind);
"""


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
def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, ASCII, no NaN/inf."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
                      default=_json_default)


def _entry_hash(row: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of every column but ``hash`` (``prev_hash`` included)."""
    content = {k: row.get(k) for k in _COLUMNS if k != "hash"}
    return hashlib.sha256(_canonical_json(content).encode("ascii")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _normalise(events: list[dpa.DpEvent]) -> dpa.DpEvent:
    """The composition of ``events``, with identical mechanisms grouped into one self-composition.

    Composition is commutative for the accountants, so this is the same
    guarantee; grouping lets PLD self-compose by FFT powers instead of one
    convolution per release (repeated identical releases are common).
    """
    counts: Counter = Counter()
    leaves: dict[str, dpa.DpEvent] = {}  # keyed by canonical JSON: events holding lists are unhashable

    def walk(event: dpa.DpEvent, times: int) -> None:
        if isinstance(event, dpa.ComposedDpEvent):
            for inner in event.events:
                walk(inner, times)
        elif isinstance(event, dpa.SelfComposedDpEvent):
            walk(event.event, times * event.count)
        elif not isinstance(event, dpa.NoOpDpEvent):
            key = _canonical_json(event_to_dict(event))
            leaves.setdefault(key, event)
            counts[key] += times

    for event in events:
        walk(event, 1)
    return compose(e if counts[k] == 1 else dpa.SelfComposedDpEvent(e, counts[k]) for k, e in leaves.items())


def _composed_epsilon(events: list[dpa.DpEvent], delta: float) -> tuple[float, str]:
    """Epsilon of the composition of ``events`` at ``delta``, and the accountant that computed it."""
    if not events:
        return 0.0, "none"
    return _cached_epsilon(_canonical_json(event_to_dict(_normalise(events))), delta)


@lru_cache(maxsize=64)
def _cached_epsilon(event_json: str, delta: float) -> tuple[float, str]:
    # PLD takes seconds on long histories, and a release asks for the same total twice
    # (reserve, then summary for the manifest): remember results by the exact event.
    epsilon, accountant = epsilon_for(event_from_dict(json.loads(event_json)), delta, with_accountant=True)
    return float(epsilon), accountant


def _check_dataset_id(dataset_id: Any) -> str:
    if not isinstance(dataset_id, str) or not dataset_id.strip() or len(dataset_id) > 200 \
            or any(ord(c) < 32 for c in dataset_id):
        raise UsageError(f"dataset id must be a non-empty printable string of at most 200 characters, "
                         f"got {dataset_id!r}")
    return dataset_id


def _check_caps(epsilon_cap: Any, delta_cap: Any) -> tuple[float, float]:
    if isinstance(epsilon_cap, bool) or not isinstance(epsilon_cap, (int, float)) \
            or not math.isfinite(epsilon_cap) or epsilon_cap <= 0:
        raise UsageError(f"epsilon cap must be a positive finite number, got {epsilon_cap!r}")
    if isinstance(delta_cap, bool) or not isinstance(delta_cap, (int, float)) or not 0 < delta_cap < 1:
        # delta = 0 is refused: the accountants report an infinite epsilon there even for Laplace noise
        raise UsageError(f"delta cap must be in (0, 1), e.g. 1e-6 (well below 1/n), got {delta_cap!r}")
    return float(epsilon_cap), float(delta_cap)


# -- the ledger --------------------------------------------------------------------------
class Ledger:
    """A privacy-budget ledger file. ``Ledger(path)`` opens an existing one.

    Each operation opens its own short-lived SQLite connection, so a
    ``Ledger`` holds no open handle, can be passed to other processes, and
    needs no closing. ``timeout`` is how long a writer waits for another
    process's transaction to finish before giving up with ``LedgerError``.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        if not self.path.is_file():
            raise LedgerError(f"no ledger at {self.path}: create one with "
                              "`dpsynth budget init LEDGER --dataset ID --epsilon CAP --delta CAP`")
        con = self._connect(readonly=True)
        try:
            self._check_format(con)
        finally:
            con.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], dataset_id: str, epsilon_cap: float, delta_cap: float,
               timeout: float = DEFAULT_TIMEOUT) -> "Ledger":
        """Create a new ledger file holding one dataset; refuses if ``path`` exists.

        The file is built under a temporary name and linked into place, so
        a ledger is either complete or absent, and a concurrent ``create``
        cannot overwrite one that another process just made.
        """
        path = Path(path)
        dataset_id = _check_dataset_id(dataset_id)
        epsilon_cap, delta_cap = _check_caps(epsilon_cap, delta_cap)
        if path.exists():
            raise LedgerError(f"{path} already exists: open it with Ledger(path) and add datasets to it")
        try:
            _build(path, dataset_id, epsilon_cap, delta_cap)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot create ledger {path}: {exc}") from exc
        return cls(path, timeout=timeout)

    def add_dataset(self, dataset_id: str, epsilon_cap: float, delta_cap: float) -> LedgerEntry:
        """Add a dataset with its caps; refuses one already in the ledger (caps are never reset)."""
        dataset_id = _check_dataset_id(dataset_id)
        epsilon_cap, delta_cap = _check_caps(epsilon_cap, delta_cap)
        with self._write() as con:
            existing = con.execute("SELECT id, epsilon_cap, delta_cap FROM entries WHERE kind = 'dataset' "
                                   "AND dataset_id = ?", (dataset_id,)).fetchone()
            if existing is not None:
                raise _already(self.path, dataset_id, existing[1], existing[2])
            row = _append(con, {"kind": "dataset", "dataset_id": dataset_id, "epsilon_cap": epsilon_cap,
                                "delta_cap": delta_cap})
        return _to_entry(row)

    # -- spending ------------------------------------------------------------------------
    def reserve(self, dataset_id: str, cost: PrivacyCost, purpose: str = "", generator: str = "",
                parameters: dict[str, Any] | None = None) -> LedgerEntry:
        """Record ``cost`` as spent on ``dataset_id``, or raise ``BudgetExceeded``.

        In one write transaction: verify the chain, compose every stored
        event of the dataset with ``cost.event``, and insert the spend only if
        the composed epsilon at the dataset's delta cap stays within the
        epsilon cap (and ``cost.delta`` within the delta cap). The spend is
        final: call :meth:`mark` with the outcome later; it is never refunded.
        """
        dataset_id = _check_dataset_id(dataset_id)
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
        details_json = _to_json_text(cost.details, "cost details")
        parameters_json = _to_json_text(parameters or {}, "parameters")

        with self._write() as con:
            rows = _read_rows(con)
            problems = _chain_problems(rows, _read_meta(con))
            if problems:
                raise LedgerError(f"ledger {self.path} fails verification; no budget is spent from a ledger "
                                  "that may have been altered:\n  " + "\n  ".join(p for _, p in problems[:10])
                                  + "\nRun `dpsynth budget verify` for the full list.")
            dataset = _dataset_row(rows, dataset_id, self.path)
            epsilon_cap, delta_cap = dataset["epsilon_cap"], dataset["delta_cap"]
            if cost.delta > delta_cap:
                raise BudgetExceeded(
                    f"dataset {dataset_id!r}: the release needs delta={cost.delta:.3g} but the dataset's delta cap "
                    f"is {delta_cap:.3g}. Nothing was spent. Use a smaller delta.")
            stored = [_load_event(r) for r in rows if r["kind"] == "spend" and r["dataset_id"] == dataset_id]
            total, accountant = _composed_epsilon(stored + [new_event], delta_cap)
            if not total <= epsilon_cap:
                spent, _ = _composed_epsilon(stored, delta_cap)
                raise BudgetExceeded(
                    f"dataset {dataset_id!r}: spending epsilon={cost.epsilon:.4g} (delta={cost.delta:.3g}) would "
                    f"bring the composed total to epsilon={total:.4g} at delta={delta_cap:.3g} ({accountant}), over "
                    f"the cap epsilon={epsilon_cap:.4g}. Already spent: epsilon={spent:.4g} by {len(stored)} "
                    f"release(s); remaining: {max(0.0, epsilon_cap - spent):.4g}. Nothing was spent. "
                    "Use a smaller epsilon, or a new dataset.")
            row = _append(con, {
                "kind": "spend", "dataset_id": dataset_id, "mechanism": str(cost.mechanism),
                "generator": generator, "purpose": purpose, "epsilon": float(cost.epsilon),
                "delta": float(cost.delta), "accountant": str(cost.accountant), "event_json": event_json,
                "details_json": details_json, "parameters_json": parameters_json,
                "total_epsilon_after": float(total)})
        return _to_entry(row, status="reserved")

    def mark(self, entry_id: int, status: str) -> LedgerEntry:
        """Append the outcome of spend ``entry_id``: ``released``, ``withheld`` or ``failed``.

        The spend itself is left as it is (its budget stays spent); a spend
        can be marked once. Returns the new status record.
        """
        if status not in FINAL_STATUSES:
            raise UsageError(f"status must be one of {', '.join(FINAL_STATUSES)}, got {status!r}")
        if isinstance(entry_id, bool) or not isinstance(entry_id, int):
            raise UsageError(f"entry id must be an integer, got {entry_id!r}")
        with self._write() as con:
            spend = con.execute("SELECT kind, dataset_id FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if spend is None or spend[0] != "spend":
                raise LedgerError(f"ledger {self.path} has no spend with id {entry_id}")
            previous = con.execute("SELECT id, status FROM entries WHERE kind = 'status' AND ref_id = ? "
                                   "ORDER BY id DESC LIMIT 1", (entry_id,)).fetchone()
            if previous is not None:
                raise LedgerError(f"spend {entry_id} was already marked {previous[1]!r} (entry {previous[0]}); "
                                  "an outcome is recorded once")
            row = _append(con, {"kind": "status", "dataset_id": spend[1], "ref_id": entry_id, "status": status})
        return _to_entry(row)

    # -- reading -------------------------------------------------------------------------
    def datasets(self) -> list[str]:
        """Dataset ids in the order they were added."""
        with self._read() as con:
            return [r[0] for r in con.execute("SELECT dataset_id FROM entries WHERE kind = 'dataset' ORDER BY id")]

    def require_dataset(self, dataset_id: str) -> None:
        """Raise ``LedgerError`` unless ``dataset_id`` has a budget in this ledger."""
        if dataset_id not in self.datasets():
            raise _unknown(self.path, dataset_id, self.datasets())

    def caps(self, dataset_id: str) -> tuple[float, float]:
        """``(epsilon_cap, delta_cap)`` of ``dataset_id``; ``LedgerError`` if it has no budget here."""
        with self._read() as con:
            row = con.execute("SELECT epsilon_cap, delta_cap FROM entries WHERE kind = 'dataset' AND dataset_id = ?",
                              (dataset_id,)).fetchone()
        if row is None:
            raise _unknown(self.path, dataset_id, self.datasets())
        return float(row[0]), float(row[1])

    def head_hash(self) -> str:
        """Hash of the last record: anchor it outside the ledger (manifest, ticket)."""
        with self._read() as con:
            row = con.execute("SELECT hash FROM entries ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else GENESIS_HASH

    def summary(self, dataset_id: str | None = None) -> list[DatasetBudget]:
        """Budget of each dataset (or only ``dataset_id``): caps, composed and naive spend, entries.

        Stored events are parsed with the allow-list; a record that does not
        parse raises ``LedgerError`` naming it. Run :meth:`verify` to check
        the hash chain as well.
        """
        with self._read() as con:
            rows = _read_rows(con)
        datasets = [r for r in rows if r["kind"] == "dataset"]
        if dataset_id is not None:
            datasets = [r for r in datasets if r["dataset_id"] == dataset_id]
            if not datasets:
                raise _unknown(self.path, dataset_id, [r["dataset_id"] for r in rows if r["kind"] == "dataset"])
        statuses = {r["ref_id"]: r["status"] for r in rows if r["kind"] == "status"}
        out = []
        for ds in datasets:
            spends = [r for r in rows if r["kind"] == "spend" and r["dataset_id"] == ds["dataset_id"]]
            spent, accountant = _composed_epsilon([_load_event(r) for r in spends], ds["delta_cap"])
            out.append(DatasetBudget(
                dataset_id=ds["dataset_id"], epsilon_cap=ds["epsilon_cap"], delta_cap=ds["delta_cap"],
                created_at=ds["created_at"], spent_epsilon=float(spent), accountant=accountant,
                naive_sum_epsilon=float(sum(r["epsilon"] for r in spends)),
                spent_delta=float(sum(r["delta"] for r in spends)),
                remaining_epsilon=max(0.0, ds["epsilon_cap"] - float(spent)),
                entries=[_to_entry(r, status=statuses.get(r["id"], "reserved")) for r in spends]))
        return out

    def verify(self, expected_head: str | None = None) -> VerifyResult:
        """Check the hash chain, the records' content and, if given, an externally anchored head hash.

        Detects an edited record (content no longer matches its hash), a
        deleted, inserted or reordered record (gap in the ids or broken
        ``prev_hash`` link), records deleted from the end (head recorded in
        the file's metadata, or the anchor, no longer found), stored events
        outside the allow-list, and records that contradict each other.
        ``expected_head`` (a full hash or a prefix of at least 12 hex digits)
        passes if it is the hash of any record: the ledger may have grown
        since it was anchored, but what was anchored must still be there.
        """
        with self._read() as con:
            rows = _read_rows(con)
            meta = _read_meta(con)
        problems = _chain_problems(rows, meta)
        head_id, head_hash = (rows[-1]["id"], rows[-1]["hash"]) if rows else (0, GENESIS_HASH)
        if expected_head is not None:
            if not isinstance(expected_head, str):
                raise UsageError(f"expected head must be a hex string, got {type(expected_head).__name__}")
            anchor = expected_head.strip().lower()
            if len(anchor) < 12 or any(c not in "0123456789abcdef" for c in anchor):
                raise UsageError(f"expected head must be a hex hash (at least 12 digits), got {expected_head!r}")
            if not any(r["hash"].startswith(anchor) for r in rows):
                problems.append(([], f"ledger: the anchored head hash {anchor[:16]}... is not in the chain: "
                                       "records were removed or the chain was rewritten"))
        messages = [p for _, p in problems]
        bad = sorted({i for ids, _ in problems for i in ids})
        return VerifyResult(ok=not problems, problems=messages, bad_entry_ids=bad, entries=len(rows),
                            head_id=head_id, head_hash=head_hash)

    # -- connections ---------------------------------------------------------------------
    def _connect(self, readonly: bool = False) -> sqlite3.Connection:
        # mode=rw/ro: never create a file by accident (ro also lets auditors read a file they cannot
        # write); isolation_level=None: we issue BEGIN ourselves.
        mode = "ro" if readonly else "rw"
        try:
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode={mode}", uri=True, timeout=self.timeout,
                                  isolation_level=None)
            con.execute("PRAGMA synchronous = FULL")  # a committed spend survives a power cut
            return con
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from exc

    def _check_format(self, con: sqlite3.Connection) -> None:
        try:
            meta = _read_meta(con)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path} is not a dpsynth ledger ({exc})") from exc
        if meta.get("format") != LEDGER_FORMAT:
            raise LedgerError(f"{self.path} is not a dpsynth ledger (no '{LEDGER_FORMAT}' format marker)")
        if meta.get("version") != LEDGER_VERSION:
            raise LedgerError(f"ledger {self.path} has format version {meta.get('version')!r}; this dpsynth "
                              f"reads version {LEDGER_VERSION}")

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """Turn sqlite3's errors into LedgerError messages that name the file."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise _sqlite_error(self.path, exc, self.timeout) from exc
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"ledger {self.path} is unreadable or corrupt: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: a consistent snapshot, released before any slow computation."""
        con = self._connect(readonly=True)
        try:
            with self._sqlite_errors():
                con.execute("BEGIN")
                yield con
                con.execute("COMMIT")
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The write lock (``BEGIN IMMEDIATE``), held until commit; rolled back on any error."""
        con = self._connect()
        try:
            with self._sqlite_errors():
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        finally:
            con.close()

def init_ledger(path: str | os.PathLike[str], dataset_id: str, epsilon_cap: float, delta_cap: float,
                timeout: float = DEFAULT_TIMEOUT) -> Ledger:
    """``dpsynth budget init``: create the ledger with this dataset, or add the dataset to an existing one.

    Refuses (``LedgerError``) a dataset already in the ledger: its caps and
    spends stand, and re-initialising would be a way to reset a budget.
    """
    path = Path(path)
    if not path.exists():
        try:
            return Ledger.create(path, dataset_id, epsilon_cap, delta_cap, timeout=timeout)
        except LedgerError:
            if not path.exists():
                raise
            # another process created it in the meantime: add to it below
    ledger = Ledger(path, timeout=timeout)
    ledger.add_dataset(dataset_id, epsilon_cap, delta_cap)
    return ledger


# -- helpers -----------------------------------------------------------------------------
def _build(path: Path, dataset_id: str, epsilon_cap: float, delta_cap: float) -> None:
    """Write a complete one-dataset ledger under a temporary name, then link it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.executescript(_SCHEMA)
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                ("format", LEDGER_FORMAT), ("version", LEDGER_VERSION), ("created_at", _now()),
                ("head_id", "0"), ("head_hash", GENESIS_HASH)])
            _append(con, {"kind": "dataset", "dataset_id": dataset_id, "epsilon_cap": epsilon_cap,
                          "delta_cap": delta_cap})
            con.execute("COMMIT")
        finally:
            con.close()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails rather than overwrite
        except FileExistsError:
            raise LedgerError(f"{path} already exists (created concurrently): open it with Ledger(path)") \
                from None
        except OSError:  # a file system without hard links: rename (a tiny race on concurrent creation)
            if path.exists():
                raise LedgerError(f"{path} already exists: open it with Ledger(path)") from None
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _to_json_text(value: Any, what: str) -> str:
    if not isinstance(value, dict):
        raise UsageError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return _canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{what} must be JSON-serialisable without NaN or infinity: {exc}") from exc


def _read_meta(con: sqlite3.Connection) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM meta").fetchall())


def _read_rows(con: sqlite3.Connection) -> list[dict[str, Any]]:
    cursor = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM entries ORDER BY id")
    return [dict(zip(_COLUMNS, r)) for r in cursor.fetchall()]


def _append(con: sqlite3.Connection, content: dict[str, Any]) -> dict[str, Any]:
    """Insert one record at the head of the chain (caller holds the write lock)."""
    last = con.execute("SELECT id, hash FROM entries ORDER BY id DESC LIMIT 1").fetchone()
    last_id, prev_hash = last if last else (0, GENESIS_HASH)
    row = {k: None for k in _COLUMNS}
    row.update(content)
    row.update(id=last_id + 1, created_at=_now(), prev_hash=prev_hash)
    for key in _REAL_COLUMNS:
        if row[key] is not None:
            row[key] = float(row[key])
    row["hash"] = _entry_hash(row)
    con.execute(f"INSERT INTO entries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                [row[k] for k in _COLUMNS])
    con.executemany("UPDATE meta SET value = ? WHERE key = ?",
                    [(str(row["id"]), "head_id"), (row["hash"], "head_hash")])
    return row


def _load_event(row: dict[str, Any]) -> dpa.DpEvent:
    """A stored event, through the allow-list only; refusal names the record."""
    try:
        return event_from_dict(json.loads(row["event_json"]))
    except (PrivacyAccountingError, ValueError, TypeError, RecursionError) as exc:
        raise LedgerError(f"entry {row['id']}: stored privacy event refused: {exc}") from exc


def _chain_problems(rows: list[dict[str, Any]], meta: dict[str, str]) -> list[tuple[list[int], str]]:
    """Every way the records fail the hash chain or contradict each other, as (entry ids at fault, message)."""
    problems: list[tuple[list[int], str]] = []
    prev_id, prev_hash = 0, GENESIS_HASH
    datasets: dict[str, int] = {}
    spends: dict[int, str] = {}
    marked: set[int] = set()
    for row in rows:
        i = row["id"]
        if i != prev_id + 1:
            missing = list(range(prev_id + 1, min(i, prev_id + 101)))
            problems.append(([*missing, i], f"entry {i}: follows entry {prev_id} (ids {prev_id + 1}..{i - 1} are "
                                            "missing): records were deleted or renumbered"))
        if row["prev_hash"] != prev_hash:
            problems.append(([i], f"entry {i}: its link to the previous record does not match entry {prev_id}'s "
                                "hash: a record before it was deleted, inserted, edited or moved"))
        if _entry_hash(row) != row["hash"]:
            problems.append(([i], f"entry {i}: content does not match its hash: the record was edited"))
        problems.extend(([i], f"entry {i}: {m}") for m in _semantic_problems(row, datasets, spends, marked))
        prev_id, prev_hash = i, row["hash"]
    if rows and rows[0]["kind"] != "dataset":
        problems.append(([rows[0]["id"]], f"entry {rows[0]['id']}: a ledger must begin with a dataset record"))
    head = (str(rows[-1]["id"]), rows[-1]["hash"]) if rows else ("0", GENESIS_HASH)
    if (meta.get("head_id"), meta.get("head_hash")) != head:
        problems.append(([], f"ledger: the head recorded in the file (entry {meta.get('head_id')}) is not the "
                               f"last record (entry {head[0]}): records were deleted from the end, or added "
                               "outside dpsynth"))
    return problems


def _semantic_problems(row: dict[str, Any], datasets: dict[str, int], spends: dict[int, str],
                       marked: set[int]) -> list[str]:
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
        if row["status"] not in FINAL_STATUSES:
            return [f"unknown status {row['status']!r}"]
        if ref in marked:
            return [f"second status record for spend {ref}"]
        marked.add(ref)
        return []
    return [f"unknown record kind {kind!r}"]


def _dataset_row(rows: list[dict[str, Any]], dataset_id: str, path: Path) -> dict[str, Any]:
    for row in rows:
        if row["kind"] == "dataset" and row["dataset_id"] == dataset_id:
            return row
    raise _unknown(path, dataset_id, [r["dataset_id"] for r in rows if r["kind"] == "dataset"])


def _to_entry(row: dict[str, Any], status: str | None = None) -> LedgerEntry:
    def parsed(key: str) -> dict[str, Any] | None:
        return json.loads(row[key]) if row.get(key) is not None else None

    return LedgerEntry(
        id=row["id"], kind=row["kind"], dataset_id=row["dataset_id"], created_at=row["created_at"],
        hash=row["hash"], prev_hash=row["prev_hash"], epsilon_cap=row["epsilon_cap"], delta_cap=row["delta_cap"],
        mechanism=row["mechanism"], generator=row["generator"], purpose=row["purpose"], epsilon=row["epsilon"],
        delta=row["delta"], accountant=row["accountant"], event=parsed("event_json"),
        details=parsed("details_json"), parameters=parsed("parameters_json"),
        total_epsilon_after=row["total_epsilon_after"], ref_id=row["ref_id"],
        status=status if status is not None else row["status"])


def _unknown(path: Path, dataset_id: str, known: list[str]) -> LedgerError:
    listed = ", ".join(repr(k) for k in known) or "none"
    return LedgerError(f"dataset {dataset_id!r} has no budget in ledger {path} (datasets: {listed}); add it with "
                       f"`dpsynth budget init {path} --dataset {dataset_id} --epsilon CAP --delta CAP`")


def _already(path: Path, dataset_id: str, epsilon_cap: float, delta_cap: float) -> LedgerError:
    return LedgerError(f"dataset {dataset_id!r} already has a budget in ledger {path} (cap epsilon={epsilon_cap:g}, "
                       f"delta={delta_cap:g}). A budget is never re-initialised or reset: its spends stand. "
                       "Use a different dataset id for a different table.")


def _sqlite_error(path: Path, exc: sqlite3.OperationalError, timeout: float) -> LedgerError:
    if "locked" in str(exc) or "busy" in str(exc):
        return LedgerError(f"ledger {path} stayed locked by another process for {timeout:g} s; nothing was "
                           "written. Retry when the other release has finished.")
    return LedgerError(f"ledger {path}: {exc}")
