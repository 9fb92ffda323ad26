"""What synthetic.csv publishes about the training table: a DP row count by default, values at schema precision."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpsynth.privacy.ledger import init_ledger
from dpsynth.release import ReleaseRequest, run_release
from dpsynth.schema import Column, Schema


@pytest.fixture()
def setup(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    n = 1500
    group = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame(
        {
            "group": group,
            "value": rng.uniform(0, 100, size=n),
            "flag": np.where((group == "a") ^ (rng.random(n) < 0.1), "yes", "no"),
        }
    )
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    schema = Schema(
        columns=(
            Column("group", "categorical", categories=("a", "b", "c")),
            Column("value", "numeric", lower=0, upper=100, bins=10, decimals=1),
            Column("flag", "categorical", categories=("no", "yes")),
        ),
        name="toy",
    )
    schema.save(tmp_path / "schema.json")
    init_ledger(tmp_path / "ledger.sqlite", "toy", 5.0, 1e-5)
    return {"data": data, "schema": tmp_path / "schema.json", "ledger": tmp_path / "ledger.sqlite", "tmp": tmp_path}


def release(setup: dict, out: str, **overrides) -> tuple[dict, pd.DataFrame, str]:
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
    run_release(ReleaseRequest(**params))
    text = (setup["tmp"] / out / "synthetic.csv").read_text()
    manifest = json.loads((setup["tmp"] / out / "manifest.json").read_text())
    return manifest, pd.read_csv(setup["tmp"] / out / "synthetic.csv"), text


def test_default_row_count_is_the_dp_estimate_and_values_have_the_declared_decimals(setup) -> None:
    manifest, synthetic, text = release(setup, "r1")
    rows = manifest["rows"]
    assert rows["row_count"] == "dp-estimate"
    assert len(synthetic) == rows["synthetic"] != rows["train"]  # seed 11's noisy total, not the exact 1200
    assert abs(rows["synthetic"] - rows["train"]) < 0.1 * rows["train"]
    cells = [line.split(",")[1] for line in text.splitlines()[1:]]
    assert max(len(cell.partition(".")[2]) for cell in cells) == 1  # "decimals": 1, never 17 digits
    assert synthetic["value"].between(0, 100).all()


def test_rows_option_publishes_a_public_count(setup) -> None:
    manifest, synthetic, _ = release(setup, "r2", rows=321)
    assert manifest["rows"]["row_count"] == "public (--rows)" and len(synthetic) == 321
