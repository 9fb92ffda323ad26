"""Balanced panels: one wide row per person, synthesized, then back to one row per person and time.

A balanced panel observes every person once at every time of a public set
(the panel-time column's categories, e.g. the years 1980-1987). ``--panel-time
COLUMN`` pivots the encoded long table to one row per person with a column
per (variable, time), ``wage@1980``, ``wage@1981``, ... (:func:`pivot`), so a
generator models trajectories (two-way marginals between one year's wage and
the next), and :meth:`Panel.unpivot` turns each synthetic wide row back into
T rows of a synthetic person. One wide row is one person: the wide table's
record-level guarantee is the panel's person-level guarantee, with K = T
rows a person (:mod:`dpsynth.privacy.unit`), and every audit of the wide
tables targets persons.

The pivot works on the engine's codes (no pandas frame of the long table)
and refuses an unbalanced panel (a person missing a time, or seen twice at
one) with a ``DataError`` that names the column, never a person.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from dpsynth.engines import EncodedTable
from dpsynth.errors import DataError, UsageError
from dpsynth.schema import Column, Schema

SEPARATOR = "@"


@dataclass(frozen=True)
class Panel:
    """How a long schema maps to its wide form: the time column, its public times, the variables."""

    long_schema: Schema
    time: str
    unit_column: str

    @property
    def times(self) -> tuple[str, ...]:
        return tuple(self.long_schema[self.time].categories)

    @property
    def variables(self) -> list[Column]:
        return [c for c in self.long_schema if c.name != self.time]

    def wide_name(self, variable: str, time: str) -> str:
        return f"{variable}{SEPARATOR}{time}"

    @property
    def wide_schema(self) -> Schema:
        """One column per (variable, time), each with the variable's public domain."""
        columns = tuple(replace(c, name=self.wide_name(c.name, t)) for c in self.variables for t in self.times)
        qis = tuple(
            self.wide_name(q, t) for q in self.long_schema.quasi_identifiers if q != self.time for t in self.times
        )
        return Schema(
            columns=columns,
            name=f"{self.long_schema.name} (panel by {self.time})",
            source=self.long_schema.source,
            na_values=self.long_schema.na_values,
            quasi_identifiers=qis,
            description=self.long_schema.description,
        )

    def unpivot(self, wide: pd.DataFrame, with_ids: bool = True) -> pd.DataFrame:
        """T long rows per wide row, in person then time order; ids ``synthetic-1``, ... (never a real one)."""
        n, times = len(wide), self.times
        out: dict[str, object] = {}
        if with_ids:
            out[self.unit_column] = np.repeat([f"synthetic-{i + 1}" for i in range(n)], len(times))
        for column in self.long_schema:
            if column.name == self.time:
                out[column.name] = pd.Categorical(np.tile(times, n), categories=list(times))
                continue
            stacked = np.stack(
                [np.asarray(wide[self.wide_name(column.name, t)], dtype=object) for t in times], axis=1
            ).reshape(-1)
            series = pd.Series(stacked)
            if column.kind == "numeric":
                out[column.name] = pd.to_numeric(series).to_numpy(dtype=float)
            else:
                labels = list(column.categories)
                out[column.name] = pd.Categorical(series.where(series.isin(labels)), categories=labels)
        return pd.DataFrame(out)


def check_panel(schema: Schema, time: str, unit_column: str | None) -> Panel:
    """The :class:`Panel` for ``--panel-time time``, or ``UsageError`` naming the option."""
    if unit_column is None:
        raise UsageError(
            "--panel-time needs --privacy-unit COLUMN: the person each row belongs to", parameter="panel_time"
        )
    if time not in schema.names:
        raise UsageError(
            f"--panel-time {time!r} is not a schema column; columns are {schema.names}", parameter="panel_time"
        )
    column = schema[time]
    if column.kind != "categorical" or column.nullable or column.other is not None:
        raise UsageError(
            f"--panel-time {time!r} must be a categorical, non-nullable column without 'other' whose categories "
            "are the panel's public times (e.g. the survey years)",
            parameter="panel_time",
        )
    if len(schema) < 2:
        raise UsageError("--panel-time needs at least one column besides the time", parameter="panel_time")
    return Panel(schema, time, unit_column)


def pivot(table: EncodedTable, panel: Panel) -> EncodedTable:
    """The wide encoded table: one row per person (in person-code order), one code column per (variable, time).

    ``DataError`` unless every person has exactly one row at every time.
    The wide table carries person codes ``0 .. P-1`` (one row each).
    """
    if table.units is None:
        raise UsageError("--panel-time needs the table's person codes (--privacy-unit)", parameter="panel_time")
    units, times = table.units, table.codes[panel.time].astype(np.int64)
    n_persons, n_times = int(units.max()) + 1, len(panel.times)
    seen = np.zeros((n_persons, n_times), dtype=np.int64)
    np.add.at(seen, (units, times), 1)
    if not (seen == 1).all():
        raise DataError(
            f"{table.source}: --panel-time {panel.time!r} needs a balanced panel, every person once at each of the "
            f"{n_times} times {list(panel.times)}; some persons lack a time or have one twice. Use --privacy-unit "
            "with --max-rows-per-unit instead, or balance the panel first"
        )
    row_of = np.empty((n_persons, n_times), dtype=np.int64)
    row_of[units, times] = np.arange(len(units))
    codes, values, status = {}, {}, {}
    for column in panel.variables:
        for t, label in enumerate(panel.times):
            name, rows = panel.wide_name(column.name, label), row_of[:, t]
            codes[name] = table.codes[column.name][rows]
            if column.name in table.values:
                values[name] = table.values[column.name][rows]
            if column.name in table.status:
                status[name] = table.status[column.name][rows]
    from dpsynth.engines.table import domain_report

    schema = panel.wide_schema
    wide = EncodedTable(
        schema=schema,
        codes=codes,
        values=values,
        report=domain_report(schema, status, table.report.ignored_columns),
        source=f"{table.source} (panel by {panel.time})",
        engine=table.engine,
        status=status,
    )
    return wide.with_units(np.arange(n_persons))


__all__ = ["SEPARATOR", "Panel", "check_panel", "pivot"]
