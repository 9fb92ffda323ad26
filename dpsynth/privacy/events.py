"""Privacy events dp-accounting does not ship, and the accountants that understand them.

* :class:`DiscreteGaussianDpEvent`: the discrete Gaussian mechanism
  ``N_Z(0, sigma^2)`` on integer queries of L2 sensitivity ``sensitivity``
  (Canonne, Kamath & Steinke 2020, "The Discrete Gaussian for Differential
  Privacy", NeurIPS). dpsynth draws every noisy count with it (OpenDP's
  exact, CSPRNG-backed sampler; see :mod:`dpsynth.privacy.noise`).

  - **zCDP / RDP**: ``rho = sensitivity^2 / (2 sigma^2)``, the same as the
    continuous Gaussian of standard deviation ``sigma`` (CKS 2020, Theorem 4
    for one dimension, Theorem 15 for vectors); the RDP accountant enters it
    as that ``ZCDpEvent``.
  - **PLD**: the exact privacy loss distribution of the one-dimensional
    discrete Gaussian with integer sensitivity ``sensitivity``
    (dp-accounting's ``from_discrete_gaussian_mechanism``, pessimistic
    discretisation). This is exact for the counting queries dpsynth asks:
    adding or removing one record changes a single cell of a marginal by
    one, and the noise of every other cell is independent of the change, so
    the privacy loss of the whole noisy vector is that of one coordinate.
    It is *not* valid for a vector query whose change spreads over several
    coordinates; such queries must use ``sensitivity`` > 1 on one coordinate
    or the zCDP bound. docs/noise.md gives the argument and the test.

* :class:`DiscreteGaussianVectorDpEvent`: the same noise on a count *vector*
  one unit can change by at most ``l2_sensitivity`` in L2 norm, spread over
  any number of cells (a person with K rows changes one marginal by L2 at
  most K: all K rows in one cell). Accounted only by its zCDP bound
  ``rho = l2_sensitivity^2 / (2 sigma^2)`` (CKS 2020, Theorem 15, which holds
  for any change of that L2 norm); the PLD accountant does not support it,
  because the one-dimensional PLD is not the worst case of a multi-cell
  change for the discrete Gaussian, so PLD never prices it.

* :class:`EpsilonDeltaDpEvent`: a mechanism known only to be
  (epsilon, delta)-DP (e.g. OpenDP's thresholded histogram for category
  discovery). PLD takes the worst-case PLD of any (epsilon, delta)-DP
  mechanism (dp-accounting's ``from_privacy_parameters``); RDP cannot
  represent it.

:func:`pld_accountant` and :func:`rdp_accountant` return dp-accounting
accountants extended with these leaves; :mod:`dpsynth.privacy.accountant`
uses them everywhere.
"""

from __future__ import annotations

import math

import attr
import dp_accounting as dpa
from dp_accounting import pld, rdp
from dp_accounting.pld import common as dp_common
from dp_accounting.pld import privacy_loss_distribution as pld_lib

PLD_DISCRETIZATION = 1e-4


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DiscreteGaussianDpEvent(dpa.DpEvent):
    """The discrete Gaussian mechanism: integer answers plus ``N_Z(0, sigma^2)`` noise per coordinate.

    ``sigma`` is the distribution's parameter (not exactly its standard
    deviation, which is slightly below ``sigma``); ``sensitivity`` is the
    integer amount one record can change the answer by.
    """

    sigma: float
    sensitivity: int = 1


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DiscreteGaussianVectorDpEvent(dpa.DpEvent):
    """Discrete Gaussian noise ``N_Z(0, sigma^2)`` per cell of an integer vector of L2 sensitivity ``l2_sensitivity``.

    The person-level counting query: one person with up to K rows changes a
    marginal's counts by at most K in L2 norm. zCDP ``rho = l2^2 / (2 sigma^2)``.
    """

    sigma: float
    l2_sensitivity: float = 1.0


@attr.s(frozen=True, slots=True, auto_attribs=True)
class EpsilonDeltaDpEvent(dpa.DpEvent):
    """A mechanism whose only known guarantee is (epsilon, delta)-DP."""

    epsilon: float
    delta: float


class _PLDAccountant(pld.PLDAccountant):
    """dp-accounting's PLD accountant, plus the two leaves above."""

    def _maybe_compose(self, event: dpa.DpEvent, count: int, do_compose: bool) -> object | None:
        if isinstance(event, DiscreteGaussianDpEvent):
            if do_compose:
                if event.sigma <= 0:
                    self._contains_non_dp_event = True
                else:
                    single = pld_lib.from_discrete_gaussian_mechanism(
                        event.sigma,
                        sensitivity=int(event.sensitivity),
                        value_discretization_interval=self._value_discretization_interval,
                    )
                    self._pld = self._pld.compose(single.self_compose(count) if count > 1 else single)
            return None
        if isinstance(event, EpsilonDeltaDpEvent):
            if do_compose:
                params = dp_common.DifferentialPrivacyParameters(float(event.epsilon), float(event.delta))
                single = pld_lib.from_privacy_parameters(
                    params, value_discretization_interval=self._value_discretization_interval
                )
                self._pld = self._pld.compose(single.self_compose(count) if count > 1 else single)
            return None
        return super()._maybe_compose(event, count, do_compose)


class _RdpAccountant(rdp.RdpAccountant):
    """dp-accounting's RDP accountant; a discrete Gaussian enters as its zCDP bound (CKS 2020)."""

    def _maybe_compose(self, event: dpa.DpEvent, count: int, do_compose: bool) -> object | None:
        if isinstance(event, DiscreteGaussianDpEvent):
            if event.sigma <= 0:
                return super()._maybe_compose(dpa.NonPrivateDpEvent(), count, do_compose)
            rho = float(event.sensitivity) ** 2 / (2.0 * event.sigma**2)
            return super()._maybe_compose(dpa.ZCDpEvent(rho), count, do_compose)
        if isinstance(event, DiscreteGaussianVectorDpEvent):
            if event.sigma <= 0:
                return super()._maybe_compose(dpa.NonPrivateDpEvent(), count, do_compose)
            return super()._maybe_compose(dpa.ZCDpEvent(zcdp_rho(event)), count, do_compose)
        return super()._maybe_compose(event, count, do_compose)


def pld_accountant() -> pld.PLDAccountant:
    return _PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)


def rdp_accountant() -> rdp.RdpAccountant:
    return _RdpAccountant()


def zcdp_rho(event: DiscreteGaussianDpEvent | DiscreteGaussianVectorDpEvent) -> float:
    """The zCDP parameter of one discrete Gaussian release (scalar sensitivity or L2 vector sensitivity)."""
    if isinstance(event, DiscreteGaussianVectorDpEvent):
        return float(event.l2_sensitivity) ** 2 / (2.0 * event.sigma**2) if event.sigma > 0 else math.inf
    return float(event.sensitivity) ** 2 / (2.0 * event.sigma**2) if event.sigma > 0 else math.inf


__all__ = [
    "DiscreteGaussianDpEvent",
    "DiscreteGaussianVectorDpEvent",
    "EpsilonDeltaDpEvent",
    "pld_accountant",
    "rdp_accountant",
    "zcdp_rho",
]
