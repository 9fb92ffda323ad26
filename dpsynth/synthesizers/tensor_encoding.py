"""The public tensor encoding of DP-SGD generators: table rows <-> float vectors, from the schema alone.

Categories become one-hot blocks; numbers are placed by their public bins
(one-hot) plus an offset in [-1, 1] inside the bin, or min-max scaled into
[-1, 1] by the public bounds. Nothing is fitted on the private table (no
per-column Gaussian mixtures as in CTGAN's mode-specific normalisation; Xu et
al. 2019), so the encoding costs no budget. Decoding samples each softmax
block, so rare categories keep their modelled frequency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from dpsynth.encoding import round_to_schema
from dpsynth.errors import UsageError
from dpsynth.schema import Column, Schema

NumericEncoding = Literal["bins", "minmax"]


@dataclass(frozen=True)
class Span:
    """A block of the encoded row: ``width`` softmax logits or one ``tanh`` value of ``column``."""

    column: str
    start: int
    width: int
    activation: Literal["softmax", "tanh"]
    role: Literal["category", "bin", "null", "offset", "value"]

    @property
    def stop(self) -> int:
        return self.start + self.width


class TabularTransformer:
    """Rows <-> float vectors, built from the schema alone.

    * categorical: one-hot over the declared categories (+ a null slot);
    * numeric, ``bins``: one-hot over the public bins (+ null) and the position
      inside the bin as a value in [-1, 1] (omitted when every bin holds one
      whole number) -- a public stand-in for CTGAN's mode-specific
      normalisation that copes with spikes and skew (capital gains);
    * numeric, ``minmax``: the value scaled into [-1, 1] by the public bounds
      (+ a two-way null indicator for nullable columns).

    ``categorical_spans`` are the blocks a conditional generator may condition on.
    """

    def __init__(self, schema: Schema, numeric: NumericEncoding = "bins") -> None:
        if numeric not in ("bins", "minmax"):
            raise UsageError(f"numeric_encoding must be 'bins' or 'minmax', got {numeric!r}")
        self.schema = schema
        self.numeric = numeric
        spans: list[Span] = []
        start = 0

        def add(column: str, width: int, activation: str, role: str) -> None:
            nonlocal start
            spans.append(Span(column, start, width, activation, role))  # type: ignore[arg-type]
            start += width

        for col in schema:
            if col.kind == "categorical":
                add(col.name, col.domain_size, "softmax", "category")
            elif numeric == "bins":
                add(col.name, col.domain_size, "softmax", "bin")
                if not _unit_bins(col):
                    add(col.name, 1, "tanh", "offset")
            else:
                if col.nullable:
                    add(col.name, 2, "softmax", "null")
                add(col.name, 1, "tanh", "value")
        self.spans: tuple[Span, ...] = tuple(spans)
        self.dim = start
        self.categorical_spans: tuple[Span, ...] = tuple(s for s in spans if s.role == "category")

    # -- rows -> vectors -------------------------------------------------------------------
    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Float32 matrix (rows x ``dim``) of a table already prepared to the schema."""
        out = np.zeros((len(df), self.dim), dtype=np.float32)
        rows = np.arange(len(df))
        for span in self.spans:
            col = self.schema[span.column]
            series = df[col.name]
            null = series.isna().to_numpy()
            if span.role == "category":
                lookup = {label: i for i, label in enumerate(col.categories)}
                codes = np.full(len(df), len(col.categories), dtype=np.int64)
                codes[~null] = series[~null].map(lookup).to_numpy(dtype=np.int64)
                out[rows, span.start + codes] = 1.0
            elif span.role == "bin":
                out[rows, span.start + _bin_codes(col, series.to_numpy(dtype=float), null)] = 1.0
            elif span.role == "offset":
                values = series.to_numpy(dtype=float)
                offsets = np.zeros(len(df))
                codes = _bin_codes(col, values, null)
                low, high = _bin_bounds(col)
                ok = ~null
                offsets[ok] = 2 * (values[ok] - low[codes[ok]]) / (high[codes[ok]] - low[codes[ok]]) - 1
                out[:, span.start] = np.clip(offsets, -1, 1)
            elif span.role == "null":
                out[rows, span.start + null.astype(np.int64)] = 1.0
            else:  # value
                values = series.to_numpy(dtype=float)
                scaled = 2 * (values - col.lower) / (col.upper - col.lower) - 1
                out[:, span.start] = np.where(null, 0.0, np.clip(scaled, -1, 1))
        return out

    # -- vectors -> rows -------------------------------------------------------------------
    def inverse(self, logits: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        """Decode raw network outputs: softmax blocks are *sampled*, tanh values squashed.

        Sampling (rather than arg-max) keeps rare categories at their modelled
        frequency; it is the arg-max of CTGAN's Gumbel-softmax output in law.
        """
        logits = np.asarray(logits, dtype=np.float64)
        n = len(logits)
        chosen: dict[tuple[str, str], np.ndarray] = {}
        for span in self.spans:
            block = logits[:, span.start : span.stop]
            if span.activation == "softmax":
                chosen[(span.column, span.role)] = _sample_softmax(block, rng)
            else:
                chosen[(span.column, span.role)] = np.tanh(block[:, 0])
        out: dict[str, pd.Series] = {}
        for col in self.schema:
            if col.kind == "categorical":
                codes = chosen[(col.name, "category")]
                labels = np.asarray(list(col.categories) + [np.nan], dtype=object)
                out[col.name] = pd.Series(labels[codes], dtype=object)
            elif self.numeric == "bins":
                codes = chosen[(col.name, "bin")]
                offsets = chosen.get((col.name, "offset"), np.zeros(n))
                out[col.name] = pd.Series(_decode_bins(col, codes, offsets), dtype=float)
            else:
                values = col.lower + (chosen[(col.name, "value")] + 1) / 2 * (col.upper - col.lower)
                values = _finish_numeric(col, values)
                if col.nullable:
                    values = np.where(chosen[(col.name, "null")] == 1, np.nan, values)
                out[col.name] = pd.Series(values, dtype=float)
        return pd.DataFrame(out)[self.schema.names]


def _unit_bins(col: Column) -> bool:
    """True when every bin of an integer column holds exactly one whole number."""
    return col.integer and all(a == b for a, b in col.integer_ranges())


def _bin_codes(col: Column, values: np.ndarray, null: np.ndarray) -> np.ndarray:
    edges = col.bin_edges()
    codes = np.full(len(values), col.n_bins, dtype=np.int64)  # null code (nullable columns only)
    codes[~null] = np.clip(np.searchsorted(edges, values[~null], side="right") - 1, 0, col.n_bins - 1)
    return codes


def _bin_bounds(col: Column) -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper end of each bin; for integer columns the half-integer span of its whole numbers."""
    if col.integer:
        ranges = np.asarray(col.integer_ranges(), dtype=float)
        return ranges[:, 0] - 0.5, ranges[:, 1] + 0.5
    edges = col.bin_edges()
    return edges[:-1], edges[1:]


def _decode_bins(col: Column, codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    values = np.full(len(codes), np.nan)
    valid = codes < col.n_bins
    low, high = _bin_bounds(col)
    c = codes[valid]
    values[valid] = low[c] + (np.clip(offsets[valid], -1, 1) + 1) / 2 * (high[c] - low[c])
    if col.integer:
        ranges = np.asarray(col.integer_ranges(), dtype=float)
        values[valid] = np.clip(np.floor(values[valid] + 0.5), ranges[c, 0], ranges[c, 1])
    return _finish_numeric(col, values)


def _finish_numeric(col: Column, values: np.ndarray) -> np.ndarray:
    if col.integer:
        values = np.round(values)
        return np.clip(values, math.ceil(col.lower), math.floor(col.upper))
    return round_to_schema(col, np.clip(values, col.lower, col.upper))


def _sample_softmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(logits)) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), logits.shape[1] - 1)
