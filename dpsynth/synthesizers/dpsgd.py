"""What DP-CTGAN and DP-VAE share: a public tensor encoding, DP-SGD set-up and accounting.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", CCS):
each step draws a Poisson sample of the rows (every row independently with
probability ``q``), clips every row's gradient to L2 norm ``C``, sums, adds
``N(0, (sigma C)^2)`` and takes an optimizer step. One step is the
Poisson-subsampled Gaussian mechanism; a run of ``T`` steps is its ``T``-fold
composition. Per-sample gradients, clipping, noise and Poisson sampling come
from Opacus 1.6 (Yousefpour et al. 2021, "Opacus: User-Friendly Differential
Privacy Library in PyTorch").

Accounting, in order:

1. **Calibration** before training: the noise multiplier is the smallest one
   for which Opacus' PRV accountant (Gopi et al. 2021, "Numerical Composition
   of Differential Privacy") says the *whole* fit -- preprocessing (the noisy
   row count, and e.g. the noisy category counts of DP-CTGAN: discrete
   Gaussians, entered as Gaussian mechanisms of the same sigma with sampling
   rate 1) plus ``epochs / q`` DP-SGD steps -- is (epsilon, delta)-DP.
   Calibration only picks the noise: the budget stop below judges the exact
   events by dpsynth's PLD accountant, so an approximation here can cost
   steps, never privacy.
   It is Opacus' ``get_noise_multiplier`` bisection, bracketed first by
   Opacus' RDP accountant (Mironov et al. 2019) and run on a history that
   starts with the preprocessing. RDP alone is the fallback where PRV fails
   (opacus #591, #604). Opacus' GDP accountant is never used: its CLT
   approximation is not an upper bound.
2. **Budget stop**: before training, dpsynth's own PLD accountant (the one that
   reports the cost) gives the largest number of steps that keeps the fit
   within the target; the loop never takes a step beyond it.
3. **Reported cost**: the steps actually taken, as one dp-accounting event
   ``ComposedDpEvent([DiscreteGaussianDpEvent(rows), preprocessing...,
   SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), steps)])``,
   evaluated by :class:`PrivacyCost`.

Randomness: Opacus draws the gradient noise from a torch generator made by
the fit's :class:`~dpsynth.privacy.noise.NoiseSource` (OS entropy unless
seeded) and used for nothing else; Poisson sampling, initialisation and the
GAN's fake rows use torch's global generator, seeded from the fit stream;
``sample()`` seeds it from the sample stream. The number of rows the
synthesizer publishes by default is a discrete-Gaussian noisy count
(``rows_budget_fraction`` of the budget, composed like any preprocessing).

The tensor encoding uses the public schema only: categories become one-hot
blocks; numbers are placed by their public bins (one-hot) plus an offset in
[-1, 1] inside the bin, or min-max scaled into [-1, 1] by the public bounds.
Nothing is fitted on the private table (no per-column Gaussian mixtures as in
CTGAN's mode-specific normalisation), so the encoding costs no budget.

Per-sample clipping defaults to Opacus' ghost clipping (exact per-row gradient
norms from activations and back-propagations, without materialising per-row
gradients; Li et al. 2022, Bu et al. 2023); ``grad_sample_mode="hooks"``
materialises them instead, with the same result.

The sampling rate is ``1 / ceil(n / batch_size)`` as in Opacus, so the row
count ``n`` is treated as public *for the sampling rate*, as every DP-SGD
library does (docs/threat-model.md); the row count of the output is the noisy
count above.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Literal, Sequence

import dp_accounting as dpa
import numpy as np
import pandas as pd
import torch
from torch import nn

from dpsynth.encoding import round_to_schema
from dpsynth.errors import PrivacyAccountingError, UsageError
from dpsynth.params import POSITIVE, Constraint, Interval, Options, Satisfies
from dpsynth.privacy.accountant import epsilon_for, gaussian_sigma
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.events import DiscreteGaussianDpEvent
from dpsynth.randomness import RandomState
from dpsynth.schema import Column, Schema
from dpsynth.synthesizers.base import Synthesizer

NumericEncoding = Literal["bins", "minmax"]
GradSampleMode = Literal["ghost", "hooks"]
StopReason = Literal["epochs", "budget", "max_seconds"]


# -- schema-driven tensor encoding ---------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """A block of the encoded row: ``width`` softmax logits or one ``tanh`` value of ``column``."""

    column: str
    start: int
    width: int
    activation: Literal["softmax", "tanh"]
    role: Literal["category", "bin", "null", "offset", "value"]

    @property
    def stop(self) -> int:
        return self.start + self.width


class TabularTransformer:
    """Rows <-> float vectors, built from the schema alone.

    * categorical: one-hot over the declared categories (+ a null slot);
    * numeric, ``bins``: one-hot over the public bins (+ null) and the position
      inside the bin as a value in [-1, 1] (omitted when every bin holds one
      whole number) -- a public stand-in for CTGAN's mode-specific
      normalisation that copes with spikes and skew (capital gains);
    * numeric, ``minmax``: the value scaled into [-1, 1] by the public bounds
      (+ a two-way null indicator for nullable columns).

    ``categorical_spans`` are the blocks a conditional generator may condition on.
    """

    def __init__(self, schema: Schema, numeric: NumericEncoding = "bins") -> None:
        if numeric not in ("bins", "minmax"):
            raise UsageError(f"numeric_encoding must be 'bins' or 'minmax', got {numeric!r}")
        self.schema = schema
        self.numeric = numeric
        spans: list[Span] = []
        start = 0

        def add(column: str, width: int, activation: str, role: str) -> None:
            nonlocal start
            spans.append(Span(column, start, width, activation, role))  # type: ignore[arg-type]
            start += width

        for col in schema:
            if col.kind == "categorical":
                add(col.name, col.domain_size, "softmax", "category")
            elif numeric == "bins":
                add(col.name, col.domain_size, "softmax", "bin")
                if not _unit_bins(col):
                    add(col.name, 1, "tanh", "offset")
            else:
                if col.nullable:
                    add(col.name, 2, "softmax", "null")
                add(col.name, 1, "tanh", "value")
        self.spans: tuple[Span, ...] = tuple(spans)
        self.dim = start
        self.categorical_spans: tuple[Span, ...] = tuple(s for s in spans if s.role == "category")

    # -- rows -> vectors -------------------------------------------------------------------
    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Float32 matrix (rows x ``dim``) of a table already prepared to the schema."""
        out = np.zeros((len(df), self.dim), dtype=np.float32)
        rows = np.arange(len(df))
        for span in self.spans:
            col = self.schema[span.column]
            series = df[col.name]
            null = series.isna().to_numpy()
            if span.role == "category":
                lookup = {label: i for i, label in enumerate(col.categories)}
                codes = np.full(len(df), len(col.categories), dtype=np.int64)
                codes[~null] = series[~null].map(lookup).to_numpy(dtype=np.int64)
                out[rows, span.start + codes] = 1.0
            elif span.role == "bin":
                out[rows, span.start + _bin_codes(col, series.to_numpy(dtype=float), null)] = 1.0
            elif span.role == "offset":
                values = series.to_numpy(dtype=float)
                offsets = np.zeros(len(df))
                codes = _bin_codes(col, values, null)
                low, high = _bin_bounds(col)
                ok = ~null
                offsets[ok] = 2 * (values[ok] - low[codes[ok]]) / (high[codes[ok]] - low[codes[ok]]) - 1
                out[:, span.start] = np.clip(offsets, -1, 1)
            elif span.role == "null":
                out[rows, span.start + null.astype(np.int64)] = 1.0
            else:  # value
                values = series.to_numpy(dtype=float)
                scaled = 2 * (values - col.lower) / (col.upper - col.lower) - 1
                out[:, span.start] = np.where(null, 0.0, np.clip(scaled, -1, 1))
        return out

    # -- vectors -> rows -------------------------------------------------------------------
    def inverse(self, logits: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        """Decode raw network outputs: softmax blocks are *sampled*, tanh values squashed.

        Sampling (rather than arg-max) keeps rare categories at their modelled
        frequency; it is the arg-max of CTGAN's Gumbel-softmax output in law.
        """
        logits = np.asarray(logits, dtype=np.float64)
        n = len(logits)
        chosen: dict[tuple[str, str], np.ndarray] = {}
        for span in self.spans:
            block = logits[:, span.start:span.stop]
            if span.activation == "softmax":
                chosen[(span.column, span.role)] = _sample_softmax(block, rng)
            else:
                chosen[(span.column, span.role)] = np.tanh(block[:, 0])
        out: dict[str, pd.Series] = {}
        for col in self.schema:
            if col.kind == "categorical":
                codes = chosen[(col.name, "category")]
                labels = np.asarray(list(col.categories) + [np.nan], dtype=object)
                out[col.name] = pd.Series(labels[codes], dtype=object)
            elif self.numeric == "bins":
                codes = chosen[(col.name, "bin")]
                offsets = chosen.get((col.name, "offset"), np.zeros(n))
                out[col.name] = pd.Series(_decode_bins(col, codes, offsets), dtype=float)
            else:
                values = col.lower + (chosen[(col.name, "value")] + 1) / 2 * (col.upper - col.lower)
                values = _finish_numeric(col, values)
                if col.nullable:
                    values = np.where(chosen[(col.name, "null")] == 1, np.nan, values)
                out[col.name] = pd.Series(values, dtype=float)
        return pd.DataFrame(out)[self.schema.names]


def _unit_bins(col: Column) -> bool:
    """True when every bin of an integer column holds exactly one whole number."""
    return col.integer and all(a == b for a, b in col.integer_ranges())


def _bin_codes(col: Column, values: np.ndarray, null: np.ndarray) -> np.ndarray:
    edges = col.bin_edges()
    codes = np.full(len(values), col.n_bins, dtype=np.int64)  # null code (nullable columns only)
    codes[~null] = np.clip(np.searchsorted(edges, values[~null], side="right") - 1, 0, col.n_bins - 1)
    return codes


def _bin_bounds(col: Column) -> tuple[np.ndarray, np.ndarray]:
    """Lower/upper end of each bin; for integer columns the half-integer span of its whole numbers."""
    if col.integer:
        ranges = np.asarray(col.integer_ranges(), dtype=float)
        return ranges[:, 0] - 0.5, ranges[:, 1] + 0.5
    edges = col.bin_edges()
    return edges[:-1], edges[1:]


def _decode_bins(col: Column, codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    values = np.full(len(codes), np.nan)
    valid = codes < col.n_bins
    low, high = _bin_bounds(col)
    c = codes[valid]
    values[valid] = low[c] + (np.clip(offsets[valid], -1, 1) + 1) / 2 * (high[c] - low[c])
    if col.integer:
        ranges = np.asarray(col.integer_ranges(), dtype=float)
        values[valid] = np.clip(np.floor(values[valid] + 0.5), ranges[c, 0], ranges[c, 1])
    return _finish_numeric(col, values)


def _finish_numeric(col: Column, values: np.ndarray) -> np.ndarray:
    if col.integer:
        values = np.round(values)
        return np.clip(values, math.ceil(col.lower), math.floor(col.upper))
    return round_to_schema(col, np.clip(values, col.lower, col.upper))


def _sample_softmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(logits)) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), logits.shape[1] - 1)


# -- accounting ------------------------------------------------------------------------------

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


def fit_event(preprocessing: Sequence[dpa.DpEvent], sample_rate: float, noise_multiplier: float,
              steps: int) -> dpa.DpEvent:
    """The whole fit: preprocessing events, then the DP-SGD steps."""
    parts = [*preprocessing, dpsgd_event(sample_rate, noise_multiplier, steps)]
    parts = [p for p in parts if not isinstance(p, dpa.NoOpDpEvent)]
    if not parts:
        return dpa.NoOpDpEvent()
    return dpa.ComposedDpEvent(parts) if len(parts) > 1 else parts[0]


PreprocessingEvent = dpa.GaussianDpEvent | DiscreteGaussianDpEvent


def event_sigma(event: PreprocessingEvent) -> float:
    """The noise scale of a (discrete) Gaussian preprocessing event (sensitivity 1)."""
    if isinstance(event, DiscreteGaussianDpEvent):
        if event.sensitivity != 1:
            raise PrivacyAccountingError(f"preprocessing event {event} must have sensitivity 1")
        return float(event.sigma)
    if isinstance(event, dpa.GaussianDpEvent):
        return float(event.noise_multiplier)
    raise PrivacyAccountingError(f"preprocessing event {event} is not a (discrete) Gaussian mechanism; "
                                 "Opacus' accountants cannot compose it")


def _opacus_history(preprocessing: Sequence[PreprocessingEvent]) -> list[tuple[float, float, int]]:
    """Preprocessing (discrete) Gaussians as Opacus accountant history entries (sampling rate 1).

    A discrete Gaussian enters as the continuous Gaussian of the same sigma:
    the same zCDP (CKS 2020), and only used to *choose* the noise multiplier;
    :func:`plan_training` then checks the exact events with the PLD accountant.
    """
    counts: dict[float, int] = {}
    for event in preprocessing:
        sigma = event_sigma(event)
        counts[sigma] = counts.get(sigma, 0) + 1
    return [(sigma, 1.0, k) for sigma, k in counts.items()]


def calibrate_noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int,
                               preprocessing: Sequence[PreprocessingEvent] = (),
                               accountant: Literal["prv", "rdp"] = "prv") -> tuple[float, str]:
    """Smallest DP-SGD noise multiplier for which the whole fit is (epsilon, delta)-DP.

    The bisection of Opacus' ``get_noise_multiplier``, run on an Opacus
    accountant whose history starts with the preprocessing Gaussians (sampling
    rate 1), so their cost is subtracted by composition rather than by splitting
    epsilon. Two changes make it about three times faster: the cheap RDP
    accountant brackets the answer first (RDP overstates epsilon, so its noise
    is an upper end), and PRV's error bound is set to 0.3% of the target, so
    the result lands within about 0.5% below the target. PRV first, RDP where
    PRV fails (opacus #591, #604). Returns ``(noise_multiplier, accountant_used)``.
    """
    from opacus.accountants import create_accountant

    prefix = _opacus_history(preprocessing)
    failures = []
    upper = None
    for name in (["prv", "rdp"] if accountant == "prv" else ["rdp"]):
        kwargs: dict[str, Any] = {"eps_error": max(1e-5, 3e-3 * epsilon)} if name == "prv" else {}
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                if name == "prv" and upper is None:
                    upper = _bisect_noise(create_accountant(mechanism="rdp"), prefix, epsilon, delta,
                                          sample_rate, steps, 1e-2 * epsilon, {})
                sigma = _bisect_noise(create_accountant(mechanism=name), prefix, epsilon, delta, sample_rate,
                                      steps, 1e-3 * epsilon, kwargs, upper=upper if name == "prv" else None)
        except Exception as exc:  # noqa: BLE001 - any accountant failure means: try the next one
            failures.append(f"{name}: {exc}")
            continue
        if math.isfinite(sigma) and sigma > 0:
            return float(sigma), name
        failures.append(f"{name}: returned {sigma}")
    raise PrivacyAccountingError(
        f"could not calibrate DP-SGD noise for epsilon={epsilon}, delta={delta} with sampling rate "
        f"{sample_rate:.4g} over {steps} steps ({'; '.join(failures)}). The budget may be too small for "
        "this many steps: lower epochs or raise batch_size.")


def _bisect_noise(accountant, prefix: list[tuple[float, float, int]], epsilon: float, delta: float,
                  sample_rate: float, steps: int, tolerance: float, kwargs: dict[str, Any],
                  upper: float | None = None) -> float:
    """Noise multiplier whose epsilon lies in ``[epsilon - tolerance, epsilon]``; ``upper`` is a known safe value."""

    def spent(sigma: float) -> float:
        accountant.history = [*prefix, (sigma, sample_rate, steps)]
        return float(accountant.get_epsilon(delta=delta, **kwargs))

    if prefix:
        accountant.history = list(prefix)
        floor = float(accountant.get_epsilon(delta=delta, **kwargs))
        if floor >= epsilon:
            raise PrivacyAccountingError(f"preprocessing alone costs epsilon={floor:.4g} >= target {epsilon}")
    if upper is None:  # get_noise_multiplier's bracket
        low, high, eps_high = 0.0, 10.0, math.inf
        while eps_high > epsilon:
            high *= 2
            eps_high = spent(high)
            if high > 1e6:
                raise PrivacyAccountingError("the privacy budget is too low for DP-SGD")
    else:
        high, eps_high = upper, spent(upper)
        if eps_high > epsilon:
            return _bisect_noise(accountant, prefix, epsilon, delta, sample_rate, steps, tolerance, kwargs)
        low = high / 1.5
        while spent(low) <= epsilon:
            high, low = low, low / 1.5
    while epsilon - eps_high > tolerance:
        mid = (low + high) / 2
        eps = spent(mid)
        if eps <= epsilon:
            high, eps_high = mid, eps
        else:
            low = mid
    return high


def steps_within_budget(epsilon: float, delta: float, sample_rate: float, noise_multiplier: float,
                        max_steps: int, preprocessing: Sequence[dpa.DpEvent] = ()) -> int:
    """Largest ``t <= max_steps`` such that preprocessing + ``t`` steps is (epsilon, delta)-DP.

    Judged by dpsynth's reporting accountant (PLD), so a run that stops here is
    reported within the target. Epsilon grows with ``t``: bisection, started
    from the RDP answer (RDP overstates epsilon, so its step count is safe).
    """

    def within(t: int, accountant: str = "auto") -> bool:
        event = fit_event(preprocessing, sample_rate, noise_multiplier, t)
        with _quiet_rdp():
            return epsilon_for(event, delta, accountant) <= epsilon  # type: ignore[arg-type]

    def largest(ok: Callable[[int], bool], low: int, high: int) -> int:
        while high - low > 1:  # ok(low), not ok(high)
            mid = (low + high) // 2
            low, high = (mid, high) if ok(mid) else (low, mid)
        return low

    if within(max_steps):
        return max_steps
    if not within(0):
        raise PrivacyAccountingError(f"preprocessing alone exceeds epsilon={epsilon} at delta={delta}")
    start = largest(lambda t: within(t, "rdp"), 0, max_steps)
    if start and not within(start):  # RDP is usually, not provably, looser than PLD
        start = 0
    return largest(within, start, max_steps)


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


@dataclass
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


def plan_training(epsilon: float, delta: float, n_rows: int, batch_size: int, epochs: int,
                  noise_multiplier: float | None,
                  preprocessing: Sequence[PreprocessingEvent] = ()) -> TrainingPlan:
    """Calibrate (or take) the noise multiplier and cap the steps at the budget."""
    q, per_epoch = poisson_sample_rate(n_rows, batch_size)
    planned = epochs * per_epoch
    if noise_multiplier is None:
        sigma, by = calibrate_noise_multiplier(epsilon, delta, q, planned, preprocessing)
        # PRV and PLD bound the same curve from above with different errors; if PLD (which
        # reports) sees a hair above the target, add a hair of noise rather than drop steps.
        for _ in range(20):
            if epsilon_for(fit_event(preprocessing, q, sigma, planned), delta) <= epsilon:
                break
            sigma *= 1.002
    else:
        sigma, by = float(noise_multiplier), "given"
    limit = steps_within_budget(epsilon, delta, q, sigma, planned, preprocessing)
    return TrainingPlan(q, per_epoch, epochs, sigma, by, limit)


# -- devices, seeds, progress --------------------------------------------------------------------

def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device={device!r} but CUDA is not available; use device='auto' or 'cpu'")
    if resolved.type not in ("cpu", "cuda"):
        raise UsageError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return resolved


@contextlib.contextmanager
def seeded_torch(rng: np.random.Generator, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators from ``rng`` inside the block, leaving the caller's state intact.

    For everything torch draws that is not privacy noise (initialisation,
    Poisson sampling, dropout, generated rows); Opacus' gradient noise comes
    from :meth:`~dpsynth.privacy.noise.NoiseSource.torch_generator`.
    """
    seed = int(rng.integers(0, 2**62))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: leave torch's setting), then restore."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def epoch_progress(enabled: bool, label: str, epochs: int):
    """A rich progress bar over epochs; a no-op when ``enabled`` is false."""
    if not enabled:
        yield lambda **_: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(label, total=epochs, info="")

        def update(advance: int = 0, info: str = "") -> None:
            bar.update(task, advance=advance, info=info)

        yield update


# -- the shared estimator -----------------------------------------------------------------------------

@dataclass
class TrainingRecord:
    """What the loop did: steps taken and why it stopped."""

    steps: int = 0
    epochs_completed: int = 0
    stopped_by: StopReason = "epochs"
    seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_cpu_seconds: list[float] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)


class DPSGDSynthesizer(Synthesizer):
    """Base of the DP-SGD generators: validation, planning, the Opacus loop, the cost.

    Common parameters:

    * ``epsilon``, ``delta``: the target for the *whole* fit (add/remove one row).
    * ``epochs``, ``batch_size``: planned passes and expected Poisson batch size
      (capped at a quarter of the table, so small tables still subsample).
    * ``max_grad_norm``: per-row clipping bound C; ``learning_rate``: Adam's step.
    * ``noise_multiplier``: ``None`` (default) calibrates it to the target;
      a fixed value trains until the budget is spent or ``epochs`` end.
    * ``rows_budget_fraction``: share of the budget, as an (epsilon, delta)
      fraction, that sizes the discrete-Gaussian noise of the row count
      ``n_rows_estimate_`` (the default number of rows ``sample()`` draws).
    * ``max_seconds``: stop at the first step boundary after this much training
      time; the cost reported is that of the steps taken.
    * ``numeric_encoding``: ``bins`` (public bins + in-bin offset) or ``minmax``.
    * ``device``: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``;
      ``progress``: a rich progress bar over epochs; ``grad_sample_mode``:
      ``ghost`` or ``hooks`` (same clipping, different cost); ``num_threads``:
      torch intra-op threads during fit and sample (default 1: the networks are
      small, and on a busy machine OpenMP threads spin-wait; ``None`` leaves
      torch's setting).

    Learned state: ``plan_`` (sampling rate, noise, step limits),
    ``training_`` (steps taken, why it stopped, per-epoch times),
    ``transformer_``, ``batch_size_``, ``privacy_cost_``.

    Subclasses build their networks and say which module is trained on private
    rows (:meth:`_build`), take one DP step on a Poisson batch (:meth:`_step`)
    and generate raw outputs (:meth:`_generate`). They may spend part of the
    budget on Gaussian preprocessing (declared from the schema by
    :meth:`_preprocessing_events`, run by :meth:`_preprocess`); it is composed
    into the calibration, the planned cost the ledger reserves
    (:meth:`planned_cost`) and the realised cost.
    """

    name: ClassVar[str] = "dpsgd"

    def __init__(self, epsilon: float = 1.0, delta: float = 1e-6, epochs: int = 10, batch_size: int = 1000,
                 max_grad_norm: float = 1.0, learning_rate: float = 1e-3, noise_multiplier: float | None = None,
                 numeric_encoding: NumericEncoding = "bins", random_state: RandomState = None,
                 max_seconds: float | None = None, device: str = "auto", progress: bool = True,
                 grad_sample_mode: GradSampleMode = "ghost", num_threads: int | None = 1,
                 rows_budget_fraction: float = 0.02, secure_noise: bool | None = None) -> None:
        super().__init__(epsilon=epsilon, delta=delta, random_state=random_state, secure_noise=secure_noise)
        self.rows_budget_fraction = rows_budget_fraction
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_grad_norm = max_grad_norm
        self.learning_rate = learning_rate
        self.noise_multiplier = noise_multiplier
        self.numeric_encoding = numeric_encoding
        self.max_seconds = max_seconds
        self.device = device
        self.progress = progress
        self.grad_sample_mode = grad_sample_mode
        self.num_threads = num_threads

    # -- validation ------------------------------------------------------------------------------
    _parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 2, None)],
        "max_grad_norm": [POSITIVE],
        "learning_rate": [POSITIVE],
        "noise_multiplier": [None, POSITIVE],
        "max_seconds": [None, POSITIVE],
        "numeric_encoding": [Options("bins", "minmax")],
        "progress": [bool],
        "grad_sample_mode": [Options("ghost", "hooks")],
        "num_threads": [None, Interval(int, 1, None)],
        "rows_budget_fraction": [Interval(float, 0, 0.5, closed="right")],
        "device": [Satisfies(lambda d: isinstance(d, str) and bool(d), "'auto', 'cpu' or 'cuda[:i]'")],
    }

    def _validate_parameters(self) -> None:
        """The declared constraints, then whether the device exists here."""
        super()._validate_parameters()
        resolve_device(self.device)

    # -- fit -------------------------------------------------------------------------------------
    def _fit(self, data: pd.DataFrame, rng: np.random.Generator) -> PrivacyCost:
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        device = resolve_device(self.device)
        self.device_ = device
        n = len(data)
        self.transformer_ = TabularTransformer(self.schema_, self.numeric_encoding)
        x = torch.as_tensor(self.transformer_.transform(data))
        plan, preprocessing = self._plan(n, self.schema_)
        batch = self.batch_size_ = self._effective_batch(n)
        self.plan_ = plan
        rows_event, own_events = preprocessing[0], preprocessing[1:]
        self.n_rows_estimate_ = max(1, int(self._noise.discrete_gaussian([n], rows_event.sigma)[0]))
        with seeded_torch(rng, device), torch_threads(self.num_threads):
            self._preprocess(x, own_events)
            noise_generator = self._noise.torch_generator(device)
            private, optimizer = self._build(self.transformer_, device)
            with warnings.catch_warnings():
                # noise comes from a torch generator seeded by our (OS-entropy unless fixed) seed; see docs/dpsgd.md
                warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
                engine = PrivacyEngine(accountant="prv")
                module, dp_optimizer, *_, loader = engine.make_private(
                    module=private, optimizer=optimizer, data_loader=DataLoader(TensorDataset(x), batch_size=batch),
                    noise_multiplier=plan.noise_multiplier, max_grad_norm=float(self.max_grad_norm),
                    poisson_sampling=True, noise_generator=noise_generator,
                    grad_sample_mode=self.grad_sample_mode)
            if not math.isclose(loader.sample_rate, plan.sample_rate) or len(loader) != plan.steps_per_epoch:
                raise PrivacyAccountingError("Opacus' sampling rate differs from the planned one; refusing to train")
            self.expected_batch_size_ = dp_optimizer.expected_batch_size
            record = self._train(module, dp_optimizer, loader, plan, device, x.shape[1])
            self._finish(module)
            module.cleanup()  # remove Opacus' hooks: the fitted model is a plain torch module again
        if len(engine.accountant.history) and engine.accountant.history[0][2] != record.steps:
            raise PrivacyAccountingError("Opacus' accountant saw a different number of steps than the loop took")
        self.training_ = record
        event = fit_event(preprocessing, plan.sample_rate, plan.noise_multiplier, record.steps)
        return PrivacyCost.of(
            self.name, event, self.delta,
            target_epsilon=float(self.epsilon), noise_multiplier=plan.noise_multiplier,
            calibrated_by=plan.calibrated_by, sample_rate=plan.sample_rate, batch_size=batch,
            max_grad_norm=float(self.max_grad_norm), steps=record.steps, steps_planned=plan.planned_steps,
            steps_allowed=plan.max_steps, epochs_completed=record.epochs_completed, stopped_by=record.stopped_by,
            train_seconds=round(record.seconds, 3), rows_noise_sigma=rows_event.sigma, **self._cost_details())

    def _train(self, module: nn.Module, optimizer, loader, plan: TrainingPlan, device: torch.device,
               dim: int) -> TrainingRecord:
        record = TrainingRecord()
        start = time.monotonic()
        with epoch_progress(self.progress, f"{self.name} (DP-SGD)", plan.epochs) as update, \
                warnings.catch_warnings():
            # Opacus' hooks fire on module outputs when the inputs need no gradient: expected here
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for epoch in range(plan.epochs):
                totals: dict[str, float] = {}
                taken = 0
                epoch_start, epoch_cpu = time.monotonic(), time.process_time()
                for batch in loader:
                    if record.steps >= plan.max_steps:
                        record.stopped_by = "budget"
                        break
                    if self.max_seconds is not None and time.monotonic() - start >= self.max_seconds:
                        record.stopped_by = "max_seconds"
                        break
                    real = batch[0] if isinstance(batch, (list, tuple)) and len(batch) else torch.empty(0, dim)
                    losses = self._step(module, optimizer, real.to(device))
                    record.steps += 1
                    taken += 1
                    for key, value in losses.items():
                        totals[key] = totals.get(key, 0.0) + value
                if taken == plan.steps_per_epoch:
                    record.epochs_completed = epoch + 1
                    record.epoch_seconds.append(time.monotonic() - epoch_start)
                    record.epoch_cpu_seconds.append(time.process_time() - epoch_cpu)
                record.losses = {k: v / max(taken, 1) for k, v in totals.items()}
                update(advance=1, info=" ".join(f"{k}={v:.3f}" for k, v in record.losses.items()))
                if record.stopped_by != "epochs":
                    break
        record.seconds = time.monotonic() - start
        return record

    # -- planning ------------------------------------------------------------------------------
    def _effective_batch(self, n_rows: int) -> int:
        """The expected Poisson batch: ``batch_size``, capped at a quarter of the table (keeps amplification)."""
        return min(int(self.batch_size), max(1, n_rows // 4))

    def _row_count_event(self) -> DiscreteGaussianDpEvent:
        """The noisy row count: a discrete Gaussian calibrated alone to ``rows_budget_fraction`` of the target.

        Adding or removing a record changes the count by one (sensitivity 1).
        """
        f = float(self.rows_budget_fraction)
        return DiscreteGaussianDpEvent(float(gaussian_sigma(f * self.epsilon, f * self.delta)))

    def _plan(self, n_rows: int, schema: Schema) -> tuple[TrainingPlan, list[PreprocessingEvent]]:
        """The data-independent plan (noise, step limit) and preprocessing events (row count first); cached."""
        preprocessing = [self._row_count_event(), *self._preprocessing_events(schema)]
        key = (n_rows, self._effective_batch(n_rows), int(self.epochs), self.noise_multiplier, float(self.epsilon),
               float(self.delta), tuple(repr(e) for e in preprocessing))
        cached = getattr(self, "_plan_cache", None)
        if cached is None or cached[0] != key:
            plan = plan_training(self.epsilon, self.delta, n_rows, key[1], int(self.epochs), self.noise_multiplier,
                                 preprocessing)
            self._plan_cache = cached = (key, plan)
        return cached[1], preprocessing

    def _planned_cost(self, n_rows: int, schema: Schema) -> PrivacyCost:
        """Preprocessing plus every step the budget allows: what ``fit`` spends at most (and, run to the
        end with a calibrated noise multiplier, exactly)."""
        plan, preprocessing = self._plan(n_rows, schema)
        event = fit_event(preprocessing, plan.sample_rate, plan.noise_multiplier, plan.max_steps)
        return PrivacyCost.of(self.name, event, self.delta, target_epsilon=float(self.epsilon),
                              noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
                              steps_allowed=plan.max_steps, rows_noise_sigma=preprocessing[0].sigma,
                              **self._planned_details(preprocessing[1:]))

    # -- sample ----------------------------------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        chunks = []
        with seeded_torch(rng, self.device_), torch_threads(self.num_threads), torch.no_grad():
            for begin in range(0, n, 50_000):
                logits = self._generate(min(50_000, n - begin), rng).detach().cpu().numpy()
                chunks.append(self.transformer_.inverse(logits, rng))
        return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]

    # -- for subclasses ---------------------------------------------------------------------------
    def _preprocessing_events(self, schema: Schema) -> list[PreprocessingEvent]:
        """The (discrete) Gaussian mechanisms a subclass's preprocessing will run, from the schema alone.

        None by default (the base class adds the row count itself).
        """
        return []

    def _preprocess(self, x: torch.Tensor, events: list[PreprocessingEvent]) -> None:
        """Run the preprocessing mechanisms ``events`` on the encoded rows ``x``, noise from ``self._noise``."""

    def _planned_details(self, events: list[PreprocessingEvent]) -> dict[str, Any]:
        return {}

    def _cost_details(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def _build(self, transformer: TabularTransformer, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Create the networks; return the module trained on private rows and its optimizer."""

    @abstractmethod
    def _step(self, module: nn.Module, optimizer, real: torch.Tensor) -> dict[str, float]:
        """One DP-SGD step on a Poisson batch ``real`` (possibly empty); return losses for display."""

    def _finish(self, module: nn.Module) -> None:
        """Drop training-only state after the last step."""

    @abstractmethod
    def _generate(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """Raw outputs (logits / pre-tanh values) for ``n`` synthetic rows."""


def private_backward(module: nn.Module, optimizer, loss_per_row: torch.Tensor, mode: GradSampleMode) -> None:
    """Back-propagate per-row losses so that Opacus' ``optimizer.pre_step()`` sees clipped per-row gradients.

    ``hooks`` materialises every row's gradient (``p.grad_sample``); ``ghost``
    (Li et al. 2022, Bu et al. 2023) computes each row's gradient norm from
    layer activations and back-propagations, then back-propagates the loss
    reweighted by the clipping factors, leaving the clipped sum in ``p.grad``.
    Both clip exactly the same per-row gradients. An empty Poisson batch
    contributes a zero sum; the step still adds noise.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if len(loss_per_row) == 0:
        for p in params:
            if mode == "hooks":
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            else:
                p.grad = torch.zeros_like(p)
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Full backward hook is firing")  # expected, see _train
        if mode == "ghost":
            from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

            DPTensorFastGradientClipping(module, optimizer, loss_per_row, "mean").backward()
        else:
            # mean over the batch: Opacus rescales by the batch length to recover per-row gradients
            loss_per_row.mean().backward()


def hidden_widths(value: Any) -> tuple[int, ...]:
    """Hidden layer widths as a tuple: one positive integer, or a non-empty sequence of them.

    Raises ``ValueError`` otherwise; the estimators declare ``HIDDEN_WIDTHS``,
    so their parameters are checked (with the parameter's name) before this runs.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,)
    dims = tuple(value)
    if not dims or not all(Interval(int, 1, None).accepts(d) for d in dims):
        raise ValueError(f"not a non-empty sequence of positive integers: {value!r}")
    return tuple(int(d) for d in dims)


#: The constraint of a hidden-widths parameter (``generator_dim``, ``hidden_dim``...).
HIDDEN_WIDTHS = Satisfies(hidden_widths, "a positive integer or a non-empty sequence of positive integers")


def apply_activations(raw: torch.Tensor, spans: Sequence[Span],
                      softmax: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Raw outputs -> activated row vectors: ``softmax`` on categorical blocks, tanh on values."""
    parts = []
    for span in spans:
        block = raw[:, span.start:span.stop]
        parts.append(torch.tanh(block) if span.activation == "tanh" else softmax(block))
    return torch.cat(parts, dim=1)
