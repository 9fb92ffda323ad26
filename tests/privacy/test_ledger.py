"""The privacy-budget ledger: caps, composed spends, no refunds, races, tamper evidence.

What would make these fail: a ledger that adds epsilons instead of composing
the stored events (or composes them at the wrong delta), refunds a withheld
release, lets two processes pass a cap only one fits under, misses an edited,
deleted, reordered or truncated record, or loads a stored event outside the
allow-list.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import sys
import threading
import time
from pathlib import Path

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting import pld, rdp

from dpsynth.errors import BudgetExceeded, DpsynthError, LedgerError, UsageError
from dpsynth.privacy.accountant import epsilon_for
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.ledger import (
    _COLUMNS,
    GENESIS_HASH,
    DatasetBudget,
    Ledger,
    LedgerEntry,
    VerifyResult,
    _entry_hash,
    init_ledger,
)

DELTA_CAP = 1e-6


def gaussian_cost(sigma: float, delta: float = 1e-7) -> PrivacyCost:
    return PrivacyCost.of("gaussian", dpa.GaussianDpEvent(sigma), delta, sigma=sigma)


def mst_like(scale: float = 40.0) -> PrivacyCost:
    """Shaped like an MST fit: Gaussian one- and two-way marginals plus exponential-mechanism selections."""
    event = dpa.ComposedDpEvent(
        [
            dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(scale), 14),
            dpa.SelfComposedDpEvent(dpa.ZCDpEvent(1e-4), 13),
            dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(scale * 1.3), 13),
        ]
    )
    return PrivacyCost.of("mst", event, 1e-7, rounds=13)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "budget.ledger"
    init_ledger(path, "adult", 3.0, DELTA_CAP)
    return path


def raw_sql(path: Path, *statements: tuple) -> None:
    """Edit the file behind the ledger's back, as someone with write access could."""
    con = sqlite3.connect(path)
    for statement in statements:
        con.execute(*statement)
    con.commit()
    con.close()


def rechain(path: Path) -> None:
    """Recompute every hash and the recorded head: a full rewrite by someone who read our source."""
    con = sqlite3.connect(path)
    rows = [dict(zip(_COLUMNS, r)) for r in con.execute(f"SELECT {', '.join(_COLUMNS)} FROM entries ORDER BY id")]
    prev = GENESIS_HASH
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = _entry_hash(row)
        con.execute(
            "UPDATE entries SET prev_hash = ?, hash = ? WHERE id = ?", (row["prev_hash"], row["hash"], row["id"])
        )
        prev = row["hash"]
    con.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (prev,))
    con.execute("UPDATE meta SET value = ? WHERE key = 'head_id'", (str(rows[-1]["id"]),))
    con.commit()
    con.close()


# -- init / show ---------------------------------------------------------------------------
def test_init_creates_a_ledger_and_show_reports_empty_budgets(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "budget.ledger"
    ledger = init_ledger(path, "adult", 2.0, 1e-6)
    assert isinstance(ledger, Ledger) and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["budget.ledger"]  # no temp files left behind
    init_ledger(path, "randhie", 1.0, 1e-7)  # a second dataset in the same file, with its own caps
    assert ledger.datasets() == ["adult", "randhie"]
    adult, randhie = ledger.summary()
    assert isinstance(adult, DatasetBudget)
    assert (adult.dataset_id, adult.epsilon_cap, adult.delta_cap) == ("adult", 2.0, 1e-6)
    assert (randhie.epsilon_cap, randhie.delta_cap) == (1.0, 1e-7)
    assert adult.spent_epsilon == 0 and adult.naive_sum_epsilon == 0 and adult.remaining_epsilon == 2.0
    assert adult.entries == [] and adult.accountant == "none"
    assert json.loads(json.dumps([s.to_dict() for s in ledger.summary()]))[1]["dataset_id"] == "randhie"
    assert ledger.verify().ok
    ledger.require_dataset("adult")
    with pytest.raises(LedgerError, match="'census'.*budget init"):
        ledger.require_dataset("census")


def test_reinitialising_a_dataset_is_refused(ledger_path: Path) -> None:
    Ledger(ledger_path).reserve("adult", gaussian_cost(5.0))
    with pytest.raises(LedgerError, match="already has a budget"):
        init_ledger(ledger_path, "adult", 100.0, 1e-6)
    with pytest.raises(LedgerError, match="already exists"):
        Ledger.create(ledger_path, "other", 1.0, 1e-6)
    budget = Ledger(ledger_path).summary("adult")[0]
    assert budget.epsilon_cap == 3.0 and len(budget.entries) == 1


@pytest.mark.parametrize(
    "epsilon_cap,delta_cap",
    [
        (0.0, 1e-6),
        (-1.0, 1e-6),
        (float("inf"), 1e-6),
        (float("nan"), 1e-6),
        (1.0, 0.0),
        (1.0, 1.0),
        (1.0, -1e-6),
        ("1", 1e-6),
    ],
)
def test_invalid_caps_are_refused_with_a_usage_error(tmp_path: Path, epsilon_cap, delta_cap) -> None:
    with pytest.raises(UsageError, match="cap"):
        init_ledger(tmp_path / "l.ledger", "adult", epsilon_cap, delta_cap)
    assert not (tmp_path / "l.ledger").exists()


# -- spending ------------------------------------------------------------------------------
def test_spend_within_the_cap_is_recorded_with_its_event_and_head_hash(ledger_path: Path) -> None:
    ledger = Ledger(ledger_path)
    cost = gaussian_cost(4.0)
    entry = ledger.reserve(
        "adult",
        cost,
        purpose="release to out/",
        generator="mst",
        parameters={"epsilon": np.float64(1.0), "rounds": np.int64(3), "bins": np.arange(2)},
    )
    assert isinstance(entry, LedgerEntry)
    assert entry.kind == "spend" and entry.status == "reserved" and entry.id == 2
    assert len(entry.hash) == 64 and entry.hash == ledger.head_hash() == ledger.verify().head_hash
    assert entry.event == {"type": "gaussian", "noise_multiplier": 4.0}
    assert entry.parameters == {"epsilon": 1.0, "rounds": 3, "bins": [0, 1]}
    assert entry.total_epsilon_after == pytest.approx(epsilon_for(cost.event, DELTA_CAP))
    [shown] = ledger.summary("adult")[0].entries
    assert (shown.id, shown.mechanism, shown.generator, shown.epsilon, shown.delta, shown.status) == (
        entry.id,
        "gaussian",
        "mst",
        cost.epsilon,
        cost.delta,
        "reserved",
    )
    assert shown.created_at.endswith("+00:00") and shown.short_hash == entry.hash[:12]


def test_spend_over_the_cap_is_refused_with_the_numbers(tmp_path: Path) -> None:
    ledger = init_ledger(tmp_path / "l.ledger", "adult", 1.0, DELTA_CAP)
    first = gaussian_cost(5.0)
    ledger.reserve("adult", first)
    spent = ledger.summary("adult")[0].spent_epsilon
    head = ledger.head_hash()
    big = gaussian_cost(4.5)
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve("adult", big)
    message = str(refused.value)
    assert refused.value.exit_code == 4
    for number in (
        "'adult'",
        f"epsilon={big.epsilon:.4g}",
        f"already spent: epsilon={spent:.4g}",
        "cap epsilon=1",
        f"remaining: {1.0 - spent:.4g}",
        "Nothing was spent",
    ):
        assert number.lower() in message.lower(), (number, message)
    assert ledger.head_hash() == head and len(ledger.summary("adult")[0].entries) == 1


def test_delta_over_the_cap_and_unknown_dataset_are_refused(ledger_path: Path) -> None:
    ledger = Ledger(ledger_path)
    with pytest.raises(BudgetExceeded, match="delta"):
        ledger.reserve("adult", gaussian_cost(50.0, delta=1e-5))
    with pytest.raises(LedgerError, match="'census'"):
        ledger.reserve("census", gaussian_cost(50.0))
    with pytest.raises(UsageError):
        ledger.reserve("adult", "not a cost")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="parameters"):
        ledger.reserve("adult", gaussian_cost(50.0), parameters={"x": float("nan")})
    assert ledger.summary("adult")[0].entries == []


def test_total_is_the_composed_epsilon_not_the_sum(ledger_path: Path) -> None:
    ledger = Ledger(ledger_path)
    events = [
        dpa.GaussianDpEvent(6.0),
        dpa.GaussianDpEvent(8.0),
        dpa.GaussianDpEvent(6.0),
        dpa.LaplaceDpEvent(20.0),
        dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(30.0), 5),
    ]
    costs = [PrivacyCost.of("m", e, 1e-7) for e in events]
    for cost in costs:
        ledger.reserve("adult", cost)
    direct = pld.PLDAccountant(value_discretization_interval=1e-4)
    for event in events:
        direct.compose(event)
    budget = ledger.summary("adult")[0]
    assert budget.accountant == "pld"
    assert budget.spent_epsilon == pytest.approx(direct.get_epsilon(DELTA_CAP), rel=1e-3)
    assert budget.naive_sum_epsilon == pytest.approx(sum(c.epsilon for c in costs))
    assert budget.spent_epsilon < 0.6 * budget.naive_sum_epsilon  # composition is far below the sum
    assert budget.spent_delta == pytest.approx(5e-7)
    assert budget.remaining_epsilon == pytest.approx(3.0 - budget.spent_epsilon)


def test_zcdp_spends_are_composed_by_rdp(ledger_path: Path) -> None:
    ledger = Ledger(ledger_path)
    costs = [mst_like(40.0), mst_like(60.0), gaussian_cost(10.0)]
    for cost in costs:
        ledger.reserve("adult", cost, generator="mst")
    direct = rdp.RdpAccountant()
    for cost in costs:
        direct.compose(cost.event)
    budget = ledger.summary("adult")[0]
    assert budget.accountant == "rdp"
    assert budget.spent_epsilon == pytest.approx(direct.get_epsilon(DELTA_CAP), rel=1e-9)


def test_nested_and_repeated_events_compose_like_the_accountant_on_the_raw_events(ledger_path: Path) -> None:
    # the ledger groups identical mechanisms before accounting; the result must not change
    ledger = Ledger(ledger_path)
    sampled = dpa.PoissonSampledDpEvent(0.05, dpa.ComposedDpEvent([dpa.GaussianDpEvent(3.0), dpa.GaussianDpEvent(4.0)]))
    events = [
        dpa.SelfComposedDpEvent(sampled, 20),
        dpa.ComposedDpEvent([dpa.GaussianDpEvent(9.0), dpa.ZCDpEvent(0.001)]),
        dpa.SelfComposedDpEvent(sampled, 20),
        dpa.GaussianDpEvent(9.0),
    ]
    for event in events:
        ledger.reserve("adult", PrivacyCost.of("m", event, 1e-7))
    direct = rdp.RdpAccountant()
    for event in events:
        direct.compose(event)
    budget = ledger.summary("adult")[0]
    assert budget.accountant == "rdp"
    assert budget.spent_epsilon == pytest.approx(direct.get_epsilon(DELTA_CAP), rel=1e-9)


def test_a_withheld_or_failed_release_is_never_refunded(tmp_path: Path) -> None:
    cost = gaussian_cost(6.0)
    one = epsilon_for(cost.event, DELTA_CAP)
    two = epsilon_for(dpa.SelfComposedDpEvent(cost.event, 2), DELTA_CAP)
    ledger = init_ledger(tmp_path / "l.ledger", "adult", (one + two) / 2, DELTA_CAP)  # one fits, not two
    entry = ledger.reserve("adult", cost)
    before = ledger.summary("adult")[0].spent_epsilon
    status = ledger.mark(entry.id, "withheld")
    assert (status.kind, status.ref_id, status.status) == ("status", entry.id, "withheld")
    budget = ledger.summary("adult")[0]
    assert budget.spent_epsilon == before > 0 and budget.entries[0].status == "withheld"
    with pytest.raises(BudgetExceeded):
        ledger.reserve("adult", cost)
    with pytest.raises(LedgerError, match="already marked 'withheld'"):
        ledger.mark(entry.id, "released")
    with pytest.raises(UsageError, match="status"):
        ledger.mark(entry.id, "refunded")
    with pytest.raises(LedgerError, match="no spend with id 1"):
        ledger.mark(1, "failed")  # entry 1 is the dataset record
    assert ledger.verify().ok


def test_reserve_of_twenty_mst_like_entries_stays_fast(ledger_path: Path) -> None:
    ledger = init_ledger(ledger_path, "big", 1000.0, DELTA_CAP)
    timings = []
    for i in range(21):
        start = time.perf_counter()
        ledger.reserve("big", mst_like(30.0 + i), generator="mst")
        timings.append(time.perf_counter() - start)
    assert max(timings) < 2.0, timings


# -- concurrency ---------------------------------------------------------------------------
RACE_SIGMA = 30.0  # large noise keeps each PLD evaluation cheap
RACE_PROCESSES, RACE_SPENDS_EACH, RACE_FIT = 6, 3, 7


def _race_worker(path: str, sigma: float, epsilon: float, barrier, results) -> None:
    ledger = Ledger(path, timeout=120)
    cost = PrivacyCost("gaussian", dpa.GaussianDpEvent(sigma), epsilon, 1e-7, "pld")
    barrier.wait(timeout=120)
    for _ in range(RACE_SPENDS_EACH):
        try:
            ledger.reserve("adult", cost, generator="race")
            results.put("ok")
        except BudgetExceeded:
            results.put("refused")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            results.put(f"error {type(exc).__name__}: {exc}")


def test_concurrent_processes_never_pass_the_cap_together(tmp_path: Path) -> None:
    event = dpa.GaussianDpEvent(RACE_SIGMA)
    fit = epsilon_for(dpa.SelfComposedDpEvent(event, RACE_FIT), DELTA_CAP)
    one_more = epsilon_for(dpa.SelfComposedDpEvent(event, RACE_FIT + 1), DELTA_CAP)
    cap = (fit + one_more) / 2  # exactly RACE_FIT spends fit under it
    path = tmp_path / "race.ledger"
    init_ledger(path, "adult", cap, DELTA_CAP)

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(RACE_PROCESSES)
    results = context.Queue()
    single = epsilon_for(event, 1e-7)
    workers = [
        context.Process(target=_race_worker, args=(str(path), RACE_SIGMA, single, barrier, results))
        for _ in range(RACE_PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=240) for _ in range(RACE_PROCESSES * RACE_SPENDS_EACH)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    assert [o for o in outcomes if o not in ("ok", "refused")] == []
    assert outcomes.count("ok") == RACE_FIT
    ledger = Ledger(path)
    budget = ledger.summary("adult")[0]
    assert len(budget.entries) == RACE_FIT
    assert budget.spent_epsilon <= cap
    assert budget.spent_epsilon == pytest.approx(fit, rel=1e-3)
    assert ledger.verify().ok


def test_a_writer_waits_for_the_lock_and_gives_up_after_its_timeout(ledger_path: Path) -> None:
    blocker = sqlite3.connect(ledger_path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerError, match="locked"):
            Ledger(ledger_path, timeout=0.3).reserve("adult", gaussian_cost(10.0))
        release = threading.Timer(0.5, lambda: blocker.execute("COMMIT"))
        release.start()
        start = time.perf_counter()
        entry = Ledger(ledger_path, timeout=30).reserve("adult", gaussian_cost(10.0))  # waits, then succeeds
        assert time.perf_counter() - start >= 0.4
        release.join()
    finally:
        blocker.close()
    assert entry.id == 2 and len(Ledger(ledger_path).summary("adult")[0].entries) == 1


# -- tamper evidence -----------------------------------------------------------------------
@pytest.fixture
def busy_ledger(tmp_path: Path) -> Path:
    """Entries: 1 dataset adult, 2 spend, 3 status, 4 dataset other, 5 spend, 6 spend, 7 status."""
    path = tmp_path / "busy.ledger"
    ledger = init_ledger(path, "adult", 5.0, DELTA_CAP)
    ledger.mark(ledger.reserve("adult", gaussian_cost(5.0)).id, "released")
    ledger.add_dataset("other", 2.0, DELTA_CAP)
    ledger.reserve("other", gaussian_cost(6.0))
    ledger.mark(ledger.reserve("adult", mst_like()).id, "withheld")
    assert ledger.verify().ok and ledger.verify().entries == 7
    return path


def test_untouched_ledger_verifies(busy_ledger: Path) -> None:
    result = Ledger(busy_ledger).verify()
    assert isinstance(result, VerifyResult)
    assert result.ok and result.problems == [] and result.head_id == 7
    assert Ledger(busy_ledger).verify(expected_head=result.head_hash).ok
    assert Ledger(busy_ledger).verify(expected_head=result.head_hash[:12].upper()).ok


TAMPERING = [
    pytest.param([("UPDATE entries SET epsilon = 0.001 WHERE id = 5",)], [5], id="edit-epsilon"),
    pytest.param(
        [("UPDATE entries SET event_json = replace(event_json, '6.0', '60.0') WHERE id = 5",)],
        [5],
        id="edit-event-json",
    ),
    pytest.param([("UPDATE entries SET status = 'released' WHERE id = 7",)], [7], id="edit-status"),
    pytest.param([("UPDATE entries SET epsilon_cap = 50.0 WHERE id = 4",)], [4], id="edit-cap"),
    pytest.param([("UPDATE entries SET delta_cap = 0.01 WHERE id = 1",)], [1], id="edit-delta-cap"),
    pytest.param([("DELETE FROM entries WHERE id = 5",)], [5, 6], id="delete-row"),
    pytest.param(
        [
            ("UPDATE entries SET id = -1 WHERE id = 5",),
            ("UPDATE entries SET id = 5 WHERE id = 6",),
            ("UPDATE entries SET id = 6 WHERE id = -1",),
        ],
        [5, 6],
        id="reorder-rows",
    ),
    pytest.param([("UPDATE entries SET created_at = '2020-01-01T00:00:00+00:00' WHERE id = 2",)], [2], id="edit-time"),
]


@pytest.mark.parametrize("statements,culprits", TAMPERING)
def test_verify_names_the_tampered_entry(busy_ledger: Path, statements: list[tuple], culprits: list[int]) -> None:
    raw_sql(busy_ledger, *statements)
    ledger = Ledger(busy_ledger)
    result = ledger.verify()
    assert not result.ok
    assert set(culprits) <= set(result.bad_entry_ids)
    assert any(f"entry {culprits[0]}" in p or f"entry {culprits[-1]}" in p for p in result.problems)
    # and no budget is spent from a ledger that fails verification
    head = ledger.head_hash()
    with pytest.raises(LedgerError, match="fails verification"):
        ledger.reserve("other", gaussian_cost(50.0))
    assert ledger.head_hash() == head


def test_truncating_the_tail_is_caught_by_the_recorded_head_or_the_anchor(busy_ledger: Path) -> None:
    ledger = Ledger(busy_ledger)
    anchored = ledger.head_hash()
    raw_sql(busy_ledger, ("DELETE FROM entries WHERE id = 7",))
    naive = ledger.verify()
    assert not naive.ok and any(p.startswith("ledger:") and "deleted from the end" in p for p in naive.problems)
    rechain(busy_ledger)  # an attacker who also fixes the recorded head
    assert ledger.verify().ok  # the honest limit of a hash chain ...
    anchored_check = ledger.verify(expected_head=anchored)
    assert not anchored_check.ok and "not in the chain" in anchored_check.problems[0]  # ... and the anchor


def test_a_fully_rewritten_chain_is_caught_only_by_an_external_anchor(busy_ledger: Path) -> None:
    ledger = Ledger(busy_ledger)
    anchored = ledger.head_hash()
    before = ledger.summary("adult")[0].spent_epsilon
    raw_sql(busy_ledger, ("UPDATE entries SET event_json = replace(event_json, '5.0', '500.0') WHERE id = 2",))
    rechain(busy_ledger)
    assert ledger.summary("adult")[0].spent_epsilon < before  # the rewrite "freed" budget
    assert ledger.verify().ok
    assert not ledger.verify(expected_head=anchored).ok
    with pytest.raises(UsageError, match="hex"):
        ledger.verify(expected_head="abc")


@pytest.mark.parametrize(
    "stored",
    [
        {"type": "os.system", "command": "touch /tmp/pwned"},
        {"module_name": "dpsynth_ledger_canary", "class_name": "GaussianDpEvent", "noise_multiplier": 1.0},
        {"type": "self_composed", "count": 2.5, "event": {"type": "gaussian", "noise_multiplier": 1.0}},
        "not json at all {",
    ],
)
def test_a_stored_event_outside_the_allow_list_is_refused_on_load(busy_ledger: Path, stored) -> None:
    text = stored if isinstance(stored, str) else json.dumps(stored)
    raw_sql(busy_ledger, ("UPDATE entries SET event_json = ? WHERE id = 6", (text,)))
    rechain(busy_ledger)  # so that only the allow-list stands in the way
    ledger = Ledger(busy_ledger)
    with pytest.raises(LedgerError, match="entry 6: stored privacy event refused"):
        ledger.summary("adult")
    with pytest.raises(LedgerError, match="entry 6"):
        ledger.reserve("adult", gaussian_cost(50.0))
    result = ledger.verify()
    assert not result.ok and result.bad_entry_ids == [6]
    assert "dpsynth_ledger_canary" not in sys.modules
    assert ledger.summary("other")[0].spent_epsilon > 0  # other datasets still readable


# -- missing and corrupt files -------------------------------------------------------------
def test_missing_file_is_a_ledger_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger at .*budget init"):
        Ledger(tmp_path / "absent.ledger")
    assert not (tmp_path / "absent.ledger").exists()  # opening never creates a file


@pytest.mark.parametrize("content", [b"", b"this is not sqlite at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_garbage_file_is_a_ledger_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.ledger"
    path.write_bytes(content)
    with pytest.raises(LedgerError):
        Ledger(path).summary()


def test_other_sqlite_database_or_truncated_ledger_is_a_ledger_error(tmp_path: Path, busy_ledger: Path) -> None:
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.commit()
    con.close()
    with pytest.raises(LedgerError, match="not a dpsynth ledger"):
        Ledger(other)
    data = busy_ledger.read_bytes()
    busy_ledger.write_bytes(data[: len(data) // 2])
    with pytest.raises(LedgerError):
        Ledger(busy_ledger).summary()


def test_ledger_errors_map_to_exit_codes() -> None:
    assert issubclass(LedgerError, DpsynthError) and LedgerError.exit_code == 1
    assert BudgetExceeded.exit_code == 4
