"""The schema's coercion and encoding rules as one SQL query, for every SQL engine.

:func:`encoding_query` turns a :class:`~dpsynth.schema.Schema` into a
``SELECT`` over a source relation that returns, per schema column, one
integer ``code`` column (and for numeric columns also the coerced ``value``):
the same codes as :class:`dpsynth.encoding.TableEncoder` gives a table
prepared by :func:`dpsynth.tables.prepare`, computed inside the engine so no
pandas object column of the whole table is ever built. It is the single
place that states those rules in SQL; the DuckDB engine runs it, and a Spark
engine runs the same text with :class:`SparkDialect`.

A code column folds three things into one integer, so the engine returns
one narrow column per schema column:

* ``code + domain_size * status`` for an accepted value, where ``code`` is
  the encoder's (``0 .. domain_size - 1``, null last for nullable columns)
  and ``status`` counts what :func:`~dpsynth.tables.conform` did to it:
  :data:`KEPT` (0), :data:`CLIPPED_LOW` (1), :data:`CLIPPED_HIGH` or
  :data:`MAPPED_TO_OTHER` (2); :func:`split_status` takes them apart;
* a negative error: :data:`NULL_NOT_NULLABLE`, :data:`NOT_NUMERIC` or
  :data:`UNKNOWN_CATEGORY` (an unknown category and no ``other``), which
  the engine turns into the same :class:`~dpsynth.errors.DataError` the
  pandas path raises, naming column and row.

Only a small SQL subset is used, which DuckDB and Spark SQL both accept:
``CASE``, ``TRY_CAST``, ``CAST``, ``trim``, ``ascii``, ``right``, ``isnan``,
``floor``, ``abs``, ``instr``, ``IN`` lists and nested sub-selects. Numbers are written as ``CAST('<repr>' AS
DOUBLE)``, which both parse to the identical double (decimal literals would
be DECIMAL in both); the few spots where the dialects differ (quoting, the
set of characters ``trim`` removes) are the :class:`Dialect` methods.
Numeric bins are found by a balanced tree of ``<`` comparisons against the
schema's exact bin edges, so a value lands in the bin ``numpy.searchsorted``
gives: the engines agree bit for bit with the encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dpsynth.engines.table import CLIPPED_HIGH, CLIPPED_LOW, KEPT, MAPPED_TO_OTHER
from dpsynth.schema import Column, Schema

#: How a source column is typed, which decides how its values are read.
SourceType = Literal["text", "integer", "float", "boolean", "other"]

NULL_NOT_NULLABLE, NOT_NUMERIC, UNKNOWN_CATEGORY = -1, -2, -3

#: Characters Python's ``str.strip()`` removes that matter in practice (the pandas path strips with it).
WHITESPACE = " \t\n\r\x0b\x0c"
_CONTROL_RANGE = (9, 13)  # WHITESPACE other than the space: \t \n \x0b \x0c \r, code points 9..13
assert sorted(ord(c) for c in WHITESPACE if c != " ") == list(range(_CONTROL_RANGE[0], _CONTROL_RANGE[1] + 1))


class Dialect:
    """DuckDB's spelling; a subclass overrides what another engine spells differently."""

    def ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def text(self, value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def strip(self, expr: str) -> str:
        return f"trim({expr}, {self.text(WHITESPACE)})"

    def number(self, value: float) -> str:
        return f"CAST({self.text(repr(float(value)))} AS DOUBLE)"


class SparkDialect(Dialect):
    """Spark SQL: backquoted names, backslash escapes in literals, ``trim(BOTH ... FROM ...)``."""

    def ident(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def text(self, value: str) -> str:
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
        return "'" + escaped + "'"

    def strip(self, expr: str) -> str:
        return f"trim(BOTH {self.text(WHITESPACE)} FROM {expr})"


@dataclass(frozen=True)
class EncodingQuery:
    """The query text plus the names of its output columns, per schema column."""

    sql: str
    code_columns: dict[str, str]  # schema column -> output column holding its (folded) code
    value_columns: dict[str, str]  # numeric schema column -> output column holding its coerced value
    text_columns: dict[str, str] | None = None  # passed-through source column -> output column (as text)


def encoding_query(
    schema: Schema,
    relation: str,
    source_columns: Mapping[str, str],
    source_types: Mapping[str, SourceType],
    dialect: Dialect | None = None,
    passthrough: Sequence[str] = (),
    carry: Sequence[str] = (),
) -> EncodingQuery:
    """``SELECT`` codes (and numeric values) of every schema column from ``relation``.

    ``source_columns`` maps each schema column to the column of ``relation``
    holding it (header names may differ by surrounding spaces); ``source_types``
    says how that column is typed. Output rows are in the relation's order.
    ``carry`` names columns of ``relation`` passed through unchanged (the
    Spark engine's row index, which keeps the order across a cluster).

    The query nests four selects so each step is computed once per cell:
    spaces trimmed (cheap), other surrounding whitespace stripped only where
    there is some, null flag and number or label, then the codes.

    ``passthrough`` names source columns (not schema columns, e.g. a person
    identifier, :mod:`dpsynth.privacy.unit`) returned as text in the same
    rows, so they stay aligned with the codes whatever the relation's order.
    """
    d = dialect or Dialect()
    levels: list[list[str]] = [[d.ident(c) for c in carry] for _ in range(4)]
    codes: dict[str, str] = {}
    values: dict[str, str] = {}
    for i, column in enumerate(schema):
        src = d.ident(source_columns[column.name])
        kind = source_types[column.name]
        raw, text, null, parsed = f"s{i}", f"t{i}", f"n{i}", f"v{i}"
        if kind in ("text", "other"):
            levels[0].append(f"trim({src if kind == 'text' else f'CAST({src} AS STRING)'}) AS {raw}")
            levels[1].append(f"{_strip_rest(raw, d)} AS {text}")
        else:
            levels[0].append(f"{src} AS {raw}")
            levels[1].append(f"{raw} AS {text}")
        levels[2].append(f"{_is_null(text, kind, schema.na_values, d)} AS {null}")
        if column.kind == "numeric":
            levels[2].append(f"{_number(text, kind)} AS {parsed}")
            levels[3].append(f"{_numeric_code(column, null, parsed, d)} AS c{i}")
            levels[3].append(f"CASE WHEN {null} OR {_bad_number(parsed)} THEN NULL ELSE {parsed} END AS x{i}")
            values[column.name] = f"x{i}"
        else:
            levels[2].append(f"{_label(text, kind, d)} AS {parsed}")
            levels[3].append(f"{_categorical_code(column, null, parsed, d)} AS c{i}")
        codes[column.name] = f"c{i}"
    texts: dict[str, str] = {}
    for j, name in enumerate(passthrough):
        levels[0].append(f"CAST({d.ident(name)} AS STRING) AS p{j}")
        for level in levels[1:]:
            level.append(f"p{j}")
        texts[name] = f"p{j}"
    query = relation
    for depth, columns in enumerate(levels):
        query = f"SELECT {', '.join(columns)} FROM {query}" + ("" if depth == 0 else f" AS level{depth}")
        if depth < len(levels) - 1:
            query = f"({query})"
    return EncodingQuery(query, codes, values, texts or None)


def _strip_rest(trimmed: str, d: Dialect) -> str:
    """Strip tabs, newlines etc. around a space-trimmed text, testing its two ends first (a full strip is slow)."""
    # a range test, not an IN list, which DuckDB would turn into a hash join that does not keep the rows
    # in order (see dpsynth.engines.duckdb_engine._connect)
    low, high = _CONTROL_RANGE
    ends = f"ascii({trimmed}) BETWEEN {low} AND {high} OR ascii(right({trimmed}, 1)) BETWEEN {low} AND {high}"
    return f"CASE WHEN {ends} THEN {d.strip(trimmed)} ELSE {trimmed} END"


def unknown_labels_query(
    schema: Schema,
    name: str,
    relation: str,
    source_column: str,
    source_type: SourceType,
    limit: int,
    dialect: Dialect | None = None,
) -> str:
    """The first ``limit`` distinct labels of column ``name`` outside its categories, sorted (for error messages)."""
    d = dialect or Dialect()
    src = d.ident(source_column)
    if source_type in ("text", "other"):
        src = d.strip(src if source_type == "text" else f"CAST({src} AS STRING)")
    label = _label(src, source_type, d)
    known = ", ".join(d.text(c) for c in schema[name].categories)
    return (
        f"SELECT DISTINCT {label} AS label FROM {relation} "
        f"WHERE NOT {_is_null(src, source_type, schema.na_values, d)} AND {label} NOT IN ({known}) "
        f"ORDER BY label LIMIT {int(limit)}"
    )


def split_status(folded: np.ndarray, domain_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(code, status)`` of non-negative folded codes (see the module docstring)."""
    status = folded // domain_size
    return folded - status * domain_size, status


def _is_null(value: str, kind: SourceType, na_values: Sequence[str], d: Dialect) -> str:
    """The pandas path's null rule: a missing value, a float NaN, or text that strips to a null marker.

    ``value`` is the stripped text for ``text`` columns, else the typed value.
    """
    if kind == "text":
        if not na_values:
            return f"({value} IS NULL)"
        markers = ", ".join(d.text(v) for v in dict.fromkeys(na_values))
        return f"({value} IS NULL OR {value} IN ({markers}))"
    if kind == "float":
        return f"({value} IS NULL OR isnan({value}))"
    return f"({value} IS NULL)"


def _number(value: str, kind: SourceType) -> str:
    """The value as a double, NULL when it is not a number (pandas ``to_numeric`` refuses ``1_000``)."""
    if kind in ("integer", "float", "boolean"):
        return f"CAST({value} AS DOUBLE)"
    return f"CASE WHEN instr({value}, '_') > 0 THEN NULL ELSE TRY_CAST({value} AS DOUBLE) END"


def _bad_number(parsed: str) -> str:
    return f"({parsed} IS NULL OR isnan({parsed}))"


def _label(src: str, kind: SourceType, d: Dialect) -> str:
    """The canonical category label (:func:`dpsynth.schema.category_label`): ``1.0`` reads as ``'1'``."""
    if kind in ("text", "other"):
        return src  # already stripped text
    if kind == "boolean":
        return f"CASE WHEN {src} THEN 'True' ELSE 'False' END"
    if kind == "float":
        whole = f"{src} = floor({src}) AND abs({src}) < {d.number(1e15)}"
        return f"CASE WHEN {whole} THEN CAST(CAST({src} AS BIGINT) AS STRING) ELSE CAST({src} AS STRING) END"
    return f"CAST({src} AS STRING)"  # integer


def _null_branch(column: Column, null: str) -> str:
    code = column.domain_size - 1 if column.nullable else NULL_NOT_NULLABLE
    return f"WHEN {null} THEN {code}"


def _numeric_code(column: Column, null: str, v: str, d: Dialect) -> str:
    size, edges = column.domain_size, column.bin_edges()
    last = len(edges) - 2
    return (
        f"CASE {_null_branch(column, null)} WHEN {_bad_number(v)} THEN {NOT_NUMERIC} "
        f"WHEN {v} < {d.number(column.lower)} THEN {size * CLIPPED_LOW} "
        f"WHEN {v} > {d.number(column.upper)} THEN {last + size * CLIPPED_HIGH} "
        f"ELSE {_bin_tree(v, edges, 0, last, d)} END"
    )


def _bin_tree(v: str, edges: np.ndarray, lo: int, hi: int, d: Dialect) -> str:
    """Index ``i`` in ``[lo, hi]`` with ``edges[i] <= v < edges[i+1]`` (the last bin closed), by bisection."""
    if lo == hi:
        return str(lo)
    mid = (lo + hi + 1) // 2
    return (
        f"CASE WHEN {v} < {d.number(edges[mid])} THEN {_bin_tree(v, edges, lo, mid - 1, d)} "
        f"ELSE {_bin_tree(v, edges, mid, hi, d)} END"
    )


def _categorical_code(column: Column, null: str, label: str, d: Dialect) -> str:
    size = column.domain_size
    known = " ".join(f"WHEN {label} = {d.text(c)} THEN {i}" for i, c in enumerate(column.categories))
    if column.other is not None:
        unknown = column.categories.index(column.other) + size * MAPPED_TO_OTHER
    else:
        unknown = UNKNOWN_CATEGORY
    return f"CASE {_null_branch(column, null)} {known} ELSE {unknown} END"


__all__ = [
    "CLIPPED_HIGH",
    "CLIPPED_LOW",
    "Dialect",
    "EncodingQuery",
    "KEPT",
    "MAPPED_TO_OTHER",
    "NOT_NUMERIC",
    "NULL_NOT_NULLABLE",
    "SourceType",
    "SparkDialect",
    "UNKNOWN_CATEGORY",
    "encoding_query",
    "split_status",
    "unknown_labels_query",
]
