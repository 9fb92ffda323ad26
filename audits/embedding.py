"""Mixed-type encoding and exact nearest neighbours under a Gower-style distance.

Distance between two records (what every distance-based attack uses)::

    d(x, y) = (1/p) * [ sum_numeric |x_c - y_c| / (upper_c - lower_c)      (clipped to [0, 1])
                      + sum_categorical 1[x_c != y_c] ]                     (NaN is its own category)

with ``p`` the number of columns, so ``d`` lies in [0, 1] (Gower 1971, L1 form).
A missing numeric value is imputed at mid-range and a missing/present flag
with weight 1/2 is added, so "one side missing" costs between 1/2 and 1.

It equals ``(1/p) * L1`` between *embeddings* (numerics scaled to [0, 1],
one-hot blocks scaled by 1/2 so a mismatch costs 1). Rows are stored as the
numbers plus one integer code per block (categorical column or missing-flag),
so memory is a few bytes per cell whatever the number of levels.

:meth:`MixedEncoder.knn` is exact either way it runs: by brute force over all
pairs for small inputs (the categorical part is ``W - <weighted one-hot(x),
one-hot(y)>``, a BLAS product, the numeric part ``cdist``), and through
:class:`audits.neighbours.GowerIndex` (signature blocks, Hamming lower
bounds) above ``BRUTE_FORCE_PAIRS`` pairs, so large tables are never
searched pair by pair. Both give the same distances, tie counts and tie
order (tests/audits/test_neighbours.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from audits.neighbours import GowerIndex
from audits.spec import TableSpec, category_label, numeric_values

NAN_FLAG_WEIGHT = 0.5
BRUTE_FORCE_PAIRS = 20_000_000  # above len(query) * len(ref), knn uses the index
_CHUNK_CELLS = 4_000_000  # distance-matrix cells per chunk (32 MB of float64)


@dataclass(frozen=True)
class Encoded:
    """A table encoded for distance computations.

    ``num``: numeric columns scaled to [0, 1] (missing imputed at 0.5);
    ``codes``: per block (each categorical column, then each numeric
    missing-flag) the level's position (the missing level last; a flag is
    0 present / 1 missing).
    """

    num: np.ndarray
    codes: np.ndarray

    def __len__(self) -> int:
        return self.num.shape[0]

    def take(self, idx: np.ndarray) -> Encoded:
        """Rows ``idx`` (a new Encoded)."""
        return Encoded(self.num[idx], self.codes[idx])

    @staticmethod
    def concat(parts: Sequence[Encoded]) -> Encoded:
        """Rows of ``parts``, one after the other."""
        return Encoded(np.concatenate([p.num for p in parts]), np.concatenate([p.codes for p in parts]))


def _factorize(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of a column: (code per row, -1 if missing; the distinct values).

    A ``Categorical`` column (what dpsynth's engines and generators hand over)
    already is that pair: its codes (one byte a row for a short category list,
    where ``pd.factorize`` makes eight) over its categories, which are never
    fewer than the values present. Audits of 10M-row tables hold this for
    three tables at once, so the difference is about a gigabyte.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy(), np.asarray(series.cat.categories, dtype=object)
    return pd.factorize(series, use_na_sentinel=True)


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
        return self._fit(frames, [self._factorize(df) for df in frames])

    def fit_transform(self, *frames: pd.DataFrame) -> list[Encoded]:
        """``fit(*frames)`` then ``transform`` of each frame, reading every categorical column once."""
        factorized = [self._factorize(df) for df in frames]
        self._fit(frames, factorized)
        return [self.transform(df, f) for df, f in zip(frames, factorized)]

    @staticmethod
    def labels_of(df: pd.DataFrame, columns: Sequence[str]) -> dict[str, set[str]]:
        """Per column of ``columns``, the canonical labels of its distinct values (a Categorical's: its categories)."""
        return {c: {category_label(v) for v in _factorize(df[c])[1]} for c in columns}

    def _factorize(self, df: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per categorical column: (code per row, -1 if missing; the distinct values)."""
        kinds = {c: self.spec.column(c).kind for c in self.columns}
        return {c: _factorize(df[c]) for c in self.columns if kinds[c] == "categorical"}

    def _fit(
        self, frames: Sequence[pd.DataFrame], factorized: Sequence[dict[str, tuple[np.ndarray, np.ndarray]]]
    ) -> MixedEncoder:
        numeric = [c for c in self.columns if self.spec.column(c).kind == "numeric"]
        seen = {
            name: {category_label(v) for f in factorized for v in f[name][1]}
            for name in self.columns
            if self.spec.column(name).kind == "categorical"
        }
        return self.fit_seen(seen, {c for c in numeric if any(df[c].isna().any() for df in frames)})

    def fit_seen(self, seen: dict[str, set[str]], missing: set[str]) -> MixedEncoder:
        """Fit from what the tables hold: ``seen`` labels per categorical column, numeric columns ``missing`` values.

        The vocabulary of a column is its declared categories, then any other
        label seen (sorted), then the missing level; numeric columns get a
        missing flag where declared nullable or ``missing``. Tables that are
        not in memory (:class:`audits.sources.RealRows`) report both.
        """
        self.numeric_ = [c for c in self.columns if self.spec.column(c).kind == "numeric"]
        self.categorical_ = [c for c in self.columns if self.spec.column(c).kind == "categorical"]
        self.levels_: dict[str, list[str | None]] = {}
        for name in self.categorical_:
            declared = list(self.spec.column(name).categories)
            extra = sorted(set(seen.get(name, ())) - set(declared))
            self.levels_[name] = declared + extra + [None]
        # Numeric missing flags only where a value can be missing (declared or seen).
        self.nan_flag_ = [c for c in self.numeric_ if self.spec.column(c).nullable or c in missing]
        return self._blocks()

    def restricted(self, columns: Sequence[str]) -> MixedEncoder:
        """The encoder of ``columns`` fitted on this one's frames (same levels and missing-flags), without refitting.

        Its :meth:`project` takes this encoder's encodings to its own, so an
        attack on a subset of columns (linkage, attribute inference) need not
        read the tables again.
        """
        sub = MixedEncoder(self.spec, columns)
        sub.numeric_ = [c for c in sub.columns if c in self.numeric_]
        sub.categorical_ = [c for c in sub.columns if c in self.categorical_]
        sub.levels_ = {c: self.levels_[c] for c in sub.categorical_}
        sub.nan_flag_ = [c for c in sub.numeric_ if c in self.nan_flag_]
        sub._parent = self
        return sub._blocks()

    def project(self, enc: Encoded, rows: np.ndarray | None = None) -> Encoded:
        """An encoding by the encoder this one was :meth:`restricted` from, as this encoder's own.

        With ``rows``, only those rows, in that order: one indexing step, so
        projecting a permuted synthetic table never copies all of its columns
        first (at 8M synthetic rows that copy was 0.6 GB).
        """
        parent = getattr(self, "_parent", None)
        if parent is None:
            raise ValueError("project() needs an encoder made by restricted()")
        num_cols = np.array([parent.numeric_.index(c) for c in self.numeric_], dtype=np.intp)
        code_cols = [parent.categorical_.index(c) for c in self.categorical_]
        code_cols += [len(parent.categorical_) + parent.nan_flag_.index(c) for c in self.nan_flag_]
        codes = np.array(code_cols, dtype=np.intp)
        if rows is None:
            return Encoded(enc.num[:, num_cols], enc.codes[:, codes])
        at = np.asarray(rows, dtype=np.intp)[:, None]
        return Encoded(enc.num[at, num_cols[None, :]], enc.codes[at, codes[None, :]])

    def _blocks(self) -> MixedEncoder:
        blocks = [(c, len(self.levels_[c]), 1.0) for c in self.categorical_]
        blocks += [(c, 2, NAN_FLAG_WEIGHT) for c in self.nan_flag_]
        self.blocks_ = blocks
        self.weights_ = (
            np.concatenate([np.full(n, w, dtype=np.float32) for _, n, w in blocks])
            if blocks
            else np.zeros(0, dtype=np.float32)
        )
        self.block_weights_ = np.array([w for _, _, w in blocks], dtype=np.float64)
        self.total_weight_ = float(sum(w for _, _, w in blocks))
        self.n_columns_ = len(self.columns)
        return self

    @property
    def n_dims(self) -> int:
        return len(self.numeric_) + len(self.weights_)

    def transform(
        self, df: pd.DataFrame, factorized: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    ) -> Encoded:
        n = len(df)
        num = np.empty((n, len(self.numeric_)), dtype=np.float64)
        for j, name in enumerate(self.numeric_):
            col = self.spec.column(name)
            x = (numeric_values(df[name], col) - float(col.lower)) / col.span  # type: ignore[arg-type]
            x = np.clip(x, 0.0, 1.0)
            x[np.isnan(x)] = 0.5
            num[:, j] = x
        codes = np.zeros((n, len(self.blocks_)), dtype=np.int32)
        for b, name in enumerate(self.categorical_):
            levels = self.levels_[name]
            lookup = {lvl: i for i, lvl in enumerate(levels)}
            missing_level = len(levels) - 1
            raw, uniques = factorized[name] if factorized else pd.factorize(df[name], use_na_sentinel=True)
            per_unique = [lookup.get(category_label(u), missing_level) for u in uniques] + [missing_level]
            codes[:, b] = np.asarray(per_unique, dtype=np.int32)[raw]  # -1 (missing) picks the missing level
        for b, name in enumerate(self.nan_flag_, start=len(self.categorical_)):
            codes[:, b] = df[name].isna().to_numpy()
        return Encoded(num=num, codes=codes)

    def onehot(self, enc: Encoded) -> np.ndarray:
        """0/1 float32 indicators of every block's level (the brute force's match count is one BLAS call)."""
        out = np.zeros((len(enc), len(self.weights_)), dtype=np.float32)
        rows = np.arange(len(enc))
        offset = 0
        for b, (_, n_levels, _) in enumerate(self.blocks_):
            out[rows, offset + enc.codes[:, b]] = 1.0
            offset += n_levels
        return out

    def embed(self, enc: Encoded) -> np.ndarray:
        """Dense embedding whose L1 distance divided by the column count equals :func:`knn`'s distance."""
        return np.hstack([enc.num, self.onehot(enc) * (0.5 * self.weights_)[None, :]])

    def index(self, ref: Encoded) -> GowerIndex:
        """An exact nearest-neighbour index over ``ref`` (build once, query many times with :meth:`knn`)."""
        return GowerIndex(ref.num, ref.codes, self.block_weights_)

    def knn(
        self,
        query: Encoded,
        ref: Encoded | GowerIndex,
        k: int = 1,
        n_jobs: int | None = None,
        ties: bool = False,
        method: str = "auto",
    ) -> tuple[np.ndarray, ...]:
        """Exact ``k`` nearest rows of ``ref`` for each row of ``query``.

        Returns ``(distances, indices)``, both ``(len(query), k)``, sorted by
        distance; among equal distances the lower ``ref`` index comes first
        (callers that need random tie-breaking permute ``ref``). With
        ``ties=True`` a third array gives, per query, how many ``ref`` rows lie
        at exactly the nearest distance. ``ref`` may be an index from
        :meth:`index`; ``method`` is ``"auto"`` (brute force up to
        ``BRUTE_FORCE_PAIRS`` pairs, else the index), ``"brute"`` or ``"index"``.
        """
        if method not in ("auto", "brute", "index"):
            raise ValueError(f"method must be 'auto', 'brute' or 'index', got {method!r}")
        if isinstance(ref, GowerIndex) or method == "index":
            return self._knn_index(query, ref, k, n_jobs, ties)
        if method == "auto" and len(query) * len(ref) > BRUTE_FORCE_PAIRS:
            return self._knn_index(query, ref, k, n_jobs, ties)
        return self._knn_brute(query, ref, k, n_jobs, ties)

    def _knn_index(
        self, query: Encoded, ref: Encoded | GowerIndex, k: int, n_jobs: int | None, ties: bool
    ) -> tuple[np.ndarray, ...]:
        index = ref if isinstance(ref, GowerIndex) else self.index(ref)
        workers = n_jobs or min(2, os.cpu_count() or 1)
        parts = np.array_split(np.arange(len(query)), workers if len(query) >= 4096 * workers else 1)

        def one(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return index.query(query.num[rows], query.codes[rows], k=k, ties=ties)

        if len(parts) > 1:  # queries are independent; numpy releases the GIL in the heavy steps
            with ThreadPoolExecutor(max_workers=len(parts)) as pool:
                done = list(pool.map(one, parts))
        else:
            done = [one(parts[0])]
        dist, idx, n_ties = (np.concatenate([d[i] for d in done]) for i in range(3))
        dist = np.maximum(dist, 0.0) / float(self.n_columns_)
        return (dist, idx, n_ties) if ties else (dist, idx)

    def _knn_brute(
        self, query: Encoded, ref: Encoded, k: int, n_jobs: int | None, ties: bool
    ) -> tuple[np.ndarray, ...]:
        """All pairs, in chunks of query rows (the reference for the index, and faster on small inputs)."""
        if k < 1 or k > len(ref):
            raise ValueError(f"k must be in [1, {len(ref)}] (the reference size), got {k}")
        ref_match = np.ascontiguousarray((self.onehot(ref) * self.weights_[None, :]).T)
        query_onehot = self.onehot(query)
        p = float(self.n_columns_)
        chunk = max(16, _CHUNK_CELLS // max(1, len(ref)))
        starts = list(range(0, len(query), chunk))

        def one(start: int) -> tuple[np.ndarray, np.ndarray]:
            stop = min(start + chunk, len(query))
            if query.num.shape[1]:
                d = cdist(query.num[start:stop], ref.num, "cityblock")
            else:
                d = np.zeros((stop - start, len(ref)))
            if ref_match.shape[0]:  # the mismatch weight is exact (a sum of halves), added after the numbers
                d += np.float32(self.total_weight_) - query_onehot[start:stop] @ ref_match
            if k == 1:
                idx = d.argmin(axis=1)[:, None]
            else:
                idx = _k_smallest_lowest_first(d, k)
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

    def _label_codes(self, name: str, series: pd.Series) -> np.ndarray:
        """One integer per canonical label of a categorical column: its level number if fitted
        (missing is the last level), else a 64-bit hash of the label, so unseen labels stay apart."""
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        lookup = {lvl: i for i, lvl in enumerate(self.levels_[name])}
        labels = [category_label(u) for u in uniques]
        unseen = pd.util.hash_array(np.array(["\x00" + lb for lb in labels], dtype=object)).astype(np.int64)
        per_unique = np.array([lookup.get(lb, u) for lb, u in zip(labels, unseen)] + [lookup[None]], dtype=np.int64)
        return per_unique[codes]  # code -1 (missing) picks the missing level

    def row_keys(self, df: pd.DataFrame, encoded: Encoded | None = None) -> np.ndarray:
        """A 64-bit hash per row over the canonical values of the encoder's columns.

        Two rows share a key iff they are identical (numbers compared to 9
        significant digits, categories by canonical label, missing equals
        missing), up to hash collisions (~n^2 / 2^64, negligible). Keys are
        comparable between frames hashed by one fitted encoder. ``encoded``
        (``transform(df)`` of a frame the encoder was fitted on, so every
        label is a fitted level) saves reading the labels again.
        """
        canon = {}
        for name in self.columns:
            col = self.spec.column(name)
            if col.kind == "numeric":
                v = numeric_values(df[name], col)
                canon[name] = pd.Series(_round_sig(v))
            elif encoded is not None:
                canon[name] = pd.Series(encoded.codes[:, self.categorical_.index(name)])
            else:
                canon[name] = pd.Series(self._label_codes(name, df[name]))
        frame = pd.DataFrame(canon)
        return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _k_smallest_lowest_first(d: np.ndarray, k: int) -> np.ndarray:
    """Per row, the column numbers of the ``k`` smallest values, by value, the lower column first among equals."""
    kth = np.partition(d, k - 1, axis=1)[:, k - 1 : k]
    below = d < kth
    at = d == kth
    need = k - below.sum(axis=1, keepdims=True)
    chosen = below | (at & (np.cumsum(at, axis=1) <= need))
    cols = np.nonzero(chosen)[1].reshape(len(d), k)  # ascending column within each row
    order = np.argsort(np.take_along_axis(d, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def _round_sig(v: np.ndarray, digits: int = 9) -> np.ndarray:
    """Round to ``digits`` significant digits (so float noise like 0.1 + 0.2 compares equal to 0.3)."""
    out = v.astype(np.float64).copy()
    finite = np.isfinite(out) & (out != 0)
    mag = np.floor(np.log10(np.abs(out[finite])))
    scale = 10.0 ** (digits - 1 - mag)
    out[finite] = np.round(out[finite] * scale) / scale
    return out
