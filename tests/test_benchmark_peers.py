"""``dpsynth benchmark --peer``: smartnoise's budget split as planned and as reported, its rows scored like ours.

The peer's environment is a stub interpreter (``bin/python`` of a fake venv) that
answers ``import snsynth`` and, instead of fitting, hands the training rows back as
its synthetic table and reports a budget split, so the whole peer path (arguments
out, CSV back, scoring, the ledger, the report) runs without smartnoise installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpsynth.benchmarking.grid import BenchmarkRequest, plan_benchmark, run_benchmark
from dpsynth.benchmarking.peers import PREPROCESSOR_SHARE, budget_split, continuous_columns, plan_peers
from dpsynth.privacy.ledger import init_ledger, open_ledger
from dpsynth.schema import Schema

COLUMNS = [
    {"name": "age", "kind": "numeric", "lower": 0, "upper": 99, "edges": [0, 15, 30, 50, 70, 99], "integer": True},
    {"name": "married", "kind": "categorical", "categories": ["yes", "no"], "nullable": True},
    {"name": "sex", "kind": "categorical", "categories": ["f", "m"]},
]
INCOME = {"name": "income", "kind": "numeric", "lower": 0, "upper": 1000, "edges": [0, 100, 500, 1000]}

STUB = """#!{python}
import json, os, shutil, sys, time
if sys.argv[1:3] == ["-c", "import snsynth"]:
    sys.exit(0)
args = json.loads(open(sys.argv[3]).read())
json.dump(args, open(os.environ["STUB_ARGS_OUT"], "w"))
mode = os.environ.get("STUB_MODE", "copy")
if mode == "hang":
    time.sleep(60)
if mode == "crash":
    sys.exit("Traceback: smartnoise fell over")
shutil.copy(args["train_csv"], args["out_csv"])  # the training rows back: the reference's own score
spent = 0.5 * args["epsilon"] if mode == "overspend" else args["preprocessor_eps"]
print("Spent something on preprocessor")  # smartnoise's chatter before the result line
print(json.dumps({{"fit_seconds": 0.5, "sample_seconds": 0.1, "peak_rss_mb": 10.0,
                  "budget_split": {{"preprocessor_eps": spent, "synthesis_eps": args["epsilon"] - spent}},
                  "versions": {{"smartnoise-synth": "stub", "opacus": "stub", "torch": "stub"}}}}))
"""


def schema(*extra: dict) -> Schema:
    return Schema.from_dict({"name": "toy", "source": "public", "columns": [*COLUMNS, *extra]})


@pytest.fixture
def stub_venv(tmp_path, monkeypatch) -> Path:
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STUB.format(python=sys.executable))
    python.chmod(0o755)
    monkeypatch.setenv("DPSYNTH_SMARTNOISE_VENV", str(tmp_path / "venv"))
    monkeypatch.setenv("STUB_ARGS_OUT", str(tmp_path / "stub-args.json"))
    return tmp_path / "stub-args.json"


@pytest.fixture
def toy(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    n = 200
    age = rng.integers(0, 99, n)
    frame = pd.DataFrame(
        {
            "age": age,
            "married": np.where(age < 15, "", rng.choice(["yes", "no"], n)),
            "sex": rng.choice(["f", "m"], n),
        }
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "t.schema.json").write_text(json.dumps(schema().to_dict()))
    return {"data": tmp_path / "t.csv", "schema": tmp_path / "t.schema.json"}


def request(toy, out: Path, **kw) -> BenchmarkRequest:
    base = dict(
        data=toy["data"],
        schema=toy["schema"],
        generators=[],
        peers=["smartnoise-mst"],
        epsilons=[1.0, 3.0],
        out=out,
        public_proxy=True,
        seed=2,
        tier=None,
    )
    return BenchmarkRequest(**{**base, **kw})


def test_the_preprocessor_gets_budget_only_when_a_column_needs_bounds():
    # smartnoise spends preprocessor_eps only on continuous columns; integers are ordinal and need no bounds
    assert continuous_columns(schema()) == []
    assert budget_split(2.0, schema()) == {"preprocessor_eps": 0.0, "synthesis_eps": 2.0}
    assert continuous_columns(schema(INCOME)) == ["income"]
    split = budget_split(2.0, schema(INCOME))
    assert split["preprocessor_eps"] == pytest.approx(2.0 * PREPROCESSOR_SHARE)
    assert split["preprocessor_eps"] + split["synthesis_eps"] == pytest.approx(2.0)
    assert budget_split(2.0, None)["preprocessor_eps"] == pytest.approx(2.0 * PREPROCESSOR_SHARE)  # the most it takes


def test_planned_peer_runs_carry_the_schema_aware_split(stub_venv):
    runs, skipped = plan_peers(["smartnoise-aim"], [1.0, 10.0], 1, 1e-6, schema())
    assert skipped == [] and [r.params["budget_split"]["preprocessor_eps"] for r in runs] == [0.0, 0.0]
    assert [r.planned.epsilon for r in runs] == pytest.approx([1.0, 10.0])  # the whole claim is charged


def test_a_peer_row_is_scored_like_ours_with_its_reported_split(stub_venv, toy, tmp_path):
    results = run_benchmark(plan_benchmark(request(toy, tmp_path / "o", epsilons=[3.0])))
    rows = {r["run_id"]: r for r in results["runs"]}
    assert set(rows) == {"smartnoise-mst-eps3-r0"}
    row = rows["smartnoise-mst-eps3-r0"]
    assert row["status"] == "ok", row["message"]
    assert row["peer"] is True
    # the stub handed back the training rows, so every score equals the reference (real training rows) exactly
    assert row["utility"]["kmarginal"] == pytest.approx(results["reference"]["utility"]["kmarginal"])
    assert row["consistency"]["any_rate"] == results["reference"]["consistency"]["any_rate"]
    assert row["budget_split"] == {"preprocessor_eps": 0.0, "synthesis_eps": 3.0}
    assert row["budget_split_reported"] == {"preprocessor_eps": 0.0, "synthesis_eps": 3.0}
    assert any("LabelTransformer" in note for note in row["peer_notes"])
    assert row["peer_versions"]["smartnoise-synth"] == "stub"
    sent = json.loads(stub_venv.read_text())  # what smartnoise was asked to do, for the last run
    assert sent["synth"] == "mst" and sent["epsilon"] == 3.0 and sent["preprocessor_eps"] == 0.0
    assert sent["categorical"] == ["married", "sex"] and sent["ordinal"] == ["age"] and sent["continuous"] == []
    assert sent["rows"] == results["rows"]["train"]
    html = (tmp_path / "o" / "report.html").read_text()
    assert "smartnoise reported" in html and "smartnoise-mst-eps3-r0" in html


def test_a_peer_fit_is_charged_as_its_own_epsilon_delta_claim(stub_venv, toy, tmp_path):
    ledger = tmp_path / "l.sqlite"
    init_ledger(ledger, "toy", 10.0, 1e-5)
    req = request(toy, tmp_path / "o", public_proxy=False, ledger=str(ledger), dataset_id="toy")
    results = run_benchmark(plan_benchmark(req))
    assert [r["status"] for r in results["runs"]] == ["ok", "ok"]
    budget = open_ledger(ledger).summary("toy")[0]
    assert len(budget.entries) == 2 and {e.status for e in budget.entries} == {"withheld"}
    # (epsilon, delta)-DP claims compose by the worst case: the sum, up to the accountant's discretisation
    assert budget.spent_epsilon == pytest.approx(1.0 + 3.0, rel=1e-4)


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        ("overspend", "error", "more than planned"),
        ("crash", "error", "smartnoise fell over"),
        ("hang", "timeout", "time limit of 2 s"),
    ],
)
def test_a_failing_peer_is_a_row_not_the_end(stub_venv, toy, tmp_path, monkeypatch, mode, status, message):
    monkeypatch.setenv("STUB_MODE", mode)
    results = run_benchmark(plan_benchmark(request(toy, tmp_path / "o", epsilons=[1.0], timeout=2)))
    row = results["runs"][0]
    assert row["status"] == status and message in row["message"], row
    assert "utility" not in row
    assert (tmp_path / "o" / "report.html").is_file()
