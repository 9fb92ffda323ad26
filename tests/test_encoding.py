"""Table <-> codes: exact categories, values back in their own bin, whole numbers, nulls, explicit edges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dpsynth.encoding import TableEncoder
from dpsynth.errors import DataError
from dpsynth.schema import Column, Schema
from dpsynth.tables import prepare


def one(column: Column) -> TableEncoder:
    return TableEncoder(Schema(columns=(column,)))


def test_domain_sizes(mixed_schema: Schema) -> None:
    assert TableEncoder(mixed_schema).domain == {
        "age": 8,  # equal-width bins
        "children": 6,  # 0..5, one bin per whole number (bins=10 is an upper bound)
        "hours": 11,  # 10 bins + null
        "capital_gain": 4,  # explicit edges
        "score": 6,  # 5 bins + null
        "sex": 2,
        "education": 7,  # 6 categories + null
        "country": 4,
        "income": 2,
    }
    assert list(TableEncoder(mixed_schema).domain) == mixed_schema.names


def test_round_trip(mixed_schema: Schema, mixed_frame: pd.DataFrame) -> None:
    data, _ = prepare(mixed_frame, mixed_schema)
    encoder = TableEncoder(mixed_schema)
    codes = encoder.encode(data)
    for name, size in encoder.domain.items():
        assert codes[name].dtype == np.int64
        assert codes[name].min() >= 0 and codes[name].max() < size

    decoded = encoder.decode(codes, np.random.default_rng(1))
    assert list(decoded.columns) == mixed_schema.names and len(decoded) == len(data)

    # categories come back exactly, nulls included, as Categoricals over the schema's labels
    for name in ("sex", "education", "country", "income"):
        assert list(decoded[name].cat.categories) == list(mixed_schema[name].categories)
        pd.testing.assert_series_equal(decoded[name].astype(object), data[name].astype(object), check_names=False)
    # nulls come back as nulls and only there
    for name in ("hours", "score", "education"):
        assert decoded[name].isna().tolist() == data[name].isna().tolist()
    # every value lands in the bin it was encoded from
    recoded = encoder.encode(decoded)
    for name in mixed_schema.names:
        np.testing.assert_array_equal(recoded[name], codes[name], err_msg=name)
    # small-range integers survive exactly
    np.testing.assert_array_equal(decoded["children"], data["children"])


@pytest.mark.parametrize(
    "column",
    [
        Column("age", "numeric", lower=17, upper=90, bins=10, integer=True),
        Column("hours", "numeric", lower=1, upper=99, bins=7, integer=True),
        Column("pct", "numeric", lower=0, upper=100, bins=30, integer=True),  # float edges like 10.000000000000002
        Column("odd", "numeric", lower=0.5, upper=20.5, bins=6, integer=True),  # non-integral bounds
        Column("gain", "numeric", lower=0, upper=99999, edges=(0, 1, 5000, 99999), integer=True),
        Column("kids", "numeric", lower=0, upper=12, bins=13, integer=True),
    ],
    ids=lambda c: c.name,
)
def test_integer_bins_and_ranges_agree(column: Column) -> None:
    """Encoding a whole number and decoding its code must be able to give that number back."""
    encoder = one(column)
    ranges = column.integer_ranges()
    values = np.arange(np.ceil(column.lower), np.floor(column.upper) + 1)
    codes = encoder.encode(pd.DataFrame({column.name: values}))[column.name]
    for value, code in zip(values, codes):
        start, stop = ranges[code]
        assert start <= value <= stop, (value, code, ranges[code])
    # ranges partition the whole numbers in [lower, upper]
    assert [v for a, b in ranges for v in range(a, b + 1)] == values.astype(int).tolist()

    decoded = encoder.decode({column.name: codes}, np.random.default_rng(0))[column.name].to_numpy()
    assert np.all(decoded == np.round(decoded))
    assert decoded.min() >= column.lower and decoded.max() <= column.upper
    np.testing.assert_array_equal(encoder.encode(pd.DataFrame({column.name: decoded}))[column.name], codes)


def test_integer_decode_covers_every_whole_number_of_a_bin_uniformly() -> None:
    column = Column("x", "numeric", lower=0, upper=99, bins=10, integer=True)  # ranges [0,9], [10,19], ...
    assert column.integer_ranges()[0] == (0, 9)
    values = one(column).decode({"x": np.zeros(20_000, dtype=np.int64)}, np.random.default_rng(3))["x"]
    counts = values.value_counts().sort_index()
    assert counts.index.tolist() == list(range(10))  # both ends reachable, nothing outside
    assert counts.min() > 1700 and counts.max() < 2300  # ~2000 each


def test_continuous_decode_is_uniform_inside_the_bin() -> None:
    column = Column("score", "numeric", lower=0.0, upper=1.0, bins=4)
    values = one(column).decode({"score": np.full(20_000, 2)}, np.random.default_rng(5))["score"]
    assert values.min() >= 0.5 and values.max() < 0.75
    assert abs(values.mean() - 0.625) < 0.003
    # drawn, not a fixed representative value, at a thousandth of the bin width (0.25 -> 4 decimals)
    assert values.nunique() > 2_000
    assert written_decimals(values) == 4


def written_decimals(values: pd.Series) -> int:
    """Most digits after the point in the shortest round-trip text of ``values`` (what a CSV writer prints)."""
    return max(len(repr(float(v)).partition(".")[2].rstrip("0")) for v in values)


def test_decoded_values_carry_the_declared_decimals_only() -> None:
    """A published number shows the schema's precision, not the 52 bits of the uniform draw behind it."""
    column = Column("score", "numeric", lower=0.0, upper=1.0, bins=4, decimals=2)
    values = one(column).decode({"score": np.arange(20_000) % 4}, np.random.default_rng(5))["score"]
    assert written_decimals(values) == 2  # as the CSV writes them (shortest repr), e.g. "0.37"
    codes = one(column).encode(pd.DataFrame({"score": values}))["score"]
    np.testing.assert_array_equal(codes, np.arange(20_000) % 4)  # rounding keeps every value in its bin


@pytest.mark.parametrize("bins, expected", [(4, 4), (10, 4), (1000, 6), (1, 3)])
def test_default_decimals_resolve_a_thousandth_of_the_narrowest_bin(bins: int, expected: int) -> None:
    assert Column("x", "numeric", lower=0.0, upper=1.0, bins=bins).output_decimals() == expected
    assert Column("n", "numeric", lower=0, upper=99999, bins=10, integer=True).output_decimals() == 0
    wide = Column("w", "numeric", lower=0, upper=1e6, bins=3)
    assert wide.output_decimals() == 0


def test_bounds_go_to_first_and_last_bin() -> None:
    column = Column("x", "numeric", lower=-5, upper=5, bins=4)
    codes = one(column).encode(pd.DataFrame({"x": [-5.0, -2.5, -2.4999, 0.0, 4.999, 5.0]}))["x"]
    assert codes.tolist() == [0, 1, 1, 2, 3, 3]  # bins are [e_i, e_i+1); the last is closed


def test_explicit_edges_are_honoured() -> None:
    column = Column("gain", "numeric", lower=0, upper=99999, edges=(0, 1, 5000, 20000, 99999), integer=True)
    encoder = one(column)
    codes = encoder.encode(pd.DataFrame({"gain": [0, 1, 4999, 5000, 19999, 20000, 99999]}))["gain"]
    assert codes.tolist() == [0, 1, 1, 2, 2, 3, 3]
    decoded = encoder.decode({"gain": np.repeat([0, 1, 2, 3], 500)}, np.random.default_rng(0))["gain"].to_numpy()
    assert np.all(decoded[:500] == 0)  # the zero bin decodes to exactly zero
    assert decoded[500:1000].min() >= 1 and decoded[500:1000].max() <= 4999
    assert decoded[1000:1500].min() >= 5000 and decoded[1000:1500].max() <= 19999
    assert decoded[1500:].min() >= 20000 and decoded[1500:].max() <= 99999


def test_nulls_use_the_last_code_and_decode_to_null() -> None:
    schema = Schema(
        columns=(
            Column("x", "numeric", lower=0, upper=10, bins=5, nullable=True),
            Column("c", "categorical", categories=("a", "b"), nullable=True),
        )
    )
    encoder = TableEncoder(schema)
    df = pd.DataFrame({"x": [1.0, np.nan, 10.0], "c": ["b", np.nan, "a"]})
    codes = encoder.encode(df)
    assert codes["x"].tolist() == [0, 5, 4] and codes["c"].tolist() == [1, 2, 0]
    decoded = encoder.decode(codes, np.random.default_rng(0))
    assert decoded["x"].isna().tolist() == [False, True, False]
    assert decoded["c"].tolist()[0::2] == ["b", "a"] and pd.isna(decoded["c"].iloc[1])


def test_decode_types_and_reproducibility(mixed_schema: Schema, mixed_frame: pd.DataFrame) -> None:
    encoder = TableEncoder(mixed_schema)
    codes = encoder.encode(prepare(mixed_frame, mixed_schema)[0])
    a = encoder.decode(codes, np.random.default_rng(11))
    b = encoder.decode(codes, np.random.default_rng(11))
    c = encoder.decode(codes, np.random.default_rng(12))
    pd.testing.assert_frame_equal(a, b)
    assert not a["score"].equals(c["score"])
    assert a["age"].dtype == np.float64 and isinstance(a["sex"].dtype, pd.CategoricalDtype)


def test_random_codes_decode_inside_the_public_domain(mixed_schema: Schema) -> None:
    """What a synthesizer samples (any code in the domain) must decode to in-domain values."""
    encoder = TableEncoder(mixed_schema)
    rng = np.random.default_rng(2)
    codes = {name: rng.integers(0, size, 5000) for name, size in encoder.domain.items()}
    decoded = encoder.decode(codes, rng)
    _, report = prepare(decoded, mixed_schema)
    assert report.total_changed == 0
    for column in mixed_schema:
        values = decoded[column.name].dropna()
        if column.kind == "categorical":
            assert set(values) <= set(column.categories)
        else:
            assert values.between(column.lower, column.upper).all()
            if column.integer:
                assert (values == values.round()).all()
        if not column.nullable:
            assert decoded[column.name].notna().all()


def test_encode_refuses_a_table_that_was_not_prepared() -> None:
    encoder = one(Column("c", "categorical", categories=("a", "b")))
    with pytest.raises(DataError, match="'c'.*'z'"):
        encoder.encode(pd.DataFrame({"c": ["a", "z"]}))
    with pytest.raises(DataError, match="'c'.*not nullable"):
        encoder.encode(pd.DataFrame({"c": ["a", None]}))
    numeric = one(Column("x", "numeric", lower=0, upper=1, bins=2))
    with pytest.raises(DataError, match="'x'.*not nullable"):
        numeric.encode(pd.DataFrame({"x": [0.5, np.nan]}))
