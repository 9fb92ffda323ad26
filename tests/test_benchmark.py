"""``dpsynth benchmark`` end to end: the ledger charge, a crashing run as a row, the report in a browser.

One real grid (MST and AIM at epsilon 1 and 3 on a 300-row table, AIM at 3
made to crash by the worker's test-only fault hook) runs once for the module;
the other tests only plan (refusals) or time out at once (public proxy).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dpsynth.benchmarking.worker import TEST_FAULT_ENV
from dpsynth.cli import app
from dpsynth.privacy.accountant import compose, epsilon_for
from dpsynth.privacy.ledger import init_ledger, open_ledger
from dpsynth.schema import Schema
from dpsynth.synthesizers import make_synthesizer

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
SCHEMA = {
    "name": "toy-people",
    "source": "public",
    "target": "flag",
    "columns": [
        {"name": "age", "kind": "numeric", "lower": 0, "upper": 99, "edges": [0, 15, 30, 50, 70, 99], "integer": True},
        {"name": "married", "kind": "categorical", "categories": ["yes", "no"], "nullable": True},
        {"name": "sex", "kind": "categorical", "categories": ["f", "m"]},
        {"name": "flag", "kind": "categorical", "categories": ["0", "1"]},
    ],
    "rules": [
        {"name": "child_married", "if": {"column": "age", "lt": 15}, "then": {"column": "married", "is_null": True}}
    ],
}


def invoke(*args, env: dict | None = None):
    return runner.invoke(app, ["benchmark", *[str(a) for a in args]], catch_exceptions=False, env=env)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    n = 300
    age = rng.integers(0, 99, n)
    married = np.where(age < 15, "", rng.choice(["yes", "no"], n))
    sex = rng.choice(["f", "m"], n)
    flag = np.where((sex == "f") ^ (rng.random(n) < 0.2), "1", "0")
    pd.DataFrame({"age": age, "married": married, "sex": sex, "flag": flag}).to_csv(root / "t.csv", index=False)
    (root / "t.schema.json").write_text(json.dumps(SCHEMA))
    return {"root": root, "data": root / "t.csv", "schema": root / "t.schema.json"}


def grid_args(toy, ledger: Path, out: Path, *extra: str) -> list:
    return [
        toy["data"],
        "--schema",
        toy["schema"],
        "--ledger",
        ledger,
        "--dataset",
        "toy",
        "--out",
        out,
        "--seed",
        "3",
        "--rows",
        "200",
        *extra,
    ]


@pytest.fixture(scope="module")
def charged(toy) -> dict:
    ledger = toy["root"] / "ledger.sqlite"
    init_ledger(ledger, "toy", 20.0, 1e-5)
    out = toy["root"] / "out"
    result = invoke(
        *grid_args(toy, ledger, out, "--generators", "mst,aim", "--epsilons", "1,3", "--yes"),
        *(
            "--param",
            "aim:max_seconds=5",
            "--param",
            "aim:max_iters=50",
            "--param",
            "mst:iters=100",
            "--timeout",
            "600",
        ),
        env={TEST_FAULT_ENV: "crash@aim@3"},
    )
    assert result.exit_code == 0, result.output
    return {"ledger": ledger, "out": out, "results": json.loads((out / "results.json").read_text()), "output": result}


@pytest.mark.slow  # the module's one real grid: three fits in worker processes
def test_the_ledger_is_charged_exactly_the_composed_total(charged, toy):
    results = charged["results"]
    budget = open_ledger(charged["ledger"]).summary("toy")[0]
    assert len(budget.entries) == 4  # every run reserved before it ran, the crashed one included
    # recompute the grid's cost independently: each run's plan on the training rows, composed at the delta cap
    schema = Schema.load(toy["schema"])
    events = [
        make_synthesizer(r["generator"], epsilon=r["epsilon"], delta=r["delta"], **r["params"])
        .planned_cost(results["rows"]["train"], schema)
        .event
        for r in results["runs"]
    ]
    expected = float(epsilon_for(compose(events), 1e-5))
    assert budget.spent_epsilon == pytest.approx(expected, rel=1e-9)
    assert results["budget"]["grid_composed_epsilon"] == pytest.approx(expected, rel=1e-9)
    assert results["budget"]["spent_after"] == pytest.approx(expected, rel=1e-9)
    assert expected < results["budget"]["naive_sum_epsilon"] == pytest.approx(2 * (1 + 3), rel=1e-3)
    states = {e.purpose.rsplit(" ", 1)[-1]: e.status for e in budget.entries}
    assert states == {
        "mst-eps1-r0": "withheld",
        "mst-eps3-r0": "withheld",
        "aim-eps1-r0": "withheld",
        "aim-eps3-r0": "failed",
    }
    assert "composed at delta=1e-05" in charged["output"].stderr


@pytest.mark.slow  # the module's one real grid: three fits in worker processes
def test_a_crashing_generator_is_a_row_not_the_end(charged):
    rows = {r["run_id"]: r for r in charged["results"]["runs"]}
    crashed = rows["aim-eps3-r0"]
    assert crashed["status"] == "error" and "injected test fault" in crashed["message"]
    assert "utility" not in crashed
    for run_id in ("mst-eps1-r0", "mst-eps3-r0", "aim-eps1-r0"):
        row = rows[run_id]
        assert row["status"] == "ok", row["message"]
        assert 0 < row["utility"]["kmarginal"] <= 1000
        assert row["audit"]["decision"] in ("PASS", "FAIL") and row["audit"]["results"]
        assert "child_married" in row["consistency"]["rules"]
        assert row["cost"]["fit_seconds"] > 0 and row["cost"]["peak_rss_mb"] > 0
    recs = {r["epsilon"]: r for r in charged["results"]["recommendations"]}
    assert recs[3.0]["generator"] in ("mst", None) and any("aim" in x for x in recs[3.0]["excluded"])
    assert charged["results"]["reference"]["consistency"]["any_rate"] == 0  # the real rows keep the rule


@pytest.mark.slow  # the module's one real grid: three fits in worker processes
def test_results_json_is_strict_json_with_the_command(charged):
    text = (charged["out"] / "results.json").read_text()

    def refuse(constant):
        raise ValueError(constant)

    json.loads(text, parse_constant=refuse)  # no NaN / Infinity for pipelines
    command = charged["results"]["command"]
    assert (
        command.startswith("dpsynth benchmark ") and "--epsilons 1,3" in command and "--param mst:iters=100" in command
    )
    assert "dpsynth" in charged["results"]["versions"]


@pytest.mark.slow  # the module's one real grid: three fits in worker processes
def test_the_report_renders_in_a_headless_browser(charged):
    if not CHROMIUM.exists():
        pytest.skip(f"chromium not found at {CHROMIUM}: cannot render the report headless")
    report = charged["out"] / "report.html"
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", report.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for text in ("Recommendation per epsilon", "Utility vs epsilon", "Risk vs epsilon", "child_married"):
        assert text in dom
    assert dom.count("data:image/png;base64,") >= 2
    assert "aim-eps3-r0" in dom and "injected test fault" in dom


def test_over_the_cap_is_refused_before_anything_is_spent(toy, tmp_path):
    ledger = tmp_path / "small.sqlite"
    init_ledger(ledger, "toy", 1.5, 1e-5)
    # each run (epsilon 1) fits the cap, and so would two composed; three compose to more than 1.5
    args = grid_args(toy, ledger, tmp_path / "o", "--generators", "mst", "--epsilons", "1", "--repeats", "3", "--yes")
    result = invoke(*args)
    assert result.exit_code == 4, result.output
    assert "over the cap" in result.stderr and "Nothing was spent" in result.stderr
    assert open_ledger(ledger).summary("toy")[0].entries == []
    assert not (tmp_path / "o").exists()


def test_a_script_must_confirm_the_spend_with_yes(toy, tmp_path):
    ledger = tmp_path / "l.sqlite"
    init_ledger(ledger, "toy", 10, 1e-5)
    result = invoke(*grid_args(toy, ledger, tmp_path / "o", "--generators", "mst", "--epsilons", "1"))
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert open_ledger(ledger).summary("toy")[0].entries == []


def test_public_proxy_charges_nothing_and_a_timeout_is_a_row(toy, tmp_path):
    ledger = tmp_path / "l.sqlite"
    init_ledger(ledger, "toy", 10, 1e-5)
    out = tmp_path / "proxy"
    args = grid_args(toy, ledger, out, "--generators", "mst", "--epsilons", "1", "--public-proxy", "--timeout", "2")
    result = invoke(*args, env={TEST_FAULT_ENV: "hang@mst"})
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["budget"]["charged"] is False and results["runs"][0]["ledger_entry"] is None
    assert results["runs"][0]["status"] == "timeout"
    assert open_ledger(ledger).summary("toy")[0].entries == []
    assert "nothing is charged" in result.stderr
    assert (out / "report.html").is_file()


def test_unknown_generator_and_missing_ledger_are_usage_errors(toy, tmp_path):
    bad = invoke(toy["data"], "--schema", toy["schema"], "--generators", "mst,gan", "--out", tmp_path / "o")
    assert bad.exit_code == 2 and "gan" in bad.stderr
    no_ledger = invoke(toy["data"], "--schema", toy["schema"], "--out", tmp_path / "o")
    assert no_ledger.exit_code == 2 and "--public-proxy" in no_ledger.stderr


def test_an_absent_peer_is_skipped_with_a_message_and_an_unknown_one_refused(monkeypatch, tmp_path):
    from dpsynth.benchmarking.peers import plan_peers
    from dpsynth.errors import UsageError

    monkeypatch.setenv("DPSYNTH_SMARTNOISE_VENV", str(tmp_path / "no-venv"))
    runs, skipped = plan_peers(["smartnoise-mst", "smartnoise-aim"], [1.0], 2, 1e-6)
    assert runs == [] and [s["peer"] for s in skipped] == ["smartnoise-mst", "smartnoise-aim"]
    assert "no smartnoise environment" in skipped[0]["message"]
    broken = tmp_path / "broken" / "bin" / "python"
    broken.parent.mkdir(parents=True)
    broken.write_text("#!/bin/sh\nexit 1\n")  # a half-built venv: snsynth does not import
    broken.chmod(0o755)
    monkeypatch.setenv("DPSYNTH_SMARTNOISE_VENV", str(tmp_path / "broken"))
    assert "cannot import snsynth" in plan_peers(["smartnoise-mst"], [1.0], 1, 1e-6)[1][0]["message"]
    with pytest.raises(UsageError, match="smartnoise-gan"):
        plan_peers(["smartnoise-gan"], [1.0], 1, 1e-6)


def test_a_present_peer_is_planned_and_priced_with_its_budget_split(monkeypatch, tmp_path):
    from dpsynth.benchmarking.peers import PREPROCESSOR_SHARE, plan_peers

    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\nexit 0\n")  # stands in for a venv whose python imports snsynth
    python.chmod(0o755)
    monkeypatch.setenv("DPSYNTH_SMARTNOISE_VENV", str(tmp_path / "venv"))
    runs, skipped = plan_peers(["smartnoise-mst"], [1.0, 3.0], 1, 1e-6)
    assert skipped == [] and [r.run_id for r in runs] == ["smartnoise-mst-eps1-r0", "smartnoise-mst-eps3-r0"]
    assert runs[1].planned.epsilon == pytest.approx(3.0)  # charged as (epsilon, delta)-DP, its own claim
    assert runs[1].params["budget_split"]["preprocessor_eps"] == pytest.approx(3.0 * PREPROCESSOR_SHARE)


def test_the_split_is_made_once_and_every_run_has_its_own_seed(toy, tmp_path):
    from dpsynth.benchmarking.grid import BenchmarkRequest, plan_benchmark

    def plan(seed):
        return plan_benchmark(
            BenchmarkRequest(
                data=toy["data"],
                schema=toy["schema"],
                generators=["mst"],
                epsilons=[1.0, 3.0],
                repeats=2,
                out=tmp_path / "o",
                public_proxy=True,
                seed=seed,
            )
        )

    a, b, c = plan(5), plan(5), plan(6)
    assert len(a.train) + len(a.holdout) == 300 and len(a.holdout) > 0
    assert a.train.equals(b.train) and not a.train.equals(c.train)  # the split follows --seed
    assert [r.seed for r in a.runs] == [r.seed for r in b.runs] and len({r.seed for r in a.runs}) == 4
    assert [r.planned.epsilon for r in a.runs] == pytest.approx([1, 1, 3, 3], rel=1e-3)
    assert not (tmp_path / "o").exists()  # planning writes nothing


def test_a_spend_landing_after_the_plan_makes_a_refused_row_not_a_crash(toy, tmp_path):
    from dpsynth.benchmarking.grid import BenchmarkRequest, plan_benchmark, run_benchmark
    from dpsynth.privacy.cost import PrivacyCost
    from dpsynth.privacy.events import EpsilonDeltaDpEvent

    ledger = tmp_path / "l.sqlite"
    init_ledger(ledger, "toy", 1.5, 1e-5)
    request = BenchmarkRequest(
        data=toy["data"],
        schema=toy["schema"],
        generators=["mst"],
        epsilons=[1.0],
        out=tmp_path / "o",
        ledger=str(ledger),
        dataset_id="toy",
        tier=None,
    )
    plan = plan_benchmark(request)  # fits the cap now
    other = PrivacyCost.of("other", EpsilonDeltaDpEvent(1.0, 1e-7), 1e-7)
    open_ledger(ledger).reserve("toy", other, purpose="a release elsewhere")
    results = run_benchmark(plan)
    assert results["runs"][0]["status"] == "over-budget" and results["runs"][0]["ledger_entry"] is None
    assert len(open_ledger(ledger).summary("toy")[0].entries) == 1  # only the other spend
    assert (tmp_path / "o" / "report.html").is_file()
