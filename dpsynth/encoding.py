"""Table <-> discrete codes, driven by the public schema only.

Marginal-based synthesizers (MST, AIM) work on a finite domain: each column
becomes integer codes ``0 .. domain_size-1``. Categorical columns map their
declared categories in order; numeric columns map to their declared bins;
null (for nullable columns) is the last code. Decoding draws a number
uniformly inside its bin (a whole number for integer columns), so synthetic
values always lie inside the public bounds, and rounds it to the column's
``output_decimals()`` (:func:`round_to_schema`): a published value carries
the precision the schema declares, not the 52 bits of a uniform draw. No
statistic of the private table is used, so encoding costs no privacy budget.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dpsynth.errors import DataError
from dpsynth.schema import Column, Schema


class TableEncoder:
    """Encode a conformed table to integer codes and decode codes back to values."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    @property
    def domain(self) -> dict[str, int]:
        """Number of codes per column, in schema order."""
        return {c.name: c.domain_size for c in self.schema}

    def encode(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Codes per column; ``df`` must be :func:`dpsynth.tables.prepare` d to the schema."""
        return {c.name: _encode_column(c, df[c.name]) for c in self.schema}

    def decode(self, codes: dict[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
        return pd.DataFrame({c.name: _decode_column(c, np.asarray(codes[c.name]), rng) for c in self.schema})


def _encode_column(column: Column, series: pd.Series) -> np.ndarray:
    null = series.isna().to_numpy()
    if null.any() and not column.nullable:
        raise DataError(
            f"column {column.name!r} is not nullable but holds {int(null.sum())} null value(s); "
            "prepare the table with dpsynth.tables.prepare first"
        )
    codes = np.empty(len(series), dtype=np.int64)
    if column.kind == "categorical":
        lookup = {label: i for i, label in enumerate(column.categories)}
        mapped = series[~null].map(lookup)
        if mapped.isna().any():
            examples = sorted(set(series[~null][mapped.isna()].astype(str)))[:3]
            raise DataError(
                f"column {column.name!r} holds value(s) outside its categories (e.g. {examples}); "
                "prepare the table with dpsynth.tables.prepare first"
            )
        codes[~null] = mapped.to_numpy(dtype=np.int64)
        null_code = len(column.categories)
    else:
        edges = column.bin_edges()
        values = series.to_numpy(dtype=float)[~null]
        codes[~null] = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
        null_code = len(edges) - 1
    codes[null] = null_code
    return codes


def _decode_column(column: Column, codes: np.ndarray, rng: np.random.Generator) -> pd.Series:
    null_code = column.domain_size - 1 if column.nullable else None
    is_null = codes == null_code if null_code is not None else np.zeros(len(codes), dtype=bool)
    if column.kind == "categorical":
        # a Categorical over the schema's labels, not an object column: one byte per row, not a pointer
        # (8M synthetic rows of Adult's 9 categorical columns were 0.6 GB of pointers, and slow to audit)
        category = np.where(is_null, -1, codes) if null_code is not None else codes
        return pd.Series(pd.Categorical.from_codes(category, categories=list(column.categories)))
    values = np.full(len(codes), np.nan)
    valid = ~is_null
    if column.integer:
        ranges = np.asarray(column.integer_ranges(), dtype=np.int64)
        start, stop = ranges[codes[valid], 0], ranges[codes[valid], 1]
        values[valid] = start + np.floor(rng.random(valid.sum()) * (stop - start + 1))
    else:
        edges = column.bin_edges()
        low, high = edges[codes[valid]], edges[codes[valid] + 1]
        values[valid] = low + rng.random(valid.sum()) * (high - low)
        last = codes[valid] == len(edges) - 2
        values[valid] = round_to_schema(
            column, np.clip(values[valid], column.lower, column.upper), low, high, closed=last
        )
        return pd.Series(values, dtype=float)
    values[valid] = np.clip(values[valid], column.lower, column.upper)
    return pd.Series(values, dtype=float)


def round_to_schema(
    column: Column,
    values: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
    closed: np.ndarray | bool = True,
) -> np.ndarray:
    """``values`` rounded to ``column.output_decimals()``, kept inside the public bounds.

    A bound with more decimals than the column's is replaced by the nearest
    number of that precision inside it (the schema guarantees one exists).
    With per-value bins ``[low, high)`` (``closed``: ``[low, high]``), a
    rounded value stays in its bin whenever the bin holds a number of that
    precision.
    """
    d = column.output_decimals()
    scale = 10.0**d
    rounded = np.round(np.asarray(values, dtype=float), d)
    if low is not None and high is not None:
        first = np.ceil(np.round(np.asarray(low) * scale, 6)) / scale
        top = np.round(np.asarray(high) * scale, 6)
        last = np.where(closed, np.floor(top), np.ceil(top) - 1) / scale
        fits = first <= last
        rounded = np.where(fits, np.clip(rounded, first, np.where(fits, last, first)), rounded)
    bottom = math.ceil(round(float(column.lower) * scale, 6)) / scale
    ceiling = math.floor(round(float(column.upper) * scale, 6)) / scale
    return np.clip(rounded, bottom, ceiling)
