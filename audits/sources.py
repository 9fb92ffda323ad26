"""Where an audit's real tables live, and the questions the attacks ask of them.

The attacks need four things of the training and holdout tables whose cost
grows with the tables: the exact nearest distances of a bounded set of query
rows among all their rows (DCR share, NNDR, DOMIAS' reference), which of a
set of row keys occur among their rows (exact copies), the labels and
missing values their columns hold (the encoder's vocabulary), and chosen
rows (targets and evaluation samples, drawn by the audit's seed). Everything
else an attack computes on the synthetic table or on those chosen rows.

:class:`RealRows` is that interface. :class:`FrameRows` answers it from a
pandas frame in memory (what ``audits.run`` is given by default); an engine
whose tables live elsewhere answers it there, e.g. dpsynth's Spark engine
(``dpsynth.engines.spark_audit``) runs the searches and the key lookups on
the executors and returns only distances, counts and the chosen rows. Both
must give identical answers, so an audit's result does not depend on where
its tables live.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from audits.embedding import BRUTE_FORCE_PAIRS, Encoded, MixedEncoder
from audits.neighbours import GowerIndex

Matcher = Callable[[pd.DataFrame], list[np.ndarray]]


@runtime_checkable
class RealRows(Protocol):
    """A real table (train or holdout) the audit questions without necessarily holding it.

    Rows are addressed by position, ``0 .. len - 1``. Every method that takes
    an encoder takes one fitted (:meth:`MixedEncoder.fit_seen`) on what
    :meth:`seen_labels` and :meth:`missing_numeric` report for all the
    audit's tables.
    """

    def __len__(self) -> int: ...

    def columns(self) -> list[str]:
        """The table's column names (the audit checks the spec's columns are there)."""
        ...

    def seen_labels(self, columns: list[str]) -> dict[str, set[str]]:
        """Per categorical column, the canonical labels of the values it may hold (``category_label``)."""
        ...

    def missing_numeric(self, columns: list[str]) -> set[str]:
        """The numeric ``columns`` with at least one missing value."""
        ...

    def rows(self, idx: np.ndarray) -> pd.DataFrame:
        """Rows ``idx`` (positions, in that order) as a frame with a fresh 0-based index."""
        ...

    def encoded(self, encoder: MixedEncoder, idx: np.ndarray) -> Encoded:
        """Rows ``idx`` (in that order) in ``encoder``'s encoding."""
        ...

    def nearest(
        self, encoder: MixedEncoder, queries: Encoded, k: int, within: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``k`` nearest distances of each query among the rows (only the distinct rows ``within``, if given).

        Returns ``(distances, ties)``: distances ``(len(queries), k)``
        ascending, and per query the number of rows at exactly the nearest
        distance. (Which row is nearest is not returned: no attack needs it of
        a real table, and an engine need not ship row identities back.)
        """
        ...

    def contains(self, encoder: MixedEncoder, keys: np.ndarray) -> np.ndarray:
        """For each of ``keys`` (:meth:`MixedEncoder.row_keys`), whether some row has it."""
        ...

    def rows_found_in(self, encoder: MixedEncoder, other: RealRows) -> int:
        """How many of this table's rows are identical to some row of ``other`` (by row key)."""
        ...

    def matching(self, idx: np.ndarray, match: Matcher) -> list[np.ndarray]:
        """What ``match`` finds among rows ``idx`` (distinct positions): per item, the matching rows' places in ``idx``.

        ``match(frame)`` returns one sorted array of the frame's matching row
        positions per item (singling out: per predicate). It must be row-wise
        (a row matches by its own values alone), so an engine may run it on
        parts of the rows and join the parts' answers; it must be picklable.
        """
        ...


class FrameRows:
    """:class:`RealRows` of a pandas frame in memory: searches by :class:`GowerIndex` or brute force."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame.reset_index(drop=True)
        self._encoder: MixedEncoder | None = None
        self._encoded: Encoded | None = None
        self._index: GowerIndex | None = None
        self._keys: np.ndarray | None = None
        self._sorted_keys: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def seen_labels(self, columns: list[str]) -> dict[str, set[str]]:
        return MixedEncoder.labels_of(self.frame, columns)

    def missing_numeric(self, columns: list[str]) -> set[str]:
        return {c for c in columns if self.frame[c].isna().any()}

    def rows(self, idx: np.ndarray) -> pd.DataFrame:
        return self.frame.iloc[np.asarray(idx, dtype=np.intp)].reset_index(drop=True)

    def all_encoded(self, encoder: MixedEncoder) -> Encoded:
        """Every row, encoded once per encoder (cached: attacks share it)."""
        if self._encoder is not encoder:
            self._encoder, self._encoded, self._index, self._keys, self._sorted_keys = encoder, None, None, None, None
        if self._encoded is None:
            self._encoded = encoder.transform(self.frame)
        return self._encoded

    def index(self, encoder: MixedEncoder) -> GowerIndex:
        """The exact nearest-neighbour index over every row (built once, shared by the searches)."""
        encoded = self.all_encoded(encoder)
        if self._index is None:
            self._index = encoder.index(encoded)
        return self._index

    def searchable(self, encoder: MixedEncoder, n_queries: int) -> Encoded | GowerIndex:
        """The cached index above ``BRUTE_FORCE_PAIRS`` pairs, else the rows (all pairs are then faster)."""
        if n_queries * len(self) > BRUTE_FORCE_PAIRS:
            return self.index(encoder)
        return self.all_encoded(encoder)

    def encoded(self, encoder: MixedEncoder, idx: np.ndarray) -> Encoded:
        return self.all_encoded(encoder).take(np.asarray(idx, dtype=np.intp))

    def nearest(
        self, encoder: MixedEncoder, queries: Encoded, k: int, within: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if within is None:
            ref: Encoded | GowerIndex = self.searchable(encoder, len(queries))
        elif len(np.unique(within)) != len(within):
            raise ValueError("within must name distinct rows")
        else:
            ref = self.encoded(encoder, within)
        dist, _, ties = encoder.knn(queries, ref, k=k, ties=True)
        return dist, ties

    def keys(self, encoder: MixedEncoder) -> np.ndarray:
        """Every row's key (cached)."""
        self.all_encoded(encoder)
        if self._keys is None:
            self._keys = encoder.row_keys(self.frame, self._encoded)
        return self._keys

    def contains(self, encoder: MixedEncoder, keys: np.ndarray) -> np.ndarray:
        if self._sorted_keys is None or self._encoder is not encoder:
            self._sorted_keys = np.sort(self.keys(encoder))
        return contained(np.asarray(keys), self._sorted_keys)

    def rows_found_in(self, encoder: MixedEncoder, other: RealRows) -> int:
        return int(other.contains(encoder, self.keys(encoder)).sum())

    def matching(self, idx: np.ndarray, match: Matcher) -> list[np.ndarray]:
        return match(self.rows(idx))


def contained(keys: np.ndarray, sorted_ref: np.ndarray) -> np.ndarray:
    """``np.isin(keys, sorted_ref)`` by binary search (``sorted_ref`` sorted ascending)."""
    if not len(sorted_ref):
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ref, keys), len(sorted_ref) - 1)
    return sorted_ref[pos] == keys


def merge_nearest(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest distances and nearest-tie counts over disjoint parts of a table.

    Each part gives ``(distances (n, k_part) ascending, ties (n,))`` for the
    same ``n`` queries among its own rows. The union's ``k`` nearest are the
    ``k`` smallest of all parts' (each part's own ``k`` nearest include every
    one of the union's that lies in it), and its ties at the nearest distance
    are the sum of the ties of the parts whose nearest equals the union's.
    """
    if not parts:
        raise ValueError("no rows to search")
    stacked = np.concatenate([d for d, _ in parts], axis=1)
    if stacked.shape[1] < k:
        raise ValueError(f"k must be in [1, {stacked.shape[1]}] (the reference size), got {k}")
    dist = np.sort(stacked, axis=1)[:, :k]
    ties = np.zeros(len(dist), dtype=np.int64)
    for d, t in parts:
        ties += np.where(d[:, 0] == dist[:, 0], t, 0)
    return dist, ties
