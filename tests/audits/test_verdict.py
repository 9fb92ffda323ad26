"""The verdict is decided without prose, and the prose is rendered from the verdict alone."""

from __future__ import annotations

import dataclasses

import pytest

from audits import AuditResult, Policy
from audits.verdict import Rule, Verdict, epsilon_verdict, explain_threshold, threshold_verdict


def _auc(value: float, low: float, high: float, p_value: float | None = None) -> AuditResult:
    return AuditResult(
        name="mia_distance",
        family="membership",
        value=value,
        ci_low=low,
        ci_high=high,
        direction="max",
        baseline=0.5,
        p_value=p_value,
    )


@pytest.mark.parametrize(
    "judge, judged, failed",
    [
        ("point", 0.62, True),  # the estimate is beyond 0.6
        ("ci", 0.66, True),  # the upper end is beyond
        ("beyond", 0.58, False),  # the lower end is not
        ("significant", 0.62, True),  # beyond, and the interval excludes the no-leak 0.5
    ],
)
def test_each_judge_compares_its_own_number(judge: str, judged: float, failed: bool) -> None:
    v = threshold_verdict(_auc(0.62, 0.58, 0.66), Rule("mia_distance", max=0.6), judge, 0.95)
    assert v == Verdict(
        judge=judge, threshold=0.6, judged=judged, failed=failed, significant=True, strict=False, level=0.95
    )


def test_significance_comes_from_the_p_value_when_there_is_one() -> None:
    r = _auc(0.62, 0.58, 0.66, p_value=0.2)  # interval excludes 0.5, but the exact test does not reject
    v = threshold_verdict(r, Rule("mia_distance", max=0.6), "significant", 0.95)
    assert v is not None and v.significant is False and v.passed
    assert explain_threshold(r, v).startswith("note: mia_distance = 0.62 exceeds threshold 0.60, but one-sided p")


def test_no_threshold_for_the_direction_gives_no_verdict() -> None:
    assert threshold_verdict(_auc(0.62, 0.58, 0.66), Rule("mia_distance", min=0.3), "point", 0.95) is None


def test_the_message_depends_only_on_result_and_verdict() -> None:
    r = _auc(0.62, 0.58, 0.66)
    v = Verdict(judge="ci", threshold=0.6, judged=0.66, failed=True, level=0.99)
    assert explain_threshold(r, v) == (
        "mia_distance = 0.62 (its upper 99% confidence bound 0.66) exceeds threshold 0.60 by 0.06"
    )
    assert explain_threshold(r, dataclasses.replace(v, failed=False, judge="point")) == ""


def test_policy_judge_result_is_verdict_plus_explanation() -> None:
    policy = Policy.from_dict({"judge": "ci"})
    r = _auc(0.62, 0.58, 0.66)
    judged = policy.judge_result(r, level=0.99)
    v = threshold_verdict(dataclasses.replace(r, required=True), policy.tests["mia_distance"], "ci", 0.99)
    assert v is not None
    assert (judged.threshold, judged.judged_value, judged.passed, judged.judge, judged.significant) == (
        v.threshold,
        v.judged,
        v.passed,
        v.judge,
        v.significant,
    )
    assert judged.message == explain_threshold(r, v)


def test_epsilon_verdict_without_a_claim() -> None:
    r = AuditResult(name="epsilon_lower_bound", family="epsilon", value=0.4, threshold=None)
    assert epsilon_verdict(r, Rule("epsilon_lower_bound"), None).passed
    assert not epsilon_verdict(r, Rule("epsilon_lower_bound", require_claim=True), None).passed
    v = epsilon_verdict(r, Rule("epsilon_lower_bound", slack=0.1), 0.25)
    assert v.failed and v.threshold == pytest.approx(0.35)
