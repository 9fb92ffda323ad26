"""The pandas engine: today's path (:func:`dpsynth.tables.read_csv`, ``coerce``, ``conform``, ``TableEncoder``).

It is the reference the SQL engines are tested against, and the fallback
when DuckDB is not installed. It builds the whole table as pandas object
columns first, so it needs several times the memory of the DuckDB engine.
Parquet files are read with pandas (pyarrow), DuckDB tables and queries
through DuckDB into pandas; rows in their error messages are 1-based, as
the DuckDB engine's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dpsynth.encoding import TableEncoder
from dpsynth.engines import Source
from dpsynth.engines.table import CLIPPED_HIGH, CLIPPED_LOW, MAPPED_TO_OTHER, EncodedTable, code_dtype
from dpsynth.errors import DataError
from dpsynth.schema import Schema
from dpsynth.tables import coerce, conform, read_csv


class PandasEngine:
    """Reads a :class:`~dpsynth.engines.Source` with pandas into an :class:`EncodedTable`."""

    name = "pandas"

    def read(self, source: Source, schema: Schema, unit_column: str | None = None) -> EncodedTable:
        """Read and encode ``source``; with ``unit_column``, also the person codes of that identifier column."""
        label = str(source)
        raw = None if source.kind == "csv" else _frame(source)
        typed = read_csv(source.path, schema) if raw is None else coerce(raw, schema, label, 1)
        if unit_column is not None:
            typed.attrs["ignored_columns"] = [c for c in typed.attrs.get("ignored_columns", []) if c != unit_column]
        table = encode_frame(typed, schema, label, engine=self.name)
        if unit_column is not None:
            table.with_units(_unit_codes(source, raw, unit_column, label))
        return table


def encode_frame(typed: pd.DataFrame, schema: Schema, source: str, engine: str = "pandas") -> EncodedTable:
    """Conform a :func:`~dpsynth.tables.coerce` d frame and encode it (``DataError`` for unknown categories)."""
    conformed, report = conform(typed, schema, source=source)
    report.ignored_columns = list(typed.attrs.get("ignored_columns", []))
    codes = {
        name: code.astype(code_dtype(schema[name].domain_size))
        for name, code in TableEncoder(schema).encode(conformed).items()
    }
    values = {c.name: typed[c.name].to_numpy(dtype=float) for c in schema if c.kind == "numeric"}
    status = {}
    for column in schema:
        if column.kind == "numeric":
            x = values[column.name]
            changed = np.where(x < column.lower, CLIPPED_LOW, np.where(x > column.upper, CLIPPED_HIGH, 0))
        else:
            series = typed[column.name]
            changed = np.where(series.notna() & ~series.isin(column.categories), MAPPED_TO_OTHER, 0)
        if changed.any():
            status[column.name] = changed.astype(np.int8)
    return EncodedTable(
        schema=schema, codes=codes, values=values, report=report, source=source, engine=engine, status=status
    )


def _unit_codes(source: Source, raw: pd.DataFrame | None, column: str, label: str) -> np.ndarray:
    """Person codes of ``column``, read in the same row order as the table (its own text, nothing guessed)."""
    from dpsynth.privacy.unit import unit_codes

    if raw is None:
        header = pd.read_csv(source.path, dtype=str, nrows=0).columns
        stripped = [str(c).strip() for c in header]
        if column not in stripped:
            raise DataError(f"{label} lacks the privacy unit column {column!r}; it has {stripped}")
        raw = pd.read_csv(
            source.path,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            usecols=[header[stripped.index(column)]],
        )
        values = raw.iloc[:, 0]
    else:
        stripped = [str(c).strip() for c in raw.columns]
        if column not in stripped:
            raise DataError(f"{label} lacks the privacy unit column {column!r}; it has {stripped}")
        values = raw.iloc[:, stripped.index(column)]
    return unit_codes(
        values.map(lambda v: None if v is None or (isinstance(v, float) and v != v) else str(v)), column, label
    )


def _frame(source: Source) -> pd.DataFrame:
    path = source.path
    if path is not None and not path.exists():
        raise DataError(f"data file not found: {path}")
    if source.kind == "parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for a file that is not Parquet
            raise DataError(f"{path} could not be read as Parquet: {exc}") from None
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True) if path is not None else duckdb.connect()
    except duckdb.Error as exc:
        raise DataError(f"{path} could not be opened as a DuckDB database: {exc}") from None
    try:
        relation = '"' + str(source.table).replace('"', '""') + '"' if source.kind == "duckdb" else f"({source.sql})"
        return con.sql(f"SELECT * FROM {relation}").df()
    except duckdb.Error as exc:
        raise DataError(f"{source} could not be read: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


__all__ = ["PandasEngine", "encode_frame"]
