"""Consistency rules a schema declares ("age < 15 implies marital status is null"), and how often a table breaks them.

A rule is an implication between two conditions on one record::

    {"name": "child_MSP",
     "description": "Children (< 15) are not married",
     "if":   {"column": "AGEP", "lt": 15},
     "then": {"column": "MSP", "is_null": true}}

A condition is either one test on one column, ``{"column": C, OP: VALUE}``
with exactly one ``OP``, or ``{"all": [conditions]}`` / ``{"any": [conditions]}``:

==========  ==================================  =====================================
OP          value                               holds when the column's value ...
==========  ==================================  =====================================
lt le gt ge a number (numeric columns only)      is <, <=, >, >= the number
eq ne       a category (categorical) or number  equals / differs from it
in not_in   a non-empty list of the same        is / is not one of them
is_null     true or false                       is null (true) / is not null (false)
==========  ==================================  =====================================

A null value satisfies no test but ``is_null: true``: ``{"column": "EDU",
"ne": "12"}`` does not hold for a null ``EDU`` (write ``{"any": [{"column":
"EDU", "is_null": true}, {"column": "EDU", "ne": "12"}]}`` to allow it). A
record *violates* a rule when ``if`` holds and ``then`` does not; the
violation rate of a table is the share of its records that violate the rule.

Rules are validated against the schema's columns when the schema is loaded;
every error names the rule and the key at fault. Rules are never used to fit
a generator (they would be a statistic of nothing: they are declared, public
constraints); the benchmark reports how often synthetic tables break them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dpsynth.errors import DataError, SchemaError

if TYPE_CHECKING:  # dpsynth.schema imports this module
    from dpsynth.schema import Column

ORDER_OPS = ("lt", "le", "gt", "ge")
VALUE_OPS = ("eq", "ne")
LIST_OPS = ("in", "not_in")
OPS = (*ORDER_OPS, *VALUE_OPS, *LIST_OPS, "is_null")
_RULE_KEYS = {"name", "description", "if", "then"}
MAX_DEPTH = 8


@dataclass(frozen=True)
class Condition:
    """One test on one column (``op`` in :data:`OPS`), or ``all`` / ``any`` of ``parts``."""

    op: str
    column: str = ""
    value: Any = None
    parts: tuple[Condition, ...] = ()

    @property
    def columns(self) -> set[str]:
        if self.op in ("all", "any"):
            return set().union(*(p.columns for p in self.parts))
        return {self.column}

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean mask: where the condition holds on ``df`` (nulls satisfy only ``is_null: true``)."""
        if self.op == "all":
            return np.logical_and.reduce([p.holds(df) for p in self.parts])
        if self.op == "any":
            return np.logical_or.reduce([p.holds(df) for p in self.parts])
        if self.column not in df.columns:
            raise DataError(f"consistency rule: the table has no column {self.column!r}")
        series = df[self.column]
        null = series.isna().to_numpy()
        if self.op == "is_null":
            return null if self.value else ~null
        if self.op in ORDER_OPS:
            values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                result = {"lt": values < self.value, "le": values <= self.value}.get(self.op)
                if result is None:
                    result = values > self.value if self.op == "gt" else values >= self.value
            return result & ~null
        labels = _labels(series)
        wanted = set(self.value) if self.op in LIST_OPS else {self.value}
        member = labels.isin(wanted).to_numpy()
        positive = self.op in ("eq", "in")
        return (member if positive else ~member) & ~null

    def to_dict(self) -> dict[str, Any]:
        if self.op in ("all", "any"):
            return {self.op: [p.to_dict() for p in self.parts]}
        value = list(self.value) if self.op in LIST_OPS else self.value
        return {"column": self.column, self.op: value}


@dataclass(frozen=True)
class Rule:
    """``if`` implies ``then`` on every record; see the module docstring for the JSON form."""

    name: str
    premise: Condition
    conclusion: Condition
    description: str = ""

    @property
    def columns(self) -> set[str]:
        return self.premise.columns | self.conclusion.columns

    def violations(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the records of ``df`` that break the rule."""
        return self.premise.holds(df) & ~self.conclusion.holds(df)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["if"] = self.premise.to_dict()
        out["then"] = self.conclusion.to_dict()
        return out


def parse_rules(raw: Any, columns: Mapping[str, Column]) -> tuple[Rule, ...]:
    """Validate a schema's ``"rules"`` list against its ``columns``; ``SchemaError`` names the rule and key."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SchemaError(f"schema: 'rules' must be a list of rule objects, got {type(raw).__name__}")
    rules: list[Rule] = []
    for position, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SchemaError(f"rules[{position}] must be an object with 'name', 'if' and 'then'")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SchemaError(f"rules[{position}]: every rule needs a non-empty string 'name', got {name!r}")
        where = f"rule {name!r}"
        if name in {r.name for r in rules}:
            raise SchemaError(f"{where}: duplicate rule name")
        unknown = set(item) - _RULE_KEYS
        if unknown:
            raise SchemaError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
        for key in ("if", "then"):
            if key not in item:
                raise SchemaError(f"{where}: missing key {key!r}")
        description = item.get("description", "")
        if not isinstance(description, str):
            raise SchemaError(f"{where}: 'description' must be a string")
        premise = _condition(item["if"], columns, f"{where}, 'if'", 0)
        conclusion = _condition(item["then"], columns, f"{where}, 'then'", 0)
        rules.append(Rule(name=name, premise=premise, conclusion=conclusion, description=description))
    return tuple(rules)


def _condition(raw: Any, columns: Mapping[str, Column], where: str, depth: int) -> Condition:
    if depth > MAX_DEPTH:
        raise SchemaError(f"{where}: conditions nest deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: a condition must be an object, got {raw!r:.60}")
    for group in ("all", "any"):
        if group in raw:
            if set(raw) != {group}:
                raise SchemaError(f"{where}: {group!r} must be the condition's only key, got {sorted(raw)}")
            parts = raw[group]
            if not isinstance(parts, list) or not parts:
                raise SchemaError(f"{where}: {group!r} must be a non-empty list of conditions")
            return Condition(
                op=group,
                parts=tuple(_condition(p, columns, f"{where}.{group}[{i}]", depth + 1) for i, p in enumerate(parts)),
            )
    name = raw.get("column")
    if not isinstance(name, str) or name not in columns:
        raise SchemaError(f"{where}: 'column' must name a column of the schema, got {name!r}")
    ops = [k for k in raw if k != "column"]
    bad = [k for k in ops if k not in OPS]
    if bad:
        raise SchemaError(f"{where}: unknown test(s) {bad} on {name!r}; use one of {', '.join(OPS)}, 'all', 'any'")
    if len(ops) != 1:
        raise SchemaError(f"{where}: exactly one test per condition on {name!r}, got {ops or 'none'}")
    op = ops[0]
    return Condition(op=op, column=name, value=_value(op, raw[op], columns[name], f"{where}, {op!r} on {name!r}"))


def _value(op: str, value: Any, column: Column, where: str) -> Any:
    if op == "is_null":
        if not isinstance(value, bool):
            raise SchemaError(f"{where}: must be true or false, got {value!r}")
        if value and not column.nullable:
            raise SchemaError(f"{where}: column {column.name!r} is not nullable, so the test can never hold")
        return value
    if op in ORDER_OPS:
        if column.kind != "numeric":
            raise SchemaError(f"{where}: {op!r} compares numbers; {column.name!r} is categorical (use eq / in)")
        return _number(value, where)
    if op in LIST_OPS:
        if not isinstance(value, list) or not value:
            raise SchemaError(f"{where}: must be a non-empty list")
        return tuple(_one_value(v, column, where) for v in value)
    return _one_value(value, column, where)


def _one_value(value: Any, column: Column, where: str) -> str:
    from audits.spec import category_label

    if column.kind == "numeric":
        return _label_of(_number(value, where))
    if isinstance(value, (dict, list)) or value is None:
        raise SchemaError(f"{where}: expected a category of {column.name!r}, got {value!r}")
    label = category_label(value)
    if label not in column.categories:
        raise SchemaError(f"{where}: {value!r} is not a category of {column.name!r} ({list(column.categories)})")
    return label


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SchemaError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _label_of(value: Any) -> str:
    """The label a cell is compared by: categories as their schema label, whole numbers without ``.0``."""
    from audits.spec import category_label

    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return category_label(value)


def _labels(series: pd.Series) -> pd.Series:
    return series.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else _label_of(v))


def violation_rates(df: pd.DataFrame, rules: Sequence[Rule]) -> dict[str, Any]:
    """Per rule: records violating it, records its premise applies to, and the rate; plus any-rule totals.

    Rules naming a column ``df`` lacks are listed under ``skipped`` (a
    benchmark on a subset of the schema's columns cannot check them).
    """
    n = len(df)
    per_rule: dict[str, dict[str, Any]] = {}
    skipped = []
    any_violation = np.zeros(n, dtype=bool)
    for rule in rules:
        if not rule.columns <= set(df.columns):
            skipped.append(rule.name)
            continue
        bad = rule.violations(df)
        any_violation |= bad
        per_rule[rule.name] = {
            "violations": int(bad.sum()),
            "applies": int(rule.premise.holds(df).sum()),
            "rate": float(bad.mean()) if n else 0.0,
        }
    return {
        "rows": n,
        "rules": per_rule,
        "skipped": skipped,
        "any_rate": float(any_violation.mean()) if n and per_rule else 0.0,
    }


__all__ = ["Condition", "OPS", "Rule", "parse_rules", "violation_rates"]
