"""Step reporting (dpsynth.steps): JSON events in order, errors by class only, silent without a terminal.

The release tests read the ``--log-json`` file an orchestrator would tail:
every stage in order with rows, seconds and peak memory, one event per audit
test and per generator round / epoch, and no value of the training table
(its categories are recognisable strings, searched for in the log).
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

import audits
from dpsynth.cli import app
from dpsynth.errors import DataError
from dpsynth.privacy.ledger import Ledger, init_ledger
from dpsynth.release import ReleaseRequest, run_release
from dpsynth.schema import Column, Schema
from dpsynth.steps import NO_STEPS, Steps, current_steps
from dpsynth.synthesizers.mst import MST

CATEGORIES = ("zebra-ALPHA-7731", "zebra-BRAVO-7731", "zebra-CHARLIE-7731")
FLAGS = ("yak-NO-4410", "yak-YES-4410")
TOP_LEVEL = ["read", "split", "prepare", "plan", "reserve", "fit", "sample", "audit", "manifest", "report", "bundle"]


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def finished(log: list[dict], parent: str | None = None) -> list[dict]:
    return [e for e in log if e["event"] == "step" and e["parent"] == parent]


# -- the recorder ----------------------------------------------------------------------------
def test_steps_log_one_flushed_json_line_per_step_with_parent_rows_seconds_and_memory():
    log = io.StringIO()
    steps = Steps(log=log, command="test")
    with steps.step("read") as read:
        read.rows = 42
    lines_after_read = log.getvalue().splitlines()
    with steps.step("fit", rows=40, generator="mst"):
        assert current_steps() is steps
        with steps.step("round", index=1, total=2):
            with steps.step("too-deep"):  # below max_depth: timed by its parent only
                pass
        steps.record("round", 0.25, index=2, total=2)
    assert current_steps() is NO_STEPS
    steps.close(exit_code=0)

    assert json.loads(lines_after_read[-1])["name"] == "read"  # written (and flushed) when the step ended
    log_events = events(log.getvalue())
    assert [e["event"] for e in log_events][:1] == ["run"] and log_events[-1]["event"] == "done"
    assert log_events[-1]["exit_code"] == 0 and len({e["run"] for e in log_events}) == 1
    assert [e["name"] for e in finished(log_events)] == ["read", "fit"]
    assert [(e["name"], e["index"], e["total"]) for e in finished(log_events, "fit")] == [
        ("round", 1, 2),
        ("round", 2, 2),
    ]
    assert "too-deep" not in log.getvalue()
    read_event, fit_event = finished(log_events)
    assert read_event["rows"] == 42 and fit_event["rows"] == 40 and fit_event["generator"] == "mst"
    assert finished(log_events, "fit")[1]["seconds"] == pytest.approx(0.25, abs=0.05)
    for e in finished(log_events) + finished(log_events, "fit"):
        assert e["status"] == "ok" and e["seconds"] >= 0 and e["peak_memory_bytes"] > 1_000_000


def test_a_failing_step_logs_its_error_class_and_never_its_message():
    log = io.StringIO()
    with pytest.raises(DataError), Steps(log=log, command="test") as steps:
        with steps.step("outer"), steps.step("inner"):
            raise DataError(f"column 'group': value {CATEGORIES[0]!r} is not a category")
    log_events = events(log.getvalue())
    inner, outer = [e for e in log_events if e["event"] == "step"]
    assert (inner["name"], inner["status"], inner["error"]) == ("inner", "error", "DataError")
    assert (outer["name"], outer["status"], outer["error"]) == ("outer", "error", "DataError")
    assert log_events[-1] == {**log_events[-1], "event": "done", "exit_code": 2, "error": "DataError"}
    assert CATEGORIES[0] not in log.getvalue() and "not a category" not in log.getvalue()


def test_step_fields_are_json_scalars_and_cannot_replace_the_event_fields():
    steps = Steps()
    with pytest.raises(TypeError, match="JSON scalar"):
        steps.begin("fit", values=[1, 2])
    with pytest.raises(TypeError, match="own fields"):
        steps.begin("fit", status="ok")


def test_no_output_without_a_terminal_and_a_line_per_step_on_one():
    plain = io.StringIO()
    with Steps(console=Console(file=plain), command="test") as steps, steps.step("fit", rows=5):
        pass
    assert plain.getvalue() == ""
    tty = io.StringIO()
    with Steps(console=Console(file=tty, force_terminal=True, color_system=None, width=100), command="test") as steps:
        with steps.step("fit", rows=5, generator="aim"):
            steps.record("aim_round", 0.1, index=1)
    assert re.search(r"✓ fit \(aim\) \(\d+\.\d s, 5 rows\)\n", tty.getvalue())


def test_the_default_recorder_is_silent_and_stateless():
    assert current_steps() is NO_STEPS and not NO_STEPS.owns_terminal
    with NO_STEPS.step("fit", rows=3) as step:
        NO_STEPS.record("round", 1.0)
        assert step.rows == 3 and current_steps() is NO_STEPS


# -- audits: a plain callback, adapted by dpsynth ------------------------------------------------
def test_audits_call_on_test_at_each_attacks_start_and_end_and_report_a_broken_one(monkeypatch):
    rng = np.random.default_rng(0)

    def table(n: int) -> pd.DataFrame:
        return pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["a", "b"], n)})

    def broken(data):
        raise ValueError("a message that could quote data")

    monkeypatch.setattr("audits.runner.nndr", broken)
    seen: list[audits.AttackEvent] = []
    log = io.StringIO()
    steps = Steps(log=log)
    adapt = steps.audit_callback()

    def both(event: audits.AttackEvent) -> None:
        seen.append(event)
        adapt(event)

    with steps.step("audit"):
        report = audits.run(table(300), table(300), table(300), tier="quick", on_test=both)
    names = [r.name for r in report.results]
    starts = [e for e in seen if e.phase == "start"]
    assert [e.index for e in starts] == list(range(len(starts))) and {e.total for e in seen} == {len(starts)}
    assert [e.phase for e in seen] == ["start", "end"] * len(starts)
    ends = {e.name: e for e in seen if e.phase == "end"}
    assert ends["nndr_ratio"].status == "error" and ends["nndr_ratio"].error == "ValueError"
    assert all(e.status == "ok" for name, e in ends.items() if name != "nndr_ratio") and "nndr_ratio" in names
    logged = {e["name"]: e for e in finished(events(log.getvalue()), "audit")}
    assert list(logged) == [e.name for e in starts]
    assert logged["nndr_ratio"]["status"] == "error" and logged["nndr_ratio"]["error"] == "ValueError"
    assert logged["dcr_share"]["index"] == 2 and "could quote" not in log.getvalue()


# -- generators report their rounds and epochs ----------------------------------------------------
def test_aim_reports_one_sub_step_per_round():
    from dpsynth.synthesizers.aim import AIM
    from tests.synthesizers.test_aim import make_frame, make_schema

    log = io.StringIO()
    steps = Steps(log=log)
    with steps.step("fit"):
        model = AIM(epsilon=1.0, delta=1e-6, random_state=0, max_iters=100, rounds=5).fit(
            make_frame(300), make_schema()
        )
    rounds = [e for e in finished(events(log.getvalue()), "fit") if e["name"] == "aim_round"]
    assert len(rounds) == model.privacy_cost_.details["rounds"] >= 1
    assert [e["index"] for e in rounds] == list(range(1, len(rounds) + 1))
    assert rounds[-1]["budget_used"] == 1.0 and all(e["rounds_planned"] == 5 for e in rounds)
    assert [e["name"] for e in finished(events(log.getvalue()), "fit")][0] == "aim_one_way"


def test_dpsgd_epochs_are_sub_steps_and_the_generators_own_bar_yields_to_the_display(capsys):
    """DP-SGD's training loop calls ``epoch_progress``'s update once per epoch (dpsynth/synthesizers/dpsgd.py)."""
    pytest.importorskip("torch")
    from dpsynth.synthesizers.torch_support import epoch_progress

    log, screen = io.StringIO(), io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system=None, width=100)
    with Steps(log=log, console=console) as steps, steps.step("fit"):
        with epoch_progress(True, "dpvae (DP-SGD)", 3) as update:  # a step display is live: no second bar
            for _ in range(3):
                update(advance=1, info="loss=0.5")
    epochs = finished(events(log.getvalue()), "fit")
    assert [(e["name"], e["index"], e["total"]) for e in epochs] == [("epoch", i, 3) for i in (1, 2, 3)]
    assert "dpvae (DP-SGD)" not in screen.getvalue() and "loss" not in log.getvalue()
    capsys.readouterr()
    with Steps(owns_terminal=True) as steps, steps.step("fit"):  # the CLI without a terminal: no bar either
        with epoch_progress(True, "dpvae (DP-SGD)", 2) as update:
            update(advance=2)
    assert "DP-SGD" not in capsys.readouterr().out
    with epoch_progress(True, "dpvae (DP-SGD)", 2) as update:  # the library without a recorder: its own bar
        update(advance=2)
    assert "DP-SGD" in capsys.readouterr().out


# -- the release and the CLI ---------------------------------------------------------------------
@pytest.fixture()
def toy(tmp_path: Path) -> dict:
    """A 1,500-row table whose every category is a recognisable string, its public schema and a ledger."""
    rng = np.random.default_rng(0)
    n = 1500
    group = rng.choice(CATEGORIES, size=n, p=[0.5, 0.3, 0.2])
    flag = np.where((group == CATEGORIES[0]) ^ (rng.random(n) < 0.1), FLAGS[1], FLAGS[0])
    frame = pd.DataFrame({"group": group, "value": np.round(rng.uniform(0, 100, size=n), 6), "flag": flag})
    frame.to_csv(tmp_path / "data.csv", index=False)
    schema = Schema(
        columns=(
            Column("group", "categorical", categories=CATEGORIES),
            Column("value", "numeric", lower=0, upper=100, bins=10),
            Column("flag", "categorical", categories=FLAGS),
        ),
        name="toy",
    )
    schema.save(tmp_path / "schema.json")
    init_ledger(tmp_path / "ledger.sqlite", "toy", 5.0, 1e-5)
    return {"tmp": tmp_path, "data": tmp_path / "data.csv", "schema": tmp_path / "schema.json", "frame": frame}


def release_args(toy: dict, out: str, *extra: str) -> list[str]:
    t = toy["tmp"]
    return [
        "release",
        str(toy["data"]),
        "--schema",
        str(toy["schema"]),
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--ledger",
        str(t / "ledger.sqlite"),
        "--dataset",
        "toy",
        "--out",
        str(t / out),
        "--seed",
        "5",
        "--param",
        "iters=300",
        *extra,
    ]


def spends(toy: dict) -> list[str]:
    with sqlite3.connect(toy["tmp"] / "ledger.sqlite") as con:
        return [row[0] for row in con.execute("SELECT id FROM entries WHERE kind = 'spend'")]


def assert_no_training_value(text: str) -> None:
    for value in (*CATEGORIES, *FLAGS, "zebra", "yak-"):
        assert value not in text


def test_release_log_has_every_step_in_order_and_no_training_value(toy):
    log_path = toy["tmp"] / "steps.jsonl"
    result = CliRunner().invoke(app, release_args(toy, "r1", "--log-json", str(log_path)), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = log_path.read_text()
    log = events(text)
    assert log[0]["event"] == "run" and log[0]["command"] == "release"
    assert log[-1]["event"] == "done" and log[-1]["exit_code"] == 0
    top = finished(log)
    assert [e["name"] for e in top] == TOP_LEVEL
    assert all(e["status"] == "ok" and e["seconds"] >= 0 and e["peak_memory_bytes"] > 0 for e in top)
    by_name = {e["name"]: e for e in top}
    manifest = json.loads((toy["tmp"] / "r1" / "manifest.json").read_text())
    assert by_name["read"]["rows"] == 1500
    assert by_name["fit"]["rows"] == manifest["rows"]["train"] and by_name["fit"]["generator"] == "mst"
    assert by_name["sample"]["rows"] == by_name["audit"]["rows"] == manifest["rows"]["synthetic"]
    assert by_name["reserve"]["epsilon"] == pytest.approx(manifest["privacy"]["epsilon"])
    assert by_name["audit"]["decision"] == "PASS" and by_name["audit"]["tier"] == "quick"
    tests = finished(log, "audit")
    assert sorted(e["name"] for e in tests) == sorted(
        r["name"] for r in manifest["audit"]["results"] if "_tpr_" not in r["name"]
    )
    assert [e["index"] for e in tests] == list(range(1, len(tests) + 1)) and tests[0]["total"] == len(tests)
    assert [e["name"] for e in finished(log, "fit")] == [
        "mst_one_way",
        "mst_select_tree",
        "mst_two_way",
        "mst_estimate",
    ]
    order = [e["name"] for e in log if e["event"] == "step"]
    assert order.index("sample") < order.index(tests[0]["name"]) < order.index("audit") < order.index("report")
    assert_no_training_value(text)
    # without a terminal the command prints only its final lines: the seed note and the outcome
    assert "✓" not in result.output and "mst_estimate" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("RELEASED")]


def test_a_failing_fit_logs_an_error_and_still_keeps_the_spend(toy, monkeypatch):
    def boom(self, *args, **kwargs):
        raise RuntimeError(f"simulated crash near {CATEGORIES[1]}")

    monkeypatch.setattr(MST, "_fit", boom)
    log = io.StringIO()
    request = ReleaseRequest(
        data=toy["data"],
        schema=toy["schema"],
        generator="mst",
        epsilon=1.0,
        delta=1e-6,
        ledger=toy["tmp"] / "ledger.sqlite",
        dataset_id="toy",
        out=toy["tmp"] / "r2",
        seed=5,
    )
    with pytest.raises(RuntimeError), Steps(log=log, command="release") as steps:
        run_release(request, steps=steps)
    log_events = events(log.getvalue())
    top = finished(log_events)
    assert [e["name"] for e in top] == TOP_LEVEL[:6]
    assert (top[-1]["status"], top[-1]["error"]) == ("error", "RuntimeError")
    assert all(e["status"] == "ok" for e in top[:-1])
    assert log_events[-1]["event"] == "done" and log_events[-1]["error"] == "RuntimeError"
    budget = Ledger(toy["tmp"] / "ledger.sqlite").summary("toy")[0]
    assert [e.status for e in budget.entries] == ["failed"] and budget.spent_epsilon > 0.8  # never refunded
    assert not (toy["tmp"] / "r2").exists()
    assert_no_training_value(log.getvalue())


def test_out_of_domain_data_logs_an_error_spends_nothing_and_keeps_the_value_out_of_the_log(toy):
    bad = toy["frame"].copy()
    bad.loc[7, "group"] = "zebra-INTRUDER-7731"
    bad.to_csv(toy["data"], index=False)
    log_path = toy["tmp"] / "bad.jsonl"
    result = CliRunner().invoke(app, release_args(toy, "r3", "--log-json", str(log_path)), catch_exceptions=False)
    assert result.exit_code == 2 and "zebra-INTRUDER-7731" in result.output  # the user is told which value
    text = log_path.read_text()
    failed = [e for e in events(text) if e["event"] == "step" and e["status"] == "error"]
    assert [(e["name"], e["error"]) for e in failed] in ([("read", "DataError")], [("prepare", "DataError")])
    assert events(text)[-1]["exit_code"] == 2 and spends(toy) == []
    assert "INTRUDER" not in text
    assert_no_training_value(text)


def test_log_json_to_stderr_and_a_missing_log_directory(toy):
    runner = CliRunner()
    result = runner.invoke(app, release_args(toy, "r4", "--log-json", str(toy["tmp"] / "no" / "log.jsonl")))
    assert result.exit_code == 2 and "--log-json" in result.output and spends(toy) == []
    audit_out = toy["tmp"] / "audit"
    frame = toy["frame"]
    for name, part in (("train", frame[:700]), ("holdout", frame[700:1400]), ("synthetic", frame[1400:])):
        part.to_csv(toy["tmp"] / f"{name}.csv", index=False)
    args = ["audit", "--schema", str(toy["schema"]), "--out", str(audit_out), "--log-json", "-"]
    for name in ("train", "holdout", "synthetic"):
        args += [f"--{name}", str(toy["tmp"] / f"{name}.csv")]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code in (0, 3), result.output
    log = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [(e["name"], e.get("table")) for e in finished(log)] == [
        ("read", "train"),
        ("read", "holdout"),
        ("read", "synthetic"),
        ("audit", None),
        ("report", None),
    ]
    assert finished(log)[0]["rows"] == 700 and len(finished(log, "audit")) == finished(log, "audit")[0]["total"]
    assert log[-1]["event"] == "done" and log[-1]["exit_code"] == result.exit_code
    assert_no_training_value(result.stderr)


def test_dp_schema_draft_logs_its_steps_and_no_value(tmp_path):
    from tests.test_cli_discovery import draft_args
    from tests.test_discovery import text_table

    table = text_table(3000)
    table.to_csv(tmp_path / "toy.csv", index=False)
    init_ledger(tmp_path / "ledger.sqlite", "toy", 2.0, 1e-5)
    setup = {"data": tmp_path / "toy.csv", "ledger": tmp_path / "ledger.sqlite", "root": tmp_path}
    log_path = tmp_path / "draft.jsonl"
    args = [str(a) for a in [*draft_args(setup, tmp_path / "s.json"), "--log-json", log_path]]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = log_path.read_text()
    top = finished(events(text))
    assert [e["name"] for e in top] == ["read", "check", "reserve", "discover", "write"]
    assert top[0]["rows"] == top[3]["rows"] == 3000 and 0 < top[2]["epsilon"] <= 0.5  # the planned spend
    values = {*table["colour"].unique(), *table["label"].unique()}  # the discovered categories among them
    assert len(values) == 6 and [v for v in values if v in text] == []


def test_a_log_that_fails_mid_run_stops_logging_and_the_command_goes_on(capsys):
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            if "fit" in text:
                raise OSError(28, "No space left on device")
            return super().write(text)

    log = FullDisk()
    with Steps(log=log) as steps:
        with steps.step("read"):
            pass
        with steps.step("fit"):
            pass
        with steps.step("sample"):
            pass
    assert [e["name"] for e in finished(events(log.getvalue()))] == ["read"]
    assert "step log stopped (OSError)" in capsys.readouterr().err
