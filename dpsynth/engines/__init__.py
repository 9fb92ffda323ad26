"""Engines: read a private table and encode it to its schema's codes, without pandas objects of the whole table.

The interface, which every engine implements (a Spark engine included)::

    engine = get_engine("duckdb")            # or "pandas", "spark"; None: the default (duckdb when installed)
    source = parse_source("adult.parquet")   # CSV / Parquet path or URL, duckdb:PATH?table=NAME, or sql="SELECT ..."
    table = engine.read(source, schema)      # -> EncodedTable, or DataError naming the column and the row
    table.counts(("age", "sex"))             # exact int64 counts, shape (domain["age"], domain["sex"])
    train, holdout = table.split(coins)      # one boolean per row, drawn by the caller (dpsynth.release)
    table.frame()                            # pandas (Categorical) frame for the audits and the report

``Engine.read`` coerces, checks and conforms exactly as
:func:`dpsynth.tables.prepare` does (same errors, same
:class:`~dpsynth.tables.DomainReport`) and returns an
:class:`~dpsynth.engines.table.EncodedTable` whose codes equal
:class:`dpsynth.encoding.TableEncoder`'s. SQL engines get their rules
from :func:`dpsynth.engines.sql.encoding_query`, one generator for every
dialect. An engine's :meth:`EncodedTable.counts_many` may compute the counts
its own way (``GROUP BY``), but must return the same integers: the noisy
measurements, and so the synthetic table for a seed, are then the same
whichever engine read the table (tests/test_engines.py holds them to it).

Nothing here draws randomness or learns anything for free: the holdout
split stays one independent coin per row, drawn in numpy by the caller
(:func:`dpsynth.release.split_encoded`), whatever engine holds the rows.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs

from dpsynth.engines.table import EncodedTable, code_dtype
from dpsynth.errors import UsageError
from dpsynth.schema import Schema

SourceKind = Literal["csv", "parquet", "duckdb", "sql"]
ENGINES = ("duckdb", "pandas", "spark")
_PACKAGES = {"duckdb": "duckdb", "pandas": "pandas", "spark": "pyspark"}  # the package each engine needs
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class Source:
    """Where the private table is: a CSV or Parquet file, a DuckDB table, or a SQL query.

    ``path`` is the file (for ``sql``: an optional DuckDB database the query
    runs in; without one it runs in an empty in-memory database and may read
    files with ``read_parquet(...)`` / ``read_csv(...)``). ``url`` is a file
    or directory named by URL (``s3a://``, ``hdfs://``, ``file://``), which
    only the Spark engine reads: the table stays in the data lake.
    """

    kind: SourceKind
    path: Path | None = None
    table: str | None = None
    sql: str | None = None
    url: str | None = None

    def __str__(self) -> str:
        if self.url is not None:
            return self.url
        if self.kind in ("csv", "parquet"):
            return str(self.path)
        if self.kind == "duckdb":
            return f"duckdb:{self.path}?table={self.table}"
        return f"query ({self.sql})" if self.path is None else f"query on duckdb:{self.path} ({self.sql})"


def parse_source(data: str | Path | None, sql: str | None = None) -> Source:
    """The :class:`Source` a ``DATA`` argument (and ``--sql``) names; ``UsageError`` when it names none."""
    text = None if data is None else str(data)
    if sql is not None:
        if not sql.strip():
            raise UsageError("--sql needs a SELECT query", parameter="sql")
        if text is None:
            return Source("sql", sql=sql)
        if not text.startswith("duckdb:") or "?" in text:
            raise UsageError(
                f"with --sql, DATA must name the DuckDB database the query runs in (duckdb:PATH), got {text!r}",
                parameter="sql",
            )
        return Source("sql", path=Path(text.removeprefix("duckdb:")), sql=sql)
    if text is None:
        raise UsageError("name the private table: a CSV or Parquet file, duckdb:PATH?table=NAME, or --sql QUERY")
    if text.startswith("duckdb:"):
        path, _, query = text.removeprefix("duckdb:").partition("?")
        tables = parse_qs(query).get("table", [])
        if not path or len(tables) != 1 or not tables[0].strip():
            raise UsageError(f"a DuckDB source reads duckdb:PATH?table=NAME, got {text!r} (or pass --sql QUERY)")
        return Source("duckdb", path=Path(path), table=tables[0])
    if _URL.match(text):
        kind = "csv" if text.lower().rstrip("/").endswith(".csv") else "parquet"
        return Source(kind, url=text)
    path = Path(text)
    return Source("parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "csv", path=path)


class Engine(Protocol):
    """Reads a :class:`Source` into an :class:`EncodedTable` under a schema (the module docstring)."""

    name: str

    def read(self, source: Source, schema: Schema, unit_column: str | None = None) -> EncodedTable: ...


def available_engines() -> list[str]:
    """Engines whose packages are installed, in order of preference."""
    return [name for name in ENGINES if name == "pandas" or importlib.util.find_spec(_PACKAGES[name]) is not None]


def default_engine() -> str:
    return available_engines()[0]


def get_engine(name: str | None = None, spark_master: str | None = None) -> Engine:
    """The engine called ``name`` (``None``: :func:`default_engine`); ``UsageError`` naming the choices.

    ``spark_master`` is the Spark engine's cluster (``local[N]`` or ``spark://HOST:PORT``; ``None``:
    :data:`~dpsynth.engines.spark_engine.DEFAULT_MASTER`); other engines refuse it.
    """
    name = default_engine() if name is None else name
    if name not in ENGINES:
        raise UsageError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}", parameter="engine")
    if name not in available_engines():
        extra = " (or pip install 'dpsynth[spark]')" if name == "spark" else ""
        package = _PACKAGES[name]
        message = f"engine {name!r} needs the {package} package: pip install {package}{extra}"
        raise UsageError(message, parameter="engine")
    if spark_master is not None and name != "spark":
        raise UsageError(f"--spark-master is for --engine spark, not {name!r}", parameter="spark_master")
    if name == "spark":
        from dpsynth.engines.spark_engine import SparkEngine

        return SparkEngine(spark_master)
    if name == "duckdb":
        from dpsynth.engines.duckdb_engine import DuckDBEngine

        return DuckDBEngine()
    from dpsynth.engines.pandas_engine import PandasEngine

    return PandasEngine()


def read_table(
    data: str | Path | None,
    schema: Schema,
    engine: str | None = None,
    sql: str | None = None,
    unit_column: str | None = None,
    spark_master: str | None = None,
) -> EncodedTable:
    """Read and encode the private table ``data`` (or the ``sql`` query) with ``engine``.

    With ``unit_column`` (person-level privacy), the table also carries the
    person codes of that identifier column (:attr:`EncodedTable.units`); the
    identifier must not be a schema column, and its values are never kept.
    ``spark_master`` is ``--engine spark``'s cluster (``local[N]`` or ``spark://HOST:PORT``).
    """
    if unit_column is not None and unit_column in schema.names:
        raise UsageError(
            f"the privacy unit column {unit_column!r} is a schema column: an identifier is never modelled or "
            "released; remove it from the schema's columns",
            parameter="privacy_unit",
        )
    if unit_column is not None and engine == "spark":
        raise UsageError(
            "--engine spark does not read a privacy unit yet: run person-level releases with --engine duckdb",
            parameter="engine",
        )
    chosen = get_engine(engine, spark_master)
    source = parse_source(data, sql)
    if source.url is not None and chosen.name != "spark":
        message = f"{source.url} is a URL, which only --engine spark reads (from its cluster)"
        raise UsageError(message, parameter="engine")
    if unit_column is None:
        return chosen.read(source, schema)
    return chosen.read(source, schema, unit_column=unit_column)


def audit_tables(train: EncodedTable, holdout: EncodedTable) -> tuple[Any, Any]:
    """What the audits read of a split's two sides: pandas frames, or tables left where they live.

    A Spark side on a cluster (a ``spark://`` master) stays there
    (:class:`~dpsynth.engines.spark_audit.SparkRows`: the audits' searches and lookups run on
    the executors, docs/spark.md). In local mode the executors are the driver's own machine, so
    the sides become frames on the driver, which is faster; ``DPSYNTH_SPARK_AUDIT=cluster`` (or
    ``driver``) overrides either default. Any other engine's sides become the pandas frames the
    audits and the report read (:meth:`EncodedTable.frame`), as does a person-level table.
    """
    if train.engine == "spark" and train.units is None and hasattr(train, "row_numbers"):
        if spark_audit_place(train.session.sparkContext.master) == "cluster":
            from dpsynth.engines.spark_audit import SparkRows

            return SparkRows(train), SparkRows(holdout)
    return train.frame(), holdout.frame()


def spark_audit_place(master: str) -> str:
    """Where a Spark table's audits run: ``cluster`` or ``driver`` (``DPSYNTH_SPARK_AUDIT``, else by the master)."""
    import os

    chosen = os.environ.get("DPSYNTH_SPARK_AUDIT", "").strip().lower()
    if chosen and chosen not in ("cluster", "driver"):
        raise UsageError(f"DPSYNTH_SPARK_AUDIT must be 'cluster' or 'driver', got {chosen!r}", parameter="engine")
    return chosen or ("driver" if master.startswith("local") else "cluster")


__all__ = [
    "audit_tables",
    "spark_audit_place",
    "ENGINES",
    "EncodedTable",
    "Engine",
    "Source",
    "available_engines",
    "code_dtype",
    "default_engine",
    "get_engine",
    "parse_source",
    "read_table",
]
