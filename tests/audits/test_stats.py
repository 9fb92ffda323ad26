"""Intervals and ROC statistics against closed forms and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from audits.stats import (
    WeightedROC, auc_from_curve, clopper_pearson_interval, normalised_risk, roc_summary, success_rate,
    tpr_at_fpr, wilson_interval,
)


def test_wilson_matches_closed_form_values():
    # Wilson (1927) for 8/10 at 95% (z = 1.959964): (0.4902, 0.9433), a textbook value.
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    # By hand: p = 0.5, n = 100 -> centre 0.5, half = z*sqrt(0.0025 + z^2/40000)/(1 + z^2/100).
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 100 + z * z / 40000) / (1 + z * z / 100)
    assert wilson_interval(50, 100) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)


def test_clopper_pearson_edges():
    # 0 of 10: upper bound 1 - 0.025^(1/10) (closed form of the Beta quantile).
    lo, hi = clopper_pearson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** 0.1, rel=1e-9)
    lo, hi = clopper_pearson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** 0.1, rel=1e-9)
    # Clopper-Pearson is never narrower than Wilson.
    w = wilson_interval(7, 30)
    c = clopper_pearson_interval(7, 30)
    assert c[0] <= w[0] and c[1] >= w[1]


def test_success_rate_is_anonymeters_wilson_centre():
    r = success_rate(30, 100)
    z2 = 1.959963984540054 ** 2
    assert r.value == pytest.approx((30 + z2 / 2) / (100 + z2))


def test_weighted_roc_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 400).astype(float)  # heavy ties
    labels = rng.random(400) < 0.5
    scores[labels] += 0.7 * rng.random(labels.sum())
    fpr, tpr = WeightedROC(scores, labels).curve()
    assert auc_from_curve(fpr, tpr) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_tpr_at_fpr_on_a_known_curve():
    # Perfect separation: TPR 1 at any FPR; random scores all tied: the diagonal.
    fpr, tpr = WeightedROC(np.r_[np.ones(50), np.zeros(50)], np.r_[np.ones(50), np.zeros(50)]).curve()
    assert tpr_at_fpr(fpr, tpr, 0.01) == 1.0
    fpr, tpr = WeightedROC(np.zeros(100), np.r_[np.ones(50), np.zeros(50)]).curve()
    assert tpr_at_fpr(fpr, tpr, 0.1) == pytest.approx(0.1)


def test_bootstrap_auc_interval_covers_the_truth():
    # Binormal model: members ~ N(1, 1), non-members ~ N(0, 1): true AUC = Phi(1/sqrt(2)) = 0.7602.
    true_auc = 0.7602499389065233
    covered = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        scores = np.r_[rng.normal(1, 1, 300), rng.normal(0, 1, 300)]
        labels = np.r_[np.ones(300), np.zeros(300)]
        s = roc_summary(scores, labels, n_bootstrap=200, seed=seed)
        assert s.auc_ci[0] < s.auc < s.auc_ci[1]
        covered += s.auc_ci[0] <= true_auc <= s.auc_ci[1]
    assert covered >= 17  # nominal 95%: P(fewer than 17 of 20) < 2%


def test_normalised_risk_signs_and_bounds():
    same = normalised_risk(100, 1000, 100, 1000)
    assert same.value == pytest.approx(0.0) and same.ci_low < 0 < same.ci_high
    leak = normalised_risk(600, 1000, 100, 1000)
    assert leak.value == pytest.approx((leak.attack.value - leak.control.value) / (1 - leak.control.value))
    assert 0.5 < leak.ci_low < leak.value < leak.ci_high < 0.62
    # Control always succeeds (holdout used as the synthetic table): bounded, clearly not a risk.
    safe = normalised_risk(300, 1000, 1000, 1000)
    assert safe.value == -1.0 and safe.ci_high < 0
