"""The audits' questions answered on the Spark cluster, so the real rows stay there.

:class:`SparkRows` is the :class:`audits.sources.RealRows` of a
:class:`~dpsynth.engines.spark_engine.SparkTable` (the training or the
holdout side of a split). What it computes where:

- **nearest distances** (DCR share, NNDR, DOMIAS' reference): the query rows
  (at most the policy's ``max_queries`` / ``max_targets``, already on the
  driver) are shipped to the executors with the encoder; each partition
  encodes its own rows, searches them exactly (:meth:`MixedEncoder.knn`) and
  returns per query its ``k`` nearest distances and its ties at the nearest;
  the driver merges the partitions' answers (:func:`audits.sources.merge_nearest`),
  which is exact: the union's ``k`` nearest are among the parts' own.
- **exact copies**: each partition hashes its rows (:meth:`MixedEncoder.row_keys`)
  and returns which of the synthetic rows' keys it holds; the holdout rows
  that copy a training row are counted by a join of the two tables' keys on
  the cluster. No key of a real row reaches the driver.
- **the encoder's vocabulary**: categorical columns hold the schema's
  categories (the engine mapped everything else to ``other``), so nothing is
  read; the numeric columns with a missing value are one aggregation.
- **chosen rows** (membership, linkage and inference targets, singling-out
  samples): the rows the audit's seed drew, fetched by their row number
  (a broadcast join), in the order asked for.

Every answer is identical to :class:`audits.sources.FrameRows` on the same
rows (tests/test_spark_audit.py), so the audit's report does not depend on
the engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from audits.embedding import Encoded, MixedEncoder
from audits.sources import Matcher, RealRows, contained, merge_nearest
from dpsynth.engines.spark_engine import ROW, SparkTable, arrow_table
from dpsynth.engines.spark_session import map_in_arrow
from dpsynth.engines.table import EncodedTable
from dpsynth.schema import Schema

_QUERY, _PART = "_dpsynth_query", "_dpsynth_part"


class SparkRows:
    """:class:`audits.sources.RealRows` of a Spark table: searched and hashed on the executors."""

    def __init__(self, table: SparkTable) -> None:
        self._table = table
        table.cached_rows()  # every question is a job over the rows: the side's join runs once
        self._rows = table.row_numbers()
        self._names = [ROW, *table._code_columns.values(), *table._value_columns.values()]
        self._key_frames: list[tuple[MixedEncoder, Any]] = []  # (encoder, its keys cached on the cluster)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"SparkRows({self._table!r})"

    @property
    def _spark(self) -> Any:
        return self._table._encoded.sparkSession

    def _frame_of(self, arrow: Any) -> pd.DataFrame:
        return _frame(arrow, self._table.schema, self._table._code_columns, self._table._value_columns)

    def columns(self) -> list[str]:
        return list(self._table.schema.names)

    def _empty(self) -> pd.DataFrame:
        """A frame of no rows with the table's columns and dtypes (categories from the schema)."""
        t = self._table
        codes = {c.name: np.zeros(0, dtype=np.int64) for c in t.schema}
        values = {name: np.zeros(0) for name in t._value_columns}
        return EncodedTable(schema=t.schema, codes=codes, values=values).frame()

    def seen_labels(self, columns: list[str]) -> dict[str, set[str]]:
        # the engine mapped every unknown label to the schema's `other`: the categories are the schema's
        return MixedEncoder.labels_of(self._empty(), columns)

    def missing_numeric(self, columns: list[str]) -> set[str]:
        wanted = [c for c in columns if c in self._table._value_columns]
        if not wanted:
            return set()
        q = _ident
        parts = [f"count_if(isnull({q(self._table._value_columns[c])}))" for c in wanted]
        row = self._table._encoded.selectExpr(*parts).collect()[0]
        return {c for c, n in zip(wanted, row) if n}

    def rows(self, idx: np.ndarray) -> pd.DataFrame:
        idx = np.asarray(idx, dtype=np.int64)
        if not len(idx):
            return self._empty()
        wanted = np.unique(self._rows[idx])  # sorted row numbers: the fetched table's order
        frame = self._frame_of(self._rows_within(idx).toArrow())
        if len(frame) != len(wanted):
            raise RuntimeError(f"{self!r}: asked for {len(wanted)} rows, the cluster returned {len(frame)}")
        return frame.iloc[np.searchsorted(wanted, self._rows[idx])].reset_index(drop=True)

    def encoded(self, encoder: MixedEncoder, idx: np.ndarray) -> Encoded:
        return encoder.transform(self.rows(idx))

    def _rows_within(self, within: np.ndarray | None) -> Any:
        """The encoded rows, or only those at positions ``within`` (a broadcast join on the row number)."""
        rows = self._table._encoded.select(*self._names)
        if within is None:
            return rows
        import pyarrow as pa
        from pyspark.sql import functions as F

        wanted = np.unique(self._rows[np.asarray(within, dtype=np.int64)])
        ids = self._spark.createDataFrame(pa.table({ROW: pa.array(wanted)}))
        return rows.join(F.broadcast(ids), on=ROW, how="left_semi")

    def nearest(
        self, encoder: MixedEncoder, queries: Encoded, k: int, within: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        t = self._table
        if within is not None and len(np.unique(within)) != len(within):
            raise ValueError("within must name distinct rows")
        n_rows = len(self) if within is None else len(within)
        if k < 1 or k > n_rows:
            raise ValueError(f"k must be in [1, {n_rows}] (the reference size), got {k}")
        search = _partition_search(t.schema, t._code_columns, t._value_columns, encoder, queries, k)
        schema = f"{_PART} long, {_QUERY} long, distances array<double>, ties long"
        arrow = map_in_arrow(self._rows_within(within), search, schema).toArrow()
        part, query = arrow.column(_PART).to_numpy(), arrow.column(_QUERY).to_numpy()
        dist = arrow.column("distances").combine_chunks().flatten().to_numpy().reshape(len(query), k)
        ties = arrow.column("ties").to_numpy().astype(np.int64)
        n = len(queries)
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for p in np.unique(part):  # each partition answers every query once
            mine = np.flatnonzero(part == p)
            order = mine[np.argsort(query[mine], kind="stable")]
            if not np.array_equal(query[order], np.arange(n)):
                raise RuntimeError(f"partition {p} of the search did not answer each query once")
            parts.append((dist[order], ties[order]))
        return merge_nearest(parts, k)

    def _keys(self, encoder: MixedEncoder) -> Any:
        """A Spark DataFrame of every row's key, computed (and cached) on the executors."""
        for known, frame in self._key_frames:
            if known is encoder:
                return frame
        t = self._table
        hashing = _partition_keys(t.schema, t._code_columns, t._value_columns, encoder)
        frame = map_in_arrow(self._rows_within(None), hashing, "key long").persist()
        self._key_frames.append((encoder, frame))
        return frame

    def contains(self, encoder: MixedEncoder, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys)
        asked = np.unique(keys.view(np.int64))  # sorted; shipped with the lookup, the cached keys stay put

        def lookup(batches: Any) -> Any:
            import pyarrow as pa

            for batch in batches:
                mine = batch.column(0).to_numpy()
                found = np.unique(mine[contained(mine, asked)])  # binary search: the batch's cost, not the asked keys'
                yield pa.RecordBatch.from_pydict({"key": pa.array(found)})

        found = map_in_arrow(self._keys(encoder), lookup, "key long").toArrow()
        present = np.unique(found.column("key").to_numpy()).view(keys.dtype)
        return np.isin(keys, present)

    def rows_found_in(self, encoder: MixedEncoder, other: RealRows) -> int:
        if not isinstance(other, SparkRows):
            raise TypeError("a Spark table's rows can be looked up only in another Spark table")
        mine, theirs = self._keys(encoder), other._keys(encoder).distinct()
        return int(mine.join(theirs, on="key", how="left_semi").count())

    def matching(self, idx: np.ndarray, match: Matcher) -> list[np.ndarray]:
        wanted = self._rows[np.asarray(idx, dtype=np.int64)]
        t = self._table
        apply = _partition_matches(t.schema, t._code_columns, t._value_columns, match)
        arrow = map_in_arrow(self._rows_within(idx), apply, f"item long, {ROW} long").toArrow()
        item, row = arrow.column("item").to_numpy(), arrow.column(ROW).to_numpy()
        order = np.argsort(wanted, kind="stable")
        place = order[np.searchsorted(wanted[order], row)]  # each matching row's place in idx
        by_item = np.argsort(item, kind="stable")
        n_items = len(match(self._empty()))  # how many items the answer lists
        bounds = np.searchsorted(item[by_item], np.arange(n_items + 1))
        return [np.sort(place[by_item[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])]

    def frame_for_report(self) -> pd.DataFrame:
        """Every column's marginal, as a column of its values in sorted order: no row crosses.

        The report's figures of the real table are per column (a histogram or
        bar chart each, :func:`dpsynth.report.figures.build_figures`), so a
        frame whose columns hold each column's values, sorted and independently
        of the others, draws the same figures as the rows would. A categorical
        column comes from its one-way count (a ``GROUP BY`` on its codes), a
        numeric column from the count of each distinct value as read.
        """
        t = self._table
        codes, values = {}, {}
        for column in t.schema:
            counts = t.counts([column.name])
            codes[column.name] = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
            if column.name in t._value_columns:
                name = t._value_columns[column.name]
                arrow = t._encoded.groupBy(name).count().toArrow()
                found = np.asarray(arrow.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
                order = np.argsort(found, kind="stable")  # NaN (null) last
                values[column.name] = np.repeat(found[order], arrow.column("count").to_numpy()[order])
        return EncodedTable(schema=t.schema, codes=codes, values=values, source=t.source).frame()

    def unpersist(self) -> None:
        """Free the cached keys on the cluster."""
        for _, frame in self._key_frames:
            frame.unpersist()
        self._key_frames.clear()


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _frame(arrow: Any, schema: Schema, code_columns: dict[str, str], value_columns: dict[str, str]) -> pd.DataFrame:
    """The audit frame of Arrow rows of the encoding query, in row-number order."""
    return arrow_table(arrow, schema, code_columns, value_columns).frame()


def _batches_table(batches: Any) -> Any:
    import pyarrow as pa

    collected = list(batches)
    return pa.Table.from_batches(collected) if collected else None


def _partition_search(
    schema: Schema,
    code_columns: dict[str, str],
    value_columns: dict[str, str],
    encoder: MixedEncoder,
    queries: Encoded,
    k: int,
) -> Any:
    """The function each partition runs: its rows' ``k`` nearest distances and nearest ties per query."""

    def search(batches: Any) -> Any:
        import pyarrow as pa
        from pyspark import TaskContext

        arrow = _batches_table(batches)
        if arrow is None or arrow.num_rows == 0:
            return
        ref = encoder.transform(_frame(arrow, schema, code_columns, value_columns))
        found, _, ties = encoder.knn(queries, ref, k=min(k, len(ref)), ties=True)
        dist = np.full((len(queries), k), np.inf)  # a partition of fewer than k rows: the rest are never nearest
        dist[:, : found.shape[1]] = found
        n = len(queries)
        yield pa.RecordBatch.from_pydict(
            {
                _PART: pa.array(np.full(n, TaskContext.get().partitionId(), dtype=np.int64)),
                _QUERY: pa.array(np.arange(n, dtype=np.int64)),
                "distances": pa.ListArray.from_arrays(
                    pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), pa.array(dist.ravel())
                ),
                "ties": pa.array(ties.astype(np.int64)),
            }
        )

    return search


def _partition_matches(
    schema: Schema, code_columns: dict[str, str], value_columns: dict[str, str], match: Matcher
) -> Any:
    """The function each partition runs: ``(item, row number)`` for every row of it each item matches."""

    def apply(batches: Any) -> Any:
        import pyarrow as pa

        arrow = _batches_table(batches)
        if arrow is None or arrow.num_rows == 0:
            return
        rows = np.sort(arrow.column(ROW).to_numpy())  # the frame's row order (arrow_table sorts by ROW)
        found = match(_frame(arrow, schema, code_columns, value_columns))
        items = np.concatenate([np.full(len(f), i, dtype=np.int64) for i, f in enumerate(found)] or [np.zeros(0)])
        places = np.concatenate([np.asarray(f, dtype=np.int64) for f in found] or [np.zeros(0, dtype=np.int64)])
        yield pa.RecordBatch.from_pydict({"item": pa.array(items.astype(np.int64)), ROW: pa.array(rows[places])})

    return apply


def _partition_keys(
    schema: Schema, code_columns: dict[str, str], value_columns: dict[str, str], encoder: MixedEncoder
) -> Any:
    """The function each partition runs: the row key of each of its rows."""

    def hashing(batches: Any) -> Any:
        import pyarrow as pa

        arrow = _batches_table(batches)  # the partition at once: hashing is per row, its overhead per call
        if arrow is None or arrow.num_rows == 0:
            return
        frame = _frame(arrow, schema, code_columns, value_columns)
        keys = encoder.row_keys(frame, encoder.transform(frame))
        yield pa.RecordBatch.from_pydict({"key": pa.array(keys.view(np.int64))})

    return hashing


__all__ = ["SparkRows"]
