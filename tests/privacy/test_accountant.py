"""The accountant: Gaussian calibration, composition, routing, and refusals.

Each check compares against something computed independently of
dpsynth.privacy.accountant: the analytic Gaussian mechanism of Balle & Wang
(2018) written out here with scipy, the closed forms of a single Laplace
mechanism and of Gaussian composition, and dp-accounting's accountants driven
directly. A wrong sigma, a forgotten composition or a looser accountant
fails one of them.
"""

from __future__ import annotations

import functools
import math

import dp_accounting as dpa
import pytest
from dp_accounting import pld, rdp
from scipy.optimize import brentq
from scipy.stats import norm

from dpsynth.errors import PrivacyAccountingError
from dpsynth.privacy.accountant import (
    accountant_for,
    calibrate,
    compose,
    epsilon_for,
    gaussian_sigma,
    largest_integer,
    zcdp_epsilon,
)


# -- an independent reference: the analytic Gaussian mechanism ---------------------------
def analytic_gaussian_delta(epsilon: float, sigma: float) -> float:
    """Balle & Wang 2018, Thm. 8: the exact delta of N(0, sigma^2) noise at L2 sensitivity 1."""
    a, b = 1 / (2 * sigma), epsilon * sigma
    return norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b)


def analytic_gaussian_sigma(epsilon: float, delta: float) -> float:
    return brentq(lambda s: analytic_gaussian_delta(epsilon, s) - delta, 1e-3, 1e4, xtol=1e-12, rtol=1e-12)


@functools.cache
def cached_sigma(epsilon: float, delta: float) -> float:
    return gaussian_sigma(epsilon, delta)


@pytest.mark.parametrize("epsilon,delta", [(1.0, 1e-6), (0.5, 1e-5), (0.1, 1e-6), (0.3, 1e-9)])
def test_gaussian_sigma_matches_the_analytic_gaussian_mechanism(epsilon: float, delta: float) -> None:
    sigma = cached_sigma(epsilon, delta)
    reference = analytic_gaussian_sigma(epsilon, delta)
    assert sigma == pytest.approx(reference, rel=1e-3)
    # and on the safe side: the exact delta at the returned sigma does not exceed the target
    assert analytic_gaussian_delta(epsilon, sigma) <= delta * (1 + 1e-6)


def test_gaussian_sigma_scales_with_sensitivity() -> None:
    assert gaussian_sigma(0.1, 1e-6, sensitivity=3.0) == pytest.approx(3 * cached_sigma(0.1, 1e-6), rel=1e-9)


def test_calibrating_with_pld_beats_the_simple_zcdp_bound() -> None:
    # sigma from the simple zCDP bound: rho = 1 / (2 sigma^2), eps = rho + 2 sqrt(rho log(1/delta)) = 1
    rho = brentq(lambda r: zcdp_epsilon(r, 1e-6) - 1.0, 1e-9, 10.0, xtol=1e-15)
    assert rho + 2 * math.sqrt(rho * math.log(1e6)) == pytest.approx(1.0)
    sigma_zcdp = 1 / math.sqrt(2 * rho)
    true_epsilon, accountant = epsilon_for(dpa.GaussianDpEvent(sigma_zcdp), 1e-6, with_accountant=True)
    assert accountant == "pld"
    assert 0.75 <= true_epsilon <= 0.80
    assert cached_sigma(1.0, 1e-6) < 0.85 * sigma_zcdp


# -- composition ---------------------------------------------------------------------------
def pld_directly(events: list[dpa.DpEvent], delta: float) -> float:
    accountant = pld.PLDAccountant(value_discretization_interval=1e-4)
    for event in events:
        accountant.compose(event)
    return accountant.get_epsilon(delta)


def rdp_directly(events: list[dpa.DpEvent], delta: float) -> float:
    accountant = rdp.RdpAccountant()
    for event in events:
        accountant.compose(event)
    return accountant.get_epsilon(delta)


MIXED = [
    dpa.GaussianDpEvent(3.0),
    dpa.LaplaceDpEvent(4.0),
    dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.05, dpa.GaussianDpEvent(2.0)), 10),
    dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(10.0), 12),
]


def test_composed_epsilon_equals_dp_accountings_pld_accountant() -> None:
    epsilon, accountant = epsilon_for(compose(MIXED), 1e-6, with_accountant=True)
    assert accountant == "pld"
    assert epsilon == pytest.approx(pld_directly(MIXED, 1e-6), rel=1e-9)
    singles = [epsilon_for(e, 1e-6) for e in MIXED]
    assert max(singles) < epsilon < sum(singles)


def test_composed_epsilon_equals_dp_accountings_rdp_accountant() -> None:
    events = [
        dpa.GaussianDpEvent(3.0),
        dpa.LaplaceDpEvent(4.0),
        dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.05, dpa.GaussianDpEvent(2.0)), 10),
    ]
    rdp_epsilon = epsilon_for(compose(events), 1e-6, accountant="rdp")
    assert rdp_epsilon == pytest.approx(rdp_directly(events, 1e-6), rel=1e-12)
    # PLD is the tighter of two valid bounds
    assert epsilon_for(compose(events), 1e-6, accountant="pld") < rdp_epsilon


def test_gaussian_composition_matches_the_closed_form() -> None:
    # k Gaussians of sigma compose exactly to one Gaussian of sigma / sqrt(k) (Dong, Roth & Su 2019)
    sigma, k, delta = 12.0, 16, 1e-6
    epsilon = epsilon_for(compose([dpa.GaussianDpEvent(sigma)] * k), delta)
    assert epsilon == pytest.approx(
        epsilon_for(dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(sigma), k), delta), rel=1e-3
    )
    exact = brentq(lambda e: analytic_gaussian_delta(e, sigma / math.sqrt(k)) - delta, 1e-6, 50)
    assert exact <= epsilon <= exact * 1.002


def test_laplace_alone_matches_its_pure_dp_epsilon() -> None:
    # Laplace noise of scale b at sensitivity 1 is (1/b, 0)-DP, and hardly better at a tiny delta
    assert epsilon_for(dpa.LaplaceDpEvent(2.5), 1e-12) == pytest.approx(0.4, rel=1e-3)
    assert epsilon_for(dpa.LaplaceDpEvent(2.5), 1e-12, accountant="rdp") >= 0.4 * (1 - 1e-3)
    assert epsilon_for(dpa.LaplaceDpEvent(2.5), 1e-6) <= 0.4 + 1e-4


def test_compose_drops_no_ops_and_unwraps_a_single_event() -> None:
    gaussian = dpa.GaussianDpEvent(2.0)
    assert compose([]) == dpa.NoOpDpEvent()
    assert compose([dpa.NoOpDpEvent(), gaussian, dpa.NoOpDpEvent()]) == gaussian
    assert compose([gaussian, gaussian]) == dpa.ComposedDpEvent([gaussian, gaussian])
    assert epsilon_for(compose([]), 1e-6, with_accountant=True) == (0.0, "none")


def test_non_private_part_makes_epsilon_infinite() -> None:
    assert math.isinf(epsilon_for(compose([dpa.GaussianDpEvent(5.0), dpa.NonPrivateDpEvent()]), 1e-6))


# -- routing --------------------------------------------------------------------------------
def test_zcdp_events_route_to_rdp() -> None:
    rho, delta = 0.05, 1e-6
    epsilon, accountant = epsilon_for(dpa.ZCDpEvent(rho), delta, with_accountant=True)
    assert accountant == "rdp"
    assert epsilon == pytest.approx(rdp_directly([dpa.ZCDpEvent(rho)], delta), rel=1e-12)
    assert epsilon < zcdp_epsilon(rho, delta)  # the RDP conversion is tighter than the simple bound
    # one zCDP part sends the whole composition to RDP
    mixed = compose([dpa.GaussianDpEvent(4.0), dpa.ZCDpEvent(rho)])
    assert epsilon_for(mixed, delta, with_accountant=True)[1] == "rdp"
    assert epsilon_for(dpa.GaussianDpEvent(4.0), delta, with_accountant=True)[1] == "pld"
    with pytest.raises(PrivacyAccountingError, match="PLD"):
        epsilon_for(dpa.ZCDpEvent(rho), delta, accountant="pld")


# -- calibration ----------------------------------------------------------------------------
def dp_sgd(noise: float) -> dpa.DpEvent:
    return dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(noise)), 100)


def marginals(scale: float) -> dpa.DpEvent:
    """Ten Gaussian measurements and one Laplace count, all scaled by one noise parameter."""
    return dpa.ComposedDpEvent([dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(scale), 10), dpa.LaplaceDpEvent(3 * scale)])


@pytest.mark.parametrize("make_event,accountant", [(dp_sgd, "rdp"), (marginals, "auto")])
def test_calibrate_is_on_the_safe_side_and_within_tolerance(make_event, accountant: str) -> None:
    target, delta, rel_tol = 1.0, 1e-5, 1e-3
    noise = calibrate(make_event, target, delta, rel_tol=rel_tol, accountant=accountant)
    check = "rdp" if accountant == "rdp" else "pld"
    assert epsilon_for(make_event(noise), delta, accountant=check) <= target
    assert epsilon_for(make_event(noise / (1 + 2 * rel_tol)), delta, accountant=check) > target
    if accountant == "auto":  # the tight accountant needs less noise for the same promise
        assert noise < calibrate(make_event, target, delta, rel_tol=rel_tol, accountant="rdp")


@pytest.mark.parametrize("boundary", [0, 1, 37, 99, 100])
def test_largest_integer_finds_the_last_true_with_few_calls(boundary: int) -> None:
    calls = []

    def ok(t: int) -> bool:
        calls.append(t)
        return t <= boundary

    assert largest_integer(ok, 0, 100) == boundary
    assert len(calls) <= 1 + math.ceil(math.log2(100))
    assert all(0 < t <= 100 for t in calls)  # ok(low) is taken as given


def test_accountant_for_names_the_accountant_epsilon_for_uses() -> None:
    for event in (dpa.GaussianDpEvent(2.0), dpa.ZCDpEvent(0.1), compose([]), dp_sgd(1.0)):
        assert accountant_for(event) == epsilon_for(event, 1e-6, with_accountant=True)[1]


# -- refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: epsilon_for(dpa.UnsupportedDpEvent(), 1e-6), id="unsupported-event"),
        pytest.param(
            lambda: epsilon_for(dpa.PoissonSampledDpEvent(0.1, dpa.ZCDpEvent(0.1)), 1e-6),
            id="sampled-zcdp-no-accountant",
        ),
        pytest.param(lambda: epsilon_for("gaussian", 1e-6), id="not-an-event"),  # type: ignore[arg-type]
        pytest.param(lambda: epsilon_for(dpa.GaussianDpEvent(1.0), 1.0), id="delta-one"),
        pytest.param(lambda: epsilon_for(dpa.GaussianDpEvent(1.0), -1e-6), id="delta-negative"),
        pytest.param(lambda: epsilon_for(dpa.GaussianDpEvent(1.0), float("nan")), id="delta-nan"),
        pytest.param(
            lambda: epsilon_for(dpa.GaussianDpEvent(1.0), 1e-6, accountant="gdp"),  # type: ignore[arg-type]
            id="unknown-accountant",
        ),
        pytest.param(lambda: epsilon_for(dpa.GaussianDpEvent(-1.0), 1e-6), id="negative-noise"),
        pytest.param(lambda: epsilon_for(dpa.ZCDpEvent(-0.1), 1e-6), id="negative-rho"),
        pytest.param(
            lambda: epsilon_for(dpa.PoissonSampledDpEvent(1.5, dpa.GaussianDpEvent(1.0)), 1e-6),
            id="probability-above-one",
        ),
        pytest.param(
            lambda: epsilon_for(compose([dpa.LaplaceDpEvent(0.0), dpa.ZCDpEvent(0.1)]), 1e-6),
            id="zero-laplace-under-rdp",
        ),
        pytest.param(lambda: calibrate(lambda s: dpa.GaussianDpEvent(s), 0.0, 1e-6), id="calibrate-epsilon-zero"),
        pytest.param(
            lambda: calibrate(lambda s: dpa.GaussianDpEvent(s), float("inf"), 1e-6), id="calibrate-epsilon-inf"
        ),
        pytest.param(
            lambda: calibrate(lambda s: dpa.GaussianDpEvent(s), 1e-3, 1e-12, upper=10.0), id="calibrate-unreachable"
        ),
        pytest.param(lambda: gaussian_sigma(1.0, 0.0), id="sigma-delta-zero"),
        pytest.param(lambda: gaussian_sigma(1.0, 1e-6, sensitivity=0.0), id="sigma-zero-sensitivity"),
        pytest.param(lambda: zcdp_epsilon(0.1, 0.0), id="zcdp-delta-zero"),
        pytest.param(lambda: zcdp_epsilon(-0.1, 1e-6), id="zcdp-negative-rho"),
    ],
)
def test_invalid_or_unsupported_inputs_raise_privacy_accounting_error(call) -> None:
    with pytest.raises(PrivacyAccountingError):
        call()
