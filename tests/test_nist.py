"""The NIST Diverse Communities ACS excerpt end to end: public schema, conformance, one CLI release.

The excerpt is the project's second real table: ``N`` marks nulls and several
columns are null by design (children have no marital status or income), so it
checks that nulls survive the whole flow as nulls, written with the schema's
own marker so the released file reads back under the schema. Skips when
``shared/data/nist`` is absent.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dpsynth.cli import app
from dpsynth.schema import Schema
from dpsynth.tables import prepare, read_csv

REPO = Path(__file__).resolve().parents[1]
NIST = REPO.parent / "shared/data/nist"
SCHEMA_PATH = REPO / "benchmarks/nist.schema.json"

pytestmark = pytest.mark.skipif(not (NIST / "ma2019.csv").is_file(), reason=f"NIST excerpts not found in {NIST}")

runner = CliRunner()


def _builder():
    spec = importlib.util.spec_from_file_location("nist_schema", REPO / "benchmarks/nist_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema.load(SCHEMA_PATH)


def test_committed_schema_is_public_and_matches_the_dictionary(schema: Schema, capsys) -> None:
    assert schema.is_public and schema.na_values == ("N",)
    dictionary = json.loads((NIST / "data_dictionary.json").read_text())
    rebuilt = _builder().build_schema(dictionary)
    assert rebuilt.to_dict() == schema.to_dict(), (
        "benchmarks/nist.schema.json is stale: rerun benchmarks/nist_schema.py"
    )
    printed = capsys.readouterr().out
    for left_out in ("INDP", "PWGTP", "WGTP"):  # no public bound in the dictionary, each with a printed reason
        assert left_out not in schema.names and f"left out {left_out}:" in printed
    assert "INDP_CAT" in schema.names
    # 'N' in the dictionary <=> nullable; numeric bounds widened by listed codes ('0' for NOC, '501' for POVPIP)
    assert schema["MSP"].nullable and not schema["SEX"].nullable and not schema["DEYE"].nullable
    assert (schema["NOC"].lower, schema["NOC"].upper, schema["NOC"].nullable) == (0, 19, True)
    assert (schema["POVPIP"].lower, schema["POVPIP"].upper) == (0, 501)
    assert schema["POVPIP"].integer_ranges()[-1] == (501, 501)  # the top code keeps its own bin
    assert len(schema["PUMA"].categories) == len(dictionary["PUMA"]["values"])


def test_ma2019_conforms_to_the_public_schema(schema: Schema) -> None:
    frame = read_csv(NIST / "ma2019.csv", schema)
    _, report = prepare(frame, schema)
    assert len(frame) == 7634 and list(frame.columns) == schema.names
    assert report.total_changed == 0
    assert frame["MSP"].isna().sum() > 0 and frame["PINCP"].isna().sum() > 0  # 'N' read as null


def test_small_mst_release_keeps_nulls_as_nulls(schema: Schema, tmp_path: Path) -> None:
    raw = pd.read_csv(NIST / "ma2019.csv", dtype=str, keep_default_na=False)
    data = tmp_path / "ma2019_sample.csv"
    raw.sample(2000, random_state=0).to_csv(data, index=False)
    ledger = tmp_path / "ledger.sqlite"
    init = runner.invoke(
        app,
        ["budget", "init", str(ledger), "--dataset", "ma", "--epsilon", "2", "--delta", "1e-5"],
        catch_exceptions=False,
    )
    assert init.exit_code == 0, init.output
    out = tmp_path / "release"
    result = runner.invoke(
        app,
        [
            "release",
            str(data),
            "--schema",
            str(SCHEMA_PATH),
            "--generator",
            "mst",
            "--epsilon",
            "1",
            "--delta",
            "1e-6",
            "--ledger",
            str(ledger),
            "--dataset",
            "ma",
            "--out",
            str(out),
            "--seed",
            "5",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code in (0, 3), result.output  # released or refused by the gate, never a crash
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "report.html").stat().st_size > 0
    if result.exit_code == 3:
        assert manifest["audit"]["decision"] != "PASS" and not (out / "synthetic.csv").exists()
        return
    assert manifest["audit"]["decision"] == "PASS"
    assert set(manifest["files"]) == {"synthetic.csv", "privacy.json", "audit.json", "report.html"}
    assert {p.name for p in out.iterdir()} == {
        "synthetic.csv",
        "privacy.json",
        "audit.json",
        "report.html",
        "manifest.json",
        "bundle.json",
        "bundle.sig.json",
    }
    text = pd.read_csv(out / "synthetic.csv", dtype=str, keep_default_na=False)
    assert list(text.columns) == schema.names and len(text) == manifest["rows"]["synthetic"]
    assert not (text == "").any().any(), "nulls must be written with the schema's marker 'N', not ''"
    synthetic = read_csv(out / "synthetic.csv", schema)  # reads back under the schema (was DataError before)
    for column in schema:
        nulls = int(synthetic[column.name].isna().sum())
        if not column.nullable:
            assert nulls == 0, column.name
    # columns that are null for a large share of people (children, non-workers) stay null in the synthetic table
    for name in ("MSP", "PINCP", "PINCP_DECILE", "INDP_CAT", "DVET"):
        assert synthetic[name].isna().mean() > 0.05, name
    assert synthetic["AGEP"].dropna().map(float.is_integer).all()
