"""Public table schemas: the domain every DP step is allowed to rely on.

A DP synthesizer may only use data-independent facts about the table: which
columns exist, which categories a column can take, which bounds a number lies
in and how it is binned. Those facts come from a :class:`Schema` that the data
owner declares (``"source": "public"``). A draft inferred from the private
table itself (``dpsynth schema draft``) is marked ``"source": "private-data"``;
fitting with it is refused unless the user explicitly accepts that the domain
leaked, and the manifest and report then say so. A domain learned with DP
(``dpsynth schema draft --epsilon``, :mod:`dpsynth.discovery`) is marked
``"source": "dp"``: its cost is in the ledger, so fitting accepts it.

JSON form::

    {"name": "adult", "source": "public", "na_values": ["N"],
     "quasi_identifiers": ["age", "sex"],
     "columns": [
       {"name": "age", "kind": "numeric", "lower": 17, "upper": 90,
        "bins": 10, "integer": true, "nullable": false},
       {"name": "sex", "kind": "categorical", "categories": ["Female", "Male"]},
       {"name": "country", "kind": "categorical",
        "categories": ["US", "Mexico", "Other"], "other": "Other"}
     ]}
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from audits.spec import category_label  # one canonical rule for both packages
from dpsynth._files import atomic_write_text
from dpsynth.errors import SchemaError
from dpsynth.params import Interval

if TYPE_CHECKING:  # the rules module reads Column, so it is imported lazily here
    from dpsynth.benchmarking.consistency import Rule

PUBLIC = "public"
PRIVATE_DATA = "private-data"
DP = "dp"  # learned from the data by a DP mechanism whose cost is in the ledger (dpsynth.discovery)
SOURCES = (PUBLIC, PRIVATE_DATA, DP)
KINDS = ("categorical", "numeric")
DEFAULT_NA_VALUES = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
_COLUMN_KEYS = {
    "name",
    "kind",
    "categories",
    "other",
    "lower",
    "upper",
    "bins",
    "edges",
    "integer",
    "nullable",
    "description",
    "decimals",
}
MAX_DECIMALS = 12
_SCHEMA_KEYS = set("name source columns na_values quasi_identifiers description target rules privacy_unit".split())


@dataclass(frozen=True)
class Column:
    """One column's public domain.

    ``categorical`` columns list their allowed ``categories``; an optional
    ``other`` (one of the categories) absorbs values outside the list instead
    of refusing them. ``numeric`` columns declare public ``lower``/``upper``
    bounds (values outside are clipped and counted) and either a ``bins`` count
    (equal width) or explicit ``edges``; ``integer`` columns are sampled back
    as whole numbers. ``decimals`` (numeric, optional) is the precision
    synthetic values are written at; by default :meth:`output_decimals` picks
    enough to resolve a thousandth of the narrowest bin. A ``nullable`` column
    gets one extra code for null.
    """

    name: str
    kind: Literal["categorical", "numeric"]
    categories: tuple[str, ...] = ()
    other: str | None = None
    lower: float | None = None
    upper: float | None = None
    bins: int | None = None
    edges: tuple[float, ...] = ()
    integer: bool = False
    nullable: bool = False
    description: str = ""
    decimals: int | None = None

    def __post_init__(self) -> None:
        where = f"column {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError("every column needs a non-empty string 'name'")
        if self.kind not in KINDS:
            raise SchemaError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "categorical":
            if len(self.categories) == 0:
                raise SchemaError(f"{where}: a categorical column needs a non-empty 'categories' list")
            if len(set(self.categories)) != len(self.categories):
                dupes = sorted({c for c in self.categories if self.categories.count(c) > 1})
                raise SchemaError(f"{where}: 'categories' contains duplicates {dupes}")
            if self.other is not None and self.other not in self.categories:
                raise SchemaError(f"{where}: 'other' value {self.other!r} must be one of its categories")
        else:
            for key in ("lower", "upper"):
                value = getattr(self, key)
                if value is None or not math.isfinite(float(value)):
                    raise SchemaError(f"{where}: a numeric column needs a finite public '{key}' bound")
            if not float(self.lower) < float(self.upper):  # type: ignore[arg-type]
                raise SchemaError(f"{where}: 'lower' ({self.lower}) must be below 'upper' ({self.upper})")
            if self.edges:
                edges = np.asarray(self.edges, dtype=float)
                if len(edges) < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
                    raise SchemaError(f"{where}: 'edges' must be at least two strictly increasing numbers")
                if edges[0] != float(self.lower) or edges[-1] != float(self.upper):
                    raise SchemaError(f"{where}: 'edges' must start at 'lower' and end at 'upper'")
            elif self.bins is None or int(self.bins) < 1:
                raise SchemaError(f"{where}: a numeric column needs 'bins' >= 1 or explicit 'edges'")
            if self.integer and len(self.integer_ranges()) != self.n_bins:
                raise SchemaError(f"{where}: some bins contain no whole number; use fewer bins or explicit edges")
            if self.decimals is not None:
                d = self.decimals
                if not isinstance(d, int) or not Interval(int, 0, MAX_DECIMALS).accepts(d):
                    raise SchemaError(f"{where}: 'decimals' must be a whole number from 0 to {MAX_DECIMALS}, got {d!r}")
                if self.integer and d != 0:
                    raise SchemaError(f"{where}: an integer column is written with 'decimals' 0, got {d}")
                lo, hi = math.ceil(float(self.lower) * 10**d), math.floor(float(self.upper) * 10**d)
                if lo > hi:
                    raise SchemaError(
                        f"{where}: no number with {d} decimal(s) lies between 'lower' and 'upper'; raise 'decimals'"
                    )
        if self.kind == "categorical" and self.decimals is not None:
            raise SchemaError(f"{where}: 'decimals' applies to numeric columns only")

    # -- numeric binning ---------------------------------------------------------------
    def bin_edges(self) -> np.ndarray:
        """Edges of the numeric bins: ``[e0, e1, ..., ek]``; bin i is ``[e_i, e_{i+1})``, the last closed."""
        if self.kind != "numeric":
            raise SchemaError(f"column {self.name!r} is categorical and has no bins")
        if self.edges:
            return np.asarray(self.edges, dtype=float)
        lower, upper = float(self.lower), float(self.upper)  # type: ignore[arg-type]
        if self.integer and upper - lower + 1 <= int(self.bins):  # type: ignore[arg-type]
            # one bin per whole number: exact values survive the round trip
            return np.append(np.arange(lower, upper + 1), upper + 1) - 0.5
        return np.linspace(lower, upper, int(self.bins) + 1)  # type: ignore[arg-type]

    def integer_ranges(self) -> list[tuple[int, int]]:
        """Inclusive whole-number range of each bin (integer columns only)."""
        edges = self.bin_edges()
        lo, hi = math.ceil(float(self.lower)), math.floor(float(self.upper))  # type: ignore[arg-type]
        ranges = []
        for i in range(len(edges) - 1):
            start = max(lo, math.ceil(edges[i]))
            last = i == len(edges) - 2
            stop = min(hi, math.floor(edges[i + 1]) if last else math.ceil(edges[i + 1]) - 1)
            if start <= stop:
                ranges.append((start, stop))
        return ranges

    def output_decimals(self) -> int:
        """Decimals synthetic values are written with: ``decimals`` if declared, 0 for integer columns,
        else enough to resolve a thousandth of the narrowest bin (at most ``MAX_DECIMALS``)."""
        if self.kind != "numeric":
            raise SchemaError(f"column {self.name!r} is categorical and has no decimals")
        if self.decimals is not None:
            return int(self.decimals)
        if self.integer:
            return 0
        narrowest = float(np.min(np.diff(self.bin_edges())))
        return int(min(MAX_DECIMALS, max(0, math.ceil(round(-math.log10(narrowest / 1000), 6)))))

    @property
    def n_bins(self) -> int:
        return len(self.bin_edges()) - 1

    @property
    def domain_size(self) -> int:
        """Number of discrete codes the encoder uses for this column (incl. null)."""
        base = len(self.categories) if self.kind == "categorical" else self.n_bins
        return base + int(self.nullable)

    # -- JSON ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any], position: int = 0) -> Column:
        if not isinstance(raw, dict):
            raise SchemaError(f"columns[{position}] must be an object, got {type(raw).__name__}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError(f"columns[{position}]: every column needs a non-empty string 'name', got {name!r}")
        unknown = set(raw) - _COLUMN_KEYS
        if unknown:
            raise SchemaError(f"column {name!r}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_COLUMN_KEYS)}")
        for key in ("categories", "edges"):
            if raw.get(key) is not None and not isinstance(raw[key], list):
                # a bare string would otherwise be split into one category per character
                raise SchemaError(f"column {name!r}: {key!r} must be a list, got {raw[key]!r}")
        bins = raw.get("bins")
        if bins is not None and not _is_whole(bins):
            raise SchemaError(f"column {name!r}: 'bins' must be a whole number, got {bins!r}")
        try:
            return cls(
                name=name,
                kind=raw.get("kind", ""),
                categories=tuple(category_label(c) for c in raw.get("categories") or ()),
                other=None if raw.get("other") is None else category_label(raw["other"]),
                lower=_as_number(raw.get("lower"), name, "lower"),
                upper=_as_number(raw.get("upper"), name, "upper"),
                bins=None if bins is None else int(bins),
                edges=tuple(_as_number(e, name, "edges") for e in raw.get("edges") or ()),
                integer=_as_bool(raw.get("integer", False), name, "integer"),
                nullable=_as_bool(raw.get("nullable", False), name, "nullable"),
                description=str(raw.get("description", "")),
                decimals=_as_decimals(raw.get("decimals"), name),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise SchemaError(f"column {name!r}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == "categorical":
            out["categories"] = list(self.categories)
            if self.other is not None:
                out["other"] = self.other
        else:
            out["lower"] = _plain_number(self.lower)
            out["upper"] = _plain_number(self.upper)
            if self.edges:
                out["edges"] = [_plain_number(e) for e in self.edges]
            else:
                out["bins"] = self.bins
            out["integer"] = self.integer
            if self.decimals is not None:
                out["decimals"] = self.decimals
        out["nullable"] = self.nullable
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True)
class Schema:
    """An ordered set of :class:`Column` s plus where the domain came from."""

    columns: tuple[Column, ...]
    name: str = ""
    source: str = PUBLIC
    na_values: tuple[str, ...] = DEFAULT_NA_VALUES
    quasi_identifiers: tuple[str, ...] = ()
    target: str | None = None
    description: str = ""
    # declared consistency rules (dpsynth.benchmarking.consistency): checked on synthetic tables, never fitted
    rules: tuple[Rule, ...] = ()
    privacy_unit: str | None = None  # person-level privacy (dpsynth.privacy.unit): the identifier, never a column
    max_rows_per_unit: int | None = None
    _index: dict[str, Column] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise SchemaError("a schema needs at least one column")
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"duplicate column name(s) in schema: {dupes}")
        if self.source not in SOURCES:
            raise SchemaError(f"'source' must be one of {', '.join(repr(s) for s in SOURCES)}, got {self.source!r}")
        for qi in self.quasi_identifiers:
            if qi not in names:
                raise SchemaError(f"quasi-identifier {qi!r} is not a column of the schema")
        if self.privacy_unit is not None and self.privacy_unit in names:
            raise SchemaError(f"privacy_unit {self.privacy_unit!r} is a column: an identifier is never modelled")
        if self.target is not None and self.target not in names:
            raise SchemaError(f"target {self.target!r} is not a column of the schema")
        for rule in self.rules:
            if not rule.columns <= set(names):
                raise SchemaError(
                    f"rule {rule.name!r} names column(s) {sorted(rule.columns - set(names))} not in the schema"
                )
        self._index.update({c.name: c for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def is_public(self) -> bool:
        """True when using the domain leaks nothing outside the budget.

        ``public`` domains are public knowledge; ``dp`` domains were learned by
        DP domain discovery, whose cost the ledger records like a release's.
        Only ``private-data`` drafts are not.
        """
        return self.source in (PUBLIC, DP)

    def __getitem__(self, name: str) -> Column:
        try:
            return self._index[name]
        except KeyError:
            raise SchemaError(f"no column {name!r} in schema; columns are {self.names}") from None

    def __iter__(self):
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def require_public(self, accept_private: bool = False) -> None:
        """Refuse a private-derived schema unless the user accepted the leak."""
        if not self.is_public and not accept_private:
            raise SchemaError(
                f'schema {self.name or "(unnamed)"} has "source": "{self.source}": its categories and '
                "bounds were read from the private data, so using it would leak information that no "
                'privacy budget accounts for. Review it and set "source": "public" if every domain is '
                "public knowledge, learn the domain with DP instead (dpsynth schema draft DATA --epsilon E --delta D "
                "--ledger L --dataset ID, which spends budget), or pass --accept-private-schema "
                "(accept_private_schema=True) to proceed "
                "anyway; the manifest and report will then state that the domain leaked."
            )

    # -- JSON ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Schema:
        if not isinstance(raw, dict):
            raise SchemaError("a schema must be a JSON object with a 'columns' list")
        unknown = set(raw) - _SCHEMA_KEYS
        if unknown:
            raise SchemaError(f"schema: unknown key(s) {sorted(unknown)}; allowed: {sorted(_SCHEMA_KEYS)}")
        columns = raw.get("columns")
        if not isinstance(columns, list):
            raise SchemaError("schema: 'columns' must be a list of column objects")
        na_values = raw.get("na_values", list(DEFAULT_NA_VALUES))
        if not isinstance(na_values, list) or not all(isinstance(v, str) for v in na_values):
            raise SchemaError("schema: 'na_values' must be a list of strings")
        qis = raw.get("quasi_identifiers") or []
        if not isinstance(qis, list) or not all(isinstance(v, str) for v in qis):
            raise SchemaError(f"schema: 'quasi_identifiers' must be a list of column names, got {qis!r}")
        if raw.get("target") is not None and not isinstance(raw["target"], str):
            raise SchemaError(f"schema: 'target' must be a column name, got {raw['target']!r}")
        from dpsynth.benchmarking.consistency import parse_rules
        from dpsynth.privacy.unit import parse_schema_unit

        unit, max_rows = parse_schema_unit(raw.get("privacy_unit"))
        parsed = tuple(Column.from_dict(c, i) for i, c in enumerate(columns))
        return cls(
            columns=parsed,
            name=str(raw.get("name", "")),
            source=str(raw.get("source", PUBLIC)),
            na_values=tuple(na_values),
            quasi_identifiers=tuple(qis),
            target=raw.get("target"),
            description=str(raw.get("description", "")),
            rules=parse_rules(raw.get("rules"), {c.name: c for c in parsed}),
            privacy_unit=unit,
            max_rows_per_unit=max_rows,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "source": self.source}
        if self.description:
            out["description"] = self.description
        out["na_values"] = list(self.na_values)
        if self.quasi_identifiers:
            out["quasi_identifiers"] = list(self.quasi_identifiers)
        if self.target is not None:
            out["target"] = self.target
        out["columns"] = [c.to_dict() for c in self.columns]
        if self.rules:
            out["rules"] = [r.to_dict() for r in self.rules]
        if self.privacy_unit is not None:
            out["privacy_unit"] = {"column": self.privacy_unit, "max_rows": self.max_rows_per_unit}
        return out

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SchemaError(f"schema file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SchemaError(f"schema file {path} is not valid JSON: {exc}") from None
        except OSError as exc:
            raise SchemaError(f"schema file {path} cannot be read: {exc.strerror or exc}") from None
        return cls.from_dict(raw)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def subset(self, names: Iterable[str]) -> Schema:
        keep = list(names)
        return Schema(
            columns=tuple(self[n] for n in keep),
            name=self.name,
            source=self.source,
            na_values=self.na_values,
            quasi_identifiers=tuple(q for q in self.quasi_identifiers if q in keep),
            target=self.target if self.target in keep else None,
            description=self.description,
            rules=tuple(r for r in self.rules if r.columns <= set(keep)),
            privacy_unit=self.privacy_unit,
            max_rows_per_unit=self.max_rows_per_unit,
        )


def _as_decimals(value: Any, column: str) -> int | None:
    if value is None:
        return None
    if not _is_whole(value):
        raise SchemaError(f"column {column!r}: 'decimals' must be a whole number, got {value!r}")
    return int(value)


def _is_whole(value: Any) -> bool:
    """A JSON whole number: an int, or a float with no fractional part (``8.0``); never a bool."""
    return isinstance(value, (int, float)) and Interval(float, None, None).accepts(value) and float(value).is_integer()


def draft_schema(df: pd.DataFrame, name: str = "", bins: int = 10, max_categories: int = 200) -> Schema:
    """Infer a schema from the (private) table itself, marked ``source: private-data``.

    The draft is a starting point for the data owner to review: its categories
    and bounds are read from the data, so they are not public until a human
    replaces or confirms them.
    """
    columns = []
    for col in df.columns:
        series = df[col]
        nullable = bool(series.isna().any())
        values = series.dropna()
        numeric = pd.to_numeric(values, errors="coerce")
        is_numeric = len(values) > 0 and not numeric.isna().any() and not pd.api.types.is_bool_dtype(values)
        if is_numeric and (numeric.nunique() > 2 or not set(numeric.unique()) <= {0, 1}):
            integer = bool(np.all(np.mod(numeric, 1) == 0))
            lower, upper = float(numeric.min()), float(numeric.max())
            if lower == upper:
                upper = lower + 1
            columns.append(
                Column(
                    name=str(col),
                    kind="numeric",
                    lower=lower,
                    upper=upper,
                    bins=int(upper - lower + 1) if integer and upper - lower < 32 else bins,
                    integer=integer,
                    nullable=nullable,
                )
            )
        else:
            labels = sorted({category_label(v) for v in values}, key=_natural_key)
            if len(labels) > max_categories:
                raise SchemaError(
                    f"column {col!r} has {len(labels)} distinct values (> {max_categories}); it looks like an "
                    "identifier or free text. Drop it or declare it by hand."
                )
            columns.append(
                Column(name=str(col), kind="categorical", categories=tuple(labels or ["(empty)"]), nullable=nullable)
            )
    return Schema(
        columns=tuple(columns),
        name=name,
        source=PRIVATE_DATA,
        description="Draft inferred from the private data: review every domain before use.",
    )


def _natural_key(label: str) -> tuple:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _as_number(value: Any, column: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"column {column!r}: {key!r} must be a number, got {value!r}")
    return float(value)


def _as_bool(value: Any, column: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise SchemaError(f"column {column!r}: {key!r} must be true or false, got {value!r}")


def _plain_number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else float(value)
