"""Typed results of an audit and their JSON form (schema documented in docs/audit-json.md).

Pipelines script against this JSON: keep keys stable and bump
``SCHEMA_VERSION`` on any incompatible change.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from audits._files import atomic_write_text

SCHEMA_VERSION = 1
FAMILIES = ("membership", "distance", "reidentification", "epsilon")
DIRECTIONS = ("max", "min")
STATUSES = ("ok", "not_run", "error")
Decision = Literal["PASS", "FAIL"]


@dataclass
class AuditResult:
    """One test: a measured ``value`` (with a confidence interval) judged against a ``threshold``.

    ``direction`` says which side is safe: ``"max"`` means the value must not
    exceed the threshold, ``"min"`` that it must not fall below it.
    ``judge`` is the policy rule that was applied (``significant``, ``point``,
    ``ci`` or ``beyond``; see :func:`audits.verdict.threshold_verdict`) and
    ``judged_value`` the number it compared with the threshold (the estimate,
    or under ``ci`` / ``beyond`` the interval's bound on the unsafe / safe
    side).
    ``p_value`` is the one-sided p-value of the no-leak null (train and
    holdout records equally exposed) where the attack computes an exact or
    permutation test (membership AUCs and TPRs, singling out); ``None``
    elsewhere. ``significant`` says whether the no-leak null is rejected on
    the unsafe side: by ``p_value`` where there is one, otherwise by the
    interval excluding ``baseline`` (the value of an honest release).
    ``status`` is ``"ok"``, ``"not_run"`` (time budget, or not in the
    tier) or ``"error"``; a required test that did not run fails the audit.
    ``details`` holds the attack's parameters, sample sizes and plot data
    (binned histograms, thinned ROC points), never raw records.
    """

    name: str
    family: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    threshold: float | None = None
    passed: bool | None = None
    direction: str = "max"
    details: dict[str, Any] = field(default_factory=dict)
    baseline: float | None = None
    status: str = "ok"
    required: bool = True
    judged_value: float | None = None
    message: str = ""
    seconds: float = 0.0
    judge: str | None = None
    significant: bool | None = None
    p_value: float | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"result {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"result {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.status not in STATUSES:
            raise ValueError(f"result {self.name!r}: status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class AuditReport:
    """All results of one audit and the gate's decision.

    ``decision`` is ``"PASS"`` only if every required result passed.
    """

    decision: Decision
    tier: str
    results: list[AuditResult]
    seed: int = 0
    seconds: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    claimed_epsilon: float | None = None
    confidence: float = 0.95
    test_confidence: float | None = None

    @property
    def passed(self) -> bool:
        return self.decision == "PASS"

    def result(self, name: str) -> AuditResult:
        """The result called ``name`` (``KeyError`` listing the available names otherwise)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no result {name!r}; results are {[r.name for r in self.results]}")

    def failures(self) -> list[AuditResult]:
        """Failed results (required ones that did not pass or did not run); each has a human ``message``."""
        return [r for r in self.results if r.required and r.passed is not True]

    def failure_messages(self) -> list[str]:
        return [r.message or f"{r.name} failed" for r in self.failures()]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "schema_version": SCHEMA_VERSION,
                "decision": self.decision,
                "tier": self.tier,
                "seed": self.seed,
                "seconds": self.seconds,
                "confidence": self.confidence,
                "test_confidence": self.test_confidence,
                "claimed_epsilon": self.claimed_epsilon,
                "sizes": self.sizes,
                "policy": self.policy,
                "results": [r.to_dict() for r in self.results],
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the JSON atomically: a temp file in the same directory, then ``os.replace``."""
        target = Path(path)
        atomic_write_text(target, self.to_json())
        return target

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditReport:
        return cls(
            decision=d["decision"],
            tier=d["tier"],
            results=[AuditResult.from_dict(r) for r in d["results"]],
            seed=d.get("seed", 0),
            seconds=d.get("seconds", 0.0),
            sizes=d.get("sizes", {}),
            policy=d.get("policy", {}),
            claimed_epsilon=d.get("claimed_epsilon"),
            confidence=d.get("confidence", 0.95),
            test_confidence=d.get("test_confidence"),
        )


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only: numpy scalars/arrays converted, non-finite floats -> None, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj
