"""Release policy: which tests run, their thresholds, and the PASS/FAIL decision.

A policy is a TOML file (read with the standard library's ``tomllib``)
merged over ``audits/default_policy.toml``, so a file may set only what it
changes. Every key is checked: an unknown key, a wrong type or an
out-of-range value raises :class:`audits.errors.PolicyError` naming the key
(e.g. ``tests.dcr_share.max``) and what is allowed.

This module owns the policy (its file format, validation and the tests each
tier runs) and the PASS/FAIL decision over all results.
:meth:`Policy.judge_result` judges one result against its :class:`Rule` by
composing :mod:`audits.verdict`, where the verdict (a pure decision) and its
message are computed apart.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from audits.errors import PolicyError
from audits.results import AuditResult
from audits.verdict import Rule, epsilon_verdict, explain_epsilon, explain_threshold, threshold_verdict

TIERS = ("quick", "thorough")
JUDGES = ("significant", "point", "ci", "beyond")  # see audits.verdict.threshold_verdict


@dataclass(frozen=True)
class CheckInfo:
    """What the gate knows about one test: family, safe direction, lowest tier that runs it."""

    family: str
    direction: str
    tier: str
    bound: str  # "max", "min", "margin" or "epsilon": which threshold key the test takes


TESTS: dict[str, CheckInfo] = {
    "dcr_share": CheckInfo("distance", "max", "quick", "max"),
    "nndr_ratio": CheckInfo("distance", "min", "quick", "min"),
    "exact_copy_rate": CheckInfo("distance", "max", "quick", "margin"),
    "mia_distance": CheckInfo("membership", "max", "quick", "max"),
    "mia_distance_tpr_1pct_fpr": CheckInfo("membership", "max", "quick", "max"),
    "mia_domias": CheckInfo("membership", "max", "quick", "max"),
    "mia_domias_tpr_1pct_fpr": CheckInfo("membership", "max", "quick", "max"),
    "linkage_risk": CheckInfo("reidentification", "max", "quick", "max"),
    "singling_out_risk": CheckInfo("reidentification", "max", "quick", "max"),
    "attribute_inference_risk": CheckInfo("reidentification", "max", "quick", "max"),
    "mia_shadow": CheckInfo("membership", "max", "thorough", "max"),
    "epsilon_lower_bound": CheckInfo("epsilon", "max", "thorough", "epsilon"),
}

_PARAMS: dict[str, tuple[type, int]] = {  # name -> (type, minimum)
    "max_targets": (int, 2),
    "max_queries": (int, 1),
    "n_bootstrap": (int, 0),
    "linkage_targets": (int, 10),
    "inference_targets": (int, 10),
    "singling_out_predicates": (int, 10),
    "inference_max_secrets": (int, 1),
    "shadow_targets": (int, 1),
    "shadow_runs": (int, 4),
    "shadow_reference_rows": (int, 10),
    "canaries": (int, 8),
    "canary_reference_rows": (int, 10),
}
_TOP_KEYS = {"tier", "confidence", "correction", "judge", "attacker", "params", "tests", "release", "profile"}
CORRECTIONS = ("bonferroni", "none")


@dataclass(frozen=True)
class Policy:
    """A parsed, validated policy. Build with :meth:`load`, :meth:`from_dict` or :meth:`default`."""

    tier: str = "quick"
    confidence: float = 0.95
    correction: str = "bonferroni"
    judge: str = "significant"
    quasi_identifiers: tuple[str, ...] = ()
    secret: str | None = None
    params: Mapping[str, int] = field(default_factory=dict)
    tests: Mapping[str, Rule] = field(default_factory=dict)
    source: str = "<default>"
    # The ``[release]`` table, kept as given: settings of the tool that runs the release (e.g.
    # ``approval_required``), which that tool validates. The audits neither read nor judge them.
    release: Mapping[str, Any] = field(default_factory=dict)
    # The ``[profile]`` table, kept as given like ``release``: what the policy means in words (a
    # named profile's criteria, rationale and sources), for the tool and report that present it.
    profile: Mapping[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ construction
    @classmethod
    def default(cls) -> Policy:
        return cls.from_dict({}, source="<default>")

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a TOML policy file and merge it over the default policy."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {p}: {exc.strerror or exc}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{p}: invalid TOML: {exc}") from None
        return cls.from_dict(raw, source=str(p))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<dict>") -> Policy:
        """Validate ``raw`` (same shape as the TOML file) merged over the default policy."""
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{source}: a policy must be a table (dict), got {type(raw).__name__}")
        merged = _merge(_default_raw(), raw, source)
        return _parse(merged, source)

    # ---------------------------------------------------------------- queries
    def tests_for_tier(self, tier: str) -> list[str]:
        """Enabled tests the given tier runs, in registry order."""
        order = TIERS.index(tier)
        return [n for n, info in TESTS.items() if self.tests[n].enabled and TIERS.index(info.tier) <= order]

    def required_tests(self) -> list[str]:
        """Enabled, required tests of the tier the policy demands."""
        return [n for n in self.tests_for_tier(self.tier) if self.tests[n].required]

    def test_confidence(self, tier: str) -> float:
        """Level of each test's interval in an audit of ``tier``.

        With ``correction = "bonferroni"`` the ``m`` tests the tier runs each
        get ``1 - (1 - confidence) / m``, so their intervals hold
        simultaneously at ``confidence``: an honest release (one whose output
        does not depend on which records were trained on) is then refused by
        the ``significant`` judge with probability at most ``1 - confidence``
        whatever the table size. With ``"none"`` each test uses ``confidence``.
        """
        m = len(self.tests_for_tier(tier)) if self.correction == "bonferroni" else 1
        return 1.0 - (1.0 - self.confidence) / max(m, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tier": self.tier,
            "confidence": self.confidence,
            "correction": self.correction,
            "judge": self.judge,
            "attacker": {"quasi_identifiers": list(self.quasi_identifiers), "secret": self.secret or ""},
            "params": dict(self.params),
            "tests": {
                n: {k: v for k, v in dataclasses.asdict(r).items() if k != "name" and v is not None}
                for n, r in self.tests.items()
            },
        }

    # ---------------------------------------------------------------- judging
    def judge_result(
        self, result: AuditResult, claimed_epsilon: float | None = None, level: float | None = None
    ) -> AuditResult:
        """Return ``result`` with threshold, judged value, pass flag and a message filled in.

        ``level`` is the confidence of the result's interval (default: the
        policy's ``confidence``; the runner passes :meth:`test_confidence`).
        The message says by how much a failed test missed; a test that passed
        although its estimate is beyond the threshold (judges ``significant``
        and ``beyond``) gets a note saying why it still passed.
        """
        rule = self.tests.get(result.name)
        if rule is None:
            return dataclasses.replace(result, required=False, passed=None)
        r = dataclasses.replace(result, required=rule.required)
        if r.status != "ok" or r.value is None:
            why = r.message or ("did not run" if r.status == "not_run" else "failed with an error")
            return dataclasses.replace(r, passed=False, message=f"{r.name} did not produce a value: {why}")
        if result.name == "epsilon_lower_bound":
            verdict = epsilon_verdict(r, rule, claimed_epsilon)
            message = explain_epsilon(r, verdict, rule, claimed_epsilon)
        else:
            lvl = level if level is not None else self.confidence
            found = threshold_verdict(r, rule, rule.judge or self.judge, lvl)
            if found is None:
                return dataclasses.replace(r, passed=None, required=False)
            verdict, message = found, explain_threshold(r, found)
        return dataclasses.replace(
            r,
            threshold=verdict.threshold,
            judged_value=verdict.judged,
            passed=verdict.passed,
            message=r.message if message is None else message,
            judge=verdict.judge,
            significant=verdict.significant,
        )

    def decide(self, results: list[AuditResult]) -> str:
        """``"PASS"`` iff every required test of the policy's tier is present, ran and passed."""
        by_name = {r.name: r for r in results}
        for name in self.required_tests():
            r = by_name.get(name)
            if r is None or r.passed is not True:
                return "FAIL"
        return "FAIL" if any(r.required and r.passed is False for r in results) else "PASS"


def _default_raw() -> dict[str, Any]:
    text = resources.files("audits").joinpath("default_policy.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _merge(base: dict[str, Any], over: Mapping[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        path = f"{prefix}{key}"
        if prefix == "" and key not in _TOP_KEYS:
            raise PolicyError(f"{source}: unknown key {path!r}; allowed top-level keys are {sorted(_TOP_KEYS)}")
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, source, prefix=f"{path}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _number(value: Any, key: str, source: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise PolicyError(f"{source}: {key!r} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise PolicyError(f"{source}: {key!r} must be in [{lo}, {hi}], got {v}")
    return v


def _bool(value: Any, key: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{source}: {key!r} must be true or false, got {type(value).__name__} {value!r}")
    return value


def _choice(value: Any, key: str, source: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise PolicyError(f"{source}: {key!r} must be one of {list(allowed)}, got {value!r}")
    return value


def _table(value: Any, key: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{source}: {key!r} must be a table, got {type(value).__name__} {value!r}")
    return value


def _parse(raw: Mapping[str, Any], source: str) -> Policy:
    tier = _choice(raw.get("tier"), "tier", source, TIERS)
    confidence = _number(raw.get("confidence"), "confidence", source, 0.5, 0.999)
    correction = _choice(raw.get("correction", "bonferroni"), "correction", source, CORRECTIONS)
    judge = _choice(raw.get("judge"), "judge", source, JUDGES)

    attacker = _table(raw.get("attacker", {}), "attacker", source)
    for key in attacker:
        if key not in ("quasi_identifiers", "secret"):
            raise PolicyError(f"{source}: unknown key 'attacker.{key}'; allowed: quasi_identifiers, secret")
    qis = attacker.get("quasi_identifiers", [])
    if not isinstance(qis, list) or not all(isinstance(q, str) and q for q in qis):
        raise PolicyError(f"{source}: 'attacker.quasi_identifiers' must be a list of column names, got {qis!r}")
    secret = attacker.get("secret", "")
    if not isinstance(secret, str):
        raise PolicyError(f"{source}: 'attacker.secret' must be a column name (string), got {secret!r}")

    params_raw = _table(raw.get("params", {}), "params", source)
    params: dict[str, int] = {}
    for key, value in params_raw.items():
        if key not in _PARAMS:
            raise PolicyError(f"{source}: unknown key 'params.{key}'; allowed: {sorted(_PARAMS)}")
        typ, minimum = _PARAMS[key]
        if isinstance(value, bool) or not isinstance(value, typ):
            raise PolicyError(f"{source}: 'params.{key}' must be an integer, got {type(value).__name__} {value!r}")
        if value < minimum:
            raise PolicyError(f"{source}: 'params.{key}' must be >= {minimum}, got {value}")
        params[key] = int(value)

    tests_raw = _table(raw.get("tests", {}), "tests", source)
    tests: dict[str, Rule] = {}
    for name, body in tests_raw.items():
        if name not in TESTS:
            raise PolicyError(f"{source}: unknown key 'tests.{name}'; known tests are {sorted(TESTS)}")
        tests[name] = _parse_rule(name, _table(body, f"tests.{name}", source), source)
    for name in TESTS:
        tests.setdefault(name, Rule(name=name))
        info, rule = TESTS[name], tests[name]
        if rule.enabled and info.bound in ("max", "min", "margin") and getattr(rule, info.bound) is None:
            raise PolicyError(f"{source}: 'tests.{name}.{info.bound}' is required for an enabled test")
    release = dict(_table(raw.get("release", {}), "release", source))
    profile = dict(_table(raw.get("profile", {}), "profile", source))
    return Policy(
        tier=tier,
        confidence=confidence,
        correction=correction,
        judge=judge,
        quasi_identifiers=tuple(qis),
        secret=secret or None,
        params=params,
        tests=tests,
        source=source,
        release=release,
        profile=profile,
    )


def _parse_rule(name: str, body: Mapping[str, Any], source: str) -> Rule:
    info = TESTS[name]
    allowed = {"judge", "required", "enabled"}
    allowed |= {"slack", "require_claim"} if info.bound == "epsilon" else {info.bound}
    kwargs: dict[str, Any] = {"name": name}
    for key, value in body.items():
        path = f"tests.{name}.{key}"
        if key not in allowed:
            raise PolicyError(f"{source}: unknown key {path!r}; allowed for this test: {sorted(allowed)}")
        if key in ("max", "min"):
            kwargs[key] = _number(value, path, source)
        elif key in ("margin", "slack"):
            kwargs[key] = _number(value, path, source, 0.0, None)
        elif key == "judge":
            kwargs[key] = _choice(value, path, source, JUDGES)
        else:
            kwargs[key] = _bool(value, path, source)
    return Rule(**kwargs)
