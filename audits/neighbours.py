"""Exact k nearest neighbours under the Gower distance without all pairs: signature blocks and Hamming bounds.

The audit distance (:mod:`audits.embedding`) times the column count ``p`` is

    p * d(x, y) = sum_numeric |x_j - y_j|  +  sum_blocks w_b * 1[code_b(x) != code_b(y)]

with numerics scaled to [0, 1], one code per categorical column (weight 1)
and per numeric missing-flag (weight 1/2). Call the tuple of codes a row's
*signature*. If two signatures differ exactly on the blocks of a set ``M``,
every pair of rows with those signatures is at least ``w(M) = sum_{b in M}
w_b`` apart, whatever their numbers. So the index

1. removes exact duplicates (a unique row keeps its multiplicity and its
   member row numbers, ascending),
2. groups unique rows by signature,

and a query visits the groups whose signature differs from its own on
exactly ``M``, for the sets ``M`` in increasing ``w(M)``: the empty set (its
own signature), one block, two blocks, ... A query stops as soon as
``w(M)`` exceeds its current k-th best distance: no unvisited row can then
be nearer, or tie. Groups differing on exactly ``M`` are found by hashing
the signature with the blocks of ``M`` left out (collisions are removed by
comparing the codes). Queries still unresolved when every set of up to
:data:`MAX_DIFFERING_BLOCKS` blocks has been visited, or when few queries
remain, are answered by an exact scan of all unique rows.

The result is the brute force's, not an approximation: the same distances
(the numeric part is summed column by column in the same order, the block
part is an exact sum of halves), the same number of rows at the nearest
distance, and among equal distances the lower row number first. Work is
bounded by ``_ENTRY_BUDGET`` (query, row) distances at a time, so memory
never grows with ``len(query) * len(ref)``.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

MAX_DIFFERING_BLOCKS = 2  # sets of more differing blocks are left to the exact scan
TREE_MIN_ROWS = 512  # groups with more unique rows are searched with a k-d tree on their numbers
_TREE_BATCH = 4096  # queries per tree call
_ENTRY_BUDGET = 2_000_000  # (query, row) distance evaluations held at once
_MULT = (np.random.default_rng(20261202).integers(1, 2**62, size=256, dtype=np.int64) * 2 + 1).astype(np.uint64)


def _hash(codes: np.ndarray, blocks: range | tuple[int, ...]) -> np.ndarray:
    """A 64-bit linear hash of the codes of ``blocks`` (wrapping arithmetic; collisions are checked by callers)."""
    out = np.zeros(len(codes), dtype=np.uint64)
    for b in blocks:
        out += codes[:, b].astype(np.uint64) * _MULT[b % len(_MULT)]
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` over ``zip(starts, lengths)``."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    offsets = np.repeat(starts.astype(np.int64) - (ends - lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def _sorted_lexically(codes: np.ndarray, num: np.ndarray | None = None) -> np.ndarray:
    """Stable order of rows by codes (block 0 first), then by numbers."""
    keys = [] if num is None else [num[:, j] for j in range(num.shape[1] - 1, -1, -1)]
    keys += [codes[:, b] for b in range(codes.shape[1] - 1, -1, -1)]
    return np.lexsort(keys) if keys else np.arange(len(codes))


def _changes(a: np.ndarray) -> np.ndarray:
    """``True`` where a row differs from the previous one (always at row 0)."""
    out = np.ones(len(a), dtype=bool)
    if len(a) > 1 and a.shape[1]:
        out[1:] = (a[1:] != a[:-1]).any(axis=1)
    elif len(a) > 1:
        out[1:] = False
    return out


class GowerIndex:
    """An exact nearest-neighbour index over reference rows given as numerics ``num`` and block ``codes``.

    ``weights[b]`` is what a mismatch on block ``b`` costs. Distances returned
    by :meth:`query` are in "times p" units (the caller divides by the
    column count).
    """

    def __init__(self, num: np.ndarray, codes: np.ndarray, weights: np.ndarray) -> None:
        num = np.ascontiguousarray(num, dtype=np.float64)
        codes = np.ascontiguousarray(codes, dtype=np.int32)
        if len(num) != len(codes):
            raise ValueError(f"num has {len(num)} rows, codes {len(codes)}")
        self.n = len(num)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.n_blocks = codes.shape[1]
        order = _sorted_lexically(codes, num)
        s_codes, s_num = codes[order], num[order]
        new_group = _changes(s_codes)
        new_unique = new_group | _changes(s_num)
        self.order = order  # member rows, unique by unique, ascending within each
        self.u_start = np.flatnonzero(new_unique)
        self.u_count = np.diff(np.r_[self.u_start, self.n])
        self.u_num = s_num[self.u_start]
        group_of_row = np.cumsum(new_group) - 1
        self.u_group = group_of_row[self.u_start]
        g_first_unique = np.flatnonzero(new_group[self.u_start])
        self.g_u0 = g_first_unique
        self.g_u1 = np.r_[g_first_unique[1:], len(self.u_start)]
        self.g_codes = s_codes[new_group]
        self.g_key = _hash(self.g_codes, range(self.n_blocks))
        self._u_codes: np.ndarray | None = None
        self._trees: dict[int, cKDTree] = {}

    @property
    def n_unique(self) -> int:
        return len(self.u_start)

    @property
    def n_groups(self) -> int:
        return len(self.g_codes)

    # ------------------------------------------------------------------ query
    def query(
        self, num: np.ndarray, codes: np.ndarray, k: int = 1, ties: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``k`` nearest reference rows of each query row: ``(distances * p, row numbers, n_at_nearest)``.

        ``n_at_nearest`` (zeros unless ``ties``) counts reference rows at exactly the nearest distance.
        """
        if k < 1 or k > self.n:
            raise ValueError(f"k must be in [1, {self.n}] (the reference size), got {k}")
        num = np.ascontiguousarray(num, dtype=np.float64)
        codes = np.ascontiguousarray(codes, dtype=np.int32)
        state = _State(len(num), k, self)
        if len(num) == 0:
            return state.result(ties)
        q_order = _sorted_lexically(codes)
        new_sig = _changes(codes[q_order])
        sig_start = np.flatnonzero(new_sig)
        sig_len = np.diff(np.r_[sig_start, len(num)])
        sig_codes = codes[q_order][sig_start]
        sig_key = _hash(sig_codes, range(self.n_blocks))
        masks, beyond = self._masks()
        for i, mask in enumerate(masks):
            w = float(self.weights[list(mask)].sum()) if mask else 0.0
            active = state.kth() >= w
            n_active = int(active.sum())
            if n_active == 0:
                return state.result(ties)
            if n_active * self.n_unique * 4 <= (len(masks) - i) * self.n_groups:
                beyond = w  # few queries left: one exact scan is cheaper than visiting the remaining sets
                break
            on_sig = np.add.reduceat(active[q_order], sig_start) > 0
            sigs = np.flatnonzero(on_sig)
            groups = self._groups_differing_on(mask, sig_codes[sigs], sig_key[sigs])
            pair_sig, pair_group = sigs[groups[0]], groups[1]
            rows = _ranges(sig_start[pair_sig], sig_len[pair_sig])
            q_idx = q_order[rows]
            g_idx = np.repeat(pair_group, sig_len[pair_sig])
            keep = active[q_idx]
            self._visit(state, num, q_idx[keep], g_idx[keep], w)
        rest = np.flatnonzero(state.kth() >= beyond)
        if len(rest):
            self._scan(state, num, codes, rest)
        return state.result(ties)

    def _masks(self) -> tuple[list[tuple[int, ...]], float]:
        """Sets of differing blocks to visit, by increasing weight, and the least weight of the sets left out."""
        blocks = range(self.n_blocks)
        top = min(MAX_DIFFERING_BLOCKS, self.n_blocks)
        masks = [m for r in range(top + 1) for m in itertools.combinations(blocks, r)]
        beyond = float(np.sort(self.weights)[: top + 1].sum()) if top < self.n_blocks else np.inf
        masks = [m for m in masks if self.weights[list(m)].sum() < beyond]
        masks.sort(key=lambda m: (float(self.weights[list(m)].sum()), len(m), m))
        return masks, beyond

    def _groups_differing_on(
        self, mask: tuple[int, ...], sig_codes: np.ndarray, sig_key: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (position in ``sig_codes``, group) whose signatures differ on exactly the blocks of ``mask``."""
        if mask:
            g_key = self.g_key - _hash(self.g_codes, mask)
            q_key = sig_key - _hash(sig_codes, mask)
        else:
            g_key, q_key = self.g_key, sig_key
        g_order = np.argsort(g_key, kind="stable")
        g_sorted = g_key[g_order]
        lo = np.searchsorted(g_sorted, q_key, side="left")
        hi = np.searchsorted(g_sorted, q_key, side="right")
        pos = np.repeat(np.arange(len(q_key)), hi - lo)
        grp = g_order[_ranges(lo, hi - lo)]
        if len(pos):
            expected = np.zeros(self.n_blocks, dtype=bool)
            expected[list(mask)] = True
            exact = ((sig_codes[pos] != self.g_codes[grp]) == expected).all(axis=1)
            pos, grp = pos[exact], grp[exact]
        return pos, grp

    def _visit(self, state: _State, num: np.ndarray, q_idx: np.ndarray, g_idx: np.ndarray, w: float) -> None:
        """Offer state the rows of groups ``g_idx`` to queries ``q_idx`` (pairwise), at block distance ``w``.

        Small groups are scanned whole; in a group of more than ``TREE_MIN_ROWS``
        unique rows a k-d tree on the numbers (L1) finds the rows within
        the query's current k-th distance (minus ``w``), and only those are
        offered, with their distances recomputed exactly.
        """
        sizes = self.g_u1[g_idx] - self.g_u0[g_idx]
        large = sizes > TREE_MIN_ROWS
        if large.any() and num.shape[1]:
            self._visit_trees(state, num, q_idx[large], g_idx[large], w)
            q_idx, g_idx, sizes = q_idx[~large], g_idx[~large], sizes[~large]
        ends = np.cumsum(sizes)
        start = 0
        while start < len(q_idx):
            base = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, base + _ENTRY_BUDGET, side="right")))
            qs, gs = q_idx[start:stop], g_idx[start:stop]
            n_in = sizes[start:stop]
            u = _ranges(self.g_u0[gs], n_in)
            q = np.repeat(qs, n_in)
            d = _l1(num, q, self.u_num, u)
            d += w
            state.merge(q, d, u)
            start = stop

    def _visit_trees(self, state: _State, num: np.ndarray, q_idx: np.ndarray, g_idx: np.ndarray, w: float) -> None:
        order = np.argsort(g_idx, kind="stable")
        q_idx, g_idx = q_idx[order], g_idx[order]
        bounds = np.flatnonzero(np.r_[True, g_idx[1:] != g_idx[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:]):
            g = int(g_idx[a])
            tree = self._tree(g)
            u0 = int(self.g_u0[g])
            for s in range(a, b, _TREE_BATCH):
                qs = q_idx[s : min(b, s + _TREE_BATCH)]
                x = num[qs]
                kk = min(state.k, tree.n)
                near, _ = tree.query(x, k=kk, p=1)
                near = near.reshape(len(qs), kk)[:, -1]
                radius = np.minimum(state.kth()[qs] - w, near)
                radius = radius * (1 + 1e-9) + 1e-12  # a superset; exact distances are recomputed below
                hits = tree.query_ball_point(x, radius, p=1, return_sorted=False)
                lengths = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
                if not lengths.sum():
                    continue
                u = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits if len(h)]) + u0
                q = np.repeat(qs, lengths)
                d = _l1(num, q, self.u_num, u)
                d += w
                state.merge(q, d, u)

    def _tree(self, g: int) -> cKDTree:
        tree = self._trees.get(g)
        if tree is None:
            tree = cKDTree(self.u_num[self.g_u0[g] : self.g_u1[g]], balanced_tree=False, compact_nodes=False)
            self._trees[g] = tree
        return tree

    def _scan(self, state: _State, num: np.ndarray, codes: np.ndarray, queries: np.ndarray) -> None:
        """Exact answer for ``queries`` by a scan of every unique row (their state is recomputed from scratch)."""
        state.reset(queries)
        if self._u_codes is None:
            self._u_codes = self.g_codes[self.u_group]
        u_codes, n_u = self._u_codes, self.n_unique
        kk = min(state.k, n_u) - 1
        chunk = max(1, _ENTRY_BUDGET // max(1, n_u))
        for s in range(0, len(queries), chunk):
            qs = queries[s : s + chunk]
            d = np.zeros((len(qs), n_u))
            for j in range(num.shape[1]):
                d += np.abs(num[qs, j][:, None] - self.u_num[None, :, j])
            mismatch = np.zeros((len(qs), n_u))
            for b in range(self.n_blocks):
                mismatch += (codes[qs, b][:, None] != u_codes[None, :, b]) * self.weights[b]
            d += mismatch
            kth = np.partition(d, kk, axis=1)[:, kk]
            rr, uu = np.nonzero(d <= kth[:, None])
            state.merge(qs[rr], d[rr, uu], uu)


def _l1(num: np.ndarray, q: np.ndarray, u_num: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sum over columns, in column order, of ``|num[q, j] - u_num[u, j]|`` (as ``cdist(..., "cityblock")`` sums)."""
    d = np.zeros(len(q))
    for j in range(num.shape[1]):
        d += np.abs(num[q, j] - u_num[u, j])
    return d


class _State:
    """Per query: the k best (distance, row) so far, sorted, and how many rows sit at the best distance."""

    def __init__(self, n_queries: int, k: int, index: GowerIndex) -> None:
        self.k, self.index = k, index
        self.dist = np.full((n_queries, k), np.inf)
        self.rows = np.full((n_queries, k), -1, dtype=np.int64)
        self.n_best = np.zeros(n_queries, dtype=np.int64)

    def kth(self) -> np.ndarray:
        return self.dist[:, -1]

    def reset(self, queries: np.ndarray) -> None:
        self.dist[queries], self.rows[queries], self.n_best[queries] = np.inf, -1, 0

    def merge(self, q: np.ndarray, d: np.ndarray, u: np.ndarray) -> None:
        """Fold candidate unique rows ``u`` at distances ``d`` of queries ``q`` into the state.

        Each (query, unique row) pair must be offered at most once.
        """
        keep = d <= np.minimum(self.kth(), self._kth_offered(q, d, u))[q]
        q, d, u = q[keep], d[keep], u[keep]
        if not len(q):
            return
        idx = self.index
        touched = np.unique(q)
        old_best = self.dist[touched, 0].copy()
        count = idx.u_count[u]
        parts_q, parts_d, parts_r = [], [], []
        for j in range(self.k):  # a unique row stands for up to k member rows, at the same distance
            m = count > j
            parts_q.append(q[m])
            parts_d.append(d[m])
            parts_r.append(idx.order[idx.u_start[u[m]] + j])
        held = self.rows[touched] >= 0
        parts_q.append(np.broadcast_to(touched[:, None], held.shape)[held])
        parts_d.append(self.dist[touched][held])
        parts_r.append(self.rows[touched][held])
        all_q, all_d, all_r = (np.concatenate(p) for p in (parts_q, parts_d, parts_r))
        o = np.lexsort((all_r, all_d, all_q))
        all_q, all_d, all_r = all_q[o], all_d[o], all_r[o]
        first = np.r_[True, all_q[1:] != all_q[:-1]]
        pos = np.arange(len(all_q))
        rank = pos - np.maximum.accumulate(np.where(first, pos, 0))
        top = rank < self.k
        self.dist[all_q[top], rank[top]] = all_d[top]
        self.rows[all_q[top], rank[top]] = all_r[top]
        new_best = self.dist[touched, 0]
        slot = np.searchsorted(touched, q)
        at_best = d == new_best[slot]
        added = np.bincount(slot[at_best], weights=count[at_best], minlength=len(touched)).astype(np.int64)
        self.n_best[touched] = np.where(old_best == new_best, self.n_best[touched], 0) + added

    def _kth_offered(self, q: np.ndarray, d: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Per query, the k-th smallest row distance among the offered rows alone (inf if fewer than k).

        A cheap filter before the sort in :meth:`merge`: nothing beyond it can enter the k best.
        """
        n_q = len(self.dist)
        count = self.index.u_count[u]
        level = np.full(n_q, -np.inf)
        have = np.zeros(n_q, dtype=np.int64)
        out = np.full(n_q, np.inf)
        for _ in range(self.k):
            todo = have < self.k
            sel = todo[q] & (d > level[q])
            if not sel.any():
                break
            nxt = np.full(n_q, np.inf)
            np.minimum.at(nxt, q[sel], d[sel])
            at = sel & (d == nxt[q])
            have += np.bincount(q[at], weights=count[at], minlength=n_q).astype(np.int64)
            level = np.where(todo, nxt, level)
            done_now = todo & (have >= self.k)
            out[done_now] = level[done_now]
        return out

    def result(self, ties: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_best = self.n_best if ties else np.zeros(0, dtype=np.int64)
        return self.dist, self.rows, n_best
