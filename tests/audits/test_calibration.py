"""Calibration, both ways: a leaky generator is flagged by every family; honest tables by none."""

from __future__ import annotations

import pytest

import audits

FAMILIES = ("distance", "membership", "reidentification")
NULL = {
    "dcr_share": 0.5,
    "nndr_ratio": 1.0,
    "mia_distance": 0.5,
    "mia_domias": 0.5,
    "linkage_risk": 0.0,
    "singling_out_risk": 0.0,
    "attribute_inference_risk": 0.0,
}


def _failed_families(report: audits.AuditReport) -> set[str]:
    return {r.family for r in report.failures()}


@pytest.mark.parametrize("dataset", ["mixed", "adult"])
def test_leaky_generator_is_flagged_by_every_family(dataset, request, leaky_copy):
    d = request.getfixturevalue(dataset)
    synthetic = leaky_copy(d["train"], seed=3)
    report = audits.run(d["train"], d["holdout"], synthetic, d["spec"], seed=0)
    assert report.decision == "FAIL"
    assert _failed_families(report) >= set(FAMILIES)
    assert report.result("mia_distance").value > 0.9
    assert report.result("mia_distance").ci_low > 0.85
    assert report.result("mia_domias").value > 0.7
    assert report.result("dcr_share").value > 0.95
    assert report.result("nndr_ratio").value < 0.6
    risk = max(report.result(n).value for n in ("linkage_risk", "attribute_inference_risk", "singling_out_risk"))
    assert risk > 0.15
    assert all(r.status == "ok" for r in report.results)


def test_generator_returning_train_verbatim_fails_exact_copies(mixed):
    synthetic = mixed["train"].sample(frac=1.0, random_state=0)
    report = audits.run(mixed["train"], mixed["holdout"], synthetic, mixed["spec"])
    copies = report.result("exact_copy_rate")
    assert copies.value == 1.0 and not copies.passed
    assert "exceeds threshold" in copies.message


@pytest.mark.parametrize("dataset", ["mixed", "adult"])
def test_holdout_as_synthetic_is_flagged_by_none(dataset, request):
    d = request.getfixturevalue(dataset)
    report = audits.run(d["train"], d["holdout"], d["holdout"], d["spec"], seed=0)
    assert report.failures() == []
    assert report.decision == "PASS"


@pytest.mark.parametrize("dataset", ["mixed", "adult"])
def test_independent_sample_sits_at_the_null_within_its_intervals(dataset, request):
    d = request.getfixturevalue(dataset)
    report = audits.run(d["train"], d["holdout"], d["fresh"], d["spec"], seed=0)
    assert report.decision == "PASS", report.failure_messages()
    for name, null in NULL.items():
        r = report.result(name)
        # Small slack: with ~10 intervals at 95% one may just miss by chance.
        assert r.ci_low - 0.02 <= null <= r.ci_high + 0.02, (name, r.value, r.ci_low, r.ci_high)
    copies = report.result("exact_copy_rate")
    assert abs(copies.value - copies.baseline) < 0.02
