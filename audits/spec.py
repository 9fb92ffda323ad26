"""Table description used by the attacks.

The audits cannot import dpsynth's ``Schema`` (they audit tables from any
tool), so :class:`TableSpec` is a small read-only mirror of what the attacks
need: each column's kind, its public bounds or categories, and which columns
an attacker is assumed to know (quasi-identifiers) or to want (secret).

Build it from dpsynth's schema JSON dict with :meth:`TableSpec.from_schema_dict`
or, for a table without a schema, with :meth:`TableSpec.infer` (bounds then come
from the data, which is fine for auditing: the auditor sees the private data).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from audits.errors import SpecError

Kind = Literal["numeric", "categorical"]


def category_label(value: Any) -> str:
    """Canonical string form of a category, so JSON ``1``, CSV ``"1"`` and float ``1.0`` match.

    Same rule as dpsynth's schema, re-implemented here because audits must not import dpsynth.
    """
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class ColumnSpec:
    """One column as the attacks see it.

    ``numeric`` columns carry ``lower``/``upper`` bounds used to scale distances
    to [0, 1]; ``categorical`` columns carry their declared ``categories``
    (values seen in the data but not declared are still handled: they become
    extra categories). ``datetime`` columns of a dpsynth schema are read as
    numeric seconds since the epoch (``is_datetime``).
    """

    name: str
    kind: Kind
    lower: float | None = None
    upper: float | None = None
    categories: tuple[str, ...] = ()
    nullable: bool = True
    integer: bool = False
    is_datetime: bool = False

    def __post_init__(self) -> None:
        where = f"column {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise SpecError("every column needs a non-empty string 'name'")
        if self.kind not in ("numeric", "categorical"):
            raise SpecError(f"{where}: 'kind' must be 'numeric' or 'categorical', got {self.kind!r}")
        if self.kind == "numeric":
            for key in ("lower", "upper"):
                value = getattr(self, key)
                if value is None or not math.isfinite(float(value)):
                    raise SpecError(f"{where}: a numeric column needs a finite '{key}'")
            if float(self.upper) < float(self.lower):  # type: ignore[arg-type]
                raise SpecError(f"{where}: 'upper' ({self.upper}) is below 'lower' ({self.lower})")

    @property
    def span(self) -> float:
        """Width of the numeric range (1.0 for a degenerate range, so scaling never divides by 0)."""
        width = float(self.upper) - float(self.lower)  # type: ignore[arg-type]
        return width if width > 0 else 1.0


@dataclass(frozen=True)
class TableSpec:
    """Columns of the audited table plus the attacker's assumed knowledge.

    ``quasi_identifiers`` are the columns an attacker is assumed to hold about a
    target (used by linkage and attribute inference); ``secret`` is the column
    they want to learn. Both are optional: without them the re-identification
    attacks use documented defaults instead of being skipped.
    """

    columns: tuple[ColumnSpec, ...]
    name: str = "table"
    quasi_identifiers: tuple[str, ...] = ()
    secret: str | None = None
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise SpecError("a table spec needs at least one column")
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(f"duplicate column names in spec: {dupes}")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})
        unknown = [q for q in self.quasi_identifiers if q not in self._index]
        if unknown:
            raise SpecError(f"'quasi_identifiers' names columns not in the spec: {unknown}")
        if self.secret is not None and self.secret not in self._index:
            raise SpecError(f"'secret' names a column not in the spec: {self.secret!r}")

    # ------------------------------------------------------------------ access
    @property
    def names(self) -> list[str]:
        """Column names in spec order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSpec:
        """The column called ``name`` (``SpecError`` if absent)."""
        try:
            return self.columns[self._index[name]]
        except KeyError:
            raise SpecError(f"no column {name!r} in the spec; columns are {self.names}") from None

    def with_roles(self, quasi_identifiers: Sequence[str] | None = None, secret: str | None = None) -> TableSpec:
        """Copy with the attacker's knowledge replaced (e.g. from the policy); ``None`` keeps the current one."""
        return TableSpec(
            columns=self.columns,
            name=self.name,
            quasi_identifiers=tuple(quasi_identifiers) if quasi_identifiers is not None else self.quasi_identifiers,
            secret=secret if secret is not None else self.secret,
        )

    def check_frame(self, df: pd.DataFrame, role: str) -> None:
        """Raise ``SpecError`` naming the table and the columns when ``df`` lacks spec columns."""
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise SpecError(f"the {role} table lacks spec columns {missing}; it has {list(df.columns)}")
        if len(df) == 0:
            raise SpecError(f"the {role} table is empty")

    # ------------------------------------------------------------ constructors
    @classmethod
    def from_schema_dict(cls, d: Mapping[str, Any]) -> TableSpec:
        """Build from dpsynth's schema JSON dict (unknown keys are ignored).

        Accepts ``bins`` or ``edges`` (both unused here), ``kind`` numeric,
        categorical or datetime, and optional ``quasi_identifiers`` and
        ``secret`` (``target`` is used as the secret when ``secret`` is absent).
        """
        if not isinstance(d, Mapping):
            raise SpecError(f"a schema must be a JSON object (dict), got {type(d).__name__}")
        raw_columns = d.get("columns")
        if not isinstance(raw_columns, list) or not raw_columns:
            raise SpecError("schema key 'columns' must be a non-empty list")
        columns = []
        for i, raw in enumerate(raw_columns):
            if not isinstance(raw, Mapping):
                raise SpecError(f"schema 'columns[{i}]' must be an object")
            name = raw.get("name")
            kind = raw.get("kind")
            where = f"schema 'columns[{i}]' ({name!r})"
            if kind in ("numeric", "datetime"):
                edges = raw.get("edges") or ()
                lower = raw.get("lower", edges[0] if edges else None)
                upper = raw.get("upper", edges[-1] if edges else None)
                is_dt = kind == "datetime"
                try:
                    lower_f = _to_number(lower, is_dt)
                    upper_f = _to_number(upper, is_dt)
                except (TypeError, ValueError) as exc:
                    raise SpecError(
                        f"{where}: 'lower'/'upper' must be numbers{' or dates' if is_dt else ''}: {exc}"
                    ) from None
                columns.append(
                    ColumnSpec(
                        name=name,
                        kind="numeric",
                        lower=lower_f,
                        upper=upper_f,
                        nullable=bool(raw.get("nullable", False)),
                        integer=bool(raw.get("integer", False)),
                        is_datetime=is_dt,
                    )
                )
            elif kind == "categorical":
                cats = raw.get("categories")
                if not isinstance(cats, list | tuple) or not cats:
                    raise SpecError(f"{where}: 'categories' must be a non-empty list")
                columns.append(
                    ColumnSpec(
                        name=name,
                        kind="categorical",
                        categories=tuple(category_label(c) for c in cats),
                        nullable=bool(raw.get("nullable", False)),
                    )
                )
            else:
                raise SpecError(f"{where}: 'kind' must be numeric, categorical or datetime, got {kind!r}")
        qis = d.get("quasi_identifiers") or ()
        if not isinstance(qis, list | tuple) or not all(isinstance(q, str) for q in qis):
            raise SpecError("schema key 'quasi_identifiers' must be a list of column names")
        secret = d.get("secret", d.get("target"))
        if secret is not None and not isinstance(secret, str):
            raise SpecError("schema key 'secret' must be a column name (string)")
        return cls(
            columns=tuple(columns), name=str(d.get("name", "table")), quasi_identifiers=tuple(qis), secret=secret
        )

    @classmethod
    def infer(
        cls, df: pd.DataFrame, quasi_identifiers: Iterable[str] = (), secret: str | None = None, name: str = "table"
    ) -> TableSpec:
        """Describe ``df`` from its dtypes: numeric dtypes become numeric columns bounded by this frame's
        min/max; everything else becomes categorical with the observed categories."""
        columns = []
        for col in df.columns:
            s = df[col]
            nullable = bool(s.isna().any())
            if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
                cats = sorted({category_label(v) for v in s.dropna().unique()})
                columns.append(ColumnSpec(name=str(col), kind="categorical", categories=tuple(cats), nullable=nullable))
            else:
                values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
                finite = values[np.isfinite(values)]
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
                integer = bool(finite.size and np.all(np.equal(np.mod(finite, 1), 0)))
                columns.append(
                    ColumnSpec(name=str(col), kind="numeric", lower=lo, upper=hi, nullable=nullable, integer=integer)
                )
        return cls(columns=tuple(columns), name=name, quasi_identifiers=tuple(quasi_identifiers), secret=secret)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (same shape as dpsynth's schema dict, audit-relevant keys only)."""
        cols = []
        for c in self.columns:
            if c.kind == "numeric":
                cols.append(
                    {
                        "name": c.name,
                        "kind": "datetime" if c.is_datetime else "numeric",
                        "lower": c.lower,
                        "upper": c.upper,
                        "integer": c.integer,
                        "nullable": c.nullable,
                    }
                )
            else:
                cols.append(
                    {"name": c.name, "kind": "categorical", "categories": list(c.categories), "nullable": c.nullable}
                )
        out: dict[str, Any] = {"name": self.name, "columns": cols, "quasi_identifiers": list(self.quasi_identifiers)}
        if self.secret is not None:
            out["secret"] = self.secret
        return out


def _to_number(value: Any, is_datetime: bool) -> float:
    if value is None:
        raise ValueError("missing")
    if is_datetime and not isinstance(value, int | float):
        return float(pd.Timestamp(value).value) / 1e9
    return float(value)


def numeric_values(series: pd.Series, col: ColumnSpec) -> np.ndarray:
    """Float values of a numeric column (NaN for missing); datetimes as seconds since the epoch."""
    if col.is_datetime:
        ts = pd.to_datetime(series, errors="coerce")
        out = ts.astype("int64").to_numpy(dtype=float) / 1e9
        out[ts.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def category_labels(series: pd.Series) -> np.ndarray:
    """Object array of canonical category labels, ``None`` for missing values."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)  # in the column's own dtype: fast for strings
    labels = np.array([category_label(u) for u in uniques] + [None], dtype=object)
    return labels[codes]  # code -1 (missing) picks the trailing None
