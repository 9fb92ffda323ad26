"""Declared parameter constraints, checked in one place (after scikit-learn's ``_parameter_constraints``).

An estimator (or request) declares, per parameter, the values it accepts::

    _parameter_constraints = {
        "iters": [Interval(int, 1, None)],
        "compress": [bool],
        "max_seconds": [Interval(float, 0, None, closed="neither"), None],
        "conditional": [Options("noisy-counts", "none")],
    }

and :func:`validate_params` checks a dict of values against them, raising
:class:`~dpsynth.errors.UsageError` with one wording for every estimator:
``parameter 'iters' must be an integer >= 1, got 0``. The error carries the
parameter's name (``UsageError.parameter``) so the CLI can speak of its own
option instead (``--holdout-fraction``, ``--param iters``).

Booleans are never numbers here (``True`` is not an ``int`` >= 1), and
numbers must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np

from dpsynth.errors import UsageError

Closed = Literal["both", "left", "right", "neither"]


@dataclass(frozen=True)
class Interval:
    """A number in ``[low, high]`` (ends open or closed; ``None`` for unbounded), integer or real."""

    kind: type
    low: float | None
    high: float | None
    closed: Closed = "both"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return False
        if self.kind is int:
            if not isinstance(value, (Integral, np.integer)):
                return False
        elif not isinstance(value, (Real, np.integer, np.floating)) or not math.isfinite(float(value)):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        low_op = ">=" if self.closed in ("both", "left") else ">"
        high_op = "<=" if self.closed in ("both", "right") else "<"
        if self.low is not None and self.high is not None:
            low_bracket = "[" if self.closed in ("both", "left") else "("
            high_bracket = "]" if self.closed in ("both", "right") else ")"
            return f"{noun} in {low_bracket}{_num(self.low)}, {_num(self.high)}{high_bracket}"
        if self.low is not None:
            return f"{noun} {low_op} {_num(self.low)}"
        if self.high is not None:
            return f"{noun} {high_op} {_num(self.high)}"
        return noun


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (strings, usually)."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", tuple(values))

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, str) and value in self.values
            if all(isinstance(v, str) for v in self.values)
            else value in self.values
        )

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Satisfies:
    """A value accepted by ``check``; ``description`` says what that means in the error."""

    check: Callable[[Any], bool]
    description: str

    def accepts(self, value: Any) -> bool:
        try:
            return bool(self.check(value))
        except (TypeError, ValueError):
            return False

    def describe(self) -> str:
        return self.description


Constraint = Interval | Options | Satisfies | type | None

#: A finite number > 0 (budgets, learning rates, clipping bounds, time limits).
POSITIVE = Interval(float, 0, None, closed="neither")


def _accepts(constraint: Constraint, value: Any) -> bool:
    if constraint is None:
        return value is None
    if constraint is bool:
        return isinstance(value, (bool, np.bool_))
    if isinstance(constraint, type):
        return isinstance(value, constraint) and not isinstance(value, bool)
    return constraint.accepts(value)


def _describe(constraint: Constraint) -> str:
    if constraint is None:
        return "None"
    if constraint is bool:
        return "True or False"
    if isinstance(constraint, type):
        return f"a {constraint.__name__}"
    return constraint.describe()


def validate_params(
    values: Mapping[str, Any], constraints: Mapping[str, Sequence[Constraint]], owner: str = ""
) -> None:
    """Raise ``UsageError`` for the first value no constraint of its parameter accepts.

    Parameters without declared constraints are not checked here (the owner
    checks them itself, e.g. a value that depends on another).
    """
    for name, allowed in constraints.items():
        if name not in values:
            continue
        value = values[name]
        if any(_accepts(c, value) for c in allowed):
            continue
        wanted = " or ".join(_describe(c) for c in allowed)
        where = f"{owner} parameter" if owner else "parameter"
        raise UsageError(f"{where} {name!r} must be {wanted}, got {value!r}", parameter=name)


def _num(value: float) -> str:
    return f"{value:g}"


__all__ = ["POSITIVE", "Constraint", "Interval", "Options", "Satisfies", "validate_params"]
