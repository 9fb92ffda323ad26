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
    assert p.tier == "quick" and p.judge == "ci"
    assert set(p.tests) == set(TESTS)
    assert p.tests["dcr_share"].max == 0.6
    assert "mia_shadow" not in p.required_tests()
    assert set(Policy.from_dict({"tier": "thorough"}).required_tests()) == set(TESTS)


def test_file_overrides_merge_over_the_default(tmp_path):
    p = Policy.load(_write(tmp_path, 'tier = "thorough"\n[tests.dcr_share]\nmax = 0.55\n'))
    assert p.tier == "thorough" and p.tests["dcr_share"].max == 0.55
    assert p.tests["mia_distance"].max == 0.6  # untouched defaults stay


@pytest.mark.parametrize("text, key", [
    ("tier = \n", "invalid TOML"),
    ("colour = 1\n", "'colour'"),
    ("[tests.dcr_shar]\nmax = 0.5\n", "'tests.dcr_shar'"),
    ("[tests.dcr_share]\nmaximum = 0.5\n", "'tests.dcr_share.maximum'"),
    ("[tests.dcr_share]\nmax = \"high\"\n", "'tests.dcr_share.max' must be a number"),
    ("[tests.dcr_share]\nrequired = 1\n", "'tests.dcr_share.required' must be true or false"),
    ("tier = \"slow\"\n", "'tier' must be one of"),
    ("confidence = 2.0\n", "'confidence' must be in"),
    ("[params]\ncanaries = 2.5\n", "'params.canaries' must be an integer"),
    ("[params]\nshadow_runs = 2\n", "'params.shadow_runs' must be >= 4"),
    ("[attacker]\nquasi_identifiers = \"age\"\n", "'attacker.quasi_identifiers'"),
    ("[tests.exact_copy_rate]\nmargin = -0.1\n", "'tests.exact_copy_rate.margin'"),
])
def test_bad_policy_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(PolicyError) as exc:
        Policy.load(_write(tmp_path, text))
    assert key in str(exc.value)
    assert str(tmp_path / "policy.toml") in str(exc.value)


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy file"):
        Policy.load(tmp_path / "nope.toml")


def _result(name, value, lo, hi, direction="max", family="distance", baseline=None):
    return AuditResult(name=name, family=family, value=value, ci_low=lo, ci_high=hi, direction=direction,
                       baseline=baseline)


def test_judging_uses_the_unsafe_confidence_bound_and_reports_by_how_much():
    p = Policy.default()
    bad = p.judge_result(_result("dcr_share", 0.98, 0.97, 0.99))
    assert bad.passed is False and bad.threshold == 0.6
    assert bad.message.startswith("dcr_share = 0.98") and "exceeds threshold 0.60 by 0.39" in bad.message
    # Point estimate inside, upper bound outside: conservative judge fails it.
    edge = p.judge_result(_result("dcr_share", 0.58, 0.55, 0.61))
    assert edge.passed is False and edge.judged_value == 0.61
    assert p.judge_result(_result("dcr_share", 0.5, 0.49, 0.51)).passed is True
    # "min" direction uses the lower bound.
    low = p.judge_result(_result("nndr_ratio", 0.9, 0.84, 0.95, direction="min"))
    assert low.passed is False and "is below threshold 0.85" in low.message
    # Point-judged tests ignore the interval.
    assert p.judge_result(_result("linkage_risk", 0.05, -0.1, 0.2, family="reidentification")).passed


def test_relative_threshold_for_exact_copies():
    p = Policy.default()
    r = p.judge_result(_result("exact_copy_rate", 0.11, 0.105, 0.115, baseline=0.10))
    assert r.threshold == pytest.approx(0.13) and r.passed
    r = p.judge_result(_result("exact_copy_rate", 0.2, 0.19, 0.21, baseline=0.10))
    assert not r.passed


def test_epsilon_rule():
    p = Policy.default()
    r = AuditResult(name="epsilon_lower_bound", family="epsilon", value=3.2)
    assert p.judge_result(r, claimed_epsilon=5.0).passed
    broken = p.judge_result(r, claimed_epsilon=1.0)
    assert broken.passed is False and broken.message.startswith("DP implementation appears broken")
    assert p.judge_result(r, claimed_epsilon=None).passed
    strict = Policy.from_dict({"tests": {"epsilon_lower_bound": {"require_claim": True}}})
    assert strict.judge_result(r, claimed_epsilon=None).passed is False
