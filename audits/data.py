"""The audit triple (train, holdout, synthetic) prepared once and shared by all attacks.

:class:`AuditData` validates the three tables against the spec, fits one
encoder on all of them, draws every subsample from one seed, and caches
nearest-neighbour searches so attacks that need the same search (DCR share and
NNDR, for example) pay for it once.

Sizes are equalised where a comparison needs it: the train reference used as
"train" in DCR share / NNDR has the holdout's size, and membership attacks use
as many member targets (from train) as non-member targets (from holdout).

Person-level audits (``units``: one person code per train and holdout row,
for a release whose unit of privacy is a person, dpsynth's ``--privacy-unit``):
the split is then by person, targets are *persons* (all their rows), drawn
equal in number per side, and an attack's per-row outcome becomes the
person's by :func:`per_person` (the maximum score over their rows for
membership, "any row" for a re-identification success). See
docs/threat-model.md.
"""

from __future__ import annotations

import time
import zlib
from typing import Literal

import numpy as np
import pandas as pd

from audits.embedding import Encoded, MixedEncoder
from audits.errors import AuditInputError, SpecError
from audits.neighbours import GowerIndex
from audits.sources import FrameRows, RealRows
from audits.spec import TableSpec

Base = Literal["train", "holdout", "synthetic"]
Part = Literal["train", "holdout", "synthetic", "train_ref", "holdout_ref", "synthetic_q", "members", "nonmembers"]

# Base parts and the sampled parts derived from them.
_DERIVED = {
    "train_ref": "train",
    "holdout_ref": "holdout",
    "synthetic_q": "synthetic",
    "members": "train",
    "nonmembers": "holdout",
}


# The quick tier's searches among all training rows (DCR share, NNDR): asked of a table that is not in
# memory together, with the most neighbours any of them needs, so the table is scanned once.
_SEARCHED_TOGETHER: dict[str, tuple[str, ...]] = {"train": ("synthetic_q", "holdout_ref")}
_PLANNED_K = 2


class AuditData:
    """Train (members), holdout (non-members, the baseline) and synthetic tables, ready for attacks.

    Parameters
    ----------
    train, holdout, synthetic:
        Same columns (at least the spec's; extra columns are ignored). Train and
        holdout may be :class:`~audits.sources.RealRows` instead of frames: tables
        that live elsewhere (a Spark cluster) and answer the attacks' questions
        there (``spec`` is then required).
    spec:
        Column kinds and bounds; inferred from train + holdout when ``None``.
    seed:
        Root of every random draw in the audit (subsamples, bootstraps, models).
    max_targets:
        Cap on member / non-member targets per side for membership attacks.
    max_queries:
        Cap on synthetic rows used as queries by DCR share and NNDR, and on
        the holdout rows that are their baseline queries.
    """

    def __init__(
        self,
        train: pd.DataFrame | RealRows,
        holdout: pd.DataFrame | RealRows,
        synthetic: pd.DataFrame,
        spec: TableSpec | None = None,
        seed: int = 0,
        max_targets: int = 5000,
        max_queries: int = 10000,
        confidence: float = 0.95,
        n_bootstrap: int = 200,
        units: dict[str, np.ndarray] | None = None,
    ) -> None:
        for role, table in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
            if not isinstance(table, pd.DataFrame) and (role == "synthetic" or not isinstance(table, RealRows)):
                kinds = "a pandas DataFrame" + ("" if role == "synthetic" else " or an audits.sources.RealRows")
                raise AuditInputError(f"{role} must be {kinds}, got {type(table).__name__}")
        if spec is None:
            if not (isinstance(train, pd.DataFrame) and isinstance(holdout, pd.DataFrame)):
                raise AuditInputError("a spec is needed to audit tables that are not pandas DataFrames")
            spec = TableSpec.infer(pd.concat([train, holdout], ignore_index=True))
        for role, table in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
            _check_columns(spec, table, role)
        if len(train) < 2 or len(holdout) < 2:
            raise AuditInputError("train and holdout need at least 2 rows each")
        if max_targets < 1 or max_queries < 1:
            raise AuditInputError("max_targets and max_queries must be >= 1")
        self.spec = spec
        self.seed = int(seed)
        self.confidence = float(confidence)
        self.n_bootstrap = int(n_bootstrap)
        cols = spec.names
        self.sources: dict[str, RealRows] = {
            role: FrameRows(t[cols]) if isinstance(t, pd.DataFrame) else t
            for role, t in (("train", train), ("holdout", holdout), ("synthetic", synthetic))
        }
        self.units = _check_units(units, len(train), len(holdout))
        self.encoder = MixedEncoder(spec)
        categorical = [c for c in cols if spec.column(c).kind == "categorical"]
        numeric = [c for c in cols if spec.column(c).kind == "numeric"]
        seen: dict[str, set[str]] = {c: set() for c in categorical}
        missing: set[str] = set()
        for source in self.sources.values():
            for c, labels in source.seen_labels(categorical).items():
                seen[c] |= labels
            missing |= source.missing_numeric(numeric)
        self.encoder.fit_seen(seen, missing)
        n_train, n_hold, n_syn = (len(self.sources[k]) for k in ("train", "holdout", "synthetic"))
        n_ref = min(n_train, n_hold)
        n_targets = min(n_ref, max_targets)
        self.indices: dict[str, np.ndarray] = {
            "train_ref": self._sample("train_ref", n_train, n_ref),
            "holdout_ref": self._sample("holdout_ref", n_hold, min(n_ref, max_queries)),
            "synthetic_q": self._sample("synthetic_q", n_syn, min(n_syn, max_queries)),
            "members": self._sample("members", n_train, n_targets),
            "nonmembers": self._sample("nonmembers", n_hold, n_targets),
        }
        if self.units is not None:  # membership targets: whole persons, as many per side
            n_persons = min(len(np.unique(self.units["train"])), len(np.unique(self.units["holdout"])), max_targets)
            self.indices["members"] = self.person_rows("train", n_persons, "members")
            self.indices["nonmembers"] = self.person_rows("holdout", n_persons, "nonmembers")
        self._encoded: dict[str, Encoded] = {}
        self._knn: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
        self._nearest: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._frames: dict[str, pd.DataFrame] = {}
        self.timings: dict[str, float] = {}

    # ---------------------------------------------------------------- helpers
    def rng(self, stream: str) -> np.random.Generator:
        """An independent generator per named stream, all derived from ``seed``."""
        return np.random.default_rng([self.seed, zlib.crc32(stream.encode())])

    def _sample(self, stream: str, n: int, size: int) -> np.ndarray:
        if size >= n:
            return np.arange(n)
        return np.sort(self.rng(stream).choice(n, size=size, replace=False))

    @property
    def person_level(self) -> bool:
        """True when targets are persons (the audit was given person codes)."""
        return self.units is not None

    @property
    def frames(self) -> _Frames:
        """Whole tables as frames, by base part; a table that is not in memory is read in full when asked for.

        Only the thorough tier's refits (shadow models, canaries) ask for a whole
        real table; the quick tier asks :meth:`rows` for chosen rows.
        """
        return _Frames(self)

    def person_rows(self, part: Literal["train", "holdout"], n_persons: int, stream: str) -> np.ndarray:
        """Sorted row indices of every row of ``n_persons`` persons of ``part``, drawn at random from ``stream``."""
        assert self.units is not None
        persons = np.unique(self.units[part])
        chosen = self.rng(stream).choice(persons, size=min(n_persons, len(persons)), replace=False)
        return np.flatnonzero(np.isin(self.units[part], chosen))

    def groups(self, part: Part) -> np.ndarray | None:
        """The person code of each row of ``part`` (train, holdout or a part sampled from them); None row-level."""
        if self.units is None:
            return None
        base = _DERIVED.get(part, part)
        if base not in self.units:
            return None
        return self.units[base][self.indices[part]] if part in _DERIVED else self.units[base]

    def frame(self, part: Part) -> pd.DataFrame:
        """Rows of ``part`` as a DataFrame (sampled parts are subsets of their base table)."""
        if part in _DERIVED:
            return self.rows(_DERIVED[part], self.indices[part])  # type: ignore[arg-type]
        return self.frames[part]

    def rows(self, part: Base, idx: np.ndarray) -> pd.DataFrame:
        """Rows ``idx`` of base table ``part``, in that order (for a table not in memory, only these cross)."""
        return self.sources[part].rows(idx)

    def encoded_rows(self, part: Base, idx: np.ndarray) -> Encoded:
        """Rows ``idx`` of base table ``part`` in the audit's encoding, in that order."""
        return self.sources[part].encoded(self.encoder, idx)

    def encoded(self, part: Part) -> Encoded:
        """A whole part encoded: the synthetic table, or a sampled part (a bounded set of chosen rows)."""
        if part not in self._encoded:
            if part in _DERIVED:
                self._encoded[part] = self.encoded_rows(_DERIVED[part], self.indices[part])  # type: ignore[arg-type]
            else:
                self._encoded[part] = self.encoded_rows(part, np.arange(self.size(part)))  # type: ignore[arg-type]
        return self._encoded[part]

    def searchable(self, part: Literal["synthetic"], n_queries: int) -> Encoded | GowerIndex:
        """What :meth:`MixedEncoder.knn` should search for ``n_queries`` queries among the synthetic rows:
        the cached index above ``BRUTE_FORCE_PAIRS`` pairs, else the rows themselves (all pairs)."""
        source = self.sources[part]
        assert isinstance(source, FrameRows)
        return source.searchable(self.encoder, n_queries)

    def size(self, part: Part) -> int:
        return len(self.indices[part]) if part in _DERIVED else len(self.sources[part])

    def knn(self, query: Part, ref: Literal["synthetic"], k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Cached exact k-NN of ``query`` rows among the synthetic rows: ``(distances, indices into ref)``."""
        key = (query, ref)
        cached = self._knn.get(key)
        if cached is None or cached[0].shape[1] < k:
            start = time.perf_counter()
            queries = self.encoded(query)
            cached = self.encoder.knn(queries, self.searchable(ref, len(queries)), k=k)
            self._knn[key] = cached
            self.timings[f"knn {query}->{ref}"] = time.perf_counter() - start
        return cached[0][:, :k], cached[1][:, :k]

    def nearest(self, query: Part, ref: Base, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Cached exact ``k`` nearest distances of ``query`` rows among all rows of ``ref``, and the nearest ties.

        ``ref`` may be a table that is not in memory: the search then runs
        where it lives (:meth:`RealRows.nearest`).
        """
        cached = self._nearest.get((query, ref))
        if cached is None or cached[0].shape[1] < k:
            start = time.perf_counter()
            source = self.sources[ref]
            # a table that is not in memory answers the searches planned on it in one pass (one job)
            asked = [query]
            if not isinstance(source, FrameRows) and query in _SEARCHED_TOGETHER.get(ref, ()):
                asked += [q for q in _SEARCHED_TOGETHER[ref] if q != query and (q, ref) not in self._nearest]
            k_all = max(k, _PLANNED_K) if len(asked) > 1 else k
            encoded = [self.encoded(q) for q in asked]
            dist, ties = source.nearest(self.encoder, Encoded.concat(encoded), k_all)
            start_row = 0
            for q, e in zip(asked, encoded):
                rows = slice(start_row, start_row + len(e))
                self._nearest[(q, ref)] = (dist[rows], ties[rows])
                start_row += len(e)
            cached = self._nearest[(query, ref)]
            self.timings[f"knn {'+'.join(asked)}->{ref}"] = time.perf_counter() - start
        return cached[0][:, :k], cached[1]

    def sizes(self) -> dict[str, int]:
        out = {k: len(v) for k, v in self.sources.items()}
        out.update({k: len(v) for k, v in self.indices.items()})
        if self.units is not None:
            out.update({f"{k}_persons": int(len(np.unique(v))) for k, v in self.units.items()})
        return out


class _Frames:
    """``AuditData.frames``: a base table's frame, read in full from its source when asked for."""

    def __init__(self, data: AuditData) -> None:
        self._data = data

    def __getitem__(self, part: str) -> pd.DataFrame:
        cache = self._data._frames
        if part not in cache:
            source = self._data.sources[part]
            cache[part] = source.frame if isinstance(source, FrameRows) else source.rows(np.arange(len(source)))
        return cache[part]


def _check_columns(spec: TableSpec, table: pd.DataFrame | RealRows, role: str) -> None:
    """Raise ``SpecError`` naming the table and the columns when ``table`` lacks spec columns or rows."""
    if isinstance(table, pd.DataFrame):
        spec.check_frame(table, role)
        return
    have = table.columns()
    missing = [n for n in spec.names if n not in have]
    if missing:
        raise SpecError(f"the {role} table lacks spec columns {missing}; it has {have}")
    if len(table) == 0:
        raise SpecError(f"the {role} table is empty")


def per_person(values: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Each person's value: the maximum over their rows (a success: any row), in order of first appearance.

    ``groups=None`` (a row-level audit) returns ``values`` unchanged. The
    maximum is the attacker's best row for the person: a person is as
    exposed as their most exposed row.
    """
    values = np.asarray(values)
    if groups is None:
        return values
    codes, first = np.unique(groups, return_index=True)
    inverse = np.searchsorted(codes, groups)
    out = np.full(len(codes), -np.inf)
    np.maximum.at(out, inverse, values.astype(float))
    out = out[np.argsort(first)]
    return out.astype(values.dtype) if values.dtype == bool else out


def _check_units(units: dict[str, np.ndarray] | None, n_train: int, n_holdout: int) -> dict[str, np.ndarray] | None:
    if units is None:
        return None
    if set(units) != {"train", "holdout"}:
        raise AuditInputError("units must give one person code per row of both 'train' and 'holdout'")
    out = {k: np.asarray(v, dtype=np.int64) for k, v in units.items()}
    if len(out["train"]) != n_train or len(out["holdout"]) != n_holdout:
        raise AuditInputError("units must give one person code per row of train and of holdout")
    if np.intersect1d(out["train"], out["holdout"]).size:
        raise AuditInputError("a person-level audit needs a split by person: some person is in train and holdout")
    return out
