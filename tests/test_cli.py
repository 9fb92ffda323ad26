"""The CLI as a user drives it: exit codes, clear messages, no partial output.

A small slice of the RAND HIE demo table (shipped by statsmodels) goes
through ``dpsynth release`` with MST; every refusal path must leave the
output directory absent and say what was wrong.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dpsynth.cli import app
from dpsynth.demo import demo_schema, demo_table

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    """A 3,000-row slice of the demo table, its public schema and a fresh ledger."""
    root = tmp_path_factory.mktemp("demo")
    data = root / "randhie.csv"
    demo_table("randhie").sample(3000, random_state=0).to_csv(data, index=False)
    schema = root / "randhie.schema.json"
    demo_schema("randhie").save(schema)
    ledger = root / "ledger.sqlite"
    result = invoke("budget", "init", ledger, "--dataset", "hie", "--epsilon", "2.5", "--delta", "1e-5")
    assert result.exit_code == 0, result.output
    return {"root": root, "data": data, "schema": schema, "ledger": ledger}


def release_args(
    demo: dict[str, Path], out: Path, *extra: str, data: Path | None = None, epsilon: str = "1", delta: str = "1e-6"
) -> list[str]:
    return [
        "release",
        data or demo["data"],
        "--schema",
        demo["schema"],
        "--generator",
        "mst",
        "--epsilon",
        epsilon,
        "--delta",
        delta,
        "--ledger",
        demo["ledger"],
        "--dataset",
        "hie",
        "--out",
        out,
        "--seed",
        "3",
        *extra,
    ]


def spends(ledger: Path) -> int:
    with sqlite3.connect(ledger) as con:
        return con.execute("SELECT COUNT(*) FROM entries WHERE kind = 'spend'").fetchone()[0]


def test_release_passes_and_writes_a_complete_directory(demo):
    out = demo["root"] / "release-ok"
    result = invoke(*release_args(demo, out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "audit.json",
        "bundle.json",
        "bundle.sig.json",
        "manifest.json",
        "privacy.json",
        "report.html",
        "synthetic.csv",
    ]
    assert invoke("verify", out, "--ledger", demo["ledger"]).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["decision"] == "PASS"
    assert manifest["privacy"]["epsilon"] <= 1.0 + 1e-9
    assert manifest["privacy"]["epsilon"] > 0.95  # calibrated to the target, not far below it
    # the ledger composes at the dataset's delta cap (1e-5), where this release costs a little less
    from dpsynth.privacy.accountant import epsilon_for
    from dpsynth.privacy.cost import event_from_dict

    at_cap = epsilon_for(event_from_dict(manifest["privacy"]["event"]), 1e-5)
    assert manifest["budget"]["spent_epsilon"] == pytest.approx(at_cap, rel=1e-6)
    assert at_cap < manifest["privacy"]["epsilon"]
    assert manifest["schema"]["leaked_domain"] is False
    assert manifest["noise_source"].startswith("fixed-seed") and manifest["seed"] == 3
    synthetic = pd.read_csv(out / "synthetic.csv")
    assert list(synthetic.columns) == demo_schema("randhie").names
    assert manifest["rows"]["train"] + manifest["rows"]["holdout"] == 3000
    assert manifest["rows"]["row_count"] == "dp-estimate"
    assert len(synthetic) == manifest["rows"]["synthetic"]  # MST's noisy total, not the exact training count
    import hashlib

    assert hashlib.sha256((out / "synthetic.csv").read_bytes()).hexdigest() == manifest["synthetic_sha256"]
    html = (out / "report.html").read_text()
    assert "PASS" in html
    # the ledger recorded it as released and still verifies
    shown = invoke("budget", "show", demo["ledger"], "--dataset", "hie", "--json")
    assert shown.exit_code == 0
    assert "released" in shown.output
    assert invoke("budget", "verify", demo["ledger"]).exit_code == 0


def test_gate_refusal_exits_3_releases_no_data_and_keeps_the_spend(demo, tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text('[tests.dcr_share]\nmax = 0.0\njudge = "point"\n')
    out = demo["root"] / "release-refused"
    before = spends(demo["ledger"])
    result = invoke(*release_args(demo, out, "--policy", strict, epsilon="0.2"))
    assert result.exit_code == 3, result.output
    assert "dcr_share" in result.output
    assert not (out / "synthetic.csv").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["decision"] == "FAIL"
    assert any("dcr_share" in reason for reason in manifest["reasons"])
    assert spends(demo["ledger"]) == before + 1  # refused, but the data was used: never refunded
    shown = json.loads(invoke("budget", "show", demo["ledger"], "--json").output)
    assert any(e["status"] == "withheld" for e in shown[0]["entries"])


def test_over_budget_exits_4_before_touching_the_data(demo, tmp_path):
    ledger = tmp_path / "small.sqlite"
    assert invoke("budget", "init", ledger, "--dataset", "hie", "--epsilon", "0.5", "--delta", "1e-5").exit_code == 0
    out = tmp_path / "release-too-much"
    args = release_args(demo, out)
    args[args.index("--ledger") + 1] = ledger
    result = invoke(*args)
    assert result.exit_code == 4, result.output
    assert "hie" in result.output and "0.5" in result.output
    assert not out.exists()
    assert spends(ledger) == 0


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"epsilon": "0"}, "epsilon"),
        ({"epsilon": "-1"}, "epsilon"),
        ({"delta": "0.01"}, "delta"),  # delta >= 1/n for 2,400 training rows
        ({"delta": "1.5"}, "delta"),
    ],
)
def test_bad_privacy_parameters_exit_2_with_no_output(demo, change, expected):
    out = demo["root"] / f"bad-{expected}-{change[expected]}"
    before = spends(demo["ledger"])
    result = invoke(*release_args(demo, out, **change))
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert spends(demo["ledger"]) == before


def test_bad_tables_exit_2_naming_the_fault(demo, tmp_path):
    frame = pd.read_csv(demo["data"])
    cases = {
        "empty.csv": ("", "empty"),
        "header-only.csv": (",".join(frame.columns) + "\n", "no data rows"),
        "missing-column.csv": (frame.drop(columns=["disea"]).to_csv(index=False), "disea"),
        "wrong-type.csv": (
            frame.assign(mdvis=frame["mdvis"].astype(str).where(frame.index != 4, "many")).to_csv(index=False),
            "mdvis",
        ),
        "unknown-category.csv": (
            frame.assign(idp=frame["idp"].astype(str).where(frame.index != 7, "7")).to_csv(index=False),
            "idp",
        ),
    }
    before = spends(demo["ledger"])
    for name, (text, expected) in cases.items():
        data = tmp_path / name
        data.write_text(text)
        out = tmp_path / f"out-{name}"
        result = invoke(*release_args(demo, out, data=data))
        assert result.exit_code == 2, (name, result.output)
        assert expected in result.output, (name, result.output)
        assert "Traceback" not in result.output
        assert not out.exists(), name
    assert spends(demo["ledger"]) == before
    wrong_line = invoke(*release_args(demo, tmp_path / "x", data=tmp_path / "wrong-type.csv"))
    assert "line 6" in wrong_line.output  # positional row 4 is line 6 of the file (header is line 1)


def test_private_schema_is_refused_unless_accepted(demo, tmp_path):
    drafted = tmp_path / "draft.json"
    result = invoke("schema", "draft", demo["data"], "-o", drafted)
    assert result.exit_code == 0, result.output
    assert json.loads(drafted.read_text())["source"] == "private-data"
    args = [
        "release",
        demo["data"],
        "--schema",
        drafted,
        "--epsilon",
        "0.3",
        "--delta",
        "1e-6",
        "--ledger",
        demo["ledger"],
        "--dataset",
        "hie",
        "--seed",
        "1",
    ]
    refused = invoke(*args, "--out", tmp_path / "refused")
    assert refused.exit_code == 2
    assert "private-data" in refused.output and "--accept-private-schema" in refused.output
    assert not (tmp_path / "refused").exists()


def test_existing_output_directory_is_never_overwritten(demo, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = invoke(*release_args(demo, out))
    assert result.exit_code == 2
    assert (out / "keep.txt").read_text() == "mine"


def test_unknown_generator_and_missing_ledger(demo, tmp_path):
    result = invoke(
        "release",
        demo["data"],
        "--schema",
        demo["schema"],
        "--generator",
        "nope",
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--ledger",
        demo["ledger"],
        "--dataset",
        "hie",
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 2 and "nope" in result.output
    result = invoke(
        *release_args(demo, tmp_path / "o2")[:-4], "--ledger", tmp_path / "none.sqlite", "--out", tmp_path / "o2"
    )
    assert result.exit_code in (1, 2) and "none.sqlite" in result.output


def test_budget_commands(tmp_path):
    ledger = tmp_path / "l.sqlite"
    assert invoke("budget", "init", ledger, "--dataset", "a", "--epsilon", "1", "--delta", "1e-6").exit_code == 0
    again = invoke("budget", "init", ledger, "--dataset", "a", "--epsilon", "5", "--delta", "1e-6")
    assert again.exit_code != 0 and "a" in again.output
    bad = invoke("budget", "init", tmp_path / "m.sqlite", "--dataset", "a", "--epsilon", "-1", "--delta", "1e-6")
    assert bad.exit_code == 2
    shown = invoke("budget", "show", ledger)
    assert shown.exit_code == 0 and "remaining" in shown.output
    assert invoke("budget", "verify", ledger).exit_code == 0
    with sqlite3.connect(ledger) as con:
        con.execute("UPDATE entries SET epsilon_cap = 100 WHERE kind = 'dataset'")
    tampered = invoke("budget", "verify", ledger)
    assert tampered.exit_code == 1 and "FAILED" in tampered.output


def test_audit_command_flags_a_copy_and_passes_the_holdout(tmp_path):
    table = demo_table("randhie").sample(3000, random_state=1).reset_index(drop=True)
    train, holdout, fresh = table.iloc[:1200], table.iloc[1200:2400], table.iloc[2400:]
    paths = {}
    for name, frame in {"train": train, "holdout": holdout, "fresh": fresh, "copy": train}.items():
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    schema = tmp_path / "schema.json"
    demo_schema("randhie").save(schema)
    common = ["audit", "--train", paths["train"], "--holdout", paths["holdout"], "--schema", schema]
    copied = invoke(*common, "--synthetic", paths["copy"], "--out", tmp_path / "a1")
    assert copied.exit_code == 3, copied.output
    verdict = json.loads((tmp_path / "a1" / "audit.json").read_text())
    assert verdict["decision"] == "FAIL"
    honest = invoke(*common, "--synthetic", paths["fresh"], "--out", tmp_path / "a2")
    assert honest.exit_code == 0, honest.output
    results = json.loads((tmp_path / "a2" / "audit.json").read_text())["results"]
    assert {"name", "family", "value", "ci_low", "ci_high", "threshold", "passed"} <= set(results[0])
    assert (tmp_path / "a2" / "report.html").exists()
    # the tables are read by the release's engines: the pandas engine gives the same attacks' values
    by_pandas = invoke(*common, "--synthetic", paths["fresh"], "--out", tmp_path / "a3", "--engine", "pandas")
    assert by_pandas.exit_code == 0, by_pandas.output
    again = json.loads((tmp_path / "a3" / "audit.json").read_text())["results"]
    assert [(r["name"], r["value"]) for r in again] == [(r["name"], r["value"]) for r in results]
    unknown = invoke(*common, "--synthetic", paths["fresh"], "--out", tmp_path / "a4", "--engine", "polars")
    assert unknown.exit_code == 2 and "engine must be one of" in unknown.output and "Traceback" not in unknown.output


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--param", "no_such_parameter=1"], "no_such_parameter"),
        (["--generator", "aim", "--param", "rounds=1"], "rounds=1 is too small"),
    ],
)
def test_bad_generator_parameters_exit_2_before_spending(demo, extra, expected):
    out = demo["root"] / f"bad-param-{expected[:8]}"
    before = spends(demo["ledger"])
    result = invoke(*release_args(demo, out), *extra)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert not out.exists() and spends(demo["ledger"]) == before


def test_a_directory_as_the_data_file_exits_2(demo, tmp_path):
    result = invoke(*release_args(demo, tmp_path / "o", data=tmp_path))
    assert result.exit_code == 2 and "is a directory" in result.output and "Traceback" not in result.output
