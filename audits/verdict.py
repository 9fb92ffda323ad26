"""One test's rule, the gate's verdict on its result, and the sentence that explains it.

:class:`Rule` is a test's threshold and options as the policy file sets them
(parsed and validated in :mod:`audits.policy`). Judging a result against it
is two concerns, kept apart so each can be read (and tested) alone:

- **deciding**: :func:`threshold_verdict` and :func:`epsilon_verdict` are
  pure functions of a result, its policy rule, the judge and the interval's
  level; they return a :class:`Verdict` (threshold, the number compared with
  it, pass/fail, whether the no-leak null is rejected) and write no prose;
- **explaining**: :func:`explain_threshold` and :func:`explain_epsilon`
  render the message a reader sees from the result and its verdict, and
  decide nothing.

The judges (``significant``, ``point``, ``ci``, ``beyond``) are described in
:func:`threshold_verdict`; ``audits/default_policy.toml`` says when to use
which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audits.results import AuditResult


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
class Verdict:
    """What the gate decided about one result, before any prose.

    ``judged`` is the number compared with ``threshold``: the estimate, or
    under the ``ci`` / ``beyond`` judges the interval's end on the unsafe /
    safe side. ``significant`` says whether the no-leak null is rejected on
    the unsafe side (``None``: the result has neither a p-value nor an
    interval and a baseline to test it by). ``strict`` marks a threshold
    stricter than the no-leak value (e.g. an AUC ``max = 0.45``), where "no
    leak" is itself unacceptable. ``level`` is the confidence of the
    result's interval.
    """

    judge: str
    threshold: float | None
    judged: float | None
    failed: bool
    significant: bool | None = None
    strict: bool = False
    level: float = 0.95

    @property
    def passed(self) -> bool:
        return not self.failed


def _beyond(threshold: float, upper: bool) -> Callable[[float], bool]:
    """Whether a value is on the unsafe side of ``threshold`` (above a "max", below a "min")."""
    return (lambda x: x > threshold) if upper else (lambda x: x < threshold)


def _significant(r: AuditResult, level: float) -> bool | None:
    """Is the no-leak null rejected on the unsafe side, at ``level``?

    By the attack's exact / permutation one-sided p-value where it has one,
    else by the interval's safe end excluding the honest ``baseline``.
    """
    if r.p_value is not None:
        return bool(r.p_value < (1.0 - level) / 2.0)
    safe_bound = r.ci_low if r.direction == "max" else r.ci_high
    if safe_bound is not None and r.baseline is not None:
        return bool(safe_bound > r.baseline if r.direction == "max" else safe_bound < r.baseline)
    return None


def threshold_verdict(r: AuditResult, rule: Rule, judge: str, level: float) -> Verdict | None:
    """Judge a result that ran (``r.value`` set) against its ``max`` / ``min`` / ``margin`` rule.

    ``None`` when the rule gives no threshold for the result's direction
    (the test is then informational). The "unsafe" side is above a "max"
    threshold, below a "min" one; ``audits/default_policy.toml`` says when
    to use which judge:

    significant
        fail iff the estimate is on the unsafe side of the threshold AND the
        no-leak null is rejected on the unsafe side (by the attack's exact /
        permutation p-value, else by the interval excluding ``baseline``, the
        value an honest release has): a leak that is material and
        statistically established. An honest release is refused with
        probability at most ``(1 - level) / 2`` per test, at any sample size.
        If the threshold is stricter than the baseline (no leak is itself
        unacceptable), the interval must lie beyond the threshold.
    point
        fail iff the estimate is on the unsafe side (no allowance for
        sampling noise).
    ci
        fail unless the whole interval is on the safe side: the release must
        *prove* it is below the threshold; refuses honest releases of small
        tables (wide intervals).
    beyond
        fail only if the whole interval is on the unsafe side: the leak is
        established to exceed the threshold itself; lets through leaks near
        the threshold.

    Without the interval end or baseline a judge needs, the estimate alone
    is compared (as under ``point``).
    """
    assert r.value is not None
    if rule.margin is not None:
        threshold = (r.baseline or 0.0) + rule.margin
    else:
        threshold = rule.max if r.direction == "max" else rule.min
    if threshold is None:
        return None
    upper = r.direction == "max"
    beyond = _beyond(threshold, upper)
    unsafe_bound = r.ci_high if upper else r.ci_low  # the interval's end on the unsafe side
    safe_bound = r.ci_low if upper else r.ci_high
    significant = _significant(r, level)
    # A threshold stricter than the honest value makes "no leak" itself unacceptable; "significant"
    # then asks whether the value is established beyond the threshold.
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
    return Verdict(
        judge=judge,
        threshold=threshold,
        judged=judged,
        failed=failed,
        significant=significant,
        strict=strict,
        level=level,
    )


def epsilon_verdict(r: AuditResult, rule: Rule, claimed: float | None) -> Verdict:
    """Judge an empirical epsilon lower bound against the claimed epsilon plus ``rule.slack``.

    Without a claim the test passes, unless the rule requires one
    (``require_claim``): then it fails and the threshold the result carries
    is left as it is. The ``point`` judge always applies: the bound is
    already a high-confidence lower limit.
    """
    assert r.value is not None
    if claimed is None:
        if rule.require_claim:
            return Verdict(judge="point", threshold=r.threshold, judged=r.value, failed=True, significant=r.significant)
        return Verdict(judge="point", threshold=None, judged=r.value, failed=False, significant=r.significant)
    threshold = float(claimed) + rule.slack
    return Verdict(
        judge="point", threshold=threshold, judged=r.value, failed=not r.value <= threshold, significant=r.significant
    )


# ---------------------------------------------------------------------------- explanation
def pct(level: float) -> str:
    """A confidence level as a percentage without trailing zeros: 0.95 -> "95%", 0.9875 -> "98.75%"."""
    text = f"{100 * level:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def fmt(x: float) -> str:
    """A value in a message: two decimals, or three significant digits below 0.1."""
    return f"{x:.2f}" if abs(x) >= 0.1 or x == 0 else f"{x:.3g}"


def _evidence(r: AuditResult, v: Verdict, interval: str, found: bool) -> str:
    """The test of the no-leak null, in words: its p-value, or whether its interval excludes the baseline."""
    if r.p_value is not None:
        return (
            f"one-sided p = {r.p_value:.2g} against no leak, {'below' if found else 'not below'} "
            f"{(1.0 - v.level) / 2.0:.3g}"
        )
    return (
        f"its {interval} {'excludes' if found else 'includes'} the no-leak value "
        f"{fmt(r.baseline) if r.baseline is not None else '?'}"
    )


def explain_threshold(r: AuditResult, v: Verdict) -> str:
    """The message of a threshold verdict: by how much a failed test missed and on what evidence, a
    note when a test passed although its estimate is beyond the threshold, else ``""``."""
    assert r.value is not None and v.threshold is not None and v.judged is not None
    upper = r.direction == "max"
    beyond = _beyond(v.threshold, upper)
    level = pct(v.level)
    interval = (
        f"{level} interval {fmt(r.ci_low)} to {fmt(r.ci_high)}"
        if r.ci_low is not None and r.ci_high is not None
        else ""
    )
    safe_bound = r.ci_low if upper else r.ci_high
    verb = "exceeds" if upper else "is below"
    if v.failed:
        how = ""
        if v.judge in ("ci", "beyond") and v.judged != r.value:
            side = "upper" if (v.judge == "ci") == upper else "lower"
            how = f" (its {side} {level} confidence bound {fmt(v.judged)})"
        message = (
            f"{r.name} = {fmt(r.value)}{how} {verb} threshold {fmt(v.threshold)} by {fmt(abs(v.judged - v.threshold))}"
        )
        if v.judge == "significant" and v.strict and safe_bound is not None:
            message += (
                f" (its {interval} lies beyond the threshold, which is stricter than the "
                f"no-leak value {fmt(r.baseline)})"
            )
        elif v.judge == "significant" and v.significant is not None:
            message += f" ({_evidence(r, v, interval, True)})"
        return message
    if beyond(r.value) and v.judge in ("significant", "beyond"):
        what = (
            _evidence(r, v, interval, False)
            if v.judge == "significant" and not v.strict
            else f"its {interval} reaches the safe side of the threshold"
        )
        return (
            f"note: {r.name} = {fmt(r.value)} {verb} threshold {fmt(v.threshold)}, but {what}: "
            f"not established at this sample size (judge = {v.judge!r}); passed"
        )
    return ""


def explain_epsilon(r: AuditResult, v: Verdict, rule: Rule, claimed: float | None) -> str | None:
    """The message of an epsilon verdict; ``None`` where the result's own message is kept (no claim,
    none required)."""
    assert r.value is not None
    if claimed is None:
        if not v.failed:
            return None
        return (
            "epsilon_lower_bound: no claimed epsilon was given and the policy requires one "
            "(tests.epsilon_lower_bound.require_claim = true)"
        )
    if v.passed:
        return ""
    assert v.threshold is not None
    return (
        f"DP implementation appears broken: empirical epsilon lower bound {fmt(r.value)} exceeds the "
        f"claimed epsilon {fmt(float(claimed))}{f' + slack {fmt(rule.slack)}' if rule.slack else ''} "
        f"by {fmt(r.value - v.threshold)}"
    )
