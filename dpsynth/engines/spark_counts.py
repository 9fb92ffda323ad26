"""Marginal counts of a Spark table, counted on the executors where its codes are cached.

One Spark job answers every attribute set of a call: each partition of the
encoded rows takes its code columns as Arrow arrays and counts each set with
``np.bincount`` over the cells' flat index (the in-memory engine's own count,
:meth:`dpsynth.engines.table.EncodedTable.counts`), then returns only the
non-zero cells as ``(set, cell, count)`` rows; the driver adds the partitions'
cells into each set's dense array. The counts are exact integers, identical to
a ``GROUP BY``. What crosses to the driver is one number per non-zero cell of
each marginal per partition: the exact counts the synthesizer then adds noise
to (docs/spark.md), never a row.

A ``GROUP BY GROUPING SETS`` query computes the same counts, but Spark expands
every row once per set before aggregating (91 two-way sets of Adult: 91 rows
per row), where numpy reads each code column once per set it is in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from dpsynth.engines.spark_session import map_in_arrow
from dpsynth.errors import UsageError

_SET, _CELL, _N = "_dpsynth_set", "_dpsynth_cell", "_dpsynth_n"
_MAX_CELLS = 2**62  # a flat cell index is an int64
_CELLS_PER_JOB = 2**23  # a job's sets hold at most this many cells (one set may hold more): bounded answers


def _shapes(sets: Sequence[tuple[str, ...]], domain: dict[str, int]) -> list[tuple[int, ...]]:
    shapes = [tuple(domain[a] for a in s) for s in sets]
    for s, shape in zip(sets, shapes):
        if math.prod(shape) >= _MAX_CELLS:
            raise UsageError(f"counts over {list(s)}: {math.prod(shape)} cells do not fit one count array")
    return shapes


def partition_counter(
    sets: Sequence[tuple[str, ...]],
    shapes: Sequence[tuple[int, ...]],
    code_columns: dict[str, str],
    domain: dict[str, int],
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The function each partition runs (``mapInArrow``): its non-zero cells of every set.

    ``code_columns`` names each attribute's folded code column (code plus
    ``domain_size`` times the row's conforming status, :func:`dpsynth.engines.sql.split_status`),
    so the code is the folded code modulo the domain size; ``shapes`` are the sets' (:func:`_shapes`).
    """
    needed = list(dict.fromkeys(a for s in sets for a in s))

    def count(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        collected = list(batches)  # the partition at once: one bincount per set, not one per batch
        if not collected or not sum(b.num_rows for b in collected):
            return
        arrow = pa.Table.from_batches(collected)
        codes = {a: np.mod(arrow.column(code_columns[a]).to_numpy().astype(np.int64), domain[a]) for a in needed}
        for number, (s, shape) in enumerate(zip(sets, shapes)):
            flat = np.ravel_multi_index(tuple(codes[a] for a in s), shape)
            counts = np.bincount(flat, minlength=math.prod(shape))
            cells = np.flatnonzero(counts)
            yield pa.RecordBatch.from_pydict(
                {
                    _SET: pa.array(np.full(len(cells), number, dtype=np.int32)),
                    _CELL: pa.array(cells.astype(np.int64)),
                    _N: pa.array(counts[cells].astype(np.int64)),
                }
            )

    return count


def count_sets(
    rows: Any, sets: Sequence[tuple[str, ...]], code_columns: dict[str, str], domain: dict[str, int]
) -> dict[tuple[str, ...], np.ndarray]:
    """Exact int64 counts of every attribute set over the Spark DataFrame ``rows``.

    The sets are counted in as few jobs as keep each job's dense arrays under
    ``_CELLS_PER_JOB`` cells (MST's 105 one- and two-way marginals of Adult: one job).
    """
    sets = [tuple(s) for s in sets]
    shapes = _shapes(sets, domain)
    found: dict[tuple[str, ...], np.ndarray] = {}
    start = 0
    while start < len(sets):
        end, cells = start + 1, math.prod(shapes[start])
        while end < len(sets) and cells + math.prod(shapes[end]) <= _CELLS_PER_JOB:
            cells += math.prod(shapes[end])
            end += 1
        found.update(_count_job(rows, sets[start:end], shapes[start:end], code_columns, domain))
        start = end
    return found


def _count_job(
    rows: Any,
    sets: list[tuple[str, ...]],
    shapes: list[tuple[int, ...]],
    code_columns: dict[str, str],
    domain: dict[str, int],
) -> dict[tuple[str, ...], np.ndarray]:
    """The counts of ``sets`` (shapes ``shapes``) by one ``mapInArrow`` job."""
    needed = list(dict.fromkeys(code_columns[a] for s in sets for a in s))
    counter = partition_counter(sets, shapes, code_columns, domain)
    arrow = map_in_arrow(rows.select(*needed), counter, f"{_SET} int, {_CELL} long, {_N} long").toArrow()
    number, cell, n = (arrow.column(c).to_numpy() for c in (_SET, _CELL, _N))
    found = {}
    for i, (s, shape) in enumerate(zip(sets, shapes)):
        mine = number == i
        flat = np.zeros(math.prod(shape), dtype=np.int64)
        np.add.at(flat, cell[mine], n[mine])  # the partitions' cells of this set, summed
        found[s] = flat.reshape(shape)
    return found


__all__ = ["count_sets", "partition_counter"]
