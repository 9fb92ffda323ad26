"""Mixed-type encoding and exact nearest neighbours under a Gower-style distance.

Distance between two records (what every distance-based attack uses)::

    d(x, y) = (1/p) * [ sum_numeric |x_c - y_c| / (upper_c - lower_c)      (clipped to [0, 1])
                      + sum_categorical 1[x_c != y_c] ]                     (NaN is its own category)

with ``p`` the number of columns, so ``d`` lies in [0, 1] (Gower 1971, L1 form).
A missing numeric value is imputed at mid-range and a missing/present flag
with weight 1/2 is added, so "one side missing" costs between 1/2 and 1.

It equals ``(1/p) * L1`` between *embeddings* (numerics scaled to [0, 1],
one-hot blocks scaled by 1/2 so a mismatch costs 1), but it is computed
without materialising the wide L1: the categorical part is
``W - <weighted one-hot(x), one-hot(y)>``, a BLAS matrix product, and only the
few numeric columns go through ``scipy.spatial.distance.cdist``. That keeps an
exact search over tables the size of Adult fast enough for the quick tier
(timings in benchmarks/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from audits.spec import TableSpec, category_labels, numeric_values

NAN_FLAG_WEIGHT = 0.5
_CHUNK_CELLS = 4_000_000  # distance-matrix cells per chunk (32 MB of float64)


@dataclass(frozen=True)
class Encoded:
    """A table encoded for distance computations.

    ``num``: numeric columns scaled to [0, 1] (missing imputed at 0.5);
    ``onehot``: 0/1 indicators of every categorical level and every numeric
    missing-flag, float32 so the match count is one BLAS call.
    """

    num: np.ndarray
    onehot: np.ndarray

    def __len__(self) -> int:
        return self.num.shape[0]

    def take(self, idx: np.ndarray) -> Encoded:
        """Rows ``idx`` (a new Encoded)."""
        return Encoded(self.num[idx], self.onehot[idx])


class MixedEncoder:
    """Encode tables described by a :class:`TableSpec` for the Gower-style distance.

    ``fit(*frames)`` learns the category vocabulary: the spec's categories plus
    any value seen in the given frames (sorted), plus a missing level, so all
    frames of one audit share one encoding.
    """

    def __init__(self, spec: TableSpec, columns: Sequence[str] | None = None) -> None:
        self.spec = spec
        self.columns = list(columns) if columns is not None else spec.names

    def fit(self, *frames: pd.DataFrame) -> MixedEncoder:
        self.numeric_ = [c for c in self.columns if self.spec.column(c).kind == "numeric"]
        self.categorical_ = [c for c in self.columns if self.spec.column(c).kind == "categorical"]
        self.levels_: dict[str, list[str | None]] = {}
        for name in self.categorical_:
            declared = list(self.spec.column(name).categories)
            seen: set[str] = set()
            for df in frames:
                seen.update(v for v in category_labels(df[name]) if v is not None)
            extra = sorted(seen - set(declared))
            self.levels_[name] = declared + extra + [None]
        # Numeric missing flags only where a value can be missing (declared or seen).
        self.nan_flag_ = [
            c for c in self.numeric_ if self.spec.column(c).nullable or any(df[c].isna().any() for df in frames)
        ]
        blocks = [(c, len(self.levels_[c]), 1.0) for c in self.categorical_]
        blocks += [(c, 2, NAN_FLAG_WEIGHT) for c in self.nan_flag_]
        self.blocks_ = blocks
        self.weights_ = (
            np.concatenate([np.full(n, w, dtype=np.float32) for _, n, w in blocks])
            if blocks
            else np.zeros(0, dtype=np.float32)
        )
        self.total_weight_ = float(sum(w for _, _, w in blocks))
        self.n_columns_ = len(self.columns)
        return self

    @property
    def n_dims(self) -> int:
        return len(self.numeric_) + len(self.weights_)

    def transform(self, df: pd.DataFrame) -> Encoded:
        n = len(df)
        num = np.empty((n, len(self.numeric_)), dtype=np.float64)
        for j, name in enumerate(self.numeric_):
            col = self.spec.column(name)
            x = (numeric_values(df[name], col) - float(col.lower)) / col.span  # type: ignore[arg-type]
            x = np.clip(x, 0.0, 1.0)
            x[np.isnan(x)] = 0.5
            num[:, j] = x
        onehot = np.zeros((n, len(self.weights_)), dtype=np.float32)
        offset = 0
        rows = np.arange(n)
        for name in self.categorical_:
            levels = self.levels_[name]
            lookup = {lvl: i for i, lvl in enumerate(levels)}
            labels = category_labels(df[name])
            missing_level = len(levels) - 1
            codes = np.fromiter((lookup.get(v, missing_level) for v in labels), dtype=np.int64, count=n)
            onehot[rows, offset + codes] = 1.0
            offset += len(levels)
        for name in self.nan_flag_:
            flag = df[name].isna().to_numpy().astype(np.int64)
            onehot[rows, offset + flag] = 1.0
            offset += 2
        return Encoded(num=num, onehot=onehot)

    def embed(self, enc: Encoded) -> np.ndarray:
        """Dense embedding whose L1 distance divided by the column count equals :func:`knn`'s distance."""
        return np.hstack([enc.num, enc.onehot * (0.5 * self.weights_)[None, :]])

    def knn(
        self, query: Encoded, ref: Encoded, k: int = 1, n_jobs: int | None = None, ties: bool = False
    ) -> tuple[np.ndarray, ...]:
        """Exact ``k`` nearest rows of ``ref`` for each row of ``query``.

        Returns ``(distances, indices)``, both ``(len(query), k)``, sorted by
        distance; among equal distances the lower ``ref`` index comes first
        (callers that need random tie-breaking permute ``ref``). With
        ``ties=True`` a third array gives, per query, how many ``ref`` rows lie
        at exactly the nearest distance.
        """
        if k < 1 or k > len(ref):
            raise ValueError(f"k must be in [1, {len(ref)}] (the reference size), got {k}")
        ref_match = np.ascontiguousarray((ref.onehot * self.weights_[None, :]).T)
        p = float(self.n_columns_)
        chunk = max(16, _CHUNK_CELLS // max(1, len(ref)))
        starts = list(range(0, len(query), chunk))

        def one(start: int) -> tuple[np.ndarray, np.ndarray]:
            stop = min(start + chunk, len(query))
            if query.num.shape[1]:
                d = cdist(query.num[start:stop], ref.num, "cityblock")
            else:
                d = np.zeros((stop - start, len(ref)))
            if ref_match.shape[0]:
                d += self.total_weight_
                d -= query.onehot[start:stop] @ ref_match
            if k == 1:
                idx = d.argmin(axis=1)[:, None]
            else:
                part = np.argpartition(d, k - 1, axis=1)[:, :k]
                order = np.lexsort((part, np.take_along_axis(d, part, axis=1)), axis=1)
                idx = np.take_along_axis(part, order, axis=1)
            dist = np.take_along_axis(d, idx, axis=1)
            n_ties = (d == dist[:, :1]).sum(axis=1) if ties else np.zeros(0, dtype=np.int64)
            return np.maximum(dist, 0.0) / p, idx, n_ties

        workers = n_jobs or min(2, os.cpu_count() or 1)
        if workers > 1 and len(starts) > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(one, starts))
        else:
            parts = [one(s) for s in starts]
        if not parts:
            empty = (np.zeros((0, k)), np.zeros((0, k), dtype=np.int64))
            return (*empty, np.zeros(0, dtype=np.int64)) if ties else empty
        dist = np.vstack([p_[0] for p_ in parts])
        idx = np.vstack([p_[1] for p_ in parts])
        if ties:
            return dist, idx, np.concatenate([p_[2] for p_ in parts])
        return dist, idx

    def row_keys(self, df: pd.DataFrame) -> np.ndarray:
        """A 64-bit hash per row over the canonical values of the encoder's columns.

        Two rows share a key iff they are identical (numbers compared to 9
        significant digits, categories by canonical label, missing equals
        missing), up to hash collisions (~n^2 / 2^64, negligible).
        """
        canon = {}
        for name in self.columns:
            col = self.spec.column(name)
            if col.kind == "numeric":
                v = numeric_values(df[name], col)
                canon[name] = pd.Series(_round_sig(v))
            else:
                canon[name] = pd.Series(category_labels(df[name]), dtype=object).fillna("\x00<NA>")
        frame = pd.DataFrame(canon)
        return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _round_sig(v: np.ndarray, digits: int = 9) -> np.ndarray:
    """Round to ``digits`` significant digits (so float noise like 0.1 + 0.2 compares equal to 0.3)."""
    out = v.astype(np.float64).copy()
    finite = np.isfinite(out) & (out != 0)
    mag = np.floor(np.log10(np.abs(out[finite])))
    scale = 10.0 ** (digits - 1 - mag)
    out[finite] = np.round(out[finite] * scale) / scale
    return out
