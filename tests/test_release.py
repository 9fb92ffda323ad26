"""The release flow's promises: holdout never fitted, spend never refunded, release complete or absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpsynth.errors import GateFailed
from dpsynth.privacy.ledger import Ledger, init_ledger
from dpsynth.release import ReleaseRequest, run_release, split_holdout
from dpsynth.schema import Column, Schema
from dpsynth.synthesizers.mst import MST


@pytest.fixture()
def setup(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    n = 1500
    group = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    value = np.round(rng.uniform(0, 100, size=n), 6)  # unique per row: identifies rows across the split
    flag = np.where((group == "a") ^ (rng.random(n) < 0.1), "yes", "no")
    frame = pd.DataFrame({"group": group, "value": value, "flag": flag})
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    schema = Schema(
        columns=(
            Column("group", "categorical", categories=("a", "b", "c")),
            Column("value", "numeric", lower=0, upper=100, bins=10),
            Column("flag", "categorical", categories=("no", "yes")),
        ),
        name="toy",
    )
    schema_path = tmp_path / "schema.json"
    schema.save(schema_path)
    ledger = tmp_path / "ledger.sqlite"
    init_ledger(ledger, "toy", 5.0, 1e-5)
    return {"data": data, "schema": schema_path, "ledger": ledger, "frame": frame, "tmp": tmp_path}


def request(setup: dict, out: str, **overrides) -> ReleaseRequest:
    params = dict(
        data=setup["data"],
        schema=setup["schema"],
        generator="mst",
        epsilon=1.0,
        delta=1e-6,
        ledger=setup["ledger"],
        dataset_id="toy",
        out=setup["tmp"] / out,
        seed=11,
    )
    params.update(overrides)
    return ReleaseRequest(**params)


def test_split_is_a_partition():
    frame = pd.DataFrame({"x": np.arange(100)})
    train, holdout = split_holdout(frame, 0.2, np.random.default_rng(0))
    assert len(holdout) + len(train) == 100 and 5 <= len(holdout) <= 40
    assert set(train.x).isdisjoint(holdout.x) and set(train.x) | set(holdout.x) == set(range(100))


def test_generator_never_sees_the_holdout(setup, monkeypatch):
    seen: dict = {}
    original = MST.fit

    def spy(self, df, schema, accept_private_schema=False):
        # the release hands MST the engine's encoded training rows (their values, as read, are the row ids here)
        values = df["value"] if isinstance(df, pd.DataFrame) else pd.Series(df.values["value"])
        seen["values"] = set(values.round(6))
        return original(self, df, schema, accept_private_schema)

    monkeypatch.setattr(MST, "fit", spy)
    outcome = run_release(request(setup, "r1"))
    all_values = set(setup["frame"]["value"].round(6))
    assert len(seen["values"]) == outcome.manifest["rows"]["train"]
    assert len(all_values - seen["values"]) == outcome.manifest["rows"]["holdout"]
    assert outcome.manifest["rows"]["train"] + outcome.manifest["rows"]["holdout"] == 1500


def test_a_crash_in_fit_keeps_the_spend_and_leaves_no_release(setup, monkeypatch):
    def boom(self, *args, **kwargs):
        raise RuntimeError("simulated crash during fit")

    monkeypatch.setattr(MST, "fit", boom)
    with pytest.raises(RuntimeError):
        run_release(request(setup, "r2"))
    assert not (setup["tmp"] / "r2").exists()
    budget = Ledger(setup["ledger"]).summary("toy")[0]
    assert budget.spent_epsilon > 0.8  # the reservation stands (composed at the cap's delta 1e-5)
    assert [e.status for e in budget.entries] == ["failed"]
    assert Ledger(setup["ledger"]).verify().ok


def test_a_crash_while_writing_leaves_no_half_release(setup, monkeypatch):
    import dpsynth.report as report

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(report, "write_report", boom)
    with pytest.raises(OSError):
        run_release(request(setup, "r3"))
    leftovers = [p.name for p in setup["tmp"].iterdir() if p.name.startswith(".r3")]
    assert not (setup["tmp"] / "r3").exists() and leftovers == []
    assert Ledger(setup["ledger"]).summary("toy")[0].spent_epsilon > 0.8


def test_refusal_writes_manifest_and_report_only(setup):
    strict = setup["tmp"] / "strict.toml"
    strict.write_text('[tests.mia_distance]\nmax = 0.0\njudge = "point"\n')
    with pytest.raises(GateFailed) as info:
        run_release(request(setup, "r4", policy=strict))
    assert "mia_distance" in str(info.value)
    out = setup["tmp"] / "r4"
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "manifest.json", "report.html"]  # no privacy.json
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["decision"] == "FAIL" and manifest["reasons"]
    assert "synthetic_sha256" not in manifest
    assert Ledger(setup["ledger"]).summary("toy")[0].entries[-1].status == "withheld"


def test_manifest_records_the_ledger_entry_and_budget(setup):
    outcome = run_release(request(setup, "r5"))
    manifest = outcome.manifest
    ledger = Ledger(setup["ledger"])
    entry = ledger.summary("toy")[0].entries[-1]
    assert manifest["ledger"]["entry_id"] == entry.id and manifest["ledger"]["entry_hash"] == entry.hash
    assert manifest["privacy"]["event"]["type"] == "composed"
    assert manifest["privacy"]["realised"]["epsilon"] <= manifest["privacy"]["epsilon"] + 1e-9
    assert manifest["budget"]["epsilon_cap"] == 5.0
    assert manifest["budget"]["remaining_epsilon"] == pytest.approx(5.0 - manifest["budget"]["spent_epsilon"])


def test_synthetic_csv_reads_back_under_its_schema(tmp_path):
    """Regression (NIST run): nulls were written as "" and integers as 54.0, so a schema whose
    na_values is ["N"] rejected the released synthetic.csv (`dpsynth audit` exited 2)."""
    from dpsynth.release import synthetic_csv_text
    from dpsynth.tables import read_csv

    schema = Schema(
        columns=(
            Column("age", "numeric", lower=0, upper=99, bins=10, integer=True),
            Column("kids", "numeric", lower=0, upper=19, bins=20, integer=True, nullable=True),
            Column("msp", "categorical", categories=("1", "2"), nullable=True),
            Column("income", "numeric", lower=0, upper=1000, bins=4, nullable=True),
        ),
        name="nist-like",
        na_values=("N",),
    )
    synthetic = pd.DataFrame(
        {"age": [54.0, 3.0], "kids": [2.0, np.nan], "msp": ["1", np.nan], "income": [12.5, np.nan]}
    )
    path = tmp_path / "synthetic.csv"
    path.write_text(synthetic_csv_text(synthetic, schema))
    lines = path.read_text().splitlines()
    assert lines[1:] == ["54,2,1,12.5", "3,N,N,N"]
    back = read_csv(path, schema)  # raised DataError ("'kids' is numeric but line 3 holds ''") before the fix
    assert back["kids"].isna().tolist() == [False, True] and back["msp"].isna().tolist() == [False, True]
    assert back["age"].tolist() == [54.0, 3.0]
