"""Release policy: which tests run, their thresholds, and the PASS/FAIL decision.

A policy is a TOML file (read with the standard library's ``tomllib``)
merged over ``audits/default_policy.toml``, so a file may set only what it
changes. Every key is checked: an unknown key, a wrong type or an
out-of-range value raises :class:`audits.errors.PolicyError` naming the key
(e.g. ``tests.dcr_share.max``) and what is allowed.
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

TIERS = ("quick", "thorough")
JUDGES = ("significant", "point", "ci", "beyond")
# How a result is compared with its threshold (the "unsafe" side is above a "max" threshold, below a
# "min" one); see default_policy.toml for when to use which:
#   significant  fail iff the estimate is on the unsafe side of the threshold AND the no-leak null is rejected
#                on the unsafe side (by the attack's exact / permutation p-value, else by the interval
#                excluding ``baseline``, the value an honest release has): a leak that is material and
#                statistically established. An honest release is refused with probability at most
#                (1 - level) / 2 per test, at any sample size. If the threshold is stricter than the
#                baseline (no leak is itself unacceptable), the interval must lie beyond the threshold.
#   point        fail iff the estimate is on the unsafe side (no allowance for sampling noise).
#   ci           fail unless the whole interval is on the safe side: the release must *prove* it is below
#                the threshold; refuses honest releases of small tables (wide intervals).
#   beyond       fail only if the whole interval is on the unsafe side: the leak is established to exceed
#                the threshold itself; lets through leaks near the threshold.


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
    "max_targets": (int, 2), "max_queries": (int, 1), "n_bootstrap": (int, 0), "linkage_targets": (int, 10),
    "inference_targets": (int, 10),
    "singling_out_predicates": (int, 10), "inference_max_secrets": (int, 1), "shadow_targets": (int, 1),
    "shadow_runs": (int, 4), "shadow_reference_rows": (int, 10), "canaries": (int, 8),
    "canary_reference_rows": (int, 10),
}
_TOP_KEYS = {"tier", "confidence", "correction", "judge", "attacker", "params", "tests"}
CORRECTIONS = ("bonferroni", "none")


@dataclass(frozen=True)
class Rule:
    """Threshold and options of one test (see default_policy.toml for their meaning)."""

    name: str
    max: float | None = None
    min: float | None = None
    margin: float | None = None
    slack: float = 0.0
    require_claim: bool = False
    judge: str | None = None
    required: bool = True
    enabled: bool = True


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
            "source": self.source, "tier": self.tier, "confidence": self.confidence,
            "correction": self.correction, "judge": self.judge,
            "attacker": {"quasi_identifiers": list(self.quasi_identifiers), "secret": self.secret or ""},
            "params": dict(self.params),
            "tests": {n: {k: v for k, v in dataclasses.asdict(r).items() if k != "name" and v is not None}
                      for n, r in self.tests.items()},
        }

    # ---------------------------------------------------------------- judging
    def judge_result(self, result: AuditResult, claimed_epsilon: float | None = None,
                     level: float | None = None) -> AuditResult:
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
            return self._judge_epsilon(r, rule, claimed_epsilon)
        judge = rule.judge or self.judge
        if rule.margin is not None:
            threshold = (r.baseline or 0.0) + rule.margin
        else:
            threshold = rule.max if r.direction == "max" else rule.min
        if threshold is None:
            return dataclasses.replace(r, passed=None, required=False)
        upper = r.direction == "max"
        beyond = (lambda x: x > threshold) if upper else (lambda x: x < threshold)  # noqa: E731
        unsafe_bound = r.ci_high if upper else r.ci_low  # the interval's end on the unsafe side
        safe_bound = r.ci_low if upper else r.ci_high
        lvl = level if level is not None else self.confidence
        significant = None
        if r.p_value is not None:  # an exact / permutation test of the no-leak null, one-sided
            significant = bool(r.p_value < (1.0 - lvl) / 2.0)
        elif safe_bound is not None and r.baseline is not None:
            significant = bool(safe_bound > r.baseline if upper else safe_bound < r.baseline)
        # A threshold stricter than the honest value (e.g. an AUC "max = 0.45") makes "no leak" itself
        # unacceptable; "significant" then asks whether the value is established beyond the threshold.
        strict = r.baseline is not None and beyond(r.baseline)
        if judge == "ci" and unsafe_bound is not None:
            judged, failed = unsafe_bound, beyond(unsafe_bound)
        elif judge == "beyond" and safe_bound is not None:
            judged, failed = safe_bound, beyond(safe_bound)
        elif judge == "significant" and strict and safe_bound is not None:
            judged, failed = r.value, beyond(r.value) and beyond(safe_bound)
        elif judge == "significant" and significant is not None:
            judged, failed = r.value, beyond(r.value) and significant
        else:  # "point", or no interval / baseline to judge by: the estimate alone
            judged, failed = r.value, beyond(r.value)
        message = ""
        level = _pct(lvl)
        interval = (f"{level} interval {_fmt(r.ci_low)} to {_fmt(r.ci_high)}"
                    if r.ci_low is not None and r.ci_high is not None else "")

        def evidence(found: bool) -> str:
            if r.p_value is not None:
                return (f"one-sided p = {r.p_value:.2g} against no leak, {'below' if found else 'not below'} "
                        f"{(1.0 - lvl) / 2.0:.3g}")
            return (f"its {interval} {'excludes' if found else 'includes'} the no-leak value "
                    f"{_fmt(r.baseline) if r.baseline is not None else '?'}")
        verb = "exceeds" if upper else "is below"
        if failed:
            how = ""
            if judge in ("ci", "beyond") and judged != r.value:
                side = "upper" if (judge == "ci") == upper else "lower"
                how = f" (its {side} {level} confidence bound {_fmt(judged)})"
            message = (f"{r.name} = {_fmt(r.value)}{how} {verb} threshold {_fmt(threshold)} "
                       f"by {_fmt(abs(judged - threshold))}")
            if judge == "significant" and strict and safe_bound is not None:
                message += (f" (its {interval} lies beyond the threshold, which is stricter than the "
                            f"no-leak value {_fmt(r.baseline)})")
            elif judge == "significant" and significant is not None:
                message += f" ({evidence(True)})"
        elif beyond(r.value) and judge in ("significant", "beyond"):
            what = (evidence(False) if judge == "significant" and not strict
                    else f"its {interval} reaches the safe side of the threshold")
            message = (f"note: {r.name} = {_fmt(r.value)} {verb} threshold {_fmt(threshold)}, but {what}: "
                       f"not established at this sample size (judge = {judge!r}); passed")
        return dataclasses.replace(r, threshold=threshold, judged_value=judged, passed=not failed,
                                   message=message, judge=judge, significant=significant)

    def _judge_epsilon(self, r: AuditResult, rule: Rule, claimed: float | None) -> AuditResult:
        if claimed is None:
            if rule.require_claim:
                return dataclasses.replace(r, passed=False, judged_value=r.value, message=(
                    "epsilon_lower_bound: no claimed epsilon was given and the policy requires one "
                    "(tests.epsilon_lower_bound.require_claim = true)"), judge="point")
            return dataclasses.replace(r, passed=True, judged_value=r.value, threshold=None, judge="point")
        threshold = float(claimed) + rule.slack
        passed = r.value <= threshold
        message = "" if passed else (
            f"DP implementation appears broken: empirical epsilon lower bound {_fmt(r.value)} exceeds the "
            f"claimed epsilon {_fmt(float(claimed))}{f' + slack {_fmt(rule.slack)}' if rule.slack else ''} "
            f"by {_fmt(r.value - threshold)}")
        return dataclasses.replace(r, threshold=threshold, judged_value=r.value, passed=bool(passed),
                                   message=message, judge="point")

    def decide(self, results: list[AuditResult]) -> str:
        """``"PASS"`` iff every required test of the policy's tier is present, ran and passed."""
        by_name = {r.name: r for r in results}
        for name in self.required_tests():
            r = by_name.get(name)
            if r is None or r.passed is not True:
                return "FAIL"
        return "FAIL" if any(r.required and r.passed is False for r in results) else "PASS"


def _pct(level: float) -> str:
    text = f"{100 * level:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _fmt(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 0.1 or x == 0 else f"{x:.3g}"


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
    return Policy(tier=tier, confidence=confidence, correction=correction, judge=judge, quasi_identifiers=tuple(qis),
                  secret=secret or None, params=params, tests=tests, source=source)


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
