"""``dpsynth schema draft --epsilon``: DP domain discovery from the command line, with the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dpsynth.dp_draft
from dpsynth.cli import app
from dpsynth.discovery import plan_discovery
from dpsynth.privacy.cost import event_to_dict
from dpsynth.privacy.ledger import Ledger
from dpsynth.schema import Schema
from tests.test_discovery import UNIQUE, text_table

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def setup(tmp_path) -> dict[str, Path]:
    data = tmp_path / "toy.csv"
    text_table(3000).to_csv(data, index=False)
    ledger = tmp_path / "ledger.sqlite"
    assert invoke("budget", "init", ledger, "--dataset", "toy", "--epsilon", "2", "--delta", "1e-5").exit_code == 0
    return {"data": data, "ledger": ledger, "root": tmp_path}


def draft_args(s: dict[str, Path], out: Path, epsilon: str = "0.5", *extra: str) -> list:
    return [
        "schema",
        "draft",
        s["data"],
        "-o",
        out,
        "--epsilon",
        epsilon,
        "--delta",
        "1e-6",
        "--ledger",
        s["ledger"],
        "--dataset",
        "toy",
        "--integer",
        "age",
        "--numeric",
        "score",
        "--range",
        "age=0:120",
        *extra,
    ]


def spends(ledger: Path):
    return [e for e in Ledger(ledger).summary("toy")[0].entries if e.kind == "spend"]


def test_dp_draft_spends_from_the_ledger_and_writes_a_dp_schema(setup) -> None:
    out = setup["root"] / "schema.json"
    result = invoke(*draft_args(setup, out, "0.5", "--target", "label"))
    assert result.exit_code == 0, result.output
    schema = Schema.load(out)
    assert schema.source == "dp" and schema.target == "label" and schema.is_public
    assert UNIQUE not in schema["colour"].categories
    [spend] = spends(setup["ledger"])
    assert spend.status == "released" and spend.generator == "schema-discovery"
    assert spend.mechanism == "dp-schema-discovery" and spend.delta == 1e-6
    assert 0.4 < spend.epsilon <= 0.5
    # exactly the cost of the plan the options describe (the plan depends on header and hints only)
    plan = plan_discovery(
        ["age", "score", "colour", "label"], 0.5, 1e-6, integer=["age"], numeric=["score"], ranges={"age": (0.0, 120.0)}
    )
    assert spend.epsilon == plan.cost.epsilon and spend.event == event_to_dict(plan.cost.event)
    assert f"spent epsilon={spend.epsilon:.4g}" in result.output
    # the ledger re-composes the stored event (at its delta cap 1e-5, so no more than the spend)
    assert Ledger(setup["ledger"]).summary("toy")[0].spent_epsilon <= 0.5
    # the table conforms to the schema (rare values go to "other", tails are clipped)
    check = invoke("schema", "check", out, "--data", setup["data"])
    assert check.exit_code == 0, check.output
    assert "source dp" in check.output


def test_over_budget_is_refused_with_exit_4_and_nothing_spent(setup) -> None:
    out = setup["root"] / "s.json"
    result = invoke(*draft_args(setup, out, "3"))
    assert result.exit_code == 4 and "over budget" in result.output and "Traceback" not in result.output
    assert spends(setup["ledger"]) == [] and not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--numeric", "colour"], "'colour' is declared numeric"),
        (["--drop", "nope"], "--drop names column(s) ['nope']"),
        (["--range", "age=0-120"], "COLUMN=LOW:HIGH"),
        (["--edges", "log"], "edges must be"),
        (["--target", "nope"], "--target 'nope'"),
        (["--target", "label", "--drop", "label"], "also in --drop"),
        (["-o", "/nonexistent-dir/s.json"], "does not exist"),
    ],
)
def test_bad_input_exits_2_before_any_spend(setup, extra, message) -> None:
    out = setup["root"] / "s.json"
    result = invoke(*draft_args(setup, out, "0.5", *extra))
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", "") and "Traceback" not in result.output
    assert spends(setup["ledger"]) == [] and not out.exists()


def test_missing_ledger_options_and_dp_options_without_epsilon(setup) -> None:
    out = setup["root"] / "s.json"
    missing = invoke("schema", "draft", setup["data"], "-o", out, "--epsilon", "0.5")
    assert missing.exit_code == 2 and "--delta, --ledger, --dataset" in missing.output
    stray = invoke("schema", "draft", setup["data"], "-o", out, "--ledger", setup["ledger"], "--integer", "age")
    assert stray.exit_code == 2 and "only apply to DP discovery" in stray.output
    args = draft_args(setup, out)
    args[args.index("toy")] = "other"
    unknown = invoke(*args)
    assert unknown.exit_code != 0 and "other" in unknown.output and "Traceback" not in unknown.output
    assert not out.exists()


def test_delta_not_below_one_over_n_is_refused(setup) -> None:
    args = draft_args(setup, setup["root"] / "s.json")
    args[args.index("1e-6")] = "1e-3"  # 3000 rows: 1/n = 3.3e-4
    result = invoke(*args)
    assert result.exit_code == 2 and "not below 1/n" in result.output
    assert spends(setup["ledger"]) == []


def test_a_crash_after_the_reservation_keeps_the_spend(setup, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("mechanism crashed")

    monkeypatch.setattr(dpsynth.dp_draft, "run_discovery", boom)
    out = setup["root"] / "s.json"
    with pytest.raises(RuntimeError, match="mechanism crashed"):
        invoke(*draft_args(setup, out))
    [spend] = spends(setup["ledger"])
    assert spend.status == "failed" and spend.epsilon > 0 and not out.exists()


def test_plain_draft_still_marks_private_data(setup) -> None:
    out = setup["root"] / "draft.json"
    result = invoke("schema", "draft", setup["data"], "-o", out)
    assert result.exit_code == 0 and json.loads(out.read_text())["source"] == "private-data"
    assert UNIQUE in Schema.load(out)["colour"].categories  # what the DP draft never releases
    assert spends(setup["ledger"]) == []


def test_a_dataset_delta_cap_not_below_one_over_n_is_refused(setup) -> None:
    from dpsynth.privacy.ledger import init_ledger

    init_ledger(setup["ledger"], "loose", 5.0, 0.01)  # 3000 rows: 1/n = 3.3e-4
    args = draft_args(setup, setup["root"] / "s.json")
    args[args.index("toy")] = "loose"
    result = invoke(*args)
    assert result.exit_code == 2 and "delta cap of 0.01, which is not below 1/n" in result.output
    assert not (setup["root"] / "s.json").exists()
