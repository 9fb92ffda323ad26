"""OpenDP's mechanisms for DP domain discovery, calibrated against OpenDP's own privacy maps.

* :func:`quantile`: ``make_private_quantile`` (exponential mechanism over
  public candidates, zCDP measure); :func:`quantile_scale` reads the scale
  that gives a target rho from the map.
* :func:`histogram`: ``make_gaussian_threshold`` on a map of key -> exact
  count (keys unknown in advance: a value is released only above the
  threshold, which is what needs delta); :func:`threshold_for` is the
  smallest threshold whose map meets a delta.
* :func:`largest_within`: the largest privacy parameter whose loss stays
  within a target (geometric bisection), for the budget split.

:mod:`dpsynth.discovery` plans with these and records every cost as the
DpEvent the maps justify.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dpsynth.errors import PrivacyAccountingError, UsageError
from dpsynth.privacy.accountant import largest_integer


def quantile(candidates: Sequence[float], alpha: float, scale: float):
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp.m.make_private_quantile(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.symmetric_distance(),
        dp.zero_concentrated_divergence(),
        candidates=list(candidates),
        alpha=float(alpha),
        scale=float(scale),
    )


def quantile_scale(candidates: Sequence[float], alpha: float, rho: float) -> float:
    """Gumbel scale giving ``rho``-zCDP: OpenDP's map is rho = c / scale^2; read c at scale 1."""
    unit = quantile(candidates, alpha, 1.0).map(1)
    scale = math.sqrt(unit / rho)
    while quantile(candidates, alpha, scale).map(1) > rho:  # OpenDP rounds its map up: stay on the safe side
        scale *= 1 + 1e-9
    return scale


KEY_SEPARATOR = "\x1f"  # ASCII unit separator: joins a column's position and a value into one key


def histogram(scale: float, threshold: int):
    """OpenDP's Gaussian-thresholded histogram on a map of key -> exact count."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp.m.make_gaussian_threshold(
        dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int)),
        dp.l02inf_distance(dp.absolute_distance(T=int)),
        scale=float(scale),
        threshold=int(threshold),
    )


def to_approx_dp(measurement, delta: float):
    import opendp.prelude as dp

    return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(measurement), float(delta))


def threshold_for(scale: float, d_in: tuple[int, int, int], delta: float) -> int:
    """Smallest threshold whose OpenDP map gives delta <= ``delta`` at ``scale``."""

    def too_loose(t: int) -> bool:
        return histogram(scale, t).map(d_in)[1] > delta

    hi = 2
    while too_loose(hi):
        hi *= 2
        if hi > 2**30:
            raise PrivacyAccountingError(f"no threshold reaches delta={delta:.3g} at Gaussian scale {scale:.4g}")
    lo = hi // 2
    if not too_loose(lo):
        return lo
    return largest_integer(too_loose, lo, hi - 1) + 1


def largest_within(loss, target: float, lo_share: float = 1e-6, rel_tol: float = 1e-6) -> float:
    """Largest ``x`` (privacy parameter, loss increasing in x) with ``loss(x) <= target``, to ``rel_tol``."""
    lo, hi = target * lo_share, target
    while loss(hi) <= target:
        lo, hi = hi, hi * 2
    if loss(lo) > target:
        # e.g. the RDP accountant cannot certify a zCDP event below epsilon ~ log(1/delta) / max order
        raise UsageError(
            f"--epsilon is too small: the accountant cannot fit this part of the discovery into "
            f"epsilon={target:.4g} (at least {loss(lo):.3g} for any noise); use a larger --epsilon"
        )
    while hi / lo > 1 + rel_tol:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if loss(mid) <= target else (lo, mid)
    return lo
