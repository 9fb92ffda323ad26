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

    def read(self, source: Source, schema: Schema) -> EncodedTable:
        label = str(source)
        typed = read_csv(source.path, schema) if source.kind == "csv" else coerce(_frame(source), schema, label, 1)
        return encode_frame(typed, schema, label, engine=self.name)


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
