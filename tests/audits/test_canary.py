"""Canary epsilon audit: the bound's arithmetic, and both directions on real fits."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import audits
from audits import AuditData, canary_audit, epsilon_lower_bound
from audits.canary import p_value


def test_lower_bound_hand_checkable_case():
    # 10 guesses, all correct, delta = 0: reject eps while q^10 < 0.05 with q = e^eps / (1 + e^eps),
    # so q* = 0.05^(1/10) = 0.741134 and eps* = ln(q* / (1 - q*)) = 1.051873.
    q = 0.05 ** 0.1
    assert epsilon_lower_bound(m=20, r=10, v=10) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)
    assert math.log(q / (1 - q)) == pytest.approx(1.051873, abs=1e-6)


def test_pure_dp_bound_is_the_one_sided_clopper_pearson_bound():
    for r, v in [(100, 80), (40, 31), (200, 150)]:
        q = stats.beta.ppf(0.05, v, r - v + 1)  # P[Binomial(r, q) >= v] = 0.05
        assert epsilon_lower_bound(m=2 * r, r=r, v=v) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)


def test_bound_is_zero_without_evidence_and_shrinks_with_delta():
    assert epsilon_lower_bound(m=200, r=100, v=50) == 0.0
    assert epsilon_lower_bound(m=200, r=100, v=58) == 0.0  # p-value at eps=0 is ~0.067
    pure = epsilon_lower_bound(m=1000, r=100, v=90)
    approx = epsilon_lower_bound(m=1000, r=100, v=90, delta=1e-4)
    assert 0 < approx < pure
    # The delta term only ever adds to the p-value.
    assert p_value(1000, 100, 90, 1.0, 1e-4) > p_value(1000, 100, 90, 1.0, 0.0)


def _leaky(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    return df.sample(n=n_rows, replace=n_rows > len(df), random_state=seed).reset_index(drop=True)


def test_leaky_generator_gives_a_bound_well_above_one(mixed):
    data = AuditData(mixed["train"], mixed["holdout"], mixed["fresh"], mixed["spec"], seed=0)
    r = canary_audit(data, _leaky, n_canaries=200, reference_rows=500, claimed_epsilon=1.0)
    assert r.value > 3.0, r.details
    assert r.details["correct"] == r.details["guesses"]


def test_honest_generator_gives_a_bound_near_zero(mixed):
    spec = mixed["spec"]

    def independent(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
        # Samples from the public domain only: never looks at df.
        rng = np.random.default_rng(seed)
        cols = {}
        for c in spec.columns:
            cols[c.name] = (rng.choice(np.array(c.categories, dtype=object), n_rows) if c.kind == "categorical"
                            else rng.uniform(c.lower, c.upper, n_rows))
        return pd.DataFrame(cols)

    data = AuditData(mixed["train"], mixed["holdout"], mixed["fresh"], spec, seed=0)
    bounds = [canary_audit(data, independent, n_canaries=200, reference_rows=300, k_guess=50).value]
    data2 = AuditData(mixed["train"], mixed["holdout"], mixed["fresh"], spec, seed=1)
    bounds.append(canary_audit(data2, independent, n_canaries=200, reference_rows=300).value)
    assert max(bounds) < 0.5


def test_broken_dp_claim_fails_the_gate(mixed):
    report = audits.run(mixed["train"], mixed["holdout"], mixed["holdout"], mixed["spec"], tier="thorough",
                        generator=_leaky, claimed_epsilon=1.0,
                        policy=audits.Policy.from_dict({"params": {"shadow_runs": 4, "shadow_targets": 2,
                                                                   "shadow_reference_rows": 100,
                                                                   "canary_reference_rows": 300}}))
    eps = report.result("epsilon_lower_bound")
    assert eps.passed is False and "DP implementation appears broken" in eps.message
    assert report.decision == "FAIL"
