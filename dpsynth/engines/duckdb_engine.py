"""The embedded default engine: DuckDB reads, coerces and encodes; counts are ``GROUP BY`` queries.

A CSV file is read by DuckDB's parallel CSV reader with every cell as text
and nothing guessed (the pandas path's ``dtype=str, keep_default_na=False``:
null markers are the schema's ``na_values``, applied by the encoding query);
Parquet files and DuckDB tables keep their column types, which the encoding
query reads as the pandas path would (``1.0`` is the category ``"1"``, a
float NaN is null). The query of :func:`dpsynth.engines.sql.encoding_query`
streams its result in Arrow record batches into a
:class:`~dpsynth.engines.collect.CodeCollector`, so memory holds the codes
and the numeric values, never the text of the table.

:class:`DuckDBTable` answers :meth:`~dpsynth.engines.table.EncodedTable.counts_many`
with one ``GROUP BY GROUPING SETS`` query over its code columns (registered
with DuckDB as an Arrow table, not copied), the same integers numpy's
``bincount`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from dpsynth.engines import Source, sql
from dpsynth.engines.collect import CodeCollector
from dpsynth.engines.table import EncodedTable, counts_by_sets
from dpsynth.errors import DataError
from dpsynth.schema import Schema
from dpsynth.tables import _record_lines

BATCH_ROWS = 1 << 20
_DIALECT = sql.Dialect()
_NO_NULL_STRING = "\x00dpsynth: no null string\x00"  # nulls are the schema's na_values, as in the pandas path
_MAX_SETS_PER_QUERY = 8  # more sets per scan is slower: each set hashes every row


def _source_type(duckdb_type: str) -> sql.SourceType:
    t = duckdb_type.upper()
    if t in ("VARCHAR", "STRING", "TEXT") or t.startswith("VARCHAR"):
        return "text"
    if t == "BOOLEAN":
        return "boolean"
    if t in ("FLOAT", "DOUBLE", "REAL"):
        return "float"
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"):
        return "integer"
    return "other"


class DuckDBEngine:
    """Reads a :class:`~dpsynth.engines.Source` with DuckDB into a :class:`DuckDBTable`."""

    name = "duckdb"

    def read(self, source: Source, schema: Schema, unit_column: str | None = None) -> EncodedTable:
        """Read and encode ``source``; with ``unit_column``, also the person codes of that identifier column."""
        label = str(source)
        con, relation = _open(source)
        try:
            try:
                described = con.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()
            except duckdb.Error as exc:
                raise DataError(_read_error(source, exc)) from None
            names = [str(row[0]) for row in described]
            stripped = [n.strip() for n in names]
            missing = [n for n in schema.names if n not in stripped]
            if missing:
                raise DataError(f"{label} lacks column(s) {missing} declared in the schema; it has {stripped}")
            columns = {n: names[stripped.index(n)] for n in schema.names}
            types = {n: _source_type(str(described[stripped.index(n)][1])) for n in schema.names}
            passthrough = ()
            if unit_column is not None:
                if unit_column not in stripped:
                    raise DataError(f"{label} lacks the privacy unit column {unit_column!r}; it has {stripped}")
                passthrough = (names[stripped.index(unit_column)],)
            query = sql.encoding_query(schema, relation, columns, types, _DIALECT, passthrough=passthrough)
            collector = CodeCollector(schema)
            unit_parts: list[pa.Array] = []
            try:
                reader = con.sql(query.sql).to_arrow_reader(BATCH_ROWS)
                for batch in reader:
                    if query.text_columns:
                        unit_parts.append(batch.column(next(iter(query.text_columns.values()))))
                    collector.add(
                        {n: batch.column(c).to_numpy() for n, c in query.code_columns.items()},
                        {n: batch.column(c).to_numpy(zero_copy_only=False) for n, c in query.value_columns.items()},
                    )
            except duckdb.Error as exc:
                raise DataError(_read_error(source, exc)) from None
            lines = cache(lambda: _record_lines(source.path) if source.kind == "csv" else [])

            def where(row: int) -> str:
                if source.kind == "csv":
                    starts = lines()
                    return f"line {starts[row] if row < len(starts) else row + 2}"
                return f"row {row + 1}"

            def raw_value(name: str, row: int) -> object:
                query = f"SELECT {_DIALECT.ident(columns[name])} FROM {relation} LIMIT 1 OFFSET {row}"
                cell = con.sql(query).fetchall()[0][0]
                return cell.lstrip(" ") if source.kind == "csv" and isinstance(cell, str) else cell

            def unknown_examples(name: str) -> list[str]:
                text = sql.unknown_labels_query(schema, name, relation, columns[name], types[name], 3, _DIALECT)
                return [str(row[0]) for row in con.sql(text).fetchall()]

            collector.raise_first_error(label, where, raw_value, unknown_examples)
            ignored = [s for s in stripped if s not in schema.names and s != unit_column]
            table = collector.table(label, self.name, list(dict.fromkeys(ignored)), cls=DuckDBTable)
            if unit_column is not None:
                from dpsynth.privacy.unit import unit_codes

                table.with_units(unit_codes(pa.chunked_array(unit_parts, pa.string()), unit_column, label))
            return table
        finally:
            con.close()


def _connect(path: str | None = None) -> duckdb.DuckDBPyConnection:
    """A connection whose query results keep the source's row order.

    The split's coins are drawn per row in row order (:mod:`dpsynth.holdout`),
    so a seed picks the same rows only if every read returns the rows in file
    order. DuckDB keeps insertion order for scans and projections, but its
    ``in_clause`` optimiser rewrites an ``IN (...)`` list (the null markers)
    into a hash join, whose parallel probe returns row groups out of order on
    two threads or more; it is switched off here.
    """
    con = duckdb.connect(path, read_only=True) if path is not None else duckdb.connect()
    con.sql("SET preserve_insertion_order = true")
    con.sql("SET disabled_optimizers = 'in_clause'")
    return con


def _open(source: Source) -> tuple[duckdb.DuckDBPyConnection, str]:
    """A fresh connection and the relation (table function, table or sub-query) holding the source."""
    path = source.path
    if path is not None and not path.exists():
        raise DataError(f"data file not found: {path}")
    if source.kind == "csv":
        if not path.is_file():
            raise DataError(f"{path} is a directory, not a CSV file: pass the path of the table's CSV file")
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty: expected a CSV file with a header row and data rows")
        # every dialect choice fixed, nothing sniffed: DuckDB would otherwise skip leading lines it finds odd
        # and read a value starting with '#' as a comment (a silent change pandas never makes)
        options = (
            f"header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"', skip = 0, comment = '', "
            f"nullstr = {_DIALECT.text(_NO_NULL_STRING)}"
        )
        return _connect(), f"read_csv({_DIALECT.text(str(path))}, {options})"
    if source.kind == "parquet":
        return _connect(), f"read_parquet({_DIALECT.text(str(path))})"
    try:
        con = _connect(str(path) if path is not None else None)
    except duckdb.Error as exc:
        raise DataError(f"{path} could not be opened as a DuckDB database: {exc}") from None
    if source.kind == "duckdb":
        return con, _DIALECT.ident(str(source.table))
    return con, f"({source.sql}) AS query"


def _read_error(source: Source, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if source.kind == "csv":
        return f"{source.path} could not be parsed as CSV: {first}"
    if source.kind == "parquet":
        return f"{source.path} could not be read as Parquet: {first}"
    if source.kind == "duckdb":
        return f"{source} could not be read: {first}"
    return f"the --sql query could not be run: {first}"


@dataclass
class DuckDBTable(EncodedTable):
    """An :class:`EncodedTable` whose counts are DuckDB ``GROUP BY`` queries over its codes."""

    _connection: Any = field(default=None, init=False, repr=False, compare=False)

    def _con(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            con = duckdb.connect()
            con.register("codes", pa.table({a: pa.array(c) for a, c in self.codes.items()}))
            self._connection = con
        return self._connection

    def counts_many(self, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return counts_by_sets(self, cliques, self._grouping_sets, _MAX_SETS_PER_QUERY)

    def _grouping_sets(self, sets: list[tuple[str, ...]]) -> dict[tuple[str, ...], np.ndarray]:
        """Counts of every set by one ``GROUP BY GROUPING SETS`` scan; codes are never NULL, so the
        NULL pattern of a result row tells its set."""
        attrs = [a for a in self.schema.names if any(a in s for s in sets)]
        q = _DIALECT.ident
        grouping = ", ".join("(" + ", ".join(q(a) for a in s) + ")" for s in sets)
        cols = ", ".join(q(a) for a in attrs)
        result = self._con().sql(f"SELECT {cols}, count(*) AS n FROM codes GROUP BY GROUPING SETS ({grouping})")
        arrow = result.to_arrow_table()
        valid = np.stack([arrow.column(a).is_valid().to_numpy(zero_copy_only=False) for a in attrs], axis=1)
        n = arrow.column("n").to_numpy()
        found = {}
        for s in sets:
            mask = np.all(valid == np.isin(attrs, s), axis=1)
            shape = tuple(self.domain[a] for a in s)
            table = np.zeros(shape, dtype=np.int64)
            index = tuple(arrow.column(a).filter(pa.array(mask)).to_numpy().astype(np.int64) for a in s)
            table[index] = n[mask]
            found[s] = table
        return found

    def __del__(self) -> None:
        if self._connection is not None:
            self._connection.close()


__all__ = ["DuckDBEngine", "DuckDBTable"]
