"""Intervals and ROC statistics against closed forms and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from audits.stats import (
    WeightedROC,
    auc_from_curve,
    auc_p_value,
    bonferroni_confidence,
    clopper_pearson_interval,
    normalised_risk,
    ratio_interval,
    risk_values,
    roc_summary,
    success_rate,
    tpr_at_fpr,
    tpr_at_fpr_rows,
    tpr_permutation_p_values,
    wilson_interval,
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
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025**0.1, rel=1e-9)
    lo, hi = clopper_pearson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025**0.1, rel=1e-9)
    # Clopper-Pearson is never narrower than Wilson.
    w = wilson_interval(7, 30)
    c = clopper_pearson_interval(7, 30)
    assert c[0] <= w[0] and c[1] >= w[1]


def test_success_rate_is_anonymeters_wilson_centre():
    r = success_rate(30, 100)
    z2 = 1.959963984540054**2
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
        s = roc_summary(scores, labels, n_bootstrap=200, seed=seed, n_permutations=0)
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
    # Train always succeeds (every record copied): the interval reaches 1.
    copied = normalised_risk(300, 300, 250, 300)
    assert copied.ci_high == 1.0 and copied.ci_low > 0.8
    np.testing.assert_allclose(
        risk_values(np.array([600, 100]), 1000, np.array([100, 100]), 1000), [leak.value, same.value]
    )


def test_ratio_interval_solves_the_mover_equations():
    # Zou & Donner (2008): the lower limit t solves (p1 - t p2)^2 = (p1 - l1)^2 + t^2 (u2 - p2)^2.
    x1, n1, x2, n2 = 30, 200, 45, 180
    lo, hi = ratio_interval(x1, n1, x2, n2)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1)
    l2, u2 = wilson_interval(x2, n2)
    assert (p1 - lo * p2) ** 2 == pytest.approx((p1 - l1) ** 2 + lo**2 * (u2 - p2) ** 2)
    assert (p1 - hi * p2) ** 2 == pytest.approx((p1 - u1) ** 2 + hi**2 * (l2 - p2) ** 2)
    assert lo < p1 / p2 < hi
    assert ratio_interval(5, 100, 0, 100)[1] == math.inf


@pytest.mark.parametrize("n, a, c", [(300, 0.85, 0.85), (300, 0.9, 0.83), (60, 0.5, 0.5), (2000, 0.05, 0.04)])
def test_risk_interval_has_its_nominal_coverage(n, a, c):
    # The former interval arithmetic on two 95% Wilson intervals covered ~99.5% and so hid real leaks;
    # the MOVER interval should cover close to 95%, and exclude 0 on the unsafe side ~2.5% under no leak.
    rng = np.random.default_rng(int(1000 * a + n))
    truth = (a - c) / (1 - c)
    trials = 1500
    covered = above = 0
    for _ in range(trials):
        r = normalised_risk(int(rng.binomial(n, a)), n, int(rng.binomial(n, c)), n)
        covered += r.ci_low <= truth <= r.ci_high
        above += r.ci_low > 0
    assert 0.93 <= covered / trials <= 0.975
    if a == c:
        assert above / trials <= 0.045


def test_bonferroni_confidence():
    assert bonferroni_confidence(0.95, 1) == pytest.approx(0.95)
    assert bonferroni_confidence(0.95, 10) == pytest.approx(0.995)
    with pytest.raises(ValueError):
        bonferroni_confidence(0.95, 0)


def test_auc_p_value_is_mann_whitney():
    rng = np.random.default_rng(1)
    scores = np.r_[rng.normal(0.3, 1, 40), rng.normal(0, 1, 40)]
    labels = np.r_[np.ones(40), np.zeros(40)]
    u = roc_auc_score(labels, scores) * 40 * 40
    from scipy import stats

    expected = stats.mannwhitneyu(scores[:40], scores[40:], alternative="greater").pvalue
    assert auc_p_value(scores, labels) == pytest.approx(expected)
    assert stats.mannwhitneyu(scores[:40], scores[40:]).statistic == pytest.approx(u)
    # Perfect separation of 8 vs 8 (the shadow attack's size): exact p = 1 / C(16, 8).
    assert auc_p_value(
        np.r_[np.ones(8) + np.arange(8), -np.arange(8.0)], np.r_[np.ones(8), np.zeros(8)]
    ) == pytest.approx(1 / math.comb(16, 8))


def test_tpr_at_fpr_rows_matches_the_scalar_reading():
    rng = np.random.default_rng(3)
    curves = []
    for _ in range(20):
        scores = rng.integers(0, 6, 60).astype(float)  # ties: vertical and diagonal segments
        labels = np.r_[np.ones(30), np.zeros(30)]
        curves.append(WeightedROC(scores, labels).curve())
    width = max(len(f) for f, _ in curves)
    pad = lambda a: np.r_[a, np.full(width - len(a), a[-1])]  # noqa: E731
    fprs = np.stack([pad(f) for f, _ in curves])
    tprs = np.stack([pad(t) for _, t in curves])
    for target in (0.0, 0.01, 0.1, 0.5, 1.0):
        expected = [
            float(np.interp(target, f, t)) if target not in f else float(t[f == target].max()) for f, t in curves
        ]
        np.testing.assert_allclose(tpr_at_fpr_rows(fprs, tprs, target), expected, atol=1e-12)


def test_tpr_permutation_p_values_are_calibrated():
    # No signal, 150 members vs 150 tied-heavy non-members (DOMIAS-like scores): the one-sided p-value of
    # TPR at 1% FPR is below 0.05 about 5% of the time. The percentile bootstrap is no test here: with
    # 1.5 non-members beyond the 1% threshold its lower end is mostly 0 or jumps with single records.
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(150), np.zeros(150)]
    p_values = []
    for i in range(100):
        scores = np.round(rng.normal(size=300), 1)
        roc = WeightedROC(scores, labels)
        fpr, tpr = roc.curve()
        p_values.append(
            tpr_permutation_p_values(roc, {0.01: tpr_at_fpr(fpr, tpr, 0.01)}, 200, np.random.default_rng(i))[0.01]
        )
    p_values = np.array(p_values)
    assert np.mean(p_values < 0.05) <= 0.1 and np.mean(p_values < 0.5) <= 0.65
    # A strong signal gives the smallest p-value the permutations allow.
    scores = np.r_[rng.normal(3, 1, 150), rng.normal(0, 1, 150)]
    roc = WeightedROC(scores, labels)
    fpr, tpr = roc.curve()
    assert tpr_permutation_p_values(roc, {0.01: tpr_at_fpr(fpr, tpr, 0.01)}, 99, rng)[0.01] == pytest.approx(0.01)
