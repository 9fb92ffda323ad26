"""The SQLite ledger: caps per dataset, atomic spends, a hash chain, in one file.

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

import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dpsynth.errors import LedgerError, UsageError
from dpsynth.params import Interval, validate_params
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.ledger.chain import _check_spend, _verify_rows
from dpsynth.privacy.ledger.records import (
    _COLUMNS,
    DECISIONS,
    DEFAULT_TIMEOUT,
    FINAL_STATUSES,
    GENESIS_HASH,
    LEDGER_FORMAT,
    LEDGER_VERSION,
    DatasetBudget,
    LedgerEntry,
    VerifyResult,
    _already,
    _check_caps,
    _check_dataset_id,
    _decision_details,
    _new_row,
    _now,
    _spend_content,
    _summaries,
    _to_entry,
    _unknown,
)

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
            raise LedgerError(
                f"no ledger at {self.path}: create one with "
                "`dpsynth budget init LEDGER --dataset ID --epsilon CAP --delta CAP`"
            )
        con = self._connect(readonly=True)
        try:
            self._check_format(con)
        finally:
            con.close()

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    @property
    def location(self) -> str:
        """Where the ledger is, as printed and recorded in manifests (the file path)."""
        return str(self.path)

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        dataset_id: str,
        epsilon_cap: float,
        delta_cap: float,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Ledger:
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
            existing = con.execute(
                "SELECT id, epsilon_cap, delta_cap FROM entries WHERE kind = 'dataset' AND dataset_id = ?",
                (dataset_id,),
            ).fetchone()
            if existing is not None:
                raise _already(self.path, dataset_id, existing[1], existing[2])
            row = _append(
                con, {"kind": "dataset", "dataset_id": dataset_id, "epsilon_cap": epsilon_cap, "delta_cap": delta_cap}
            )
        return _to_entry(row)

    # -- spending ------------------------------------------------------------------------
    def reserve(
        self,
        dataset_id: str,
        cost: PrivacyCost,
        purpose: str = "",
        generator: str = "",
        parameters: dict[str, Any] | None = None,
    ) -> LedgerEntry:
        """Record ``cost`` as spent on ``dataset_id``, or raise ``BudgetExceeded``.

        In one write transaction: verify the chain, compose every stored
        event of the dataset with ``cost.event``, and insert the spend only if
        the composed epsilon at the dataset's delta cap stays within the
        epsilon cap (and ``cost.delta`` within the delta cap). The spend is
        final: call :meth:`mark` with the outcome later; it is never refunded.
        """
        dataset_id = _check_dataset_id(dataset_id)
        content, new_event = _spend_content(cost, purpose, generator, parameters)
        with self._write() as con:
            total = _check_spend(_read_rows(con), _read_meta(con), dataset_id, cost, new_event, self.path)
            row = _append(con, {**content, "dataset_id": dataset_id, "total_epsilon_after": total})
        return _to_entry(row, status="reserved")

    def mark(self, entry_id: int, status: str) -> LedgerEntry:
        """Append the outcome of spend ``entry_id``: ``released``, ``withheld`` or ``failed``.

        The spend itself is left as it is (its budget stays spent); a spend
        can be marked once. Returns the new status record.
        """
        if status not in FINAL_STATUSES:
            raise UsageError(f"status must be one of {', '.join(FINAL_STATUSES)}, got {status!r}")
        validate_params({"entry_id": entry_id}, {"entry_id": [Interval(int, None, None)]}, owner="ledger")
        row = self._append_status_once(
            entry_id,
            status,
            FINAL_STATUSES,
            None,
            lambda prev: f"was already marked {prev[1]!r} (entry {prev[0]}); an outcome is recorded once",
        )
        return _to_entry(row)

    def record_decision(
        self, entry_id: int, decision: str, by: str, reason: str = "", files: dict[str, str] | None = None
    ) -> LedgerEntry:
        """Append a reviewer's decision (``approved`` / ``rejected``) on spend ``entry_id``, once.

        ``details`` of the record hold who decided, why, and ``files``
        (name -> sha256 of each file reviewed); the hash chain covers them.
        The spend's budget stays spent whatever the decision.
        """
        details_json = _decision_details(decision, by, reason, files)
        validate_params({"entry_id": entry_id}, {"entry_id": [Interval(int, None, None)]}, owner="ledger")
        row = self._append_status_once(
            entry_id,
            decision,
            DECISIONS,
            details_json,
            lambda prev: f"was already {prev[1]} (entry {prev[0]}); a decision is recorded once",
        )
        return _to_entry(row)

    def _append_status_once(
        self,
        entry_id: int,
        status: str,
        group: tuple[str, ...],
        details_json: str | None,
        already: Callable[[tuple], str],
    ) -> dict[str, Any]:
        """Append a status record on spend ``entry_id``, refused if one of ``group`` is already recorded."""
        with self._write() as con:
            spend = con.execute("SELECT kind, dataset_id FROM entries WHERE id = ?", (entry_id,)).fetchone()
            if spend is None or spend[0] != "spend":
                raise LedgerError(f"ledger {self.path} has no spend with id {entry_id}")
            previous = con.execute(
                "SELECT id, status FROM entries WHERE kind = 'status' AND ref_id = ? AND status IN "
                f"({', '.join('?' * len(group))}) ORDER BY id DESC LIMIT 1",
                (entry_id, *group),
            ).fetchone()
            if previous is not None:
                raise LedgerError(f"spend {entry_id} {already(previous)}")
            content = {"kind": "status", "dataset_id": spend[1], "ref_id": entry_id, "status": status}
            if details_json is not None:
                content["details_json"] = details_json
            return _append(con, content)

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
            row = con.execute(
                "SELECT epsilon_cap, delta_cap FROM entries WHERE kind = 'dataset' AND dataset_id = ?", (dataset_id,)
            ).fetchone()
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
        return _summaries(rows, dataset_id, self.path)

    def status_records(self, entry_id: int) -> list[LedgerEntry]:
        """Every status and decision record about spend ``entry_id``, in ledger order."""
        with self._read() as con:
            rows = _read_rows(con)
        return [_to_entry(r) for r in rows if r["kind"] == "status" and r["ref_id"] == entry_id]

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
        return _verify_rows(rows, meta, expected_head)

    # -- connections ---------------------------------------------------------------------
    def _connect(self, readonly: bool = False) -> sqlite3.Connection:
        # mode=rw/ro: never create a file by accident (ro also lets auditors read a file they cannot
        # write); isolation_level=None: we issue BEGIN ourselves.
        mode = "ro" if readonly else "rw"
        try:
            con = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode={mode}", uri=True, timeout=self.timeout, isolation_level=None
            )
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
            raise LedgerError(
                f"ledger {self.path} has format version {meta.get('version')!r}; this dpsynth "
                f"reads version {LEDGER_VERSION}"
            )

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


def init_ledger(
    path: str | os.PathLike[str],
    dataset_id: str,
    epsilon_cap: float,
    delta_cap: float,
    timeout: float = DEFAULT_TIMEOUT,
) -> Ledger:
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
            con.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", LEDGER_FORMAT),
                    ("version", LEDGER_VERSION),
                    ("created_at", _now()),
                    ("head_id", "0"),
                    ("head_hash", GENESIS_HASH),
                ],
            )
            _append(
                con, {"kind": "dataset", "dataset_id": dataset_id, "epsilon_cap": epsilon_cap, "delta_cap": delta_cap}
            )
            con.execute("COMMIT")
        finally:
            con.close()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails rather than overwrite
        except FileExistsError:
            raise LedgerError(f"{path} already exists (created concurrently): open it with Ledger(path)") from None
        except OSError:  # a file system without hard links: rename (a tiny race on concurrent creation)
            if path.exists():
                raise LedgerError(f"{path} already exists: open it with Ledger(path)") from None
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def _read_meta(con: sqlite3.Connection) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM meta").fetchall())


def _read_rows(con: sqlite3.Connection) -> list[dict[str, Any]]:
    cursor = con.execute(f"SELECT {', '.join(_COLUMNS)} FROM entries ORDER BY id")
    return [dict(zip(_COLUMNS, r)) for r in cursor.fetchall()]


def _append(con: sqlite3.Connection, content: dict[str, Any]) -> dict[str, Any]:
    """Insert one record at the head of the chain (caller holds the write lock)."""
    last = con.execute("SELECT id, hash FROM entries ORDER BY id DESC LIMIT 1").fetchone()
    last_id, prev_hash = last if last else (0, GENESIS_HASH)
    row = _new_row(content, last_id, prev_hash)
    con.execute(
        f"INSERT INTO entries ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
        [row[k] for k in _COLUMNS],
    )
    con.executemany(
        "UPDATE meta SET value = ? WHERE key = ?", [(str(row["id"]), "head_id"), (row["hash"], "head_hash")]
    )
    return row


def _sqlite_error(path: Path, exc: sqlite3.OperationalError, timeout: float) -> LedgerError:
    if "locked" in str(exc) or "busy" in str(exc):
        return LedgerError(
            f"ledger {path} stayed locked by another process for {timeout:g} s; nothing was "
            "written. Retry when the other release has finished."
        )
    return LedgerError(f"ledger {path}: {exc}")
