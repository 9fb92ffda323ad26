"""Canary epsilon audit: the bound's arithmetic, the canaries, and both directions on generators.

Power against real MST bugs (noise scaled down, noise skipped) is tested in
tests/test_canary_power.py, which needs dpsynth.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import audits
from audits import AuditData, canary_audit, epsilon_lower_bound
from audits.canary import CellCoder, make_canaries, p_value
from audits.errors import AuditInputError


def test_lower_bound_hand_checkable_case():
    # 10 guesses, all correct, delta = 0: reject eps while q^10 < 0.05 with q = e^eps / (1 + e^eps),
    # so q* = 0.05^(1/10) = 0.741134 and eps* = ln(q* / (1 - q*)) = 1.051873.
    q = 0.05**0.1
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
    r = canary_audit(data, _leaky, n_canaries=400, reference_rows=500, claimed_epsilon=1.0)
    assert r.value > 3.0, r.details
    assert r.details["guesses"] == 100 and r.details["correct"] >= 98  # an included canary can miss the resample
    assert r.details["n_guessed_canaries"] == 200  # the other half only calibrates the score
    assert ["nearest record"] in r.details["leaky_features"]


def test_canaries_occupy_two_way_cells_no_reference_row_has(mixed):
    reference = mixed["holdout"].iloc[:300].reset_index(drop=True)
    coder = CellCoder(mixed["spec"], reference)
    canaries = make_canaries(reference, coder, 200, np.random.default_rng(0))
    mixed["spec"].check_frame(canaries, "canaries")  # every value copied from the public domain
    cq, rq = coder.codes(canaries), coder.codes(reference)
    private = []
    for a, b in itertools.combinations(mixed["spec"].names, 2):
        keys, ref_keys = coder.cell_keys(cq, (a, b)), coder.cell_keys(rq, (a, b))
        private.append(~np.isin(keys, ref_keys))
    per_canary = np.sum(private, axis=0)
    # A random holdout row shares almost all its pair cells with the reference rows; a canary does not.
    holdout_rows = mixed["holdout"].iloc[300:500].reset_index(drop=True)
    hq = coder.codes(holdout_rows)
    holdout_private = np.sum(
        [
            ~np.isin(coder.cell_keys(hq, p), coder.cell_keys(rq, p))
            for p in itertools.combinations(mixed["spec"].names, 2)
        ],
        axis=0,
    )
    assert per_canary.mean() > 3 * max(holdout_private.mean(), 1.0), (per_canary.mean(), holdout_private.mean())


def test_generator_is_asked_for_a_row_count_fixed_before_inclusion(mixed):
    asked = []

    def recording(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
        asked.append((len(df), n_rows))
        return _leaky(df, n_rows, seed)

    for seed in (0, 1):
        data = AuditData(mixed["train"], mixed["holdout"], mixed["fresh"], mixed["spec"], seed=seed)
        canary_audit(data, recording, n_canaries=40, reference_rows=200, sample_factor=3)
    (train0, rows0), (train1, rows1) = asked
    assert train0 != train1  # different numbers of included canaries...
    assert rows0 == rows1 == 3 * (200 + 20)  # ...but the output size reveals none of it


def test_a_generator_that_keeps_one_two_way_marginal_is_seen_in_that_marginal(mixed):
    # Every column is resampled on its own, except (age, income), drawn jointly: the records are
    # destroyed (the old nearest-record score saw nothing), one exact two-way marginal is kept.
    def keeps_age_income(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        out = pd.DataFrame({c: df[c].to_numpy()[rng.integers(0, len(df), n_rows)] for c in df.columns})
        joint = rng.integers(0, len(df), n_rows)
        out["age"], out["income"] = df["age"].to_numpy()[joint], df["income"].to_numpy()[joint]
        return out

    data = AuditData(mixed["train"], mixed["holdout"], mixed["fresh"], mixed["spec"], seed=1)
    r = canary_audit(data, keeps_age_income, n_canaries=400, reference_rows=500, claimed_epsilon=1.0)
    assert r.details["leaky_features"][0] == ["age", "income"], r.details
    assert r.value > 0.5, r.details


def test_bad_parameters_are_named(mixed):
    data = AuditData(mixed["train"], mixed["holdout"], mixed["fresh"], mixed["spec"], seed=0)
    with pytest.raises(AuditInputError, match="n_canaries"):
        canary_audit(data, _leaky, n_canaries=6, reference_rows=100)
    with pytest.raises(AuditInputError, match="sample_factor"):
        canary_audit(data, _leaky, n_canaries=40, reference_rows=100, sample_factor=0)


def test_honest_generator_gives_a_bound_near_zero(mixed):
    spec = mixed["spec"]

    def independent(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
        # Samples from the public domain only: never looks at df.
        rng = np.random.default_rng(seed)
        cols = {}
        for c in spec.columns:
            cols[c.name] = (
                rng.choice(np.array(c.categories, dtype=object), n_rows)
                if c.kind == "categorical"
                else rng.uniform(c.lower, c.upper, n_rows)
            )
        return pd.DataFrame(cols)

    data = AuditData(mixed["train"], mixed["holdout"], mixed["fresh"], spec, seed=0)
    bounds = [canary_audit(data, independent, n_canaries=200, reference_rows=300, k_guess=50).value]
    data2 = AuditData(mixed["train"], mixed["holdout"], mixed["fresh"], spec, seed=1)
    bounds.append(canary_audit(data2, independent, n_canaries=200, reference_rows=300).value)
    assert max(bounds) < 0.5


def test_broken_dp_claim_fails_the_gate(mixed):
    report = audits.run(
        mixed["train"],
        mixed["holdout"],
        mixed["holdout"],
        mixed["spec"],
        tier="thorough",
        generator=_leaky,
        claimed_epsilon=1.0,
        policy=audits.Policy.from_dict(
            {
                "params": {
                    "shadow_runs": 4,
                    "shadow_targets": 2,
                    "shadow_reference_rows": 100,
                    "canary_reference_rows": 300,
                }
            }
        ),
    )
    eps = report.result("epsilon_lower_bound")
    assert eps.passed is False and "DP implementation appears broken" in eps.message
    assert report.decision == "FAIL"
