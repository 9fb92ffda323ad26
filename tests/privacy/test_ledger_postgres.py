"""The PostgreSQL ledger against a real server: same semantics as SQLite, roles enforced by the database.

Needs a PostgreSQL server (default ``postgresql://postgres@127.0.0.1:5432/test``,
a superuser; override with ``DPSYNTH_TEST_POSTGRES``). Every test that needs
it skips, saying why, when no server answers within 2 s. Each session creates
its own uniquely named roles, login users and one schema per test, and drops
them all afterwards; nothing else in the database is touched.

What would make these fail: a grant that lets the operator write a table or
set caps, an append function granted to the wrong role, a missing
append-only trigger, an append function that trusts a stale head, a clock
or an over-cap total, a verify that does not recompose, or a reserve that
does not serialise writers (the 16-process race, on both storages).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dp_accounting as dpa
import pytest

from dpsynth.errors import BudgetExceeded, LedgerError, UsageError
from dpsynth.privacy.accountant import epsilon_for
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.ledger import init_ledger, open_ledger
from dpsynth.privacy.ledger.records import _new_row

psycopg = pytest.importorskip("psycopg")
from psycopg import errors as pg_errors  # noqa: E402

from dpsynth.privacy.ledger.postgres import PostgresLedger, _split_url  # noqa: E402

SERVER_URL = os.environ.get("DPSYNTH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
DELTA_CAP = 1e-6


def gaussian_cost(sigma: float, delta: float = 1e-7) -> PrivacyCost:
    return PrivacyCost.of("gaussian", dpa.GaussianDpEvent(sigma), delta, sigma=sigma)


def url_as(user: str, schema: str) -> str:
    """The server URL with another login user and our schema parameter."""
    parts = urlsplit(SERVER_URL)
    host = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(q for q in (parts.query, f"schema={schema}") if q)
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, query, ""))


@dataclass
class PgSession:
    """This test session's roles (``prefix``), login users per role, and the schemas it created."""

    prefix: str
    users: dict[str, str]
    schemas: list[str] = field(default_factory=list)
    counter: itertools.count = field(default_factory=itertools.count)


@pytest.fixture(scope="session")
def pg_session() -> Iterator[PgSession]:
    try:
        psycopg.connect(SERVER_URL, connect_timeout=2).close()
    except psycopg.Error as exc:
        pytest.skip(
            f"no PostgreSQL server answers at {urlsplit(SERVER_URL).hostname}:{urlsplit(SERVER_URL).port or 5432} "
            "within 2 s "
            f"({str(exc).strip().splitlines()[0]}); set DPSYNTH_TEST_POSTGRES to a superuser URL to run "
            "the PostgreSQL ledger tests"
        )
    prefix = f"dpt{os.getpid()}x{secrets.token_hex(3)}"
    groups = {role: f"{prefix}_{role}" for role in ("admin", "operator", "approver")}
    users = {role: f"{prefix}_u_{role}" for role in ("admin", "operator", "approver", "outsider")}
    session = PgSession(prefix, users)
    with psycopg.connect(SERVER_URL, autocommit=True) as con:
        for group in groups.values():
            con.execute(f'CREATE ROLE "{group}" NOLOGIN')
        for role, user in users.items():
            member = f' IN ROLE "{groups[role]}"' if role in groups else ""
            con.execute(f'CREATE ROLE "{user}" LOGIN{member}')
    try:
        yield session
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as con:
            for schema in session.schemas:
                con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for role in [*users.values(), *groups.values()]:
                con.execute(f'DROP ROLE IF EXISTS "{role}"')


@dataclass
class PgLedgers:
    """One freshly installed ledger, opened as each role, plus raw connections for the refusal tests."""

    schema: str
    admin: PostgresLedger
    operator: PostgresLedger
    approver: PostgresLedger
    session: PgSession

    def url(self, role: str) -> str:
        return (
            url_as(self.session.users[role], self.schema)
            if role != "server"
            else url_as(urlsplit(SERVER_URL).username or "postgres", self.schema)
        )

    def connect(self, role: str) -> psycopg.Connection:
        return psycopg.connect(_split_url(self.url(role))[0], autocommit=True)


@pytest.fixture
def pg(pg_session: PgSession) -> PgLedgers:
    """A new ledger schema; its dataset 'adult' (cap 3) was added by the admin role, not the superuser."""
    schema = f"{pg_session.prefix}_{next(pg_session.counter)}"
    pg_session.schemas.append(schema)
    PostgresLedger.install(url_as(urlsplit(SERVER_URL).username or "postgres", schema), roles_prefix=pg_session.prefix)
    admin = PostgresLedger(url_as(pg_session.users["admin"], schema))
    admin.add_dataset("adult", 3.0, DELTA_CAP)
    return PgLedgers(
        schema,
        admin,
        PostgresLedger(url_as(pg_session.users["operator"], schema)),
        PostgresLedger(url_as(pg_session.users["approver"], schema)),
        pg_session,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path: Path) -> tuple[object, object, object]:
    """(admin, operator, approver) views of one ledger holding dataset 'adult' (cap 3), on each storage."""
    if request.param == "sqlite":
        ledger = init_ledger(tmp_path / "budget.ledger", "adult", 3.0, DELTA_CAP)
        return ledger, ledger, ledger  # a file has no roles: its permissions are all there is
    pg = request.getfixturevalue("pg")
    return pg.admin, pg.operator, pg.approver


# -- the same behaviour on both storages ----------------------------------------------------------
def test_spend_mark_decide_and_verify_behave_alike(backend) -> None:
    admin, operator, approver = backend
    cost = gaussian_cost(4.0)
    entry = operator.reserve("adult", cost, purpose="release to out/", generator="mst", parameters={"rounds": 3})
    assert (entry.id, entry.kind, entry.status) == (2, "spend", "reserved")
    assert entry.total_epsilon_after == pytest.approx(epsilon_for(cost.event, DELTA_CAP))
    assert entry.hash == operator.head_hash() == admin.verify().head_hash
    operator.mark(entry.id, "released")
    decision = approver.record_decision(
        entry.id, "approved", "officer", reason="criteria met", files={"synthetic.csv": "ab" * 32}
    )
    assert decision.details == {"by": "officer", "reason": "criteria met", "files": {"synthetic.csv": "ab" * 32}}
    with pytest.raises(LedgerError, match="already"):
        approver.record_decision(entry.id, "rejected", "officer")
    with pytest.raises(LedgerError, match="already"):
        operator.mark(entry.id, "withheld")
    with pytest.raises(UsageError, match="sha256"):
        approver.record_decision(entry.id, "approved", "officer", files={"x": "short"})
    [budget] = approver.summary("adult")
    assert budget.entries[0].status == "released"  # a decision is not an outcome; the budget stays spent
    assert budget.spent_epsilon == pytest.approx(entry.total_epsilon_after)
    result = operator.verify(expected_head=decision.hash)
    assert result.ok and result.entries == 4, result.problems
    assert admin.caps("adult") == (3.0, DELTA_CAP) and admin.datasets() == ["adult"]


def test_over_the_cap_is_refused_and_nothing_is_written(backend) -> None:
    admin, operator, _ = backend
    admin.add_dataset("small", 1.0, DELTA_CAP)
    operator.reserve("small", gaussian_cost(5.0))
    head = operator.head_hash()
    with pytest.raises(BudgetExceeded, match="over the cap epsilon=1.*Nothing was spent"):
        operator.reserve("small", gaussian_cost(4.5))
    with pytest.raises(BudgetExceeded, match="delta"):
        operator.reserve("small", gaussian_cost(50.0, delta=1e-5))
    with pytest.raises(LedgerError, match="'census'.*budget init"):
        operator.reserve("census", gaussian_cost(50.0))
    with pytest.raises(LedgerError, match="already has a budget"):
        admin.add_dataset("small", 100.0, DELTA_CAP)
    assert operator.head_hash() == head and len(operator.summary("small")[0].entries) == 1


def test_withheld_is_never_refunded_and_totals_compose(backend) -> None:
    admin, operator, _ = backend
    cost = gaussian_cost(6.0)
    one, two = (epsilon_for(dpa.SelfComposedDpEvent(cost.event, k), DELTA_CAP) for k in (1, 2))
    admin.add_dataset("tight", (one + two) / 2, DELTA_CAP)  # one spend fits, not two
    entry = operator.reserve("tight", cost)
    operator.mark(entry.id, "withheld")
    with pytest.raises(BudgetExceeded):
        operator.reserve("tight", cost)
    budget = operator.summary("tight")[0]
    assert budget.spent_epsilon == pytest.approx(one, rel=1e-6) and budget.entries[0].status == "withheld"


# -- PostgreSQL: what the database refuses, by role ------------------------------------------------
OPERATOR_WRITES = [
    pytest.param("UPDATE {s}.entries SET epsilon = 0 WHERE id = 2", id="update-spend"),
    pytest.param("UPDATE {s}.entries SET epsilon_cap = 100 WHERE kind = 'dataset'", id="update-cap"),
    pytest.param("DELETE FROM {s}.entries WHERE id = 2", id="delete"),
    pytest.param(
        "INSERT INTO {s}.entries (id, kind, dataset_id, created_at, prev_hash, hash) "
        "VALUES (99, 'dataset', 'x', 'now', 'x', 'y')",
        id="insert",
    ),
    pytest.param("TRUNCATE {s}.entries", id="truncate"),
    pytest.param("UPDATE {s}.meta SET value = '0' WHERE key = 'head_id'", id="update-meta"),
    pytest.param("DELETE FROM {s}.meta", id="delete-meta"),
    pytest.param("SELECT {s}.append_dataset(3, 'mine', now()::text, 100, 1e-6, 'x', 'y')", id="create-dataset"),
    pytest.param(
        "SELECT {s}.append_decision(3, 'adult', now()::text, 2, 'approved', '{{\"by\": \"me\"}}', 'x', 'y')",
        id="approve",
    ),
    pytest.param("SELECT {s}._link(3, now()::text, 'x', 'y')", id="internal-link"),
    pytest.param("CREATE TABLE {s}.mine (x int)", id="create-table"),
]


@pytest.mark.parametrize("statement", OPERATOR_WRITES)
def test_the_operator_cannot_write_except_through_its_functions(pg: PgLedgers, statement: str) -> None:
    pg.operator.mark(pg.operator.reserve("adult", gaussian_cost(5.0)).id, "released")
    before = pg.admin.verify()
    # "permission denied" is the grant refusing; the append-only trigger (its own test below) would say otherwise
    with pg.connect("operator") as con, pytest.raises(pg_errors.InsufficientPrivilege, match="permission denied for"):
        con.execute(statement.format(s=f'"{pg.schema}"'))
    after = pg.admin.verify()
    assert after.ok and (after.entries, after.head_hash) == (before.entries, before.head_hash)


def test_the_operator_cannot_set_caps_through_the_api_either(pg: PgLedgers) -> None:
    with pytest.raises(LedgerError, match="database refused.*permission denied for function append_dataset"):
        pg.operator.add_dataset("mine", 100.0, DELTA_CAP)
    with pytest.raises(LedgerError, match="database refused"):
        pg.operator.record_decision(pg.operator.reserve("adult", gaussian_cost(5.0)).id, "approved", "me")
    assert pg.admin.datasets() == ["adult"] and pg.admin.caps("adult") == (3.0, DELTA_CAP)


def test_the_approver_may_decide_but_not_spend_mark_or_set_caps(pg: PgLedgers) -> None:
    entry = pg.operator.reserve("adult", gaussian_cost(5.0))
    with pytest.raises(LedgerError, match="database refused.*append_spend"):
        pg.approver.reserve("adult", gaussian_cost(5.0))
    with pytest.raises(LedgerError, match="database refused.*append_status"):
        pg.approver.mark(entry.id, "released")
    with pytest.raises(LedgerError, match="database refused.*append_dataset"):
        pg.approver.add_dataset("mine", 100.0, DELTA_CAP)
    with pg.connect("approver") as con, pytest.raises(pg_errors.InsufficientPrivilege, match="permission denied for"):
        con.execute(f"UPDATE \"{pg.schema}\".entries SET status = 'approved' WHERE id = 2")
    pg.approver.record_decision(entry.id, "approved", "officer")
    assert [e.kind for e in pg.admin.summary("adult")[0].entries] == ["spend"] and pg.admin.verify().ok


def test_a_login_without_a_ledger_role_cannot_even_read(pg: PgLedgers) -> None:
    with pytest.raises(LedgerError, match="permission denied for schema"):
        PostgresLedger(pg.url("outsider"))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {s}.entries SET epsilon_cap = 100 WHERE id = 1",
        "DELETE FROM {s}.entries WHERE id = 2",
        "TRUNCATE {s}.entries",
    ],
)
def test_even_the_owner_cannot_update_or_delete_while_the_trigger_stands(pg: PgLedgers, statement: str) -> None:
    pg.operator.reserve("adult", gaussian_cost(5.0))
    with pg.connect("admin") as con, pytest.raises(pg_errors.InsufficientPrivilege, match="append-only"):
        con.execute(statement.format(s=f'"{pg.schema}"'))
    assert pg.admin.verify().ok and pg.admin.caps("adult") == (3.0, DELTA_CAP)


def test_an_owner_who_disables_the_trigger_and_edits_is_caught_by_verify(pg: PgLedgers) -> None:
    pg.operator.reserve("adult", gaussian_cost(5.0))
    with pg.connect("admin") as con:  # the owner can: this is the limit the docs state
        con.execute(f'ALTER TABLE "{pg.schema}".entries DISABLE TRIGGER entries_append_only')
        con.execute(f'UPDATE "{pg.schema}".entries SET epsilon_cap = 100 WHERE id = 1')
        con.execute(f'ALTER TABLE "{pg.schema}".entries ENABLE TRIGGER entries_append_only')
    result = pg.approver.verify()
    assert not result.ok and result.bad_entry_ids == [1]
    assert "entry 1: content does not match its hash" in result.problems[0]
    with pytest.raises(LedgerError, match="fails verification"):
        pg.operator.reserve("adult", gaussian_cost(50.0))


# -- PostgreSQL: what the append functions check without trusting the client --------------------------
def _spend_row(ledger: PostgresLedger, **overrides) -> dict:
    head = ledger.verify()
    row = _new_row(
        {
            "kind": "spend",
            "dataset_id": "adult",
            "mechanism": "gaussian",
            "generator": "",
            "purpose": "",
            "epsilon": 1.0,
            "delta": 1e-7,
            "accountant": "pld",
            "event_json": '{"noise_multiplier":50.0,"type":"gaussian"}',
            "details_json": "{}",
            "parameters_json": "{}",
            "total_epsilon_after": 0.1,
        },
        head.head_id,
        head.head_hash,
    )
    row.update(overrides)
    return row


SPEND_ARGS = (
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
)


def _append_spend(pg: PgLedgers, row: dict) -> None:
    with pg.connect("operator") as con:
        con.execute(
            f'SELECT "{pg.schema}".append_spend({", ".join(["%s"] * len(SPEND_ARGS))})', [row[c] for c in SPEND_ARGS]
        )


@pytest.mark.parametrize(
    "overrides,error,message",
    [
        ({"total_epsilon_after": 3.5}, pg_errors.CheckViolation, "over the cap"),
        ({"delta": 1e-5}, pg_errors.CheckViolation, "delta cap"),
        ({"prev_hash": "0" * 64}, pg_errors.SerializationFailure, "does not extend the head"),
        ({"id": 7}, pg_errors.SerializationFailure, "does not extend the head"),
        ({"created_at": "2020-01-01T00:00:00+00:00"}, pg_errors.CheckViolation, "server's clock"),
        ({"hash": "not a hash"}, pg_errors.CheckViolation, "64 hex"),
        ({"dataset_id": "census"}, pg_errors.ForeignKeyViolation, "no budget"),
        ({"event_json": "{not json"}, pg_errors.InvalidTextRepresentation, "json"),
    ],
)
def test_append_spend_refuses_what_it_can_check(pg: PgLedgers, overrides, error, message) -> None:
    with pytest.raises(error, match=message):
        _append_spend(pg, _spend_row(pg.operator, **overrides))
    assert pg.admin.verify().entries == 1


def test_a_stated_total_below_the_previous_one_is_refused(pg: PgLedgers) -> None:
    first = pg.operator.reserve("adult", gaussian_cost(3.0))
    with pytest.raises(pg_errors.CheckViolation, match="below the previous total"):
        _append_spend(pg, _spend_row(pg.operator, total_epsilon_after=first.total_epsilon_after / 2))


def test_a_client_that_lies_about_the_composition_is_caught_by_verify(pg: PgLedgers) -> None:
    # a well-formed, well-chained spend whose stored event alone composes far over the cap of 3
    row = _spend_row(pg.operator, event_json='{"noise_multiplier":0.2,"type":"gaussian"}', total_epsilon_after=0.5)
    from dpsynth.privacy.ledger.records import _entry_hash

    row["hash"] = _entry_hash(row)
    _append_spend(pg, row)  # the database cannot compose: it takes the stated total
    result = pg.approver.verify()
    assert not result.ok and result.bad_entry_ids == [2]
    assert "compose to" in result.problems[0] and "over its cap" in result.problems[0]
    with pytest.raises(BudgetExceeded):
        pg.operator.reserve("adult", gaussian_cost(500.0))


def test_install_refuses_an_existing_schema_and_urls_hide_passwords(pg: PgLedgers) -> None:
    with pytest.raises(LedgerError, match="already exists"):
        PostgresLedger.install(pg.url("server"), roles_prefix=pg.session.prefix)
    assert _split_url("postgresql://bob:s3cret@db:5432/x?schema=led&sslmode=require")[1:] == (
        "led",
        "postgresql://bob@db:5432/x?sslmode=require&schema=led",
    )
    with pytest.raises(UsageError, match="schema"):
        _split_url("postgresql://db/x?schema=Robert'); DROP TABLE x;--")
    with pytest.raises(LedgerError, match="no ledger at"):
        PostgresLedger(url_as(pg.session.users["admin"], pg.schema + "_absent"))
    assert isinstance(open_ledger(pg.url("operator")), PostgresLedger)


def test_no_server_is_a_clear_ledger_error() -> None:
    with pytest.raises(LedgerError, match="cannot connect to ledger postgresql://nobody@127.0.0.1:9/x"):
        PostgresLedger("postgresql://nobody:pw@127.0.0.1:9/x", connect_timeout=2)


# -- 16 processes racing one dataset, on both storages -----------------------------------------------
RACE_SIGMA, RACE_PROCESSES, RACE_SPENDS_EACH, RACE_FIT = 30.0, 16, 2, 11


def _race_worker(location: str, barrier, results) -> None:
    ledger = open_ledger(location, timeout=120)
    cost = PrivacyCost("gaussian", dpa.GaussianDpEvent(RACE_SIGMA), 0.1, 1e-7, "pld")
    barrier.wait(timeout=120)
    for _ in range(RACE_SPENDS_EACH):
        try:
            ledger.reserve("race", cost, generator="race")
            results.put("ok")
        except BudgetExceeded:
            results.put("refused")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            results.put(f"error {type(exc).__name__}: {exc}")


def test_sixteen_processes_never_pass_the_cap_together(backend) -> None:
    admin, _, _ = backend
    event = dpa.GaussianDpEvent(RACE_SIGMA)
    fit, one_more = (epsilon_for(dpa.SelfComposedDpEvent(event, k), DELTA_CAP) for k in (RACE_FIT, RACE_FIT + 1))
    admin.add_dataset("race", (fit + one_more) / 2, DELTA_CAP)  # exactly RACE_FIT spends fit under the cap
    operator = backend[1]
    location = str(operator.url) if isinstance(operator, PostgresLedger) else str(operator.path)

    # forkserver: a fresh server process (not a fork of pytest) imports dpsynth once; workers fork from it
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["dpsynth.privacy.ledger", "dpsynth.privacy.ledger.postgres", __name__])
    barrier, results = context.Barrier(RACE_PROCESSES), context.Queue()
    workers = [context.Process(target=_race_worker, args=(location, barrier, results)) for _ in range(RACE_PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=240) for _ in range(RACE_PROCESSES * RACE_SPENDS_EACH)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    assert [o for o in outcomes if o not in ("ok", "refused")] == []
    assert outcomes.count("ok") == RACE_FIT
    budget = operator.summary("race")[0]
    assert len(budget.entries) == RACE_FIT and budget.spent_epsilon <= budget.epsilon_cap
    assert budget.spent_epsilon == pytest.approx(fit, rel=1e-3)
    assert operator.verify().ok


# -- the CLI takes a URL wherever it takes a ledger path ----------------------------------------------
def test_budget_commands_take_a_postgres_url(pg: PgLedgers) -> None:
    from typer.testing import CliRunner

    from dpsynth.cli import app

    def invoke(*args: str):
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    added = invoke("budget", "init", pg.url("admin"), "--dataset", "hie", "--epsilon", "2", "--delta", "1e-6")
    assert added.exit_code == 0 and "dataset 'hie' capped at epsilon=2" in added.output
    refused = invoke("budget", "init", pg.url("operator"), "--dataset", "mine", "--epsilon", "99", "--delta", "1e-6")
    assert refused.exit_code == 1 and "database refused" in refused.output and "Traceback" not in refused.output
    pg.operator.reserve("hie", gaussian_cost(5.0))
    shown = invoke("budget", "show", pg.url("approver"), "--dataset", "hie", "--json")
    assert shown.exit_code == 0 and '"dataset_id": "hie"' in shown.output
    verified = invoke("budget", "verify", pg.url("approver"), "--expected-head", pg.operator.head_hash())
    assert verified.exit_code == 0 and "verified: 3 entries" in verified.output
    fresh = f"{pg.schema}_cli"
    pg.session.schemas.append(fresh)
    created = invoke(
        "budget",
        "init",
        url_as(urlsplit(SERVER_URL).username or "postgres", fresh),
        "--dataset",
        "a",
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--roles-prefix",
        pg.session.prefix,
    )
    assert created.exit_code == 0 and PostgresLedger(url_as(pg.session.users["operator"], fresh)).datasets() == ["a"]
    assert (
        invoke(
            "budget",
            "init",
            "plain.ledger",
            "--dataset",
            "a",
            "--epsilon",
            "1",
            "--delta",
            "1e-6",
            "--roles-prefix",
            "x",
        ).exit_code
        == 2
    )
