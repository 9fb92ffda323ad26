"""Balanced panels (issue 12): one wide row per person, K = number of times; real data: linearmodels' wage_panel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dpsynth.cli import app
from dpsynth.engines import read_table
from dpsynth.errors import DataError, UsageError
from dpsynth.panel import check_panel, pivot
from dpsynth.privacy.ledger import init_ledger
from dpsynth.release import ReleaseRequest, run_release
from dpsynth.schema import Column, Schema

YEARS = ("2001", "2002", "2003")
SCHEMA = Schema(
    columns=(
        Column("year", "categorical", categories=YEARS),
        Column("wage", "numeric", lower=0, upper=10, bins=10),
        Column("union", "categorical", categories=("no", "yes")),
    ),
    name="panel",
)
runner = CliRunner()


def panel_frame(n_persons: int = 300, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """A balanced panel whose wage persists from one year to the next (lag-1 correlation about 0.9)."""
    rng = np.random.default_rng(seed)
    ids = [f"P{rng.integers(10**9, 10**10)}Q" for _ in range(n_persons)]
    level = rng.uniform(2, 8, n_persons)
    rows = []
    for pid, base in zip(ids, level):
        for year in YEARS:
            rows.append((pid, year, float(np.clip(base + rng.normal(0, 0.7), 0, 10)), rng.choice(["no", "yes"])))
    frame = pd.DataFrame(rows, columns=["pid", "year", "wage", "union"])
    return frame.sample(frac=1.0, random_state=2).reset_index(drop=True), ids


@pytest.fixture()
def files(tmp_path: Path) -> dict:
    frame, ids = panel_frame()
    data = tmp_path / "panel.csv"
    frame.to_csv(data, index=False)
    schema = tmp_path / "schema.json"
    SCHEMA.save(schema)
    ledger = tmp_path / "ledger.sqlite"
    init_ledger(ledger, "panel", 10.0, 1e-5)
    return {"data": data, "schema": schema, "ledger": ledger, "frame": frame, "ids": ids, "tmp": tmp_path}


def test_pivot_gives_one_row_per_person_with_their_values_by_time(files) -> None:
    table = read_table(files["data"], SCHEMA, unit_column="pid")
    panel = check_panel(SCHEMA, "year", "pid")
    wide = pivot(table, panel)
    assert wide.schema.names == [f"{v}@{y}" for v in ("wage", "union") for y in YEARS]
    assert len(wide) == 300 and wide.units.tolist() == list(range(300))
    frame = files["frame"]
    first = sorted(files["ids"])[0]  # person code 0: the smallest identifier
    expected = frame[frame.pid == first].set_index("year")["wage"]
    assert [wide.values[f"wage@{y}"][0] for y in YEARS] == [expected[y] for y in YEARS]
    back = panel.unpivot(wide.frame())
    assert len(back) == 900 and back["pid"].str.startswith("synthetic-").all()
    assert back.groupby("pid").size().eq(3).all()


def test_pivot_refuses_an_unbalanced_panel(files) -> None:
    frame = files["frame"].iloc[1:]  # one person now lacks a year
    frame.to_csv(files["tmp"] / "unbalanced.csv", index=False)
    table = read_table(files["tmp"] / "unbalanced.csv", SCHEMA, unit_column="pid")
    with pytest.raises(DataError, match="needs a balanced panel"):
        pivot(table, check_panel(SCHEMA, "year", "pid"))


def test_panel_options_are_checked(files) -> None:
    with pytest.raises(UsageError, match="needs --privacy-unit"):
        check_panel(SCHEMA, "year", None)
    with pytest.raises(UsageError, match="must be a categorical"):
        check_panel(SCHEMA, "wage", "pid")
    with pytest.raises(UsageError, match="not a schema column"):
        check_panel(SCHEMA, "month", "pid")
    args = ["release", files["data"], "--schema", files["schema"], "--epsilon", "1", "--delta", "1e-6"]
    args += ["--ledger", files["ledger"], "--dataset", "panel", "--out", files["tmp"] / "o", "--seed", "1"]
    args += ["--privacy-unit", "pid", "--panel-time", "year", "--max-rows-per-unit", "5"]
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 2 and "K = 3 rows a person" in " ".join(result.output.split()), result.output


def test_panel_release_keeps_trajectories_and_states_k(files) -> None:
    frame, files["ids"] = panel_frame(1000, seed=3)
    frame.to_csv(files["data"], index=False)
    run_release(
        ReleaseRequest(
            data=files["data"],
            schema=files["schema"],
            generator="mst",
            epsilon=3.0,
            delta=1e-6,
            ledger=files["ledger"],
            dataset_id="panel",
            out=files["tmp"] / "out",
            seed=4,
            generator_params={"iters": 300},
            privacy_unit="pid",
            panel_time="year",
        )
    )
    out = files["tmp"] / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["privacy"]["neighbouring"] == "add or remove one person with up to 3 rows"
    assert manifest["panel"] == {"time": "year", "times": list(YEARS), "rows_per_person": 3}
    synthetic = pd.read_csv(out / "synthetic.csv", dtype={"year": str})
    assert list(synthetic.columns) == ["pid", "year", "wage", "union"]
    assert synthetic.groupby("pid")["year"].apply(lambda y: sorted(y) == list(YEARS)).all()
    wide = synthetic.pivot(index="pid", columns="year", values="wage")
    lag1 = np.mean([wide[a].corr(wide[b]) for a, b in zip(YEARS, YEARS[1:])])
    assert lag1 > 0.4, lag1  # the real one is about 0.9; a record-level synthesis links no rows at all
    for path in (p for p in out.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert not [i for i in files["ids"] if i in text], path.name


def test_wage_panel_panel_release_is_person_level() -> None:
    wage_panel = pytest.importorskip("linearmodels.datasets.wage_panel")
    frame = wage_panel.load()
    assert frame.shape == (4360, 12) and frame.groupby("nr").size().eq(8).all()  # 545 persons x 8 years
    schema = Schema(
        columns=(
            Column("year", "categorical", categories=tuple(str(y) for y in range(1980, 1988))),
            Column("lwage", "numeric", lower=-4, upper=4.5, bins=17),
        ),
        name="wage_panel",
    )
    from dpsynth.engines.pandas_engine import encode_frame
    from dpsynth.privacy.unit import unit_codes

    long = frame[["year", "lwage"]].astype({"year": str})
    table = encode_frame(long, schema, "wage_panel").with_units(unit_codes(frame["nr"].astype(str), "nr"))
    panel = check_panel(schema, "year", "nr")
    wide = pivot(table, panel)
    assert len(wide) == 545 and len(wide.schema) == 8
    wages = np.stack([wide.values[f"lwage@{y}"] for y in range(1980, 1988)], axis=1)
    assert np.corrcoef(wages[:, 0], wages[:, 1])[0, 1] > 0.3  # trajectories survive the pivot


def test_wage_panel_demo_exports_a_person_level_schema(tmp_path) -> None:
    pytest.importorskip("linearmodels")
    from dpsynth.demo import export_demo

    csv_path, schema_path = export_demo("wage_panel", tmp_path)
    schema = Schema.load(schema_path)
    assert schema.privacy_unit == "nr" and schema.max_rows_per_unit == 8 and "nr" not in schema.names
    table = read_table(csv_path, schema, unit_column="nr")
    assert len(table) == 4360 and len(np.unique(table.units)) == 545
    assert len(pivot(table, check_panel(schema, "year", "nr"))) == 545
