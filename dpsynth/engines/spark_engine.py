"""The Spark engine: the table is read, coerced, encoded and counted on a Spark cluster.

``--engine spark`` reads Parquet (a file, a directory of files, or a URL
such as ``s3a://`` / ``hdfs://``) into a Spark DataFrame and runs the
schema's encoding query (:func:`dpsynth.engines.sql.encoding_query` with
:class:`~dpsynth.engines.sql.SparkDialect`) on the executors. The codes
stay there, cached; :class:`SparkTable` answers
:meth:`~dpsynth.engines.table.EncodedTable.counts_many` with one job
that counts every marginal in each partition (:mod:`dpsynth.engines.spark_counts`),
and only the exact count arrays (one number per non-zero cell of a
marginal and partition) come back to the driver, where the
synthesizer adds the noise. docs/spark.md says what runs where.

Row order is what makes a seed pick the same holdout rows as the embedded
engine (the coins are drawn in numpy, one per row, in row order). Each row
gets its global position from Parquet's own metadata, ``_metadata.row_index``
(the row's position in its file) plus the rows of the files before it
(files in path order): exact, no shuffle, and no extra scan of the data
(the per-file row counts read only the files' metadata column). Spark's
``monotonically_increasing_id`` is not contiguous and ``zipWithIndex``
needs an RDD pass through Python, so neither is used.

Errors are the other engines' (:class:`~dpsynth.engines.collect.CodeCollector`
raises them): one aggregation on the cluster counts each column's failures
and finds the first failing row, and the domain report's clipped / mapped
counts come from the same scan.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from dpsynth.engines import Source, sql
from dpsynth.engines.collect import CodeCollector
from dpsynth.engines.spark_counts import count_sets
from dpsynth.engines.spark_session import DEFAULT_MASTER, check_master, spark_session
from dpsynth.engines.table import CLIPPED_HIGH, CLIPPED_LOW, EncodedTable, code_dtype, counts_by_sets
from dpsynth.errors import DataError, UsageError
from dpsynth.schema import Schema
from dpsynth.tables import DomainReport

ROW = "_dpsynth_row"  # the row's 0-based global position (file order, then row order in the file)
_FILE, _POS = "_dpsynth_file", "_dpsynth_pos"
_D = sql.SparkDialect()
_ERRORS = (sql.NULL_NOT_NULLABLE, sql.NOT_NUMERIC, sql.UNKNOWN_CATEGORY)
_views = itertools.count()


def _source_type(type_name: str) -> sql.SourceType:
    t = type_name.lower()
    if t in ("string", "varchar", "char"):
        return "text"
    if t == "boolean":
        return "boolean"
    if t in ("float", "double"):
        return "float"
    if t in ("byte", "short", "integer", "long"):
        return "integer"
    return "other"


def _view(frame: Any, stem: str) -> str:
    name = f"dpsynth_{stem}_{next(_views)}"
    frame.createOrReplaceTempView(name)
    return name


class SparkEngine:
    """Reads a Parquet :class:`~dpsynth.engines.Source` on Spark into a :class:`SparkTable`."""

    name = "spark"

    def __init__(self, master: str | None = None) -> None:
        self.master = check_master(master or DEFAULT_MASTER)

    def read(self, source: Source, schema: Schema) -> EncodedTable:
        directory = source.url is None and source.path is not None and source.path.is_dir()
        if source.kind != "parquet" and not directory:  # a directory is read as a Parquet table's files
            raise UsageError(
                f"the spark engine reads Parquet (a file, a directory of Parquet files or a URL), not {source}: "
                "convert the table to Parquet, or read it with --engine duckdb",
                parameter="engine",
            )
        if source.url is None and not source.path.exists():
            raise DataError(f"data file not found: {source.path}")
        label = str(source)
        spark = spark_session(self.master)
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException
        from pyspark.sql import functions as F

        failures_of_spark = (PySparkException, Py4JError)  # a JVM error pyspark does not translate stays Py4J's

        location = source.url or str(source.path.resolve())
        try:
            raw = spark.read.parquet(location)
            names = list(raw.columns)
            types = {f.name: f.dataType.typeName() for f in raw.schema.fields}
            rows = raw.select("*", F.col("_metadata.file_path").alias(_FILE), F.col("_metadata.row_index").alias(_POS))
            # one file (the usual export) needs no count: its row index is the row's position
            per_file = [] if len(raw.inputFiles()) <= 1 else sorted(rows.groupBy(_FILE).count().collect())
        except failures_of_spark as exc:
            raise DataError(f"{label} could not be read as Parquet: {_first_line(exc)}") from None
        stripped = [n.strip() for n in names]
        missing = [n for n in schema.names if n not in stripped]
        if missing:
            raise DataError(f"{label} lacks column(s) {missing} declared in the schema; it has {stripped}")
        columns = {n: names[stripped.index(n)] for n in schema.names}
        source_types = {n: _source_type(types[columns[n]]) for n in schema.names}
        rows = _with_row_index(spark, rows, per_file)
        relation = _view(rows, "source")
        query = sql.encoding_query(schema, relation, columns, source_types, _D, carry=[ROW])
        try:
            encoded = spark.sql(query.sql).persist()
            n_rows, failures, changed = _scan(encoded, schema, query.code_columns)
        except failures_of_spark as exc:
            raise DataError(f"{label} could not be read: {_first_line(exc)}") from None
        collector = CodeCollector(schema)
        collector.n_rows = n_rows
        for (name, error), (count, first) in failures.items():
            collector.add_failures(name, error, count, first)

        def raw_value(name: str, row: int) -> object:
            cell = spark.sql(f"SELECT {_D.ident(columns[name])} FROM {relation} WHERE {ROW} = {int(row)}").collect()
            return cell[0][0]

        def unknown_examples(name: str) -> list[str]:
            text = sql.unknown_labels_query(schema, name, relation, columns[name], source_types[name], 3, _D)
            return [str(r[0]) for r in spark.sql(text).collect()]

        try:
            collector.raise_first_error(label, lambda row: f"row {row + 1}", raw_value, unknown_examples)
        except DataError:
            encoded.unpersist()
            raise
        ignored = list(dict.fromkeys(s for s in stripped if s not in schema.names))
        return SparkTable(
            schema,
            encoded,
            dict(query.code_columns),
            dict(query.value_columns),
            n_rows,
            _report(schema, changed, ignored),
            label,
        )


def _first_line(exc: Exception) -> str:
    """The first line of Spark's message (for a Py4J error: the Java exception's, not the call's)."""
    java = getattr(exc, "java_exception", None)
    text = str(java.getMessage() if java is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _with_row_index(spark: Any, rows: Any, per_file: list[Any]) -> Any:
    """``rows`` with :data:`ROW`: the rows of the files before (in path order) plus the row's index in its file."""
    from pyspark.sql import functions as F

    if len(per_file) <= 1:
        return rows.withColumn(ROW, F.col(_POS)).drop(_FILE, _POS)
    offsets = np.concatenate([[0], np.cumsum([int(r[1]) for r in per_file])[:-1]]).tolist()
    table = spark.createDataFrame([(str(r[0]), int(o)) for r, o in zip(per_file, offsets)], [_FILE, "_offset"])
    joined = rows.join(F.broadcast(table), on=_FILE)
    return joined.withColumn(ROW, F.col("_offset") + F.col(_POS)).drop(_FILE, _POS, "_offset")


def _scan(
    encoded: Any, schema: Schema, code_columns: dict[str, str], changed_only: Sequence[str] | None = None
) -> tuple[int, dict[tuple[str, int], tuple[int, int]], dict[str, tuple[int, int]]]:
    """Rows, each column's failures ``(count, first row)`` per error, and its rows clipped low / clipped
    high or mapped to ``other`` (``changed``), in at most two aggregations over the folded codes.

    The first finds each column's least and greatest folded code: a column whose codes are all in
    ``0 .. domain_size - 1`` (most of them) has neither failures nor changes. The second counts only
    the columns that have some. ``changed_only`` (a subset of the rows: the split's sides) names the
    columns to count without the first pass: only those the whole table had changes in.
    """
    q = _D.ident
    n_rows = None
    if changed_only is None:
        parts = ["count(*)"]
        for column in schema:
            parts += [f"min({q(code_columns[column.name])})", f"max({q(code_columns[column.name])})"]
        row = encoded.selectExpr(*parts).collect()[0]
        n_rows = int(row[0])
        ranges = {c.name: (row[1 + 2 * i], row[2 + 2 * i]) for i, c in enumerate(schema)}
        bad = [c.name for c in schema if ranges[c.name][0] is not None and ranges[c.name][0] < 0]
        odd = [c.name for c in schema if ranges[c.name][1] is not None and ranges[c.name][1] >= c.domain_size]
    else:
        bad, odd = [], list(changed_only)
    failures = {(c.name, e): (0, -1) for c in schema for e in _ERRORS}
    changed = {c.name: (0, 0) for c in schema}
    parts = ["count(*) AS n"]
    for name in bad:
        c = q(code_columns[name])
        for error in _ERRORS:
            parts += [f"count_if({c} = {error})", f"min(CASE WHEN {c} = {error} THEN {ROW} END)"]
    for name in odd:
        c, size = q(code_columns[name]), schema[name].domain_size
        parts.append(f"count_if({c} >= {size * CLIPPED_LOW} AND {c} < {size * (CLIPPED_LOW + 1)})")
        parts.append(f"count_if({c} >= {size * CLIPPED_HIGH})")
    if len(parts) == 1 and n_rows is not None:
        return n_rows, failures, changed
    row = encoded.selectExpr(*parts).collect()[0]
    i = 1
    for name in bad:
        for error in _ERRORS:
            failures[name, error] = (int(row[i]), -1 if row[i + 1] is None else int(row[i + 1]))
            i += 2
    for name in odd:
        changed[name] = (int(row[i]), int(row[i + 1]))
        i += 2
    return int(row[0]), failures, changed


def arrow_table(
    arrow: Any, schema: Schema, code_columns: dict[str, str], value_columns: dict[str, str]
) -> EncodedTable:
    """An in-memory :class:`EncodedTable` of Arrow rows of the encoding query (sorted by :data:`ROW`).

    The driver builds its local copy with it, and the executors the rows they search (the audits).
    """
    order = np.argsort(arrow.column(ROW).to_numpy(), kind="stable")
    codes, values, status = {}, {}, {}
    for column in schema:
        folded = arrow.column(code_columns[column.name]).to_numpy()[order].astype(np.int64)
        code, state = sql.split_status(folded, column.domain_size)
        codes[column.name] = code.astype(code_dtype(column.domain_size))
        if state.any():
            status[column.name] = state.astype(np.int8)
        if column.name in value_columns:
            x = arrow.column(value_columns[column.name]).to_numpy(zero_copy_only=False)
            values[column.name] = np.asarray(x, dtype=np.float64)[order]
    return EncodedTable(schema=schema, codes=codes, values=values, status=status, engine="spark")


def _report(schema: Schema, changed: dict[str, tuple[int, int]], ignored: list[str]) -> DomainReport:
    """The :class:`DomainReport` of per-column ``(status 1, status 2)`` row counts (see :func:`_scan`)."""
    report = DomainReport(ignored_columns=list(ignored))
    for column in schema:
        low, high = changed[column.name]
        if column.kind == "numeric":
            if low:
                report.clipped_low[column.name] = low
            if high:
                report.clipped_high[column.name] = high
        elif high:
            report.mapped_to_other[column.name] = high
    return report


class SparkTable(EncodedTable):
    """An :class:`EncodedTable` whose codes live on the Spark cluster.

    ``counts_many`` counts every marginal asked for in one job there
    (:func:`~dpsynth.engines.spark_counts.count_sets`) and returns the count
    arrays; :meth:`split` selects rows by the driver's coins with a
    join on the row index, on the cluster. The audits question a side where
    it lives (:class:`dpsynth.engines.spark_audit.SparkRows`). :meth:`local`
    (and so :attr:`codes`, :attr:`values`, :meth:`take` and :meth:`frame`)
    brings the rows' codes and numeric values to the driver: only the DP-SGD
    generators and the thorough audit tier's refits need that (docs/spark.md).
    """

    def __init__(
        self,
        schema: Schema,
        encoded: Any,
        code_columns: dict[str, str],
        value_columns: dict[str, str],
        n_rows: int,
        report: DomainReport,
        source: str,
    ) -> None:
        self.schema, self.report, self.source, self.engine = schema, report, source, "spark"
        # the rows' DataFrame, or (a side) a function that makes it when a job first needs it
        self._frame, self._make_frame = (None, encoded) if callable(encoded) else (encoded, None)
        self._n_rows = n_rows
        self._code_columns, self._value_columns = code_columns, value_columns
        self._local: EncodedTable | None = None
        self._row_numbers: np.ndarray | None = None  # None: rows 0 .. n - 1 (a table as read, not a side)
        self._parent: SparkTable | None = None  # the table a side was split from
        self._split_sides: list[SparkTable] = []  # the sides split from this table
        self._counted: dict[tuple[str, ...], np.ndarray] = {}  # counts of attribute sets (schema order)

    def __repr__(self) -> str:
        return f"SparkTable({self.source!r}, {self._n_rows} rows)"

    @property
    def _encoded(self) -> Any:
        """The rows' Spark DataFrame of the encoding query (a side's join is planned on first use)."""
        if self._frame is None:
            self._frame = self._make_frame()
        return self._frame

    @property
    def session(self) -> Any:
        """The Spark session the rows live in."""
        return self._parent.session if self._parent is not None else self._encoded.sparkSession

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __len__(self) -> int:
        return self._n_rows

    # -- counts on the cluster -----------------------------------------------------------
    def counts_many(self, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Counted where the rows are: from the driver's copy if :meth:`local` made one, else on the cluster.

        In local mode the audits read the sides on the driver (:func:`dpsynth.engines.audit_tables`),
        so their rows are already there when the synthesizer counts; the numbers are the same
        integers either way (tests/test_spark_engine.py).
        """
        if self._local is not None:
            return self._local.counts_many(cliques)
        return counts_by_sets(self, cliques, self._count_sets, max(1, len(cliques)))

    def _count_sets(self, sets: list[tuple[str, ...]]) -> dict[tuple[str, ...], np.ndarray]:
        """Each set's counts, from one job for those not counted before (a synthesizer asks some twice)."""
        new = [s for s in sets if s not in self._counted]
        if new:
            self._counted.update(count_sets(self.cached_rows(), new, self._code_columns, self.domain))
        return {s: self._counted[s] for s in sets}

    # -- rows ----------------------------------------------------------------------------
    def split(self, in_holdout: np.ndarray) -> tuple[EncodedTable, EncodedTable]:
        """``(train, holdout)`` selected on the cluster: the holdout's row numbers are sent, joined on the row.

        A side is a join until it is first counted or searched on the cluster, then cached there
        (:meth:`cached_rows`), so its jobs (the synthesizer's counts, the audits' searches) do not
        repeat the join; in local mode, where both happen on the driver, it is never cached
        (registering the cache alone cost 1.6 s at 1M rows).
        """
        in_holdout = np.asarray(in_holdout, dtype=bool)
        if in_holdout.shape != (len(self),):
            raise UsageError(f"{self.source}: the split needs one coin per row ({len(self)}), got {in_holdout.shape}")
        import pyarrow as pa
        from pyspark.sql import functions as F

        holdout_rows = self.row_numbers()[in_holdout]  # a side's own row numbers, not its positions

        @functools.cache
        def ids() -> Any:  # sent only if a job needs a side on the cluster (in local mode none may)
            frame = self.session.createDataFrame(pa.table({ROW: pa.array(holdout_rows)}))
            return F.broadcast(frame)  # a fifth of the row numbers: small next to the rows

        n_holdout = int(in_holdout.sum())
        changed_columns = [
            *self.report.clipped_low,
            *self.report.clipped_high,
            *self.report.mapped_to_other,
        ]
        sides = []
        for part_number, (part, n) in enumerate(
            (
                (lambda: self._encoded.join(ids(), on=ROW, how="left_anti"), len(self) - n_holdout),
                (lambda: self._encoded.join(ids(), on=ROW, how="left_semi"), n_holdout),
            )
        ):
            changed = {c.name: (0, 0) for c in self.schema}
            side = SparkTable(
                self.schema, part, self._code_columns, self._value_columns, n, DomainReport(), self.source
            )
            side._parent = self
            if changed_columns:  # each side's own domain report, as prepare() of that side gives
                wanted = list(dict.fromkeys(changed_columns))
                _, _, changed = _scan(side._encoded, self.schema, self._code_columns, wanted)
            side.report = _report(self.schema, changed, self.report.ignored_columns)
            side._row_numbers = self.row_numbers()[in_holdout == (part_number == 1)]
            sides.append(side)
        self._split_sides = sides
        return sides[0], sides[1]

    def take(self, rows: np.ndarray) -> EncodedTable:
        """The selected rows, on the driver (:meth:`local`)."""
        return self.local().take(rows)

    def row_numbers(self) -> np.ndarray:
        """The :data:`ROW` number of each row, in row order (position ``i`` is the ``i``-th smallest)."""
        return np.arange(self._n_rows, dtype=np.int64) if self._row_numbers is None else self._row_numbers

    def local(self) -> EncodedTable:
        """The codes and numeric values brought to the driver, in row order, as an in-memory table."""
        if self._local is None and self._parent is not None:
            # a side: the parent's rows cross once (one job, no join) and both sides are taken from them
            positions = np.searchsorted(self._parent.row_numbers(), self._row_numbers)  # the rows' places in the parent
            self._local = self._parent.local().take(positions)
            self._local.report = self.report
            if all(side._local is not None for side in self._parent._split_sides):
                self._parent._local = None  # both sides are on the driver: the whole copy is not needed
        if self._local is None:
            names = [ROW, *self._code_columns.values(), *self._value_columns.values()]
            arrow = self._encoded.select(*names).toArrow()
            self._local = arrow_table(arrow, self.schema, self._code_columns, self._value_columns)
            self._local.report, self._local.source, self._local.engine = self.report, self.source, self.engine
        return self._local

    @property
    def codes(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return self.local().codes

    @property
    def values(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return self.local().values

    @property
    def status(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return self.local().status

    def frame(self, conformed: bool = False):
        return self.local().frame(conformed)

    def cached_rows(self) -> Any:
        """The rows' Spark DataFrame, cached on the cluster from now on (for the jobs that question them)."""
        if not self._encoded.is_cached:  # the rows as read are cached by the read; a side from its first job on
            self._frame = self._encoded.persist()
        return self._encoded

    def unpersist(self) -> None:
        """Free the cluster's cached codes (the table can still be recomputed from its source)."""
        if self._frame is not None:  # a side never questioned on the cluster has nothing cached
            self._frame.unpersist()


__all__ = ["ROW", "SparkEngine", "SparkTable", "arrow_table"]
