"""Reading a table and bringing it into its schema's domain.

Two steps, kept apart because they fail differently:

* :func:`coerce` checks the table *shape* against the schema (empty table,
  missing column, text in a numeric column, null in a non-nullable column)
  and raises :class:`~dpsynth.errors.DataError` naming the column and row.
* :func:`conform` maps in-shape values into the declared *domain*: numbers
  outside the public bounds are clipped, unknown categories go to the
  declared ``other`` category or are refused. Every change is counted in a
  :class:`DomainReport`; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dpsynth.errors import DataError
from dpsynth.schema import Schema, category_label


@dataclass
class DomainReport:
    """Counts of values that were moved into the declared domain, per column.

    These counts are computed on the private table and are not differentially
    private; the report shows them to the data owner as a data-quality signal.
    """

    clipped_low: dict[str, int] = field(default_factory=dict)
    clipped_high: dict[str, int] = field(default_factory=dict)
    mapped_to_other: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def total_changed(self) -> int:
        return sum(self.clipped_low.values()) + sum(self.clipped_high.values()) + sum(self.mapped_to_other.values())

    def to_dict(self) -> dict:
        return {
            "clipped_low": self.clipped_low,
            "clipped_high": self.clipped_high,
            "mapped_to_other": self.mapped_to_other,
            "ignored_columns": self.ignored_columns,
        }


def read_csv(path: str | Path, schema: Schema) -> pd.DataFrame:
    """Read a CSV file and :func:`coerce` it to ``schema``; errors name file, column and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if not path.is_file():
        raise DataError(f"{path} is a directory, not a CSV file: pass the path of the table's CSV file")
    raw = read_raw_csv(path)
    lines = functools.cache(lambda: _record_lines(path))  # read again only if an error needs a line number

    def line_of(row: int) -> int:
        starts = lines()
        return starts[row] if row < len(starts) else row + 2

    return coerce(raw, schema, source=str(path), line_of=line_of)


def read_raw_csv(path: str | Path) -> pd.DataFrame:
    """Every cell of a CSV file as text (no type inference, no null guessing); errors name the file."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: expected a CSV file with a header row and data rows")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: expected a CSV file with a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} could not be parsed as CSV: {exc}") from None


def _record_lines(path: Path) -> list[int]:
    """File line on which each data record starts (pandas skips blank lines; quoted fields may span lines)."""
    starts, start = [], 1
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        try:
            for record in reader:
                if record and not (len(record) == 1 and not record[0].strip()):
                    starts.append(start)
                start = reader.line_num + 1
        except csv.Error:  # e.g. a field over csv's size limit: fall back to counting records
            return []
    return starts[1:]  # the first record is the header


def coerce(
    df: pd.DataFrame,
    schema: Schema,
    source: str = "table",
    row_offset: int = 0,
    line_of: Callable[[int], int] | None = None,
) -> pd.DataFrame:
    """Return the schema's columns of ``df`` with schema types, or raise :class:`DataError`.

    Numeric columns become float64 (NaN for null), categorical columns object
    dtype holding canonical string labels (NaN for null). Errors name a
    positional row (plus ``row_offset``); ``line_of`` maps a positional row to
    the line a user sees in the file instead.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise DataError(f"{source} has no data rows")
    df = df.rename(columns=lambda c: str(c).strip())
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise DataError(f"{source} lacks column(s) {missing} declared in the schema; it has {list(df.columns)}")
    na_values = set(schema.na_values)

    def where(row: int) -> str:
        return f"line {line_of(row)}" if line_of is not None else f"row {row + row_offset}"

    out = {}
    for column in schema:
        series = df[column.name].reset_index(drop=True)
        is_null = series.isna() | series.map(lambda v: isinstance(v, str) and v.strip() in na_values)
        if is_null.any() and not column.nullable:
            row = int(np.flatnonzero(is_null.to_numpy())[0])
            raise DataError(
                f"{source}: column {column.name!r} is not nullable but {where(row)} is null "
                f'({int(is_null.sum())} null value(s) in all); declare "nullable": true or fill them'
            )
        if column.kind == "numeric":
            values = pd.to_numeric(series.where(~is_null), errors="coerce")
            bad = values.isna() & ~is_null
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"{source}: column {column.name!r} is numeric but {where(row)} holds "
                    f"{series.iloc[row]!r} ({int(bad.sum())} non-numeric value(s) in all)"
                )
            out[column.name] = values.astype(float)
        else:
            labels = series.map(lambda v: category_label(v.strip() if isinstance(v, str) else v))
            out[column.name] = labels.where(~is_null, np.nan).astype(object)
    typed = pd.DataFrame(out)
    # columns outside the schema are not synthesized; remember them for the manifest
    typed.attrs["ignored_columns"] = list(
        dict.fromkeys(
            [*df.attrs.get("ignored_columns", []), *(str(c) for c in df.columns if str(c) not in schema.names)]
        )
    )
    return typed


def conform(df: pd.DataFrame, schema: Schema, source: str = "table") -> tuple[pd.DataFrame, DomainReport]:
    """Clip numbers to their public bounds and map unknown categories to ``other``.

    ``df`` must already be :func:`coerce` d. An unknown category in a column
    without a declared ``other`` is refused: it would reveal a value the
    public domain does not contain.
    """
    report = DomainReport()
    out = df.copy()
    for column in schema:
        series = out[column.name]
        if column.kind == "numeric":
            low = series < column.lower
            high = series > column.upper
            if low.any():
                report.clipped_low[column.name] = int(low.sum())
            if high.any():
                report.clipped_high[column.name] = int(high.sum())
            out[column.name] = series.clip(column.lower, column.upper)
        else:
            unknown = series.notna() & ~series.isin(column.categories)
            if unknown.any():
                if column.other is None:
                    examples = sorted(set(series[unknown].astype(str)))[:3]
                    raise DataError(
                        f"{source}: column {column.name!r} has {int(unknown.sum())} value(s) outside its declared "
                        f"categories (e.g. {examples}; first at row {int(np.flatnonzero(unknown.to_numpy())[0])}). "
                        "Add them to 'categories' if they are public, or declare an \"other\" category to absorb them."
                    )
                report.mapped_to_other[column.name] = int(unknown.sum())
                out.loc[unknown, column.name] = column.other
    return out, report


def prepare(df: pd.DataFrame, schema: Schema, source: str = "table") -> tuple[pd.DataFrame, DomainReport]:
    """:func:`coerce` then :func:`conform`; columns outside the schema are listed as ignored."""
    typed = coerce(df, schema, source=source)
    conformed, report = conform(typed, schema, source=source)
    report.ignored_columns = list(typed.attrs.get("ignored_columns", []))
    return conformed, report
