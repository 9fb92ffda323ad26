"""Policy parsing errors name the key; thresholds are applied as documented."""

from __future__ import annotations

import pytest

from audits import AuditResult, Policy, PolicyError
from audits.policy import TESTS


def _write(tmp_path, text):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_default_policy_is_complete():
    p = Policy.default()
    assert p.tier == "quick" and p.judge == "significant" and p.correction == "bonferroni"
    assert all(r.judge is None for r in p.tests.values())  # one rule for every test
    assert set(p.tests) == set(TESTS)
    # Bonferroni over the tests a tier runs: 10 in quick, 12 in thorough.
    assert p.test_confidence("quick") == pytest.approx(1 - 0.05 / 10)
    assert p.test_confidence("thorough") == pytest.approx(1 - 0.05 / 12)
    assert Policy.from_dict({"correction": "none"}).test_confidence("quick") == pytest.approx(0.95)
    assert p.tests["dcr_share"].max == 0.6
    assert "mia_shadow" not in p.required_tests()
    assert set(Policy.from_dict({"tier": "thorough"}).required_tests()) == set(TESTS)


def test_file_overrides_merge_over_the_default(tmp_path):
    p = Policy.load(_write(tmp_path, 'tier = "thorough"\n[tests.dcr_share]\nmax = 0.55\n'))
    assert p.tier == "thorough" and p.tests["dcr_share"].max == 0.55
    assert p.tests["mia_distance"].max == 0.6  # untouched defaults stay


@pytest.mark.parametrize(
    "text, key",
    [
        ("tier = \n", "invalid TOML"),
        ("colour = 1\n", "'colour'"),
        ("[tests.dcr_shar]\nmax = 0.5\n", "'tests.dcr_shar'"),
        ("[tests.dcr_share]\nmaximum = 0.5\n", "'tests.dcr_share.maximum'"),
        ('[tests.dcr_share]\nmax = "high"\n', "'tests.dcr_share.max' must be a number"),
        ("[tests.dcr_share]\nrequired = 1\n", "'tests.dcr_share.required' must be true or false"),
        ('tier = "slow"\n', "'tier' must be one of"),
        ("confidence = 2.0\n", "'confidence' must be in"),
        ("[params]\ncanaries = 2.5\n", "'params.canaries' must be an integer"),
        ("[params]\nshadow_runs = 2\n", "'params.shadow_runs' must be >= 4"),
        ('[attacker]\nquasi_identifiers = "age"\n', "'attacker.quasi_identifiers'"),
        ("[tests.exact_copy_rate]\nmargin = -0.1\n", "'tests.exact_copy_rate.margin'"),
        ('judge = "maybe"\n', "'judge' must be one of"),
        ('[tests.linkage_risk]\njudge = "upper"\n', "'tests.linkage_risk.judge' must be one of"),
        ('correction = "holm"\n', "'correction' must be one of"),
    ],
)
def test_bad_policy_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(PolicyError) as exc:
        Policy.load(_write(tmp_path, text))
    assert key in str(exc.value)
    assert str(tmp_path / "policy.toml") in str(exc.value)


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.load(tmp_path / "nope.toml")


def _result(name, value, lo, hi, direction="max", family="distance", baseline=None, p_value=None):
    return AuditResult(
        name=name,
        family=family,
        value=value,
        ci_low=lo,
        ci_high=hi,
        direction=direction,
        baseline=baseline,
        p_value=p_value,
    )


def _policy(judge):
    return Policy.from_dict({"judge": judge})


def test_significant_judge_needs_a_material_and_established_leak():
    p = Policy.default()
    # Beyond the threshold and the interval excludes the no-leak value 0: refused, message says both.
    leak = p.judge_result(
        _result("attribute_inference_risk", 0.39, 0.03, 0.63, family="reidentification", baseline=0.0)
    )
    assert leak.passed is False and leak.significant is True and leak.judge == "significant"
    assert leak.judged_value == 0.39 and leak.threshold == 0.1
    assert leak.message.startswith("attribute_inference_risk = 0.39 exceeds threshold 0.10 by 0.29")
    assert "excludes the no-leak value 0" in leak.message
    # The reported case: 0.185 with an interval around 0 is noise, not a leak: passes, with a note.
    noise = p.judge_result(
        _result("attribute_inference_risk", 0.185, -0.365, 0.522, family="reidentification", baseline=0.0)
    )
    assert noise.passed is True and noise.significant is False
    assert noise.message.startswith("note: attribute_inference_risk = 0.18") and "includes the no-leak" in noise.message
    # Significant but immaterial (tiny leak, huge sample): passes, no note.
    small = p.judge_result(_result("linkage_risk", 0.02, 0.01, 0.03, family="reidentification", baseline=0.0))
    assert small.passed is True and small.significant is True and small.message == ""
    # "min" direction: the interval must lie below the baseline 1.0.
    nndr = p.judge_result(_result("nndr_ratio", 0.5, 0.45, 0.55, direction="min", baseline=1.0))
    assert nndr.passed is False and "is below threshold 0.85" in nndr.message
    assert p.judge_result(_result("nndr_ratio", 0.8, 0.6, 1.05, direction="min", baseline=1.0)).passed


def test_a_threshold_stricter_than_the_no_leak_value_refuses_what_is_established_beyond_it():
    # "max = 0.0" for an AUC (used to force a refusal): an honest 0.5 is beyond it, and established.
    p = Policy.from_dict({"tests": {"mia_distance": {"max": 0.0}, "dcr_share": {"max": 0.45}}})
    auc = p.judge_result(_result("mia_distance", 0.5, 0.47, 0.53, family="membership", baseline=0.5, p_value=0.5))
    assert auc.passed is False and "stricter than the no-leak value 0.50" in auc.message
    # Beyond a strict threshold but not established beyond it: passes with a note.
    dcr = p.judge_result(_result("dcr_share", 0.47, 0.42, 0.52, baseline=0.5))
    assert dcr.passed is True and dcr.message.startswith("note:")


def test_significance_uses_the_p_value_when_the_attack_has_one():
    p = Policy.default()
    level = p.test_confidence("quick")  # 0.995: one-sided cut-off 0.0025
    # The bootstrap interval excludes 0.01, but the exact test does not reject: not significant.
    r = _result("mia_domias_tpr_1pct_fpr", 0.06, 0.013, 0.12, family="membership", baseline=0.01, p_value=0.02)
    judged = p.judge_result(r, level=level)
    assert judged.passed is True and judged.significant is False and "p = 0.02" in judged.message
    r = _result("mia_domias_tpr_1pct_fpr", 0.3, 0.2, 0.4, family="membership", baseline=0.01, p_value=0.001)
    judged = p.judge_result(r, level=level)
    assert judged.passed is False and judged.significant is True and "p = 0.001" in judged.message


def test_the_four_judges_on_one_result():
    # Estimate 0.58 under threshold 0.6, interval 0.52 to 0.66 (excludes the baseline 0.5).
    under = _result("dcr_share", 0.58, 0.52, 0.66, baseline=0.5)
    assert _policy("point").judge_result(under).passed is True
    assert _policy("significant").judge_result(under).passed is True
    ci = _policy("ci").judge_result(under)
    assert ci.passed is False and ci.judged_value == 0.66 and "upper 95% confidence bound 0.66" in ci.message
    assert _policy("beyond").judge_result(under).passed is True
    # Estimate 0.63 over the threshold, interval 0.48 to 0.75 (includes the baseline).
    over = _result("dcr_share", 0.63, 0.48, 0.75, baseline=0.5)
    assert _policy("point").judge_result(over).passed is False
    assert _policy("significant").judge_result(over).passed is True
    assert _policy("ci").judge_result(over).passed is False
    beyond = _policy("beyond").judge_result(over)
    assert beyond.passed is True and beyond.judged_value == 0.48 and beyond.message.startswith("note:")
    # The whole interval over the threshold: every judge refuses.
    far = _result("dcr_share", 0.9, 0.85, 0.95, baseline=0.5)
    assert all(_policy(j).judge_result(far).passed is False for j in ("point", "significant", "ci", "beyond"))
    assert "lower 95% confidence bound 0.85" in _policy("beyond").judge_result(far).message
    # A per-test judge overrides the top-level one.
    p = Policy.from_dict({"tests": {"dcr_share": {"judge": "ci"}}})
    assert p.judge_result(under).passed is False and p.judge_result(under).judge == "ci"


def test_significant_without_interval_or_baseline_falls_back_to_the_estimate():
    p = Policy.default()
    assert p.judge_result(_result("dcr_share", 0.7, None, None, baseline=0.5)).passed is False
    assert p.judge_result(_result("dcr_share", 0.7, 0.4, 0.9, baseline=None)).passed is False
    assert p.judge_result(_result("dcr_share", 0.5, None, None)).passed is True


def test_relative_threshold_for_exact_copies():
    p = Policy.default()
    r = p.judge_result(_result("exact_copy_rate", 0.11, 0.105, 0.115, baseline=0.10))
    assert r.threshold == pytest.approx(0.13) and r.passed
    r = p.judge_result(_result("exact_copy_rate", 0.2, 0.19, 0.21, baseline=0.10))
    assert not r.passed
    # Over the margin, but the interval reaches the holdout's own rate: not established.
    assert p.judge_result(_result("exact_copy_rate", 0.14, 0.09, 0.2, baseline=0.10)).passed


def test_epsilon_rule():
    p = Policy.default()
    r = AuditResult(name="epsilon_lower_bound", family="epsilon", value=3.2)
    assert p.judge_result(r, claimed_epsilon=5.0).passed
    broken = p.judge_result(r, claimed_epsilon=1.0)
    assert broken.passed is False and broken.message.startswith("DP implementation appears broken")
    assert p.judge_result(r, claimed_epsilon=None).passed
    strict = Policy.from_dict({"tests": {"epsilon_lower_bound": {"require_claim": True}}})
    assert strict.judge_result(r, claimed_epsilon=None).passed is False
