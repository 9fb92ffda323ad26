"""Gathering an encoding query's output, batch by batch, into an :class:`EncodedTable`.

Shared by every SQL engine: it unfolds the codes of
:func:`dpsynth.engines.sql.encoding_query` (:func:`~dpsynth.engines.sql.split_status`),
counts what conforming changed into a :class:`~dpsynth.tables.DomainReport`,
and remembers each column's first failing row and number of failures, so that
:meth:`CodeCollector.raise_first_error` raises the very
:class:`~dpsynth.errors.DataError` the pandas path
(:func:`dpsynth.tables.coerce` then :func:`~dpsynth.tables.conform`) raises
for the same table: shape errors first, column by column in schema order,
then unknown categories. Only the code and value arrays are kept, one
narrow integer array per column, so memory grows with the table by a few
bytes a row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from dpsynth.engines import sql
from dpsynth.engines.table import EncodedTable, code_dtype, domain_report
from dpsynth.errors import DataError
from dpsynth.schema import Schema


@dataclass
class _Failures:
    count: int = 0
    first: int = -1  # 0-based positional row

    def add(self, rows: np.ndarray, offset: int) -> None:
        if rows.size:
            if self.first < 0:
                self.first = offset + int(rows[0])
            self.count += int(rows.size)


@dataclass
class CodeCollector:
    """Accumulates batches of folded codes (and numeric values), in row order."""

    schema: Schema
    n_rows: int = 0
    _codes: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _values: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _status: dict[str, list[np.ndarray | None]] = field(default_factory=dict)  # None: a batch with no change
    _failures: dict[tuple[str, int], _Failures] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for column in self.schema:
            self._codes[column.name] = []
            self._status[column.name] = []
            if column.kind == "numeric":
                self._values[column.name] = []
            for error in (sql.NULL_NOT_NULLABLE, sql.NOT_NUMERIC, sql.UNKNOWN_CATEGORY):
                self._failures[column.name, error] = _Failures()

    @property
    def failed(self) -> bool:
        return any(f.count for f in self._failures.values())

    def add(self, folded: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray]) -> None:
        """One batch: ``folded[name]`` the query's code column, ``values[name]`` a numeric column's values."""
        offset = self.n_rows
        for column in self.schema:
            raw = np.asarray(folded[column.name])
            bad = raw < 0
            if bad.any():
                for error in (sql.NULL_NOT_NULLABLE, sql.NOT_NUMERIC, sql.UNKNOWN_CATEGORY):
                    self._failures[column.name, error].add(np.flatnonzero(raw == error), offset)
            if self.failed:  # the read will fail: keep counting, stop keeping rows
                continue
            code, status = sql.split_status(raw.astype(np.int64), column.domain_size)
            self._status[column.name].append(status.astype(np.int8) if status.any() else None)
            self._codes[column.name].append(code.astype(code_dtype(column.domain_size)))
            if column.kind == "numeric":
                self._values[column.name].append(np.asarray(values[column.name], dtype=np.float64))
        self.n_rows += len(next(iter(folded.values())))

    def add_failures(self, name: str, error: int, count: int, first: int) -> None:
        """Failures counted elsewhere (on a cluster, by the Spark engine): ``count`` rows of column ``name``
        with the negative code ``error``, the first at 0-based row ``first``."""
        failures = self._failures[name, error]
        if count:
            failures.count += int(count)
            failures.first = int(first) if failures.first < 0 else min(failures.first, int(first))

    def raise_first_error(
        self,
        source: str,
        where: Callable[[int], str],
        raw_value: Callable[[str, int], object],
        unknown_examples: Callable[[str], list[str]],
    ) -> None:
        """Raise the pandas path's :class:`DataError` for the first failure, if any.

        ``where(row)`` names a 0-based row for the user (``line 7``, ``row 6``),
        ``raw_value(column, row)`` fetches the offending cell, and
        ``unknown_examples(column)`` the first few unknown labels, sorted.
        """
        if self.n_rows == 0:
            raise DataError(f"{source} has no data rows")
        for column in self.schema:
            null = self._failures[column.name, sql.NULL_NOT_NULLABLE]
            if null.count:
                raise DataError(
                    f"{source}: column {column.name!r} is not nullable but {where(null.first)} is null "
                    f'({null.count} null value(s) in all); declare "nullable": true or fill them'
                )
            bad = self._failures[column.name, sql.NOT_NUMERIC]
            if bad.count:
                raise DataError(
                    f"{source}: column {column.name!r} is numeric but {where(bad.first)} holds "
                    f"{raw_value(column.name, bad.first)!r} ({bad.count} non-numeric value(s) in all)"
                )
        for column in self.schema:
            unknown = self._failures[column.name, sql.UNKNOWN_CATEGORY]
            if unknown.count:
                raise DataError(
                    f"{source}: column {column.name!r} has {unknown.count} value(s) outside its declared "
                    f"categories (e.g. {unknown_examples(column.name)}; first at row {unknown.first}). "
                    "Add them to 'categories' if they are public, or declare an \"other\" category to absorb them."
                )

    def table(self, source: str, engine: str, ignored_columns: list[str], cls: type = EncodedTable) -> EncodedTable:
        """The collected rows as an encoded table (call after :meth:`raise_first_error`)."""
        status = {}
        for name, parts in self._status.items():
            if any(part is not None for part in parts):
                lengths = [len(c) for c in self._codes[name]]
                status[name] = np.concatenate(
                    [np.zeros(n, dtype=np.int8) if part is None else part for part, n in zip(parts, lengths)]
                )
        codes = {name: _concatenate(parts, np.int8) for name, parts in self._codes.items()}
        values = {name: _concatenate(parts, np.float64) for name, parts in self._values.items()}
        self._codes, self._values, self._status = {}, {}, {}
        report = domain_report(self.schema, status, ignored_columns)
        return cls(
            schema=self.schema, codes=codes, values=values, report=report, source=source, engine=engine, status=status
        )


def _concatenate(parts: list[np.ndarray], dtype) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


__all__ = ["CodeCollector"]
