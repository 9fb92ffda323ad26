"""An encoded table: what an engine hands the rest of dpsynth.

:class:`EncodedTable` holds one integer code column per schema column (the
codes of :class:`dpsynth.encoding.TableEncoder`, null last for nullable
columns), the coerced value of every numeric column (the audits measure
distances on values, not bins), the :class:`~dpsynth.tables.DomainReport`
of what conforming changed, and the row count. It answers the only
questions the marginal-based generators ask of the private data,
:meth:`~EncodedTable.counts` of a set of columns, and it builds the pandas
frames the audits and the report read (:meth:`~EncodedTable.frame`, with
categories as ``pandas.Categorical`` over their codes, never object
columns of the whole table).

Counting here is ``numpy.bincount`` over the codes; an engine may answer
the same counts its own way (the DuckDB engine's subclass runs ``GROUP BY``
queries), and must give the identical integers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dpsynth.errors import UsageError
from dpsynth.schema import Schema
from dpsynth.tables import DomainReport

#: Per-row conform status (``EncodedTable.status``): what :func:`dpsynth.tables.conform` did to the value.
KEPT, CLIPPED_LOW, CLIPPED_HIGH = 0, 1, 2
MAPPED_TO_OTHER = 2  # categorical columns only, so it can share CLIPPED_HIGH's slot


def domain_report(schema: Schema, status: dict[str, np.ndarray], ignored_columns: Sequence[str]) -> DomainReport:
    """The :class:`DomainReport` of rows whose per-column conform ``status`` is given (absent: all kept)."""
    report = DomainReport(ignored_columns=list(ignored_columns))
    for column in schema:
        if column.name not in status:
            continue
        counts = np.bincount(status[column.name], minlength=3)
        if column.kind == "numeric":
            if counts[CLIPPED_LOW]:
                report.clipped_low[column.name] = int(counts[CLIPPED_LOW])
            if counts[CLIPPED_HIGH]:
                report.clipped_high[column.name] = int(counts[CLIPPED_HIGH])
        elif counts[MAPPED_TO_OTHER]:
            report.mapped_to_other[column.name] = int(counts[MAPPED_TO_OTHER])
    return report


def code_dtype(domain_size: int) -> np.dtype:
    """The narrowest signed integer type holding codes ``0 .. domain_size - 1``."""
    for dtype in (np.int8, np.int16, np.int32):
        if domain_size <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def counts_by_sets(
    table: EncodedTable,
    cliques: Sequence[Sequence[str]],
    count_sets: Callable[[list[tuple[str, ...]]], dict[tuple[str, ...], np.ndarray]],
    sets_per_query: int,
) -> list[np.ndarray]:
    """:meth:`EncodedTable.counts_many` for an engine that counts several attribute sets per query.

    Each clique is counted once as its attribute set in schema order
    (``count_sets`` takes up to ``sets_per_query`` of them and returns their
    count arrays), then transposed to the order it was asked in; the empty
    clique is the row count.
    """
    wanted = [tuple(c) for c in cliques]
    for clique in wanted:
        table._check_clique(clique)
    order = table.schema.names.index
    sets = list(dict.fromkeys(tuple(sorted(c, key=order)) for c in wanted if c))
    found: dict[tuple[str, ...], np.ndarray] = {}
    for start in range(0, len(sets), sets_per_query):
        found.update(count_sets(sets[start : start + sets_per_query]))
    out = []
    for clique in wanted:
        if not clique:
            out.append(np.array(len(table), dtype=np.int64))
            continue
        key = tuple(sorted(clique, key=order))
        out.append(np.transpose(found[key], [key.index(a) for a in clique]))
    return out


@dataclass
class EncodedTable:
    """Codes (and numeric values) of a table brought into its schema's domain.

    ``codes[name]`` is an integer array per schema column, ``values[name]`` a
    float64 array per numeric column: the value as read (before clipping to
    the public bounds; NaN for null), which :meth:`frame` passes to the audits
    as the pandas path always did. ``status[name]`` (int8, :data:`CLIPPED_LOW`
    ...) is kept only for columns where conforming changed some value, so that
    a subset of the rows (:meth:`take`) reports its own changes, as the pandas
    path's ``prepare`` of the training table did. ``source`` names the table
    in messages.

    ``units`` (person-level privacy, :mod:`dpsynth.privacy.unit`) holds one
    int64 person code per row when the table was read with a privacy unit:
    the rank of the row's identifier among the sorted distinct identifiers,
    never the identifier itself, and never a schema column (nothing models
    or counts it). ``None`` for a record-level table.
    """

    schema: Schema
    codes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    report: DomainReport = field(default_factory=DomainReport)
    source: str = "table"
    engine: str = "numpy"
    status: dict[str, np.ndarray] = field(default_factory=dict)
    units: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        lengths = {len(a) for a in self.codes.values()} | {len(a) for a in self.values.values()}
        lengths |= set() if self.units is None else {len(self.units)}
        if set(self.codes) != set(self.schema.names) or len(lengths) > 1:
            raise UsageError(f"{self.source}: an encoded table needs one equally long code column per schema column")

    def __len__(self) -> int:
        return len(next(iter(self.codes.values())))

    @property
    def n_rows(self) -> int:
        return len(self)

    @property
    def domain(self) -> dict[str, int]:
        """Number of codes per column, in schema order."""
        return {c.name: c.domain_size for c in self.schema}

    # -- counts --------------------------------------------------------------------------
    def counts(self, columns: Sequence[str]) -> np.ndarray:
        """Exact int64 counts over ``columns``' full domain: an array of shape ``(domain[a] for a in columns)``."""
        return self.counts_many([tuple(columns)])[0]

    def counts_many(self, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """:meth:`counts` of every clique; engines override this to answer them all in one pass."""
        return [self._bincount(tuple(clique)) for clique in cliques]

    def _bincount(self, clique: tuple[str, ...]) -> np.ndarray:
        self._check_clique(clique)
        shape = tuple(self.domain[a] for a in clique)
        if not clique:
            return np.array(len(self), dtype=np.int64)
        index = np.ravel_multi_index(tuple(self.codes[a].astype(np.int64, copy=False) for a in clique), shape)
        return np.bincount(index, minlength=int(np.prod(shape))).astype(np.int64).reshape(shape)

    def _check_clique(self, clique: tuple[str, ...]) -> None:
        unknown = [a for a in clique if a not in self.domain]  # the schema's names: an engine's codes may be remote
        if unknown or len(set(clique)) != len(clique):
            raise UsageError(f"counts over {list(clique)}: columns must be distinct schema columns {self.schema.names}")

    # -- rows ----------------------------------------------------------------------------
    def take(self, rows: np.ndarray) -> EncodedTable:
        """The rows selected by a boolean mask or an index array, in order (a new table, its own report)."""
        status = {a: s[rows] for a, s in self.status.items()}
        return type(self)(
            schema=self.schema,
            codes={a: c[rows] for a, c in self.codes.items()},
            values={a: v[rows] for a, v in self.values.items()},
            report=domain_report(self.schema, status, self.report.ignored_columns),
            source=self.source,
            engine=self.engine,
            status=status,
            units=None if self.units is None else self.units[rows],
        )

    def with_units(self, units: np.ndarray | None) -> EncodedTable:
        """The same rows carrying person codes ``units`` (one per row), for person-level privacy."""
        if units is not None and len(units) != len(self):
            raise UsageError(f"{self.source}: {len(units)} person codes for {len(self)} rows")
        self.units = None if units is None else np.asarray(units, dtype=np.int64)
        return self

    def split(self, in_holdout: np.ndarray) -> tuple[EncodedTable, EncodedTable]:
        """``(train, holdout)``: the rows where ``in_holdout`` is false, then those where it is true."""
        in_holdout = np.asarray(in_holdout, dtype=bool)
        if in_holdout.shape != (len(self),):
            raise UsageError(f"{self.source}: the split needs one coin per row ({len(self)}), got {in_holdout.shape}")
        return self.take(~in_holdout), self.take(in_holdout)

    # -- pandas --------------------------------------------------------------------------
    def frame(self, conformed: bool = False) -> pd.DataFrame:
        """The table as pandas: numeric columns float64, categorical columns ``pandas.Categorical``.

        Categories come from the codes, so an unknown value shows as the
        schema's ``other`` category. Numbers are the values as read, or with
        ``conformed`` clipped to the public bounds (what
        :func:`dpsynth.tables.prepare` gives a generator).
        """
        out: dict[str, pd.Series | pd.Categorical] = {}
        for column in self.schema:
            if column.kind == "numeric":
                values = self.values[column.name]
                out[column.name] = np.clip(values, column.lower, column.upper) if conformed else values
            else:
                codes = self.codes[column.name]
                if column.nullable:
                    codes = np.where(codes == len(column.categories), -1, codes)
                out[column.name] = pd.Categorical.from_codes(codes, categories=list(column.categories))
        return pd.DataFrame(out, copy=False)


__all__ = [
    "CLIPPED_HIGH",
    "CLIPPED_LOW",
    "KEPT",
    "MAPPED_TO_OTHER",
    "EncodedTable",
    "code_dtype",
    "counts_by_sets",
    "domain_report",
]
