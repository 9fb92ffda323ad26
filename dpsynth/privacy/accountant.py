"""Compose privacy events and turn them into (epsilon, delta); calibrate noise.

Two accountants from dp-accounting stand behind one function, :func:`epsilon_for`:

* **PLD** (privacy loss distributions; Koskela et al. 2020, Doroshenko et al.
  2022) is tight for Gaussian, Laplace and Poisson-subsampled Gaussian
  mechanisms and their compositions. It is used whenever it supports every
  part of the event.
* **RDP** (Mironov 2017, with the conversion of Balle et al. 2020) covers the
  rest, notably zCDP events such as the exponential mechanism's
  bounded-range guarantee (rho = epsilon^2 / 8; Cesar & Rogers 2021).
* Where neither supports the whole event (an (epsilon, delta)-only event,
  which RDP cannot represent, next to a zCDP event, which PLD cannot), the
  two parts are accounted separately and added by basic composition,
  ``(eps_1 + eps_2, delta_1 + delta_2)``, with the best of a few splits of
  delta (``pld+rdp``).

Both accountants know dpsynth's own leaves (:mod:`dpsynth.privacy.events`):
the discrete Gaussian that draws every noisy count, and bare (epsilon, delta)
guarantees.

Noise is calibrated against the same accountant that reports the cost
(:func:`calibrate` for a real parameter, :func:`largest_integer` for a count
such as a number of steps), not against a looser closed-form conversion: a
Gaussian calibrated by the simple zCDP bound ``eps = rho + 2 sqrt(rho log(1/delta))``
to (1, 1e-6) is in truth about (0.78, 1e-6)-DP, i.e. it adds noise the
promise did not need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Literal

import dp_accounting as dpa

from dpsynth.errors import PrivacyAccountingError
from dpsynth.privacy.events import pld_accountant, rdp_accountant

Accountant = Literal["auto", "pld", "rdp"]
DELTA_SPLITS = (0.1, 0.3, 0.5, 0.7, 0.9)  # share of delta given to the RDP part of a mixed event
RDP_BRACKET = 1.25  # calibrate's first PLD bracket: [RDP's answer / RDP_BRACKET, RDP's answer]


def compose(events: Iterable[dpa.DpEvent], regroup: bool = False) -> dpa.DpEvent:
    """One event for running ``events`` in sequence (adaptively); no-ops dropped.

    With ``regroup``, nested compositions are flattened and identical
    mechanisms gathered into one self-composition wherever they occur. Every
    accountant here composes commutatively, so this is the same guarantee; PLD
    then self-composes by FFT powers instead of convolving once per copy (a
    ledger of repeated identical releases, AIM's repeated rounds).
    """
    events = [e for e in events if not isinstance(e, dpa.NoOpDpEvent)]
    if not regroup:
        if not events:
            return dpa.NoOpDpEvent()
        return events[0] if len(events) == 1 else dpa.ComposedDpEvent(events)
    counts: dict[str, list] = {}  # keyed by repr: events holding lists are unhashable
    for leaf, count in (pair for event in events for pair in _leaves(event)):
        counts.setdefault(repr(leaf), [leaf, 0])[1] += count
    builder = dpa.DpEventBuilder()
    for leaf, count in counts.values():
        builder.compose(leaf, count)
    return builder.build()


def _pick(event: dpa.DpEvent, accountant: Accountant):
    if accountant in ("auto", "pld"):
        candidate = pld_accountant()
        if candidate.supports(event):
            return candidate, "pld"
        if accountant == "pld":
            raise PrivacyAccountingError(f"the PLD accountant does not support {event}")
    candidate = rdp_accountant()
    if candidate.supports(event):
        return candidate, "rdp"
    if accountant == "auto" and _split(event) is not None:
        return None, "pld+rdp"
    raise PrivacyAccountingError(f"no accountant supports the privacy event {event}")


def _leaves(event: dpa.DpEvent, times: int = 1) -> list[tuple[dpa.DpEvent, int]]:
    """``event`` as (leaf, count) pairs; composition is commutative for every accountant here."""
    if isinstance(event, dpa.ComposedDpEvent):
        return [pair for inner in event.events for pair in _leaves(inner, times)]
    if isinstance(event, dpa.SelfComposedDpEvent):
        return _leaves(event.event, times * event.count)
    return [] if isinstance(event, dpa.NoOpDpEvent) else [(event, times)]


def _split(event: dpa.DpEvent) -> tuple[dpa.DpEvent, dpa.DpEvent] | None:
    """(RDP part, PLD-only part) of an event neither accountant supports whole, or None if impossible."""
    rdp_part, pld_part = [], []
    for leaf, count in _leaves(event):
        item = leaf if count == 1 else dpa.SelfComposedDpEvent(leaf, count)
        if rdp_accountant().supports(leaf):
            rdp_part.append(item)
        elif pld_accountant().supports(leaf):
            pld_part.append(item)
        else:
            return None
    if not rdp_part or not pld_part:
        return None
    return dpa.ComposedDpEvent(rdp_part), dpa.ComposedDpEvent(pld_part)


def _mixed_epsilon(event: dpa.DpEvent, delta: float) -> float:
    """Basic composition of the RDP part and the PLD-only part, at the best split of ``delta``."""
    parts = _split(event)
    assert parts is not None
    rdp_part, pld_part = parts
    rdp_acc, pld_acc = rdp_accountant().compose(rdp_part), pld_accountant().compose(pld_part)
    return min(
        float(rdp_acc.get_epsilon(share * delta)) + float(pld_acc.get_epsilon((1 - share) * delta))
        for share in DELTA_SPLITS
    )


def epsilon_for(
    event: dpa.DpEvent, delta: float, accountant: Accountant = "auto", with_accountant: bool = False
) -> float | tuple[float, str]:
    """Smallest epsilon such that ``event`` is (epsilon, delta)-DP by the chosen accountant.

    ``auto`` uses PLD where it supports the whole event and RDP otherwise.
    A non-private part makes epsilon infinite.
    """
    if not 0 <= delta < 1:
        raise PrivacyAccountingError(f"delta must be in [0, 1), got {delta}")
    if accountant not in ("auto", "pld", "rdp"):
        raise PrivacyAccountingError(f"accountant must be 'auto', 'pld' or 'rdp', got {accountant!r}")
    if isinstance(event, dpa.NoOpDpEvent):
        return (0.0, "none") if with_accountant else 0.0
    chosen, name = _pick(event, accountant)
    try:
        if chosen is None:
            epsilon = _mixed_epsilon(event, delta) if delta > 0 else math.inf
        else:
            epsilon = float(chosen.compose(event).get_epsilon(delta))
    except (ValueError, ArithmeticError) as exc:  # e.g. a negative noise multiplier, q > 1, zero Laplace scale
        raise PrivacyAccountingError(f"cannot compute epsilon of {event}: {exc}") from exc
    return (epsilon, name) if with_accountant else epsilon


def accountant_for(event: dpa.DpEvent, accountant: Accountant = "auto") -> str:
    """Which accountant :func:`epsilon_for` uses for ``event`` (``pld``, ``rdp``, ``pld+rdp`` or ``none``),
    without computing epsilon."""
    if isinstance(event, dpa.NoOpDpEvent):
        return "none"
    return _pick(event, accountant)[1]


def calibrate(
    make_event: Callable[[float], dpa.DpEvent],
    epsilon: float,
    delta: float,
    lower: float = 1e-3,
    upper: float = 1e3,
    rel_tol: float = 1e-4,
    accountant: Accountant = "auto",
) -> float:
    """Smallest noise parameter ``x`` in [lower, upper] with ``epsilon_for(make_event(x)) <= epsilon``.

    ``make_event`` must be decreasing in privacy loss as ``x`` grows (a noise
    multiplier). Bisection in log space; the returned value is always on the
    safe side of the target, within ``rel_tol`` relative of the optimum.
    """
    if not epsilon > 0 or not math.isfinite(epsilon):
        raise PrivacyAccountingError(f"target epsilon must be a positive finite number, got {epsilon}")

    seen: dict[float, float] = {}

    def loss(x: float) -> float:
        if x not in seen:
            seen[x] = epsilon_for(make_event(x), delta, accountant)  # type: ignore[assignment]
        return seen[x]

    if accountant != "rdp" and _pick(make_event(upper), accountant)[1] == "pld":
        # PLD is slow, the more so for small noise: bracket the answer with the cheap
        # RDP accountant first (RDP overstates epsilon, so its answer is safe for PLD,
        # and rarely more than RDP_BRACKET above PLD's), then widen only if needed.
        upper = calibrate(make_event, epsilon, delta, lower, upper, rel_tol=1e-3, accountant="rdp")
        lower = max(lower, upper / RDP_BRACKET)
        while lower > 1e-6 and loss(lower) <= epsilon:
            upper, lower = lower, lower / RDP_BRACKET
    if loss(upper) > epsilon:
        raise PrivacyAccountingError(
            f"cannot reach epsilon={epsilon} at delta={delta}: even noise parameter {upper} costs {loss(upper):.4g}"
        )
    if loss(lower) <= epsilon:
        return lower
    lo, hi = lower, upper
    while hi / lo > 1 + rel_tol:
        mid = math.sqrt(lo * hi)
        if loss(mid) <= epsilon:
            hi = mid
        else:
            lo = mid
    return hi


def largest_integer(ok: Callable[[int], bool], low: int, high: int) -> int:
    """Largest ``t`` in ``[low, high]`` with ``ok(t)``, for ``ok`` true up to some point and false after.

    ``ok(low)`` must hold (it is not evaluated). Bisection: about ``log2(high - low)``
    calls. The integer twin of :func:`calibrate`, e.g. the number of DP-SGD
    steps a fixed noise multiplier affords.
    """
    if low > high:
        raise ValueError(f"empty range [{low}, {high}]")
    if ok(high):
        return high
    while high - low > 1:  # ok(low), not ok(high)
        mid = (low + high) // 2
        low, high = (mid, high) if ok(mid) else (low, mid)
    return low


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """Noise standard deviation for one Gaussian release of L2 ``sensitivity`` at (epsilon, delta).

    Calibrated with the PLD accountant, which for a single Gaussian is exact
    up to discretisation (it agrees with the analytic Gaussian mechanism of
    Balle & Wang 2018).
    """
    if not 0 < delta < 1:
        raise PrivacyAccountingError(f"a Gaussian mechanism needs delta in (0, 1), got {delta}")
    if not (sensitivity > 0 and math.isfinite(sensitivity)):
        raise PrivacyAccountingError(f"sensitivity must be a positive finite number, got {sensitivity}")
    multiplier = calibrate(
        lambda s: dpa.GaussianDpEvent(s), epsilon, delta, lower=1e-2, upper=1e4, rel_tol=1e-6, accountant="pld"
    )
    return multiplier * sensitivity


def zcdp_epsilon(rho: float, delta: float) -> float:
    """The simple zCDP -> (epsilon, delta) bound of Bun & Steinke 2016 (Prop. 1.3), for comparison."""
    if not (rho >= 0 and math.isfinite(rho)) or not 0 < delta < 1:
        raise PrivacyAccountingError(f"need rho >= 0 and delta in (0, 1), got rho={rho}, delta={delta}")
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))
