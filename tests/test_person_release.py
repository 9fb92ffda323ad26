"""Person-level releases end to end (issue 12): options, errors, split, manifest, ledger, and no identifier anywhere."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dpsynth.cli import app
from dpsynth.engines import read_table
from dpsynth.errors import LedgerError
from dpsynth.holdout import split_persons
from dpsynth.privacy.ledger import init_ledger
from dpsynth.release import ReleaseRequest, run_release
from dpsynth.schema import Column, Schema

K = 5
SCHEMA = Schema(
    columns=(
        Column("group", "categorical", categories=("a", "b", "c")),
        Column("value", "numeric", lower=0, upper=100, bins=10),
        Column("flag", "categorical", categories=("no", "yes")),
    ),
    name="toy",
)
runner = CliRunner()


def person_frame(n_persons: int = 400, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """1-7 rows a person; identifiers are random tokens no other output could contain by chance."""
    rng = np.random.default_rng(seed)
    ids = [f"ID{rng.integers(10**11, 10**12)}X" for _ in range(n_persons)]
    rows = rng.integers(1, 8, n_persons)
    pid = np.repeat(ids, rows)
    n = len(pid)
    group = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame(
        {
            "pid": pid,
            "group": group,
            "value": np.round(rng.uniform(0, 100, n), 3),
            "flag": np.where((group == "a") ^ (rng.random(n) < 0.1), "yes", "no"),
        }
    )
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True), ids


@pytest.fixture()
def toy(tmp_path: Path) -> dict:
    frame, ids = person_frame()
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    schema = tmp_path / "schema.json"
    SCHEMA.save(schema)
    ledger = tmp_path / "ledger.sqlite"
    init_ledger(ledger, "toy", 10.0, 1e-5)
    return {"data": data, "schema": schema, "ledger": ledger, "frame": frame, "ids": ids, "tmp": tmp_path}


def request(toy: dict, out: str, **overrides) -> ReleaseRequest:
    params = dict(
        data=toy["data"],
        schema=toy["schema"],
        generator="mst",
        epsilon=1.0,
        delta=1e-6,
        ledger=toy["ledger"],
        dataset_id="toy",
        out=toy["tmp"] / out,
        seed=3,
        generator_params={"iters": 200},
        privacy_unit="pid",
        max_rows_per_unit=K,
    )
    params.update(overrides)
    return ReleaseRequest(**params)


def cli(toy: dict, out: str, *extra: str):
    args = ["release", toy["data"], "--schema", toy["schema"], "--epsilon", "1", "--delta", "1e-6"]
    args += ["--ledger", toy["ledger"], "--dataset", "toy", "--out", toy["tmp"] / out, "--seed", "1", *extra]
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("engine", ["duckdb", "pandas"])
def test_the_split_is_by_person(toy, engine) -> None:
    table = read_table(toy["data"], SCHEMA, engine=engine, unit_column="pid")
    assert table.units is not None and len(np.unique(table.units)) == len(toy["ids"])
    train, holdout = split_persons(table, 0.3, np.random.default_rng(0))
    assert not set(train.units) & set(holdout.units)  # no person on both sides
    assert len(train) + len(holdout) == len(table)
    # the codes are the sorted identifiers' ranks, the same for both engines
    ranks = {pid: i for i, pid in enumerate(sorted(toy["ids"]))}
    assert table.units.tolist() == [ranks[p] for p in toy["frame"]["pid"]]


def test_person_release_states_the_unit_and_never_writes_an_identifier(toy) -> None:
    outcome = run_release(request(toy, "out"))
    out = toy["tmp"] / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    public = json.loads((out / "privacy.json").read_text())
    relation = f"add or remove one person with up to {K} rows"
    assert manifest["privacy"]["neighbouring"] == relation == public["neighbouring"]
    assert manifest["privacy"]["unit"] == {"unit": "person", "column": "pid", "max_rows": K, "neighbouring": relation}
    assert public["privacy_unit"] == {"unit": "person", "max_rows": K}
    assert relation in public["guarantee"]
    assert manifest["parameters"]["max_rows_per_unit"] == K
    assert "pid" not in pd.read_csv(out / "synthetic.csv").columns
    # no value of the identifier column in any output file, as text anywhere
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"synthetic.csv", "privacy.json", "manifest.json", "report.html", "audit.json"}
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        leaked = [i for i in toy["ids"] if i in text]
        assert not leaked, f"{path.name} holds identifier values {leaked[:3]}"
    # the ledger records the unit with the spend
    (details,) = sqlite3.connect(toy["ledger"]).execute("SELECT details_json FROM entries WHERE kind = 'spend'")
    assert json.loads(details[0])["privacy_unit"]["max_rows"] == K
    assert outcome.manifest["privacy"]["realised"]["details"]["max_rows_per_unit"] == K


def test_ledger_refuses_a_row_level_release_after_a_person_level_one(toy) -> None:
    run_release(request(toy, "persons"))
    with pytest.raises(LedgerError, match="unit of privacy"):
        run_release(request(toy, "rows", privacy_unit=None, max_rows_per_unit=None))
    assert not (toy["tmp"] / "rows").exists()
    spends = sqlite3.connect(toy["ledger"]).execute("SELECT count(*) FROM entries WHERE kind = 'spend'").fetchone()
    assert spends == (1,)  # nothing spent by the refused release


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--privacy-unit", "nope", "--max-rows-per-unit", "3"], "lacks the privacy unit column 'nope'"),
        (["--privacy-unit", "pid", "--max-rows-per-unit", "0"], "--max-rows-per-unit must be a whole number >= 1"),
        (["--max-rows-per-unit", "3"], "needs --privacy-unit"),
        (["--privacy-unit", "pid"], "needs --max-rows-per-unit K"),
        (["--privacy-unit", "group", "--max-rows-per-unit", "3"], "is a schema column"),
        (["--privacy-unit", "pid", "--max-rows-per-unit", "3", "--generator", "dpctgan"], "does not support person"),
        (["--privacy-unit", "pid", "--max-rows-per-unit", "3", "--generator", "dpvae"], "does not support person"),
    ],
)
def test_cli_refuses_bad_unit_options_before_spending(toy, extra, message) -> None:
    result = cli(toy, "out", *extra)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    spends = sqlite3.connect(toy["ledger"]).execute("SELECT count(*) FROM entries WHERE kind = 'spend'").fetchone()
    assert spends == (0,)


def test_schema_can_name_the_unit(toy) -> None:
    raw = SCHEMA.to_dict() | {"privacy_unit": {"column": "pid", "max_rows": K}}
    toy["schema"].write_text(json.dumps(raw))
    run_release(request(toy, "out", privacy_unit=None, max_rows_per_unit=None))
    manifest = json.loads((toy["tmp"] / "out" / "manifest.json").read_text())
    assert manifest["privacy"]["unit"]["max_rows"] == K


def test_report_states_the_person_unit_in_its_assumptions() -> None:
    from dpsynth.report.criteria import criteria_context

    unit = {"unit": "person", "column": "pid", "max_rows": K, "neighbouring": "..."}
    for policy in (None, {"name": "gdpr-anonymisation"}):
        manifest = {"privacy": {"unit": unit}, "policy": policy}
        text = " ".join(criteria_context(manifest, [], [])["assumptions"])
        assert f"a person with up to {K} rows" in text and "One row is one person" not in text
    assert any("One row is one person" in a for a in criteria_context({}, [], [])["assumptions"])


def test_audit_command_targets_persons(toy) -> None:
    frame = toy["frame"]
    persons = sorted(set(frame["pid"]))
    in_train = frame["pid"].isin(persons[: len(persons) * 3 // 4])
    paths = {name: toy["tmp"] / f"{name}.csv" for name in ("train", "holdout", "synthetic", "mixed")}
    frame[in_train].to_csv(paths["train"], index=False)
    frame[~in_train].to_csv(paths["holdout"], index=False)
    frame[~in_train].drop(columns="pid").to_csv(paths["synthetic"], index=False)
    frame.iloc[:200].to_csv(paths["mixed"], index=False)

    def audit(holdout: Path, out: str):
        args = ["audit", "--train", paths["train"], "--holdout", holdout, "--synthetic", paths["synthetic"]]
        args += ["--schema", toy["schema"], "--out", toy["tmp"] / out, "--privacy-unit", "pid"]
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    audit(paths["holdout"], "audit")
    report = json.loads((toy["tmp"] / "audit" / "audit.json").read_text())
    assert report["sizes"]["train_persons"] == len(persons) * 3 // 4
    mia = next(r for r in report["results"] if r["name"] == "mia_distance")
    assert mia["details"]["target"].startswith("person")
    refused = audit(paths["mixed"], "mixed-audit")
    assert refused.exit_code == 2 and "split by person" in refused.output
