"""Reading a table and bringing it into its schema's domain: errors name column and line; nothing dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpsynth.errors import DataError, DpsynthError
from dpsynth.schema import Column, Schema
from dpsynth.tables import DomainReport, coerce, conform, prepare, read_csv


@pytest.fixture
def schema() -> Schema:
    return Schema(
        name="people",
        na_values=("N",),
        columns=(
            Column("age", "numeric", lower=17, upper=90, bins=10, integer=True),
            Column("sex", "categorical", categories=("F", "M")),
            Column("hours", "numeric", lower=1, upper=99, bins=10, nullable=True),
            Column("country", "categorical", categories=("US", "MX", "Other"), other="Other", nullable=True),
        ),
    )


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- read_csv: shape errors ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path, schema: Schema) -> None:
    with pytest.raises(DataError, match="not found"):
        read_csv(tmp_path / "absent.csv", schema)


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_empty_file(tmp_path: Path, schema: Schema, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError, match="empty") as info:
        read_csv(path, schema)
    assert str(path) in str(info.value)


def test_header_only_file(tmp_path: Path, schema: Schema) -> None:
    path = write(tmp_path, "age,sex,hours,country\n")
    with pytest.raises(DataError, match="no data rows"):
        read_csv(path, schema)


def test_missing_column_is_named(tmp_path: Path, schema: Schema) -> None:
    path = write(tmp_path, "age,sex,country\n30,F,US\n")
    with pytest.raises(DataError) as info:
        read_csv(path, schema)
    message = str(info.value)
    assert "'hours'" in message and "lacks" in message
    assert "'sex'" in message  # lists what the file does have


def test_text_in_numeric_column_names_column_and_file_line(tmp_path: Path, schema: Schema) -> None:
    path = write(tmp_path, "age,sex,hours,country\n30,F,40,US\n41,M,forty,MX\n52,F,abc,US\n")
    with pytest.raises(DataError) as info:
        read_csv(path, schema)
    message = str(info.value)
    assert "'hours'" in message
    assert "line 3" in message  # header is line 1: the first bad value is on line 3
    assert "'forty'" in message and "2 non-numeric" in message
    assert str(path) in message


def test_line_numbers_survive_blank_lines_and_multiline_fields(tmp_path: Path, schema: Schema) -> None:
    text = '\nage,sex,hours,country\n30,F,40,US\n\n   \n31,M,35,"U\nS"\n32,F,1O,US\n'
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=r"'hours'.* line 8 .*'1O'"):  # letter O typed for zero
        read_csv(path, Schema(columns=(Column("hours", "numeric", lower=1, upper=99, bins=10),)))


def test_null_in_non_nullable_column_names_column_and_line(tmp_path: Path, schema: Schema) -> None:
    path = write(tmp_path, "age,sex,hours,country\n30,F,40,US\n31,N,40,US\n")
    with pytest.raises(DataError) as info:
        read_csv(path, schema)
    message = str(info.value)
    assert "'sex'" in message and "not nullable" in message and "line 3" in message
    assert "nullable" in message  # says what to do


def test_na_values_honoured(tmp_path: Path, schema: Schema) -> None:
    path = write(tmp_path, "age,sex,hours,country\n30,F,N,N\n31,M, N ,MX\n32,F,20,US\n")
    df = read_csv(path, schema)
    assert df["hours"].isna().tolist() == [True, True, False]
    assert df["country"].isna().tolist() == [True, False, False]
    assert df["hours"].iloc[2] == 20.0


def test_custom_na_values_replace_the_defaults(tmp_path: Path, schema: Schema) -> None:
    # with "na_values": ["N"], an empty cell is not null: it is text in a numeric column
    path = write(tmp_path, "age,sex,hours,country\n30,F,,US\n")
    with pytest.raises(DataError, match="'hours'.*line 2 holds ''"):
        read_csv(path, schema)
    default = Schema(columns=schema.columns)  # default na_values include "" and "NA"
    df = read_csv(write(tmp_path, "age,sex,hours,country\n30,F,,NA\n31,M,NA,\n", "b.csv"), default)
    assert df["hours"].isna().all() and df["country"].isna().all()


def test_n_is_a_value_when_not_declared_null(tmp_path: Path) -> None:
    schema = Schema(columns=(Column("answer", "categorical", categories=("Y", "N")),))
    df = read_csv(write(tmp_path, "answer\nY\nN\n"), schema)
    assert df["answer"].tolist() == ["Y", "N"]


def test_types_whitespace_and_extra_columns(tmp_path: Path, schema: Schema) -> None:
    path = write(tmp_path, "id, age ,sex,hours,country\n7, 30, F,40.5,US\n8,31 ,M,N, MX\n")
    df = read_csv(path, schema)
    assert list(df.columns) == schema.names  # schema order; the extra 'id' column is not carried
    assert df["age"].dtype == np.float64 and df["hours"].dtype == np.float64
    assert df["sex"].dtype == object
    assert df["age"].tolist() == [30.0, 31.0]
    assert df["sex"].tolist() == ["F", "M"] and df["country"].tolist() == ["US", "MX"]


def test_unparseable_csv_is_a_data_error(tmp_path: Path, schema: Schema) -> None:
    path = write(tmp_path, "age,sex,hours,country\n30,F,40,US\n31,M,40,US,extra,fields\n")
    with pytest.raises(DataError, match="could not be parsed"):
        read_csv(path, schema)


def test_data_errors_are_user_errors() -> None:
    assert issubclass(DataError, DpsynthError) and DataError.exit_code == 2


# -- coerce on DataFrames ----------------------------------------------------------------------


def test_coerce_names_positional_row_for_dataframes(schema: Schema) -> None:
    df = pd.DataFrame({"age": [30, 31, "x"], "sex": ["F", "M", "F"], "hours": [1, 2, 3], "country": ["US"] * 3})
    with pytest.raises(DataError, match="'age'.*row 2 holds 'x'"):
        coerce(df, schema)


def test_coerce_refuses_non_dataframe_and_empty(schema: Schema) -> None:
    with pytest.raises(DataError, match="DataFrame"):
        coerce([[30, "F", 1, "US"]], schema)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no data rows"):
        coerce(pd.DataFrame(columns=schema.names), schema)


def test_numeric_categories_match_json_labels() -> None:
    schema = Schema(columns=(Column("SEX", "categorical", categories=("1", "2")),))
    df = coerce(pd.DataFrame({"SEX": [1, 2.0, np.int64(1)]}), schema)
    assert df["SEX"].tolist() == ["1", "2", "1"]
    _, report = conform(df, schema)
    assert report.total_changed == 0


# -- conform: clipping and `other` --------------------------------------------------------------


def test_clipping_is_counted_and_no_row_is_dropped(schema: Schema) -> None:
    df = pd.DataFrame(
        {
            "age": [10, 17, 50, 90, 95, 120],
            "sex": ["F", "M", "F", "M", "F", "M"],
            "hours": [0.5, np.nan, 40, 99, 150, 1],
            "country": ["US"] * 6,
        }
    )
    out, report = prepare(df, schema)
    assert len(out) == len(df)
    assert out["age"].tolist() == [17, 17, 50, 90, 90, 90]
    assert out["hours"].iloc[0] == 1 and out["hours"].iloc[4] == 99
    assert np.isnan(out["hours"].iloc[1])  # null stays null, not clipped
    assert report.clipped_low == {"age": 1, "hours": 1}
    assert report.clipped_high == {"age": 2, "hours": 1}
    assert report.total_changed == 5
    assert df["age"].tolist() == [10, 17, 50, 90, 95, 120]  # the caller's table is untouched


def test_unknown_category_goes_to_other_and_is_counted(schema: Schema) -> None:
    df = pd.DataFrame(
        {"age": [30] * 5, "sex": ["F"] * 5, "hours": [40] * 5, "country": ["US", "Canada", "MX", "Peru", None]}
    )
    out, report = prepare(df, schema)
    assert out["country"].iloc[:4].tolist() == ["US", "Other", "MX", "Other"]
    assert pd.isna(out["country"].iloc[4])  # null is not an unknown category
    assert report.mapped_to_other == {"country": 2}
    assert report.total_changed == 2 and len(out) == 5


def test_unknown_category_without_other_is_refused(schema: Schema) -> None:
    df = pd.DataFrame({"age": [30, 31], "sex": ["F", "X"], "hours": [40, 40], "country": ["US", "US"]})
    with pytest.raises(DataError) as info:
        prepare(df, schema, source="training table")
    message = str(info.value)
    assert "'sex'" in message and "'X'" in message and "training table" in message
    assert "other" in message  # says what to do


def test_domain_report_lists_ignored_columns_and_serialises(schema: Schema) -> None:
    df = pd.DataFrame({"age": [100], "sex": ["F"], "hours": [40], "country": ["FR"], "ssn": ["123"]})
    _, report = prepare(df, schema)
    assert report.ignored_columns == ["ssn"]
    assert report.to_dict() == {
        "clipped_low": {},
        "clipped_high": {"age": 1},
        "mapped_to_other": {"country": 1},
        "ignored_columns": ["ssn"],
    }
    assert DomainReport().total_changed == 0


def test_in_domain_table_is_unchanged(mixed_schema: Schema, mixed_frame: pd.DataFrame) -> None:
    out, report = prepare(mixed_frame, mixed_schema)
    assert report.total_changed == 0
    pd.testing.assert_frame_equal(out, mixed_frame[mixed_schema.names], check_dtype=False)


# -- real data ----------------------------------------------------------------------------------


def test_nist_na_values(shared_data: Path) -> None:
    path = shared_data / "nist" / "ma2019.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    expected = pd.read_csv(path, na_values="N", keep_default_na=False)
    schema = Schema(
        na_values=("N",),
        columns=(
            Column("AGEP", "numeric", lower=0, upper=99, bins=10, integer=True),
            Column("NOC", "numeric", lower=0, upper=20, bins=21, integer=True, nullable=True),
            Column("DVET", "categorical", categories=("1", "2", "3", "4", "5", "6"), nullable=True),
            Column("PUMA", "categorical", categories=("25-00503", "other"), other="other"),
        ),
    )
    df, report = prepare(read_csv(path, schema), schema)
    assert len(df) == len(expected) == 7634
    assert df["NOC"].isna().sum() == expected["NOC"].isna().sum() > 0
    assert df["DVET"].isna().sum() == expected["DVET"].isna().sum() > 0
    assert set(df["DVET"].dropna()) <= {"1", "2", "3", "4", "5", "6"}
    assert report.mapped_to_other["PUMA"] == int((expected["PUMA"] != "25-00503").sum())


def test_adult_reads_with_its_columns(adult_csv: Path) -> None:
    schema = Schema(
        columns=(
            Column("age", "numeric", lower=17, upper=90, bins=10, integer=True),
            Column("capital_gain", "numeric", lower=0, upper=99999, edges=(0, 1, 99999), integer=True),
            Column("sex", "categorical", categories=("Female", "Male")),
            Column("income", "categorical", categories=("<=50K", ">50K")),
        )
    )
    df, report = prepare(read_csv(adult_csv, schema), schema)
    assert len(df) == 30162
    assert report.total_changed == 0
    assert set(df["income"]) == {"<=50K", ">50K"}


def test_columns_outside_the_schema_are_listed_as_ignored_through_read_csv(tmp_path):
    """A CSV's extra columns (e.g. an ID) are not synthesized, and the domain report says so."""
    from dpsynth.schema import Column, Schema
    from dpsynth.tables import prepare, read_csv

    schema = Schema(columns=(Column("x", "numeric", lower=0, upper=10, bins=2),))
    path = tmp_path / "t.csv"
    path.write_text("id,x,note\n1,3,a\n2,4,b\n")
    _, report = prepare(read_csv(path, schema), schema)
    assert report.ignored_columns == ["id", "note"]
