"""dpsynth's own privacy events: the discrete Gaussian and bare (epsilon, delta) guarantees.

The discrete Gaussian's accounting is checked against an independent computation of its exact
privacy profile (Canonne, Kamath & Steinke 2020, Theorem 7), so a wrong sigma, a wrong
sensitivity or a continuous-Gaussian shortcut would fail here.
"""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest

from dpsynth.errors import PrivacyAccountingError
from dpsynth.privacy.accountant import calibrate, epsilon_for
from dpsynth.privacy.cost import event_from_dict, event_to_dict
from dpsynth.privacy.events import DiscreteGaussianDpEvent, EpsilonDeltaDpEvent


def exact_discrete_gaussian_delta(sigma: float, epsilon: float, sensitivity: int = 1) -> float:
    """delta(eps) of N_Z(0, sigma^2) with integer sensitivity (CKS 2020, Theorem 7), by direct summation.

    delta = P[X > eps sigma^2 / D - D / 2] - e^eps P[X > eps sigma^2 / D + D / 2], X ~ N_Z(0, sigma^2).
    """
    support = np.arange(-int(60 * sigma) - 50, int(60 * sigma) + 51)
    log_weight = -(support.astype(float) ** 2) / (2 * sigma**2)
    pmf = np.exp(log_weight - log_weight.max())
    pmf /= pmf.sum()
    t = epsilon * sigma**2 / sensitivity
    return float(
        pmf[support > t - sensitivity / 2].sum() - math.exp(epsilon) * pmf[support > t + sensitivity / 2].sum()
    )


def exact_epsilon(sigma: float, delta: float, sensitivity: int = 1) -> float:
    lo, hi = 0.0, 100.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if exact_discrete_gaussian_delta(sigma, mid, sensitivity) <= delta else (mid, hi)
    return hi


@pytest.mark.parametrize("sigma", [0.8, 2.0, 7.5, 30.0])
def test_discrete_gaussian_pld_matches_its_exact_privacy_profile(sigma: float) -> None:
    exact = exact_epsilon(sigma, 1e-6)
    reported = epsilon_for(DiscreteGaussianDpEvent(sigma), 1e-6, accountant="pld")
    assert reported >= exact - 1e-9  # pessimistic: never below the truth
    assert reported == pytest.approx(exact, rel=5e-3, abs=2e-3)


def test_discrete_gaussian_sensitivity_is_used() -> None:
    exact = exact_epsilon(6.0, 1e-6, sensitivity=3)
    assert epsilon_for(DiscreteGaussianDpEvent(6.0, 3), 1e-6, accountant="pld") == pytest.approx(exact, rel=5e-3)
    assert exact > 2 * exact_epsilon(6.0, 1e-6)  # sensitivity 3 is not sensitivity 1


def test_discrete_gaussian_is_not_the_continuous_one() -> None:
    # Close, but not the same profile: at sigma = 3 the discrete Gaussian leaks slightly more, so
    # recording it as a continuous GaussianDpEvent would understate epsilon.
    discrete = epsilon_for(DiscreteGaussianDpEvent(3.0), 1e-6, accountant="pld")
    continuous = epsilon_for(dpa.GaussianDpEvent(3.0), 1e-6, accountant="pld")
    assert discrete > continuous
    assert exact_epsilon(3.0, 1e-6) > continuous


def test_discrete_gaussian_rdp_is_its_zcdp_bound() -> None:
    for sigma, k in [(1.5, 1), (4.0, 7)]:
        event = dpa.SelfComposedDpEvent(DiscreteGaussianDpEvent(sigma), k)
        as_zcdp = dpa.ZCDpEvent(k / (2 * sigma**2))
        assert epsilon_for(event, 1e-6, accountant="rdp") == pytest.approx(epsilon_for(as_zcdp, 1e-6, "rdp"), rel=1e-9)


def test_self_composition_of_discrete_gaussians_composes() -> None:
    one = epsilon_for(DiscreteGaussianDpEvent(10.0), 1e-6, accountant="pld")
    ten = epsilon_for(dpa.SelfComposedDpEvent(DiscreteGaussianDpEvent(10.0), 10), 1e-6, accountant="pld")
    listed = epsilon_for(dpa.ComposedDpEvent([DiscreteGaussianDpEvent(10.0)] * 10), 1e-6, accountant="pld")
    assert ten == pytest.approx(listed, rel=1e-3)
    assert 2.5 * one < ten < 10 * one  # composed, and sub-additively


def test_calibration_reaches_the_target_with_discrete_noise() -> None:
    sigma = calibrate(lambda s: dpa.SelfComposedDpEvent(DiscreteGaussianDpEvent(s), 5), 1.0, 1e-6, lower=0.1, upper=1e4)
    assert epsilon_for(dpa.SelfComposedDpEvent(DiscreteGaussianDpEvent(sigma), 5), 1e-6) <= 1.0
    assert epsilon_for(dpa.SelfComposedDpEvent(DiscreteGaussianDpEvent(sigma * 0.99), 5), 1e-6) > 1.0


def test_epsilon_delta_event_alone_and_mixed_with_zcdp() -> None:
    alone = epsilon_for(EpsilonDeltaDpEvent(0.3, 1e-8), 1e-6, with_accountant=True)
    assert alone[1] == "pld" and alone[0] == pytest.approx(0.3, abs=1e-3)
    zcdp = dpa.ZCDpEvent(0.02)
    mixed, accountant = epsilon_for(
        dpa.ComposedDpEvent([EpsilonDeltaDpEvent(0.3, 1e-8), zcdp]), 1e-6, with_accountant=True
    )
    assert accountant == "pld+rdp"
    # basic composition: at least each part, at most the parts at the worst split
    assert mixed > epsilon_for(zcdp, 1e-6, "rdp") + 0.3 - 1e-3
    assert mixed <= epsilon_for(zcdp, 0.1e-6, "rdp") + epsilon_for(EpsilonDeltaDpEvent(0.3, 1e-8), 0.1e-6) + 1e-9
    # the (epsilon, delta) event's own delta must fit in the delta asked for
    assert epsilon_for(EpsilonDeltaDpEvent(0.3, 1e-5), 1e-6) > 0.3


def test_new_events_round_trip_and_bad_values_are_refused() -> None:
    event = dpa.ComposedDpEvent(
        [dpa.SelfComposedDpEvent(DiscreteGaussianDpEvent(4.5, 2), 3), EpsilonDeltaDpEvent(0.1, 1e-9)]
    )
    assert event_from_dict(event_to_dict(event)) == event
    for bad in (
        {"type": "discrete_gaussian", "sigma": -1},
        {"type": "discrete_gaussian", "sigma": 1, "sensitivity": 0},
        {"type": "epsilon_delta", "epsilon": 1, "delta": 1.5},
        {"type": "epsilon_delta", "epsilon": 1},
    ):
        with pytest.raises(PrivacyAccountingError):
            event_from_dict(bad)
