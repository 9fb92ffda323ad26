"""Real-vs-synthetic column aggregates for the report, with small cells suppressed.

This module owns what the report may reveal about the real (training)
table: it turns a column into counts on shared buckets and flags the counts
that must not be shown. It draws nothing (see :mod:`dpsynth.report.plots`).
The report is read by the data owner, so it may show aggregates of the real
table, but never a record. Two rules keep it that way:

* **Small cells are suppressed.** A category or histogram bin is shown only if
  at least ``min_cell`` real rows fall in it. Rare categories are merged into
  one "other" bar (whose real share is hidden too if it is itself small); rare
  bins are merged into their neighbour, so bar edges always come from a fixed
  grid, never from a record's value. This is the usual threshold rule of
  statistical disclosure control (Hundepool et al. 2012, *Statistical
  Disclosure Control*, Wiley, ch. 5); it is **not** differential privacy, and
  the page says so.
* **Bin edges never come from an individual value.** Numeric grids use the
  schema's public bounds when given; otherwise a range that leaves at least
  ``min_cell`` rows beyond each end, rounded outward to a "nice" step, with the
  tails clipped into the end bins. A unique extreme value therefore never
  becomes an axis limit or a label.

The shares of the shown buckets let a reader work out the merged bucket's
share (one minus the rest); that bucket pools every rare category, so what it
reveals is how many rows are rare, never which value a rare row holds.

Synthetic values are aggregated on the same buckets as the real ones (a
category that is rare in the real table is merged in the synthetic table as
well), so a generator that memorised a rare record cannot expose it here either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dpsynth.schema import category_label

MAX_CATEGORIES = 12
NUMERIC_BINS = 20


@dataclass(frozen=True)
class ColumnDistribution:
    """Real-vs-synthetic counts of one column on shared buckets, small real cells flagged.

    ``labels`` name the buckets (categories, or ``"[a, b)"`` ranges for
    numeric columns whose ``edges`` are also kept). ``suppressed[i]`` is true
    when bucket ``i`` has fewer than ``min_cell`` real rows: its real share
    must not be shown. ``real_missing`` / ``synthetic_missing`` count nulls of
    numeric columns (categorical nulls are the ``"(missing)"`` bucket).
    """

    name: str
    kind: str
    labels: list[str]
    real_counts: np.ndarray
    synthetic_counts: np.ndarray | None
    suppressed: np.ndarray
    min_cell: int
    edges: np.ndarray | None = None
    real_missing: int = 0
    synthetic_missing: int = 0
    note: str = ""

    @property
    def n_real(self) -> int:
        return int(self.real_counts.sum()) + self.real_missing

    @property
    def n_synthetic(self) -> int:
        if self.synthetic_counts is None:
            return 0
        return int(self.synthetic_counts.sum()) + self.synthetic_missing

    def real_shares(self) -> np.ndarray:
        """Share of real rows per bucket (of all real rows, nulls included); NaN where suppressed."""
        shares = self.real_counts / max(self.n_real, 1)
        return np.where(self.suppressed, np.nan, shares)

    def synthetic_shares(self) -> np.ndarray | None:
        """Share of synthetic rows per bucket (of all synthetic rows, nulls included)."""
        if self.synthetic_counts is None:
            return None
        return self.synthetic_counts / max(self.n_synthetic, 1)

    def total_variation(self) -> float | None:
        """Total variation distance between the two bucketed distributions (nulls as one more bucket).

        0 means identical shares, 1 disjoint support. Computed on the merged
        buckets, so it is a lower bound on the distance at full resolution.
        """
        if self.synthetic_counts is None or self.n_real == 0 or self.n_synthetic == 0:
            return None
        real = np.append(self.real_counts, self.real_missing) / self.n_real
        syn = np.append(self.synthetic_counts, self.synthetic_missing) / self.n_synthetic
        return float(0.5 * np.abs(real - syn).sum())

    def missing_text(self, which: str) -> str:
        """Null share of a numeric column as display text, suppressed when the real count is small."""
        if which == "real":
            count, total = self.real_missing, self.n_real
            if 0 < count < self.min_cell:
                return f"suppressed (<{self.min_cell})"
        else:
            count, total = self.synthetic_missing, self.n_synthetic
        return f"{100.0 * count / total:.1f}%" if total else "n/a"


def _category_counts(series: pd.Series) -> pd.Series:
    counts = series.value_counts(dropna=False, sort=False)
    labels = ["(missing)" if pd.isna(v) else category_label(v) for v in counts.index]
    return pd.Series(counts.to_numpy(), index=labels).groupby(level=0, sort=False).sum()


def categorical_distribution(
    name: str,
    real: pd.Series,
    synthetic: pd.Series | None,
    min_cell: int = 10,
    max_categories: int = MAX_CATEGORIES,
) -> ColumnDistribution:
    """Bucket a categorical column: the ``max_categories`` most common real categories with at
    least ``min_cell`` real rows each, and one merged bucket for everything else.

    The merged bucket holds rare categories, categories beyond the top ones and
    synthetic-only values; its label never names them. It is labelled
    ``"suppressed (<min_cell)"`` and its real share hidden when it holds fewer
    than ``min_cell`` real rows.
    """
    real_counts = _category_counts(real)
    frequent = real_counts[real_counts >= min_cell].sort_values(ascending=False, kind="stable")
    shown = list(frequent.index[:max_categories])
    merged_any = len(real_counts) > len(shown)
    syn_counts = _category_counts(synthetic) if synthetic is not None else None
    if syn_counts is not None and not set(syn_counts.index) <= set(shown):
        merged_any = True

    labels = [str(s) for s in shown]
    real_arr = [int(real_counts[s]) for s in shown]
    syn_arr = [int(syn_counts.get(s, 0)) for s in shown] if syn_counts is not None else None
    suppressed = [False] * len(shown)
    if merged_any:
        rest_real = int(real_counts.sum()) - sum(real_arr)
        small = 0 < rest_real < min_cell
        has_rare = bool((real_counts < min_cell).any())
        if small:
            labels.append(f"suppressed (<{min_cell})")
        elif has_rare:
            labels.append(f"other (incl. <{min_cell})")
        else:
            labels.append("other")
        real_arr.append(rest_real)
        suppressed.append(small)
        if syn_arr is not None and syn_counts is not None:
            syn_arr.append(int(syn_counts.sum()) - sum(syn_arr))
    note = ""
    if int(real_counts.sum()) < min_cell:
        note = f"fewer than {min_cell} real rows: real shares suppressed"
        suppressed = [True] * len(labels)
    return ColumnDistribution(
        name=name,
        kind="categorical",
        labels=labels,
        real_counts=np.asarray(real_arr, dtype=np.int64),
        synthetic_counts=None if syn_arr is None else np.asarray(syn_arr, dtype=np.int64),
        suppressed=np.asarray(suppressed, dtype=bool),
        min_cell=min_cell,
        note=note,
    )


def _nice_step(raw: float) -> float:
    """Smallest of 1, 2, 2.5, 5 x 10^k that is >= raw."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    exp = math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = mult * 10.0**exp
        if step >= raw * (1 - 1e-12):
            return step
    return 10.0 ** (exp + 1)


def numeric_grid(
    values: np.ndarray, min_cell: int, bins: int = NUMERIC_BINS, bounds: tuple[float, float] | None = None
) -> np.ndarray:
    """Bin edges for a numeric column that no single record determines.

    The range is the public ``bounds`` when given; otherwise it runs from the
    ``min_cell``-th smallest to the ``min_cell``-th largest value (so at least
    ``min_cell`` rows lie at or beyond each end). The range is then covered by
    about ``bins`` bins of a "nice" width (1, 2, 2.5 or 5 times a power of
    ten) starting at a multiple of that width. Whole-number data gets a whole
    width and edges halfway between integers, so every bin holds the same
    number of possible values.
    """
    finite = values[np.isfinite(values)]
    if bounds is not None:
        lo, hi = sorted((float(bounds[0]), float(bounds[1])))
    elif finite.size == 0:
        return np.array([0.0, 1.0])
    else:
        k = min(max(min_cell, 1), finite.size) - 1
        part = np.partition(finite, (k, finite.size - 1 - k))
        lo, hi = float(part[k]), float(part[finite.size - 1 - k])
    integral = finite.size > 0 and bool(np.all(np.mod(finite, 1) == 0))
    step = _nice_step((hi - lo) / bins) if hi > lo else 1.0
    if integral:
        step = float(max(1, math.ceil(step)))
        first = math.floor(lo / step) * step - 0.5
        n = max(1, math.ceil((math.floor(hi) + 0.5 - first) / step))
    else:
        first = math.floor(lo / step) * step
        n = max(1, math.ceil((hi - first) / step))
    return first + step * np.arange(n + 1, dtype=float)


def _merge_small_bins(counts: np.ndarray, edges: np.ndarray, min_cell: int) -> np.ndarray:
    """Remove interior edges until every bin holds >= ``min_cell`` real rows (or one bin is left).

    The smallest bin is merged with its smaller neighbour, repeatedly, so the
    surviving edges are a subset of the original grid.
    """
    counts = [int(c) for c in counts]
    kept = list(edges)
    while len(counts) > 1:
        i = int(np.argmin(counts))
        if counts[i] >= min_cell:
            break
        if i == 0:
            j = 1
        elif i == len(counts) - 1:
            j = i - 1
        else:
            j = i - 1 if counts[i - 1] <= counts[i + 1] else i + 1
        a, b = min(i, j), max(i, j)
        counts[a] += counts[b]
        del counts[b]
        del kept[b]
    return np.asarray(kept, dtype=float)


def _fmt_edge(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 else f"{x:.3g}"


def _to_numeric(series: pd.Series, kind: str) -> np.ndarray:
    if kind == "datetime":
        ts = pd.to_datetime(series, errors="coerce")
        years = ts.dt.year + (ts.dt.dayofyear - 1) / 365.25
        return years.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def numeric_distribution(
    name: str,
    real: pd.Series,
    synthetic: pd.Series | None,
    min_cell: int = 10,
    bins: int = NUMERIC_BINS,
    bounds: tuple[float, float] | None = None,
    kind: str = "numeric",
) -> ColumnDistribution:
    """Histogram a numeric column on a common grid (see :func:`numeric_grid`), tails clipped into
    the end bins, then merge bins with fewer than ``min_cell`` real rows into a neighbour.

    Synthetic values are counted on the final real-derived edges. ``kind =
    "datetime"`` columns are histogrammed in decimal years.
    """
    r = _to_numeric(real, kind)
    r_ok = np.isfinite(r)
    edges = numeric_grid(r[r_ok], min_cell, bins, bounds)
    clip = (edges[0], edges[-1])
    r_counts, _ = np.histogram(np.clip(r[r_ok], *clip), bins=edges)
    edges = _merge_small_bins(r_counts, edges, min_cell)
    r_counts, _ = np.histogram(np.clip(r[r_ok], *clip), bins=edges)
    s_counts, s_missing = None, 0
    if synthetic is not None:
        s = _to_numeric(synthetic, kind)
        s_ok = np.isfinite(s)
        s_counts, _ = np.histogram(np.clip(s[s_ok], *clip), bins=edges)
        s_missing = int((~s_ok).sum())
    suppressed = r_counts < min_cell
    note = ""
    if int(r_ok.sum()) < min_cell:
        note = f"fewer than {min_cell} real non-missing values: real shares suppressed"
        suppressed[:] = True
    labels = [f"[{_fmt_edge(a)}, {_fmt_edge(b)})" for a, b in zip(edges[:-1], edges[1:])]
    return ColumnDistribution(
        name=name,
        kind="numeric",
        labels=labels,
        real_counts=r_counts.astype(np.int64),
        synthetic_counts=None if s_counts is None else s_counts.astype(np.int64),
        suppressed=suppressed,
        min_cell=min_cell,
        edges=edges,
        real_missing=int((~r_ok).sum()),
        synthetic_missing=s_missing,
        note=note,
    )


def column_distribution(
    name: str,
    real: pd.Series,
    synthetic: pd.Series | None,
    kind: str,
    min_cell: int = 10,
    bounds: tuple[float, float] | None = None,
) -> ColumnDistribution:
    """Dispatch on ``kind``: ``"categorical"`` -> bar buckets; ``"numeric"``/``"datetime"`` -> histogram."""
    if kind == "categorical":
        return categorical_distribution(name, real, synthetic, min_cell)
    if kind in ("numeric", "datetime"):
        return numeric_distribution(name, real, synthetic, min_cell, bounds=bounds, kind=kind)
    raise ValueError(f"column {name!r}: kind must be 'categorical', 'numeric' or 'datetime', got {kind!r}")
