"""The PostgreSQL ledger: the same records and semantics as the SQLite file, shared by many machines.

``PostgresLedger("postgresql://user@host/db?schema=dpsynth")`` keeps the
ledger in one schema of a PostgreSQL database (psycopg 3): the same
``entries`` records (:data:`~dpsynth.privacy.ledger.records._COLUMNS`), the
same canonical hash, the same composition and the same checks as
:class:`~dpsynth.privacy.ledger.sqlite.Ledger`, so ``verify`` is one code
path for both storages. What changes is who may write what, which the
*database* enforces (docs/ledger.md, "PostgreSQL"):

* :meth:`PostgresLedger.install` creates the schema, owned by the NOLOGIN
  group role ``<prefix>_admin``, and two more NOLOGIN group roles that login
  users are granted: ``<prefix>_operator`` and ``<prefix>_approver``.
* Nobody but the owner holds INSERT, UPDATE, DELETE or TRUNCATE on a table.
  Records are appended only through SECURITY DEFINER functions, each granted
  to one role: ``append_spend`` and ``append_status`` to the operator,
  ``append_decision`` to the approver, ``append_dataset`` (caps) to the
  admin alone. A trigger refuses UPDATE, DELETE and TRUNCATE on ``entries``
  for everyone, owner included; only the owner (or a superuser) can disable
  it, and ``verify`` then catches what was changed.
* Each function checks what it can without trusting the client: the record
  extends the current head (id and ``prev_hash``), its time is the server's
  within five minutes, the referenced spend exists and is marked once, the
  caps are valid, and a spend's stated composed total is within the cap and
  not below the dataset's previous total. The composition itself (PLD/RDP)
  runs in the client, as for SQLite; a client that lies about it is caught
  by ``verify``, which recomposes every dataset from its stored events.

A reserve is one transaction: ``begin_append()`` takes a row lock on the
ledger's head (``SELECT ... FOR UPDATE``), which serialises every writer of
the ledger; the client then reads the records, composes, and appends before
it commits. Neighbouring relation throughout: add or remove one record.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from dpsynth.errors import LedgerError, UsageError
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.ledger.chain import _check_spend, _verify_rows
from dpsynth.privacy.ledger.location import is_url
from dpsynth.privacy.ledger.postgres_schema import role_names, schema_sql
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

DEFAULT_SCHEMA = "dpsynth"
DEFAULT_ROLES_PREFIX = "dpsynth"
CONNECT_TIMEOUT = 10
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


def _split_url(url: str) -> tuple[str, str, str]:
    """(libpq URL without our ``schema`` parameter, schema name, URL safe to print: no password)."""
    if not isinstance(url, str) or not is_url(url):
        raise UsageError(f"a PostgreSQL ledger is a postgresql:// URL, got {url!r}", parameter="ledger")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    schema = schemas[-1] if schemas else DEFAULT_SCHEMA
    if not _IDENTIFIER.match(schema):
        raise UsageError(
            f"ledger URL: schema must be a lower-case SQL identifier of at most 40 characters "
            f"(letters, digits, _), got {schema!r}",
            parameter="ledger",
        )
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
    netloc = parts.netloc.rsplit("@", 1)
    shown_netloc = (netloc[0].split(":", 1)[0] + "@" + netloc[1]) if len(netloc) == 2 else netloc[0]
    shown_query = urlencode([(k, v) for k, v in query if k not in ("schema", "password")] + [("schema", schema)])
    return conninfo, schema, urlunsplit((parts.scheme, shown_netloc, parts.path, shown_query, ""))


# -- the ledger ----------------------------------------------------------------------------------
class PostgresLedger:
    """A privacy-budget ledger in a PostgreSQL schema; ``PostgresLedger(url)`` opens an installed one.

    ``url`` is a libpq URL plus an optional ``schema`` parameter (default
    ``dpsynth``): ``postgresql://alice@db.internal/budgets?schema=dpsynth``.
    Prefer a password file (``~/.pgpass``) or ``PGPASSWORD`` to a password in
    the URL; printed locations never show one. Each operation opens its own
    connection, so the object holds no handle and can be passed to other
    processes. ``timeout`` bounds the wait for another writer's lock.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, connect_timeout: int = CONNECT_TIMEOUT) -> None:
        self._conninfo, self.schema, self.location = _split_url(url)
        self.url = url
        self.timeout = float(timeout)
        self.connect_timeout = int(connect_timeout)
        with self._read() as cur:
            meta = self._meta(cur)
        if meta.get("format") != LEDGER_FORMAT:
            raise LedgerError(
                f"schema {self.schema!r} at {self.location} is not a dpsynth ledger "
                f"(no '{LEDGER_FORMAT}' format marker)"
            )
        if meta.get("version") != LEDGER_VERSION:
            raise LedgerError(
                f"ledger {self.location} has format version {meta.get('version')!r}; this dpsynth "
                f"reads version {LEDGER_VERSION}"
            )
        self.roles = {k: meta[f"role_{k}"] for k in ("admin", "operator", "approver") if f"role_{k}" in meta}

    def __repr__(self) -> str:
        return f"PostgresLedger({self.location!r})"

    # -- installation (a database administrator, once) ---------------------------------------
    @classmethod
    def install(
        cls, url: str, roles_prefix: str = DEFAULT_ROLES_PREFIX, timeout: float = DEFAULT_TIMEOUT
    ) -> PostgresLedger:
        """Create the ledger's schema, tables, functions and the three group roles; refuses an existing schema.

        Run it as a role that may create roles and schemas (a superuser, or
        one with CREATEROLE and CREATE on the database). The roles
        ``<prefix>_admin``, ``<prefix>_operator`` and ``<prefix>_approver``
        are created NOLOGIN if absent (several ledgers may share them); grant
        them to login users: ``GRANT dpsynth_operator TO alice``. The schema
        and everything in it is owned by ``<prefix>_admin``.
        """
        conninfo, schema, location = _split_url(url)
        roles = role_names(roles_prefix)
        try:
            with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT) as con, con.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
                if cur.fetchone() is not None:
                    raise LedgerError(
                        f"schema {schema!r} already exists at {location}: open it with "
                        "PostgresLedger(url), or choose another ?schema="
                    )
                cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                superuser = bool(cur.fetchone()[0])
                for role in roles.values():
                    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                    if cur.fetchone() is None:
                        cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                if not superuser:
                    cur.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(roles["admin"])))
                cur.execute(
                    sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                        sql.Identifier(schema), sql.Identifier(roles["admin"])
                    )
                )
                cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(roles["admin"])))
                cur.execute(schema_sql(schema, roles))
                cur.executemany(
                    sql.SQL("INSERT INTO {}.meta (key, value) VALUES (%s, %s)").format(sql.Identifier(schema)),
                    [
                        ("format", LEDGER_FORMAT),
                        ("version", LEDGER_VERSION),
                        ("created_at", _now()),
                        ("head_id", "0"),
                        ("head_hash", GENESIS_HASH),
                        *((f"role_{k}", v) for k, v in roles.items()),
                    ],
                )
                cur.execute("RESET ROLE")
        except psycopg.Error as exc:
            raise _pg_error(location, exc, timeout) from exc
        return cls(url, timeout=timeout)

    @classmethod
    def create(
        cls,
        url: str,
        dataset_id: str,
        epsilon_cap: float,
        delta_cap: float,
        roles_prefix: str = DEFAULT_ROLES_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> PostgresLedger:
        """:meth:`install` the ledger, then add one dataset with its caps."""
        dataset_id = _check_dataset_id(dataset_id)
        _check_caps(epsilon_cap, delta_cap)
        ledger = cls.install(url, roles_prefix=roles_prefix, timeout=timeout)
        ledger.add_dataset(dataset_id, epsilon_cap, delta_cap)
        return ledger

    def add_dataset(self, dataset_id: str, epsilon_cap: float, delta_cap: float) -> LedgerEntry:
        """Add a dataset with its caps (the admin role only); refuses one already in the ledger."""
        dataset_id = _check_dataset_id(dataset_id)
        epsilon_cap, delta_cap = _check_caps(epsilon_cap, delta_cap)
        with self._write() as (cur, head):
            cur.execute(
                sql.SQL(
                    "SELECT epsilon_cap, delta_cap FROM {}.entries WHERE kind = 'dataset' AND dataset_id = %s"
                ).format(sql.Identifier(self.schema)),
                (dataset_id,),
            )
            existing = cur.fetchone()
            if existing is not None:
                raise _already(self.location, dataset_id, existing[0], existing[1])
            row = _new_row(
                {"kind": "dataset", "dataset_id": dataset_id, "epsilon_cap": epsilon_cap, "delta_cap": delta_cap}, *head
            )
            self._call(
                cur,
                "append_dataset",
                row,
                ("id", "dataset_id", "created_at", "epsilon_cap", "delta_cap", "prev_hash", "hash"),
            )
        return _to_entry(row)

    # -- spending (the operator role) ------------------------------------------------------------
    def reserve(
        self,
        dataset_id: str,
        cost: PrivacyCost,
        purpose: str = "",
        generator: str = "",
        parameters: dict[str, Any] | None = None,
    ) -> LedgerEntry:
        """Record ``cost`` as spent on ``dataset_id``, or raise ``BudgetExceeded``: as :meth:`Ledger.reserve`.

        One transaction: lock the head, read and check the chain, compose
        every stored event of the dataset with the new one at the delta cap,
        append through ``append_spend`` (which re-checks the stated total
        against the cap), commit. Never refunded.
        """
        dataset_id = _check_dataset_id(dataset_id)
        content, new_event = _spend_content(cost, purpose, generator, parameters)
        with self._write() as (cur, head):
            total = _check_spend(self._rows(cur), self._meta(cur), dataset_id, cost, new_event, self.location)
            row = _new_row({**content, "dataset_id": dataset_id, "total_epsilon_after": total}, *head)
            self._call(
                cur,
                "append_spend",
                row,
                (
                    "id",
                    "dataset_id",
                    "created_at",
                    "mechanism",
                    "generator",
                    "purpose",
                    "epsilon",
                    "delta",
                    "accountant",
                    "event_json",
                    "details_json",
                    "parameters_json",
                    "total_epsilon_after",
                    "prev_hash",
                    "hash",
                ),
            )
        return _to_entry(row, status="reserved")

    def mark(self, entry_id: int, status: str) -> LedgerEntry:
        """Append the outcome of spend ``entry_id`` (``released`` / ``withheld`` / ``failed``), once."""
        if status not in FINAL_STATUSES:
            raise UsageError(f"status must be one of {', '.join(FINAL_STATUSES)}, got {status!r}")
        return self._append_status(entry_id, status, None, FINAL_STATUSES, "append_status", "marked")

    def record_decision(
        self, entry_id: int, decision: str, by: str, reason: str = "", files: dict[str, str] | None = None
    ) -> LedgerEntry:
        """Append a reviewer's decision on spend ``entry_id`` (the approver role): as :meth:`Ledger.record_decision`."""
        details_json = _decision_details(decision, by, reason, files)
        return self._append_status(entry_id, decision, details_json, DECISIONS, "append_decision", "decided")

    def _append_status(
        self, entry_id: int, status: str, details_json: str | None, family: tuple[str, ...], function: str, verb: str
    ) -> LedgerEntry:
        if isinstance(entry_id, bool) or not isinstance(entry_id, int):
            raise UsageError(f"entry id must be an integer, got {entry_id!r}")
        s = sql.Identifier(self.schema)
        with self._write() as (cur, head):
            cur.execute(sql.SQL("SELECT kind, dataset_id FROM {}.entries WHERE id = %s").format(s), (entry_id,))
            spend = cur.fetchone()
            if spend is None or spend[0] != "spend":
                raise LedgerError(f"ledger {self.location} has no spend with id {entry_id}")
            cur.execute(
                sql.SQL(
                    "SELECT id, status FROM {}.entries WHERE kind = 'status' AND ref_id = %s "
                    "AND status = ANY(%s) ORDER BY id LIMIT 1"
                ).format(s),
                (entry_id, list(family)),
            )
            previous = cur.fetchone()
            if previous is not None:
                raise LedgerError(
                    f"spend {entry_id} was already {verb} {previous[1]!r} (entry {previous[0]}); this is recorded once"
                )
            content = {"kind": "status", "dataset_id": spend[1], "ref_id": entry_id, "status": status}
            if details_json is not None:
                content["details_json"] = details_json
            row = _new_row(content, *head)
            columns = ("id", "dataset_id", "created_at", "ref_id", "status")
            columns += ("details_json",) if details_json is not None else ()
            self._call(cur, function, row, (*columns, "prev_hash", "hash"))
        return _to_entry(row)

    # -- reading (any role with SELECT) ----------------------------------------------------------
    def datasets(self) -> list[str]:
        """Dataset ids in the order they were added."""
        with self._read() as cur:
            cur.execute(
                sql.SQL("SELECT dataset_id FROM {}.entries WHERE kind = 'dataset' ORDER BY id").format(
                    sql.Identifier(self.schema)
                )
            )
            return [r[0] for r in cur.fetchall()]

    def require_dataset(self, dataset_id: str) -> None:
        """Raise ``LedgerError`` unless ``dataset_id`` has a budget in this ledger."""
        known = self.datasets()
        if dataset_id not in known:
            raise _unknown(self.location, dataset_id, known)

    def caps(self, dataset_id: str) -> tuple[float, float]:
        """``(epsilon_cap, delta_cap)`` of ``dataset_id``; ``LedgerError`` if it has no budget here."""
        with self._read() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT epsilon_cap, delta_cap FROM {}.entries WHERE kind = 'dataset' AND dataset_id = %s"
                ).format(sql.Identifier(self.schema)),
                (dataset_id,),
            )
            row = cur.fetchone()
        if row is None:
            raise _unknown(self.location, dataset_id, self.datasets())
        return float(row[0]), float(row[1])

    def head_hash(self) -> str:
        """Hash of the last record: anchor it outside the ledger (manifest, ticket)."""
        with self._read() as cur:
            cur.execute(
                sql.SQL("SELECT hash FROM {}.entries ORDER BY id DESC LIMIT 1").format(sql.Identifier(self.schema))
            )
            row = cur.fetchone()
        return row[0] if row else GENESIS_HASH

    def summary(self, dataset_id: str | None = None) -> list[DatasetBudget]:
        """Budget of each dataset (or only ``dataset_id``): as :meth:`Ledger.summary`."""
        with self._read() as cur:
            rows = self._rows(cur)
        return _summaries(rows, dataset_id, self.location)

    def status_records(self, entry_id: int) -> list[LedgerEntry]:
        """Every status and decision record about spend ``entry_id``, in ledger order."""
        with self._read() as cur:
            rows = self._rows(cur)
        return [_to_entry(r) for r in rows if r["kind"] == "status" and r["ref_id"] == entry_id]

    def verify(self, expected_head: str | None = None) -> VerifyResult:
        """Every check of :meth:`Ledger.verify`, on a consistent snapshot of the records (same code)."""
        with self._read() as cur:
            rows, meta = self._rows(cur), self._meta(cur)
        return _verify_rows(rows, meta, expected_head)

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        try:
            con = psycopg.connect(self._conninfo, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            raise LedgerError(f"cannot connect to ledger {self.location}: {str(exc).strip()}") from exc
        return con

    @contextmanager
    def _read(self) -> Iterator[psycopg.Cursor]:
        """A read-only REPEATABLE READ transaction: one snapshot of both tables."""
        con = self._connect()
        try:
            con.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            con.read_only = True
            with _translated(self.location, self.timeout), con.transaction(), con.cursor() as cur:
                yield cur
        finally:
            con.close()

    @contextmanager
    def _write(self) -> Iterator[tuple[psycopg.Cursor, tuple[int, str]]]:
        """A transaction holding the head lock; yields the cursor and the head (id, hash); rolled back on error.

        READ COMMITTED: every statement after the lock sees every record
        committed before it, so the reserve decision reads the latest chain.
        """
        con = self._connect()
        try:
            with _translated(self.location, self.timeout), con.transaction(), con.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(self.timeout * 1000)}ms",))
                cur.execute(
                    sql.SQL("SELECT head_id, head_hash FROM {}.begin_append()").format(sql.Identifier(self.schema))
                )
                head_id, head_hash = cur.fetchone()
                yield cur, (int(head_id), head_hash)
        finally:
            con.close()

    def _call(self, cur: psycopg.Cursor, function: str, row: dict[str, Any], columns: tuple[str, ...]) -> None:
        cur.execute(
            sql.SQL("SELECT {}.{}({})").format(
                sql.Identifier(self.schema),
                sql.Identifier(function),
                sql.SQL(", ").join(sql.Placeholder() for _ in columns),
            ),
            [row[c] for c in columns],
        )

    def _rows(self, cur: psycopg.Cursor) -> list[dict[str, Any]]:
        cur.execute(
            sql.SQL("SELECT {} FROM {}.entries ORDER BY id").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS), sql.Identifier(self.schema)
            )
        )
        return [dict(zip(_COLUMNS, r, strict=True)) for r in cur.fetchall()]

    def _meta(self, cur: psycopg.Cursor) -> dict[str, str]:
        try:
            cur.execute(sql.SQL("SELECT key, value FROM {}.meta").format(sql.Identifier(self.schema)))
        except pg_errors.UndefinedTable as exc:
            raise LedgerError(
                f"no ledger at {self.location} (schema {self.schema!r} has no ledger tables): an "
                "administrator creates one with `dpsynth budget init URL --dataset ID --epsilon CAP "
                "--delta CAP`"
            ) from exc
        return dict(cur.fetchall())


def init_postgres_ledger(
    url: str,
    dataset_id: str,
    epsilon_cap: float,
    delta_cap: float,
    roles_prefix: str = DEFAULT_ROLES_PREFIX,
    timeout: float = DEFAULT_TIMEOUT,
) -> PostgresLedger:
    """``dpsynth budget init URL``: install the ledger if its schema is absent, then add the dataset (admin)."""
    conninfo, schema, location = _split_url(url)
    try:
        with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT) as con, con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            installed = cur.fetchone() is not None
    except psycopg.Error as exc:
        raise LedgerError(f"cannot connect to ledger {location}: {str(exc).strip()}") from exc
    if not installed:
        return PostgresLedger.create(
            url, dataset_id, epsilon_cap, delta_cap, roles_prefix=roles_prefix, timeout=timeout
        )
    ledger = PostgresLedger(url, timeout=timeout)
    ledger.add_dataset(dataset_id, epsilon_cap, delta_cap)
    return ledger


@contextmanager
def _translated(location: str, timeout: float) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise _pg_error(location, exc, timeout) from exc


def _pg_error(location: str, exc: psycopg.Error, timeout: float) -> LedgerError:
    """The server's refusal as a ``LedgerError`` naming the ledger (and, for a permission, what to grant)."""
    message = (exc.diag.message_primary or str(exc)).strip() if exc.diag else str(exc).strip()
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return LedgerError(
            f"ledger {location}: the database refused: {message}. Each ledger role may write only "
            "through its own functions: spends and outcomes need the operator role, decisions the "
            "approver role, datasets and caps the admin role (docs/ledger.md)"
        )
    if isinstance(exc, pg_errors.LockNotAvailable):
        return LedgerError(
            f"ledger {location} stayed locked by another writer for {timeout:g} s; nothing was "
            "written. Retry when the other release has finished."
        )
    if isinstance(exc, pg_errors.UndefinedFunction | pg_errors.InvalidSchemaName):
        return LedgerError(f"no ledger at {location}: {message}")
    return LedgerError(f"ledger {location}: {message}")
