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

from audits.embedding import BRUTE_FORCE_PAIRS, Encoded, MixedEncoder
from audits.errors import AuditInputError
from audits.neighbours import GowerIndex
from audits.spec import TableSpec

Part = Literal["train", "holdout", "synthetic", "train_ref", "holdout_ref", "synthetic_q", "members", "nonmembers"]

# Base parts and the sampled parts derived from them.
_DERIVED = {
    "train_ref": "train",
    "holdout_ref": "holdout",
    "synthetic_q": "synthetic",
    "members": "train",
    "nonmembers": "holdout",
}


class AuditData:
    """Train (members), holdout (non-members, the baseline) and synthetic tables, ready for attacks.

    Parameters
    ----------
    train, holdout, synthetic:
        Same columns (at least the spec's; extra columns are ignored).
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
        train: pd.DataFrame,
        holdout: pd.DataFrame,
        synthetic: pd.DataFrame,
        spec: TableSpec | None = None,
        seed: int = 0,
        max_targets: int = 5000,
        max_queries: int = 10000,
        confidence: float = 0.95,
        n_bootstrap: int = 200,
        units: dict[str, np.ndarray] | None = None,
    ) -> None:
        for role, df in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
            if not isinstance(df, pd.DataFrame):
                raise AuditInputError(f"{role} must be a pandas DataFrame, got {type(df).__name__}")
        if spec is None:
            spec = TableSpec.infer(pd.concat([train, holdout], ignore_index=True))
        for role, df in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
            spec.check_frame(df, role)
        if len(train) < 2 or len(holdout) < 2:
            raise AuditInputError("train and holdout need at least 2 rows each")
        if max_targets < 1 or max_queries < 1:
            raise AuditInputError("max_targets and max_queries must be >= 1")
        self.spec = spec
        self.seed = int(seed)
        self.confidence = float(confidence)
        self.n_bootstrap = int(n_bootstrap)
        cols = spec.names
        self.frames: dict[str, pd.DataFrame] = {
            "train": train[cols].reset_index(drop=True),
            "holdout": holdout[cols].reset_index(drop=True),
            "synthetic": synthetic[cols].reset_index(drop=True),
        }
        self.units = _check_units(units, len(train), len(holdout))
        self.encoder = MixedEncoder(spec)
        encoded = self.encoder.fit_transform(*self.frames.values())
        n_train, n_hold, n_syn = (len(self.frames[k]) for k in ("train", "holdout", "synthetic"))
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
        self._encoded: dict[str, Encoded] = dict(zip(self.frames, encoded))
        self._knn: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
        self._index: dict[str, GowerIndex] = {}
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
            return self.frames[_DERIVED[part]].iloc[self.indices[part]].reset_index(drop=True)
        return self.frames[part]

    def encoded(self, part: Part) -> Encoded:
        if part not in self._encoded:
            if part in _DERIVED:
                self._encoded[part] = self.encoded(_DERIVED[part]).take(self.indices[part])  # type: ignore[arg-type]
            else:
                self._encoded[part] = self.encoder.transform(self.frames[part])
        return self._encoded[part]

    def index(self, part: Part) -> GowerIndex:
        """The exact nearest-neighbour index over ``part`` (built once, shared by the attacks that search it)."""
        if part not in self._index:
            self._index[part] = self.encoder.index(self.encoded(part))
        return self._index[part]

    def searchable(self, part: Part, n_queries: int) -> Encoded | GowerIndex:
        """What :meth:`MixedEncoder.knn` should search for ``n_queries`` queries among ``part``'s rows:
        the cached index above ``BRUTE_FORCE_PAIRS`` pairs, else the rows themselves (all pairs)."""
        return self.index(part) if n_queries * self.size(part) > BRUTE_FORCE_PAIRS else self.encoded(part)

    def size(self, part: Part) -> int:
        return len(self.indices[part]) if part in _DERIVED else len(self.frames[part])

    def knn(self, query: Part, ref: Part, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Cached exact k-NN of ``query`` rows among ``ref`` rows: ``(distances, indices into ref)``."""
        dist, idx, _ = self.knn_ties(query, ref, k)
        return dist, idx

    def knn_ties(self, query: Part, ref: Part, k: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`knn` plus, per query, the number of ``ref`` rows at exactly the nearest distance."""
        key = (query, ref)
        cached = self._knn.get(key)
        if cached is None or cached[0].shape[1] < k:
            start = time.perf_counter()
            queries = self.encoded(query)
            cached = self.encoder.knn(queries, self.searchable(ref, len(queries)), k=k, ties=True)
            self._knn[key] = cached
            self.timings[f"knn {query}->{ref}"] = time.perf_counter() - start
        return cached[0][:, :k], cached[1][:, :k], cached[2]

    def sizes(self) -> dict[str, int]:
        out = {k: len(v) for k, v in self.frames.items()}
        out.update({k: len(v) for k, v in self.indices.items()})
        if self.units is not None:
            out.update({f"{k}_persons": int(len(np.unique(v))) for k, v in self.units.items()})
        return out


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
