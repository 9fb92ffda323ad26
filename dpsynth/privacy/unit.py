"""The unit of privacy: one record, or one person with up to K records.

dpsynth's default neighbouring relation is *add or remove one record*. Real
regulated tables often hold several rows per person (claims, visits, panel
waves); there a record-level guarantee protects a person with m rows only at
about m x epsilon (group privacy). A :class:`PrivacyUnit` names the person
identifier column and a public bound ``max_rows`` (K): before any count is
taken each person keeps at most K of their rows, chosen by a
data-independent random rule (:func:`bound_contributions`), so adding or
removing one person changes any marginal's count vector by at most K in L1
and in L2. Every mechanism is then calibrated to sensitivity K (MST, AIM),
and the guarantee reads *add or remove one person with up to K rows*.

The identifier column is never modelled and never released: engines read it
as dense integer codes (the rank of its text in sorted order,
:func:`unit_codes`), and only those codes travel with the encoded table
(:attr:`dpsynth.engines.EncodedTable.units`), used by the trim and by the
person-level holdout split (:func:`person_coins`). How many people were
trimmed is a statistic of the private data without noise: it is kept in
memory for the operator's logs only, never in a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dpsynth.errors import DataError, UsageError

ROW_RELATION = "add or remove one record"


@dataclass(frozen=True)
class PrivacyUnit:
    """What one neighbouring step adds or removes: a record (``column=None``), or a person with <= ``max_rows`` rows.

    ``column`` is the person identifier's name in the source table (never a
    schema column); ``max_rows`` is the public contribution bound K, the L2
    (and L1) sensitivity of every counting query after the trim.
    """

    column: str | None = None
    max_rows: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.max_rows, bool) or not isinstance(self.max_rows, (int, np.integer)) or self.max_rows < 1:
            raise UsageError(
                f"--max-rows-per-unit must be a whole number >= 1, got {self.max_rows!r}", parameter="max_rows_per_unit"
            )
        if self.column is None and self.max_rows != 1:
            raise UsageError(
                f"--max-rows-per-unit {self.max_rows} needs --privacy-unit COLUMN: the bound is on the rows of "
                "one person, and without an identifier column every row is its own unit",
                parameter="max_rows_per_unit",
            )
        if self.column is not None and (not isinstance(self.column, str) or not self.column.strip()):
            raise UsageError(f"--privacy-unit must name a column, got {self.column!r}", parameter="privacy_unit")
        object.__setattr__(self, "max_rows", int(self.max_rows))

    @property
    def is_person(self) -> bool:
        return self.column is not None

    @property
    def neighbouring_relation(self) -> str:
        """The neighbouring relation every guarantee of this unit is stated under."""
        if not self.is_person:
            return ROW_RELATION
        rows = "row" if self.max_rows == 1 else "rows"
        return f"add or remove one person with up to {self.max_rows} {rows}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the ledger, the manifest and privacy.json (a column name and K, never a value)."""
        return {
            "unit": "person" if self.is_person else "record",
            "column": self.column,
            "max_rows": self.max_rows,
            "neighbouring": self.neighbouring_relation,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> PrivacyUnit:
        """Inverse of :meth:`to_dict`; ``None`` (a spend recorded before units existed) is the record unit."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise UsageError(f"a stored privacy unit must be an object, got {raw!r:.80}")
        return cls(raw.get("column"), int(raw.get("max_rows", 1)))


RECORD = PrivacyUnit()


def resolve_unit(
    column: str | None, max_rows: int | None, schema_column: str | None, schema_max: int | None
) -> PrivacyUnit:
    """The release's unit from ``--privacy-unit`` / ``--max-rows-per-unit`` and the schema's ``privacy_unit``.

    The options override nothing silently: naming another identifier than the
    schema's is refused. A bound without an identifier, a bound below one, and
    an identifier without a bound are refused with the option's name (K is a
    public choice the data owner makes, never read from the data).
    """
    if column is not None and schema_column is not None and column != schema_column:
        raise UsageError(
            f"--privacy-unit {column!r} differs from the schema's privacy_unit {schema_column!r}: name one identifier",
            parameter="privacy_unit",
        )
    column = column if column is not None else schema_column
    k = max_rows if max_rows is not None else schema_max
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise UsageError(f"--max-rows-per-unit must be a whole number >= 1, got {k!r}", parameter="max_rows_per_unit")
    if column is not None and k is None:
        raise UsageError(
            f"--privacy-unit {column!r} needs --max-rows-per-unit K: the public bound on one person's rows "
            "(rows beyond K are dropped at random before fitting; noise is calibrated to K)",
            parameter="max_rows_per_unit",
        )
    return PrivacyUnit(column, 1 if k is None else int(k))


def unit_codes(values: Any, column: str, source: str = "table") -> np.ndarray:
    """Dense int64 codes of an identifier column: each row's rank among the distinct identifiers, sorted as text.

    Sorting the distinct identifiers is a data-independent order of persons
    (it does not depend on row order or on anything modelled), which the
    person-level split relies on. Surrounding whitespace is stripped, so every
    engine gives the same codes. Raises ``DataError`` for a null or blank
    identifier, without printing any identifier value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(values, dtype=object))
    array = pc.utf8_trim_whitespace(
        pc.cast(array, pa.string())
    )  # as every engine reads text: surrounding space is no part
    blank = pc.or_kleene(pc.is_null(array), pc.equal(array, ""))
    n_blank = int(pc.sum(pc.cast(pc.fill_null(blank, True), pa.int64())).as_py() or 0)
    if n_blank:
        raise DataError(
            f"{source}: the privacy unit column {column!r} is null or blank in {n_blank} row(s); every row "
            "must name its person"
        )
    distinct = pc.unique(array)
    distinct = distinct.take(pc.sort_indices(distinct))
    codes = pc.index_in(array, value_set=distinct)
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    return codes.to_numpy(zero_copy_only=False).astype(np.int64)


def bound_contributions(units: np.ndarray, max_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Rows to keep so that no person has more than ``max_rows``; and how many persons lost rows (internal).

    Each row gets an independent uniform key from ``rng`` (a stream of its
    own, :func:`dpsynth.randomness.unit_stream`, never the noise); within a
    person, the rows with the ``max_rows`` smallest keys are kept: a uniformly
    random subset, chosen without looking at any value, so the rule is
    data-independent and adding or removing one person moves no other
    person's kept rows in distribution. Row order among the kept rows is
    preserved.
    """
    units = np.asarray(units, dtype=np.int64)
    keys = rng.random(len(units))
    order = np.lexsort((keys, units))  # by person, then by key
    sorted_units = units[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_units)) + 1] if len(units) else np.empty(0, dtype=np.int64)
    rank = np.arange(len(units)) - np.repeat(starts, np.diff(np.r_[starts, len(units)]))
    keep = np.zeros(len(units), dtype=bool)
    keep[order[rank < max_rows]] = True
    per_person = np.bincount(units) if len(units) else np.empty(0, dtype=np.int64)
    return keep, int((per_person > max_rows).sum())


def person_coins(units: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """One holdout coin per *person*, mapped to their rows: a person is wholly in the training rows or the holdout.

    ``units`` are dense codes in sorted-identifier order (:func:`unit_codes`),
    so coin ``i`` (from :func:`dpsynth.holdout.holdout_coins`, the row-level
    split's draw) belongs to the i-th person in that data-independent order.
    Adding or removing one person adds or removes only their rows from one
    side, and the other persons' coins stay independent fair draws.
    """
    from dpsynth.holdout import holdout_coins

    units = np.asarray(units, dtype=np.int64)
    n_persons = int(units.max()) + 1 if len(units) else 0
    return holdout_coins(n_persons, fraction, rng)[units]


def parse_schema_unit(raw: Any) -> tuple[str | None, int | None]:
    """``privacy_unit``: ``{"column": NAME, "max_rows": K}`` (K optional), or absent for record-level privacy."""
    from dpsynth.errors import SchemaError

    if raw is None:
        return None, None
    if not isinstance(raw, dict) or not isinstance(raw.get("column"), str) or not raw["column"].strip():
        raise SchemaError(f'schema: "privacy_unit" must be {{"column": NAME, "max_rows": K}}, got {raw!r:.80}')
    unknown = set(raw) - {"column", "max_rows"}
    if unknown:
        raise SchemaError(f"schema: unknown key(s) {sorted(unknown)} in 'privacy_unit'; allowed: column, max_rows")
    k = raw.get("max_rows")
    if k is not None and (
        isinstance(k, bool) or not isinstance(k, (int, float)) or not float(k).is_integer() or int(k) < 1
    ):
        raise SchemaError(f"schema: privacy_unit 'max_rows' must be a whole number >= 1, got {k!r}")
    return raw["column"], None if k is None else int(k)


__all__ = [
    "RECORD",
    "ROW_RELATION",
    "PrivacyUnit",
    "bound_contributions",
    "parse_schema_unit",
    "person_coins",
    "unit_codes",
]
