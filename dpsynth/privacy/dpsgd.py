"""DP-SGD accounting: the events of a fit, the noise calibration and the step cap, by one accountant.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", CCS):
each step draws a Poisson sample of the rows (every row independently with
probability ``q``), clips every row's gradient to L2 norm ``C``, sums and adds
``N(0, (sigma C)^2)``. One step is the Poisson-subsampled Gaussian mechanism;
a run of ``T`` steps is its ``T``-fold composition. This module owns what is
fixed before training, from public inputs only (row count, batch size,
epochs, target, preprocessing events); the training loop lives in
:mod:`dpsynth.synthesizers.dpsgd`.

One accountant decides everything, the one that reports the cost
(:func:`~dpsynth.privacy.accountant.epsilon_for`: PLD where it supports every
part of the event, Koskela et al. 2020, Doroshenko et al. 2022):

1. **Calibration**: the noise multiplier is the smallest one for which the
   *whole* fit (:func:`fit_event`: the noisy row count, the subclass's
   preprocessing such as DP-CTGAN's noisy category counts, then ``epochs / q``
   steps) is (epsilon, delta)-DP, found by
   :func:`~dpsynth.privacy.accountant.calibrate` (bracketed by the cheap RDP
   accountant, which overstates epsilon, then bisected with PLD). The
   preprocessing's cost is subtracted by composition, not by splitting epsilon.
2. **Step cap**, for a user-fixed noise multiplier only: the largest number of
   steps within the target (:func:`steps_within_budget`, by
   :func:`~dpsynth.privacy.accountant.largest_integer`). A calibrated plan's
   every planned step is within the target by construction.
3. **Reported cost**: the steps actually taken, as :func:`fit_event`,
   evaluated by :class:`~dpsynth.privacy.cost.PrivacyCost` with the same
   accountant, so a run is never reported above the target it was planned for.

Opacus (which runs the steps) keeps an accountant of its own for its training
hooks; it decides nothing, and the loop checks that it saw the planned steps.

The sampling rate is ``1 / ceil(n / batch_size)`` as in Opacus, so the row
count ``n`` is treated as public *for the sampling rate*, as every DP-SGD
library does (docs/threat-model.md).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dp_accounting as dpa

from dpsynth.errors import PrivacyAccountingError
from dpsynth.privacy.accountant import accountant_for, calibrate, compose, epsilon_for, largest_integer

CALIBRATION_REL_TOL = 1e-3  # relative precision of the noise multiplier: epsilon lands within ~0.1% below target


def poisson_sample_rate(n_rows: int, batch_size: int) -> tuple[float, int]:
    """Opacus' sampling rate ``1 / ceil(n / batch_size)`` and the number of steps per epoch."""
    batches = math.ceil(n_rows / batch_size)
    q = 1 / batches
    return q, int(1 / q)


def dpsgd_event(sample_rate: float, noise_multiplier: float, steps: int) -> dpa.DpEvent:
    """``steps`` Poisson-subsampled Gaussian steps (add/remove one record)."""
    if steps <= 0:
        return dpa.NoOpDpEvent()
    step = dpa.PoissonSampledDpEvent(sample_rate, dpa.GaussianDpEvent(noise_multiplier))
    return dpa.SelfComposedDpEvent(step, steps)


def fit_event(
    preprocessing: Sequence[dpa.DpEvent], sample_rate: float, noise_multiplier: float, steps: int
) -> dpa.DpEvent:
    """The whole fit: preprocessing events, then the DP-SGD steps."""
    return compose([*preprocessing, dpsgd_event(sample_rate, noise_multiplier, steps)])


def calibrate_noise_multiplier(
    epsilon: float, delta: float, sample_rate: float, steps: int, preprocessing: Sequence[dpa.DpEvent] = ()
) -> tuple[float, str]:
    """Smallest DP-SGD noise multiplier for which preprocessing + ``steps`` steps is (epsilon, delta)-DP.

    Returns ``(noise_multiplier, accountant)``, the accountant being the one
    that will report the cost (``pld`` for Gaussian preprocessing). The
    multiplier is on the safe side, within :data:`CALIBRATION_REL_TOL` of the
    smallest one.
    """
    preprocessing = tuple(preprocessing)

    def make_event(sigma: float) -> dpa.DpEvent:
        return fit_event(preprocessing, sample_rate, sigma, steps)

    with _quiet_rdp():
        floor = epsilon_for(compose(preprocessing), delta)
        if floor >= epsilon:
            raise PrivacyAccountingError(f"preprocessing alone costs epsilon={floor:.4g} >= target {epsilon}")
        try:
            sigma = calibrate(make_event, epsilon, delta, lower=1e-3, upper=1e4, rel_tol=CALIBRATION_REL_TOL)
        except PrivacyAccountingError as exc:
            raise PrivacyAccountingError(
                f"could not calibrate DP-SGD noise for epsilon={epsilon}, delta={delta} with sampling rate "
                f"{sample_rate:.4g} over {steps} steps ({exc}). The budget may be too small for this many "
                "steps: lower epochs or raise batch_size."
            ) from exc
    return sigma, accountant_for(make_event(sigma))


def steps_within_budget(
    epsilon: float,
    delta: float,
    sample_rate: float,
    noise_multiplier: float,
    max_steps: int,
    preprocessing: Sequence[dpa.DpEvent] = (),
) -> int:
    """Largest ``t <= max_steps`` such that preprocessing + ``t`` steps is (epsilon, delta)-DP.

    Judged by the reporting accountant, so a run that stops here is reported
    within the target. The search starts from the RDP answer (RDP overstates
    epsilon, so its step count is usually safe, and cheap to find).
    """

    def within(t: int, accountant: str = "auto") -> bool:
        event = fit_event(preprocessing, sample_rate, noise_multiplier, t)
        return epsilon_for(event, delta, accountant) <= epsilon  # type: ignore[arg-type, operator]

    with _quiet_rdp():
        if within(max_steps):
            return max_steps
        if not within(0):
            raise PrivacyAccountingError(f"preprocessing alone exceeds epsilon={epsilon} at delta={delta}")
        start = largest_integer(lambda t: within(t, "rdp"), 0, max_steps)
        if start and not within(start):  # RDP is usually, not provably, looser than PLD
            start = 0
        return largest_integer(within, start, max_steps - 1)  # not within(max_steps): checked above


@contextlib.contextmanager
def _quiet_rdp() -> Iterator[None]:
    """Silence dp-accounting's RDP convergence warnings (orders it excludes are reported, not errors)."""
    from absl import logging as absl_logging

    before = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(before)


@dataclass(frozen=True)
class TrainingPlan:
    """Everything fixed before the first step: sampling rate, noise, step limits."""

    sample_rate: float
    steps_per_epoch: int
    epochs: int
    noise_multiplier: float
    calibrated_by: str
    max_steps: int

    @property
    def planned_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def plan_training(
    epsilon: float,
    delta: float,
    n_rows: int,
    batch_size: int,
    epochs: int,
    noise_multiplier: float | None,
    preprocessing: Sequence[dpa.DpEvent] = (),
) -> TrainingPlan:
    """Calibrate (or take) the noise multiplier; cap the steps at the budget where the noise is given.

    A pure function of its public inputs, cached (the ledger's reservation,
    ``planned_cost`` and ``fit`` plan the same fit): calibration takes seconds.
    """
    return _plan(
        float(epsilon),
        float(delta),
        int(n_rows),
        int(batch_size),
        int(epochs),
        None if noise_multiplier is None else float(noise_multiplier),
        tuple(preprocessing),
    )


@functools.lru_cache(maxsize=64)
def _plan(
    epsilon: float,
    delta: float,
    n_rows: int,
    batch_size: int,
    epochs: int,
    noise_multiplier: float | None,
    preprocessing: tuple[dpa.DpEvent, ...],
) -> TrainingPlan:
    q, per_epoch = poisson_sample_rate(n_rows, batch_size)
    planned = epochs * per_epoch
    if noise_multiplier is None:
        sigma, by = calibrate_noise_multiplier(epsilon, delta, q, planned, preprocessing)
        limit = planned  # calibrated so that every planned step is within the target
    else:
        sigma, by = noise_multiplier, "given"
        limit = steps_within_budget(epsilon, delta, q, sigma, planned, preprocessing)
    return TrainingPlan(q, per_epoch, epochs, sigma, by, limit)
