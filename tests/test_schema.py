"""Schema validation, JSON round trip, private-data drafts and the public-domain guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpsynth.errors import DpsynthError, SchemaError
from dpsynth.schema import PRIVATE_DATA, PUBLIC, Column, Schema, category_label, draft_schema


def numeric(**overrides) -> dict:
    return {"name": "age", "kind": "numeric", "lower": 17, "upper": 90, "bins": 10, **overrides}


def categorical(**overrides) -> dict:
    return {"name": "sex", "kind": "categorical", "categories": ["Female", "Male"], **overrides}


def schema_dict(*columns: dict, **top) -> dict:
    return {"name": "t", "source": "public", "columns": list(columns) or [numeric(), categorical()], **top}


# -- column validation: every message names the column and the key at fault ----------------


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


BAD_COLUMNS = [
    pytest.param(numeric(kind="number"), "age", "kind", id="bad-kind"),
    pytest.param(_without(numeric(), "kind"), "age", "kind", id="missing-kind"),
    pytest.param(numeric(lower=90, upper=90), "age", "lower", id="lower-equals-upper"),
    pytest.param(numeric(lower=91, upper=90), "age", "upper", id="lower-above-upper"),
    pytest.param(_without(numeric(), "lower"), "age", "lower", id="missing-lower"),
    pytest.param(_without(numeric(), "upper"), "age", "upper", id="missing-upper"),
    pytest.param(numeric(upper=float("inf")), "age", "upper", id="infinite-upper"),
    pytest.param(numeric(lower=float("nan")), "age", "lower", id="nan-lower"),
    pytest.param(numeric(lower="abc"), "age", "lower", id="text-lower"),
    pytest.param(numeric(lower=True), "age", "lower", id="bool-lower"),
    pytest.param(_without(numeric(), "bins"), "age", "bins", id="no-bins-no-edges"),
    pytest.param(numeric(bins=0), "age", "bins", id="zero-bins"),
    pytest.param(numeric(bins=2.5), "age", "bins", id="fractional-bins"),
    pytest.param(numeric(bins="ten"), "age", "bins", id="text-bins"),
    pytest.param(numeric(bins=True), "age", "bins", id="bool-bins"),
    pytest.param(numeric(edges=[17, 50, 40, 90]), "age", "edges", id="edges-not-increasing"),
    pytest.param(numeric(edges=[17, 50, 50, 90]), "age", "edges", id="edges-repeated"),
    pytest.param(numeric(edges=[20, 50, 90]), "age", "edges", id="edges-miss-lower"),
    pytest.param(numeric(edges=[17, 50, 80]), "age", "edges", id="edges-miss-upper"),
    pytest.param(numeric(edges=[17, float("nan"), 90]), "age", "edges", id="edges-nan"),
    pytest.param(numeric(edges="17,90"), "age", "edges", id="edges-string"),
    pytest.param(numeric(edges=[17]), "age", "edges", id="edges-single"),
    pytest.param(
        numeric(lower=0, upper=3, edges=[0, 0.2, 0.8, 3], integer=True),
        "age",
        "bins",
        id="integer-edges-bin-without-whole-number",
    ),
    pytest.param(
        numeric(lower=0.4, upper=1.6, bins=2, integer=True), "age", "bins", id="integer-bins-bin-without-whole-number"
    ),
    pytest.param(numeric(integer="yes"), "age", "integer", id="integer-not-bool"),
    pytest.param(numeric(nullable=1), "age", "nullable", id="nullable-not-bool"),
    pytest.param(numeric(bounds=[0, 1]), "age", "bounds", id="unknown-key"),
    pytest.param(categorical(categories=["Male", "Female", "Male"]), "sex", "Male", id="duplicate-categories"),
    pytest.param(categorical(categories=[1, "1"]), "sex", "categories", id="duplicates-after-canonical-form"),
    pytest.param(categorical(categories=[]), "sex", "categories", id="empty-categories"),
    pytest.param(_without(categorical(), "categories"), "sex", "categories", id="missing-categories"),
    pytest.param(categorical(categories="Male"), "sex", "categories", id="categories-string"),
    pytest.param(categorical(other="Unknown"), "sex", "other", id="other-not-a-category"),
    pytest.param(categorical(nullable="true"), "sex", "nullable", id="nullable-string"),
]


@pytest.mark.parametrize("column, name, key", BAD_COLUMNS)
def test_bad_column_is_refused_naming_column_and_key(column: dict, name: str, key: str) -> None:
    with pytest.raises(SchemaError) as info:
        Schema.from_dict(schema_dict(column))
    message = str(info.value)
    assert repr(name) in message, message
    assert key in message, message


def test_bin_without_whole_number_message_says_what_to_do() -> None:
    with pytest.raises(SchemaError, match="no whole number"):
        Column("x", "numeric", lower=0, upper=3, edges=(0, 0.2, 0.8, 3), integer=True)


def test_column_without_name_is_refused_with_its_position() -> None:
    with pytest.raises(SchemaError, match=r"columns\[1\].*name"):
        Schema.from_dict(schema_dict(numeric(), _without(categorical(), "name")))
    with pytest.raises(SchemaError, match=r"columns\[0\].*name"):
        Schema.from_dict(schema_dict({"name": 3, "kind": "categorical", "categories": ["a"]}))
    with pytest.raises(SchemaError, match=r"columns\[0\] must be an object"):
        Schema.from_dict(schema_dict("age"))


def test_schema_errors_are_user_errors() -> None:
    assert issubclass(SchemaError, DpsynthError)
    assert SchemaError.exit_code == 2


# -- schema-level validation ----------------------------------------------------------------


def test_duplicate_column_names_are_refused_naming_the_column() -> None:
    with pytest.raises(SchemaError, match="duplicate column.*'age'"):
        Schema.from_dict(schema_dict(numeric(), categorical(), numeric(bins=5)))


@pytest.mark.parametrize(
    "top, words",
    [
        ({"colums": []}, ["colums"]),  # unknown key, typo
        ({"source": "private"}, ["source", "private"]),
        ({"quasi_identifiers": ["zip"]}, ["quasi-identifier", "zip"]),
        ({"quasi_identifiers": "age"}, ["quasi_identifiers"]),  # a string is not a list
        ({"target": "income"}, ["target", "income"]),
        ({"target": 3}, ["target"]),
        ({"na_values": "N"}, ["na_values"]),
        ({"na_values": ["N", None]}, ["na_values"]),
        ({"columns": {"age": {}}}, ["columns"]),
        ({"columns": []}, ["at least one column"]),
    ],
)
def test_bad_schema_is_refused_naming_the_key(top: dict, words: list[str]) -> None:
    raw = schema_dict()
    raw.update(top)
    with pytest.raises(SchemaError) as info:
        Schema.from_dict(raw)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_missing_columns_key_and_non_object_are_refused() -> None:
    with pytest.raises(SchemaError, match="columns"):
        Schema.from_dict({"name": "t"})
    with pytest.raises(SchemaError, match="JSON object"):
        Schema.from_dict([numeric()])  # type: ignore[arg-type]


def test_unknown_column_lookup_names_it(mixed_schema: Schema) -> None:
    with pytest.raises(SchemaError, match="'zip'"):
        mixed_schema["zip"]


# -- files ------------------------------------------------------------------------------------


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="not found"):
        Schema.load(tmp_path / "nope.json")


@pytest.mark.parametrize("content", [b"age,sex\n17,Male\n", b'{"columns": [', b"\xff\xfe\x00\x01binary", b""])
def test_load_non_json_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "schema.json"
    path.write_bytes(content)
    with pytest.raises(SchemaError, match="not valid JSON") as info:
        Schema.load(path)
    assert str(path) in str(info.value)


def test_load_directory_and_json_array_are_schema_errors(tmp_path: Path) -> None:
    with pytest.raises(SchemaError):
        Schema.load(tmp_path)
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(SchemaError, match="JSON object"):
        Schema.load(path)


def test_json_round_trip_through_file(tmp_path: Path, mixed_schema: Schema) -> None:
    path = tmp_path / "sub" / "toy.schema.json"
    mixed_schema.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["toy.schema.json"]  # no temp file left behind
    raw = json.loads(path.read_text())
    assert raw["source"] == "public" and raw["target"] == "income"
    loaded = Schema.load(path)
    assert loaded == mixed_schema
    assert loaded.to_dict() == mixed_schema.to_dict()
    for column in mixed_schema:
        got = loaded[column.name]
        assert got.domain_size == column.domain_size
        if column.kind == "numeric":
            np.testing.assert_array_equal(got.bin_edges(), column.bin_edges())


def test_round_trip_keeps_every_key() -> None:
    raw = {
        "name": "nist",
        "source": "private-data",
        "description": "draft",
        "na_values": ["N"],
        "quasi_identifiers": ["AGEP"],
        "target": "SEX",
        "columns": [
            {
                "name": "AGEP",
                "kind": "numeric",
                "lower": 0,
                "upper": 99,
                "edges": [0, 18, 65, 99],
                "integer": True,
                "nullable": False,
                "description": "age in years",
            },
            {
                "name": "PINCP",
                "kind": "numeric",
                "lower": -10000.5,
                "upper": 1e6,
                "bins": 20,
                "integer": False,
                "nullable": True,
            },
            {"name": "SEX", "kind": "categorical", "categories": ["1", "2"], "nullable": False},
            {
                "name": "PUMA",
                "kind": "categorical",
                "categories": ["25-00503", "other"],
                "other": "other",
                "nullable": True,
            },
        ],
    }
    schema = Schema.from_dict(raw)
    assert schema.to_dict() == raw
    assert Schema.from_dict(json.loads(json.dumps(schema.to_dict()))) == schema


def test_categories_are_canonical_strings() -> None:
    column = Column.from_dict({"name": "SEX", "kind": "categorical", "categories": [1, 2.0, "3"], "other": 3})
    assert column.categories == ("1", "2", "3")
    assert column.other == "3"
    assert category_label(True) == "True"
    assert category_label(np.int64(4)) == "4"
    assert category_label(4.5) == "4.5"


def test_defaults_when_keys_are_omitted() -> None:
    schema = Schema.from_dict({"columns": [numeric(), categorical()]})
    assert schema.source == PUBLIC and schema.is_public
    assert "" in schema.na_values and "NA" in schema.na_values
    assert not schema["age"].integer and not schema["age"].nullable


# -- binning ----------------------------------------------------------------------------------


def test_integer_column_with_small_range_gets_one_bin_per_whole_number() -> None:
    column = Column("children", "numeric", lower=0, upper=5, bins=10, integer=True)
    assert column.n_bins == 6
    assert column.integer_ranges() == [(i, i) for i in range(6)]
    assert column.domain_size == 6


def test_equal_width_bins_and_integer_ranges_cover_the_range() -> None:
    column = Column("age", "numeric", lower=17, upper=90, bins=10, integer=True)
    np.testing.assert_allclose(column.bin_edges(), np.linspace(17, 90, 11))
    ranges = column.integer_ranges()
    assert len(ranges) == 10
    assert ranges[0][0] == 17 and ranges[-1][1] == 90
    covered = [v for start, stop in ranges for v in range(start, stop + 1)]
    assert covered == list(range(17, 91))  # every whole number exactly once


def test_domain_size_counts_null_code() -> None:
    assert Column("s", "categorical", categories=("a", "b", "c"), nullable=True).domain_size == 4
    assert Column("x", "numeric", lower=0, upper=1, bins=4, nullable=True).domain_size == 5
    assert Column("x", "numeric", lower=0, upper=10, edges=(0, 1, 10)).domain_size == 2


def test_categorical_column_has_no_bins() -> None:
    with pytest.raises(SchemaError, match="categorical"):
        Column("s", "categorical", categories=("a",)).bin_edges()


def test_subset_keeps_provenance_and_drops_foreign_references(mixed_schema: Schema) -> None:
    sub = mixed_schema.subset(["age", "sex"])
    assert sub.names == ["age", "sex"]
    assert sub.source == mixed_schema.source
    assert sub.quasi_identifiers == ("age", "sex")
    assert sub.target is None


# -- private-data drafts --------------------------------------------------------------------


def _private_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [23, 45, 31, 67, 52, 38],
            "wage": [12.5, 30.0, 18.25, 0.0, 22.0, 15.0],
            "kids": [0, 2, 1, 3, 0, 1],
            "flag": [0, 1, 1, 0, 1, 0],
            "sex": ["F", "M", "F", "M", "F", "M"],
            "hours": [40.0, np.nan, 35.0, 20.0, np.nan, 45.0],
            "city": ["b", "a", None, "c", "a", "b"],
        }
    )


def test_draft_is_marked_private_and_infers_kinds() -> None:
    draft = draft_schema(_private_frame(), name="hr")
    assert draft.source == PRIVATE_DATA and not draft.is_public
    assert draft.name == "hr"
    age, wage, kids = draft["age"], draft["wage"], draft["kids"]
    assert age.kind == "numeric" and age.integer and (age.lower, age.upper) == (23, 67)
    assert wage.kind == "numeric" and not wage.integer and (wage.lower, wage.upper) == (0.0, 30.0)
    assert kids.integer and kids.integer_ranges() == [(0, 0), (1, 1), (2, 2), (3, 3)]  # small range: exact
    assert draft["flag"].kind == "categorical" and draft["flag"].categories == ("0", "1")
    assert draft["sex"].categories == ("F", "M")
    assert draft["city"].categories == ("a", "b", "c")


def test_draft_infers_nullability_from_missing_values() -> None:
    draft = draft_schema(_private_frame())
    assert draft["hours"].nullable and draft["hours"].integer  # floats only because of NaN
    assert draft["city"].nullable
    assert not draft["age"].nullable and not draft["sex"].nullable


def test_draft_of_numbers_read_as_text() -> None:
    df = pd.DataFrame({"n": ["3", "10", "7"], "code": ["25-00503", "25-00703", "25-00503"]})
    draft = draft_schema(df)
    assert draft["n"].kind == "numeric" and draft["n"].integer
    assert draft["code"].kind == "categorical"


def test_draft_constant_column_gets_a_valid_range() -> None:
    draft = draft_schema(pd.DataFrame({"c": [5, 5, 5], "x": [1.5, 1.5, 1.5]}))
    assert draft["c"].lower == 5 and draft["c"].upper > 5
    assert draft["x"].lower == 1.5 and draft["x"].upper > 1.5


def test_draft_refuses_identifier_like_columns() -> None:
    df = pd.DataFrame({"id": [f"person-{i}" for i in range(30)]})
    with pytest.raises(SchemaError, match="'id'.*30 distinct"):
        draft_schema(df, max_categories=20)


def test_draft_survives_json_round_trip_and_stays_private(tmp_path: Path) -> None:
    draft = draft_schema(_private_frame())
    draft.save(tmp_path / "draft.json")
    loaded = Schema.load(tmp_path / "draft.json")
    assert loaded == draft and loaded.source == PRIVATE_DATA


def test_draft_conforms_its_own_table_without_changes() -> None:
    from dpsynth.tables import prepare

    df = _private_frame()
    data, report = prepare(df, draft_schema(df))
    assert report.total_changed == 0
    assert len(data) == len(df)


def test_draft_of_real_adult_table(adult_csv: Path) -> None:
    df = pd.read_csv(adult_csv).drop(columns="fnlwgt")
    draft = draft_schema(df, name="adult")
    assert draft.source == PRIVATE_DATA
    assert draft["age"].kind == "numeric" and draft["age"].integer
    assert (draft["age"].lower, draft["age"].upper) == (17, 90)
    assert draft["income"].kind == "categorical" and len(draft["income"].categories) == 2
    assert draft["sex"].categories == ("Female", "Male")
    assert not any(c.nullable for c in draft)  # the shared Adult extract has no missing values


# -- the public-domain guard -----------------------------------------------------------------


def test_require_public_refuses_private_data_schema() -> None:
    draft = draft_schema(_private_frame(), name="hr")
    with pytest.raises(SchemaError) as info:
        draft.require_public()
    message = str(info.value)
    assert "private-data" in message and "accept" in message and "hr" in message


def test_require_public_accepts_private_schema_with_flag_and_public_schema(mixed_schema: Schema) -> None:
    draft_schema(_private_frame()).require_public(accept_private=True)
    mixed_schema.require_public()
    mixed_schema.require_public(accept_private=True)


def test_editing_source_to_public_lifts_the_guard(tmp_path: Path) -> None:
    raw = draft_schema(_private_frame()).to_dict()
    raw["source"] = "public"
    Schema.from_dict(raw).require_public()


@pytest.mark.parametrize(
    "decimals, words",
    [
        (-1, "whole number from 0"),
        (1.5, "whole number"),
        (True, "whole number"),
        ("2", "whole number"),
        (13, "from 0 to 12"),
    ],
)
def test_bad_decimals_are_refused_naming_column_and_key(decimals: object, words: str) -> None:
    raw = {"name": "score", "kind": "numeric", "lower": 0, "upper": 1, "bins": 4, "decimals": decimals}
    with pytest.raises(SchemaError, match="score") as info:
        Column.from_dict(raw)
    assert "'decimals'" in str(info.value) and words in str(info.value)


def test_decimals_must_fit_the_column() -> None:
    with pytest.raises(SchemaError, match="numeric columns only"):
        Column.from_dict({"name": "c", "kind": "categorical", "categories": ["a"], "decimals": 1})
    with pytest.raises(SchemaError, match="integer column"):
        Column.from_dict(
            {"name": "n", "kind": "numeric", "lower": 0, "upper": 9, "bins": 2, "integer": True, "decimals": 2}
        )
    with pytest.raises(SchemaError, match="raise 'decimals'"):
        Column.from_dict({"name": "x", "kind": "numeric", "lower": 0.11, "upper": 0.19, "bins": 2, "decimals": 1})


def test_decimals_round_trip_and_default() -> None:
    raw = {"name": "x", "kind": "numeric", "lower": 0, "upper": 10, "bins": 5, "decimals": 1}
    column = Column.from_dict(raw)
    assert column.output_decimals() == 1 and column.to_dict()["decimals"] == 1
    assert "decimals" not in Column.from_dict({**raw, "decimals": None}).to_dict()
    assert Column.from_dict({**raw, "decimals": None}).output_decimals() == 3  # width 2 -> 0.002
