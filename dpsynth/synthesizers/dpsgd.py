"""The DP-SGD estimator template that DP-CTGAN and DP-VAE fill in: the Opacus loop, the stop rules, the cost.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", CCS):
per-sample gradients, clipping, noise and Poisson sampling come from Opacus 1.6
(Yousefpour et al. 2021, "Opacus: User-Friendly Differential Privacy Library
in PyTorch"). This module owns the estimator (:class:`DPSGDSynthesizer`: its
parameters, the loop, the hooks a subclass fills), the record of what the loop
did (:class:`TrainingRecord`) and the per-row backward pass
(:func:`private_backward`). Elsewhere:

* the plan and the accounting (noise calibration, the step cap for a fixed
  noise multiplier, the fit's DpEvent): :mod:`dpsynth.privacy.dpsgd`, one
  accountant for all three;
* the public tensor encoding: :mod:`dpsynth.synthesizers.tensor_encoding`;
* device, seeds, threads, progress: :mod:`dpsynth.synthesizers.torch_support`.

Randomness: Opacus draws the gradient noise from a torch generator made by
the fit's :class:`~dpsynth.privacy.noise.NoiseSource` (OS entropy unless
seeded) and used for nothing else; Poisson sampling, initialisation and the
GAN's fake rows use torch's global generator, seeded from the fit stream;
``sample()`` seeds it from the sample stream. The number of rows the
synthesizer publishes by default is a discrete-Gaussian noisy count
(``rows_budget_fraction`` of the budget, composed like any preprocessing).

Per-sample clipping defaults to Opacus' ghost clipping (exact per-row gradient
norms from activations and back-propagations, without materialising per-row
gradients; Li et al. 2022, Bu et al. 2023); ``grad_sample_mode="hooks"``
materialises them instead, with the same result.
"""

from __future__ import annotations

import math
import time
import warnings
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import dp_accounting as dpa
import numpy as np
import pandas as pd
import torch
from torch import nn

from dpsynth.errors import PrivacyAccountingError
from dpsynth.params import POSITIVE, Constraint, Interval, Options, Satisfies
from dpsynth.privacy.accountant import gaussian_sigma
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.dpsgd import TrainingPlan, fit_event, plan_training
from dpsynth.privacy.events import DiscreteGaussianDpEvent
from dpsynth.randomness import RandomState
from dpsynth.schema import Schema
from dpsynth.synthesizers.base import Synthesizer
from dpsynth.synthesizers.tensor_encoding import NumericEncoding, Span, TabularTransformer
from dpsynth.synthesizers.torch_support import epoch_progress, resolve_device, seeded_torch, torch_threads

GradSampleMode = Literal["ghost", "hooks"]
StopReason = Literal["epochs", "budget", "max_seconds"]


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

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        epochs: int = 10,
        batch_size: int = 1000,
        max_grad_norm: float = 1.0,
        learning_rate: float = 1e-3,
        noise_multiplier: float | None = None,
        numeric_encoding: NumericEncoding = "bins",
        random_state: RandomState = None,
        max_seconds: float | None = None,
        device: str = "auto",
        progress: bool = True,
        grad_sample_mode: GradSampleMode = "ghost",
        num_threads: int | None = 1,
        rows_budget_fraction: float = 0.02,
        secure_noise: bool | None = None,
    ) -> None:
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
                engine = PrivacyEngine(accountant="prv")  # its hooks only: the plan decided; checked below
                module, dp_optimizer, *_, loader = engine.make_private(
                    module=private,
                    optimizer=optimizer,
                    data_loader=DataLoader(TensorDataset(x), batch_size=batch),
                    noise_multiplier=plan.noise_multiplier,
                    max_grad_norm=float(self.max_grad_norm),
                    poisson_sampling=True,
                    noise_generator=noise_generator,
                    grad_sample_mode=self.grad_sample_mode,
                )
            if not math.isclose(loader.sample_rate, plan.sample_rate) or len(loader) != plan.steps_per_epoch:
                raise PrivacyAccountingError("Opacus' sampling rate differs from the planned one; refusing to train")
            self.expected_batch_size_ = dp_optimizer.expected_batch_size
            record = self._train(module, dp_optimizer, loader, plan, device, x.shape[1])
            self._finish(module.to_standard_module())  # Opacus' hooks removed: a plain torch module again
        if len(engine.accountant.history) and engine.accountant.history[0][2] != record.steps:
            raise PrivacyAccountingError("Opacus' accountant saw a different number of steps than the loop took")
        self.training_ = record
        event = fit_event(preprocessing, plan.sample_rate, plan.noise_multiplier, record.steps)
        return PrivacyCost.of(
            self.name,
            event,
            self.delta,
            target_epsilon=float(self.epsilon),
            noise_multiplier=plan.noise_multiplier,
            calibrated_by=plan.calibrated_by,
            sample_rate=plan.sample_rate,
            batch_size=batch,
            max_grad_norm=float(self.max_grad_norm),
            steps=record.steps,
            steps_planned=plan.planned_steps,
            steps_allowed=plan.max_steps,
            epochs_completed=record.epochs_completed,
            stopped_by=record.stopped_by,
            train_seconds=round(record.seconds, 3),
            rows_noise_sigma=rows_event.sigma,
            **self._cost_details(),
        )

    def _train(
        self, module: nn.Module, optimizer, loader, plan: TrainingPlan, device: torch.device, dim: int
    ) -> TrainingRecord:
        record = TrainingRecord()
        start = time.monotonic()
        with epoch_progress(self.progress, f"{self.name} (DP-SGD)", plan.epochs) as update, warnings.catch_warnings():
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

    def _plan(self, n_rows: int, schema: Schema) -> tuple[TrainingPlan, list[dpa.DpEvent]]:
        """The data-independent plan (noise, step limit) and preprocessing events (row count first).

        :func:`~dpsynth.privacy.dpsgd.plan_training` is cached on these public
        inputs, so the ledger's reservation and the fit calibrate once.
        """
        preprocessing = [self._row_count_event(), *self._preprocessing_events(schema)]
        plan = plan_training(
            self.epsilon,
            self.delta,
            n_rows,
            self._effective_batch(n_rows),
            int(self.epochs),
            self.noise_multiplier,
            preprocessing,
        )
        return plan, preprocessing

    def _planned_cost(self, n_rows: int, schema: Schema) -> PrivacyCost:
        """Preprocessing plus every step the budget allows: what ``fit`` spends at most (and, run to the
        end with a calibrated noise multiplier, exactly)."""
        plan, preprocessing = self._plan(n_rows, schema)
        event = fit_event(preprocessing, plan.sample_rate, plan.noise_multiplier, plan.max_steps)
        return PrivacyCost.of(
            self.name,
            event,
            self.delta,
            target_epsilon=float(self.epsilon),
            noise_multiplier=plan.noise_multiplier,
            sample_rate=plan.sample_rate,
            steps_allowed=plan.max_steps,
            rows_noise_sigma=preprocessing[0].sigma,
            **self._planned_details(preprocessing[1:]),
        )

    # -- sample ----------------------------------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        chunks = []
        with seeded_torch(rng, self.device_), torch_threads(self.num_threads), torch.no_grad():
            for begin in range(0, n, 50_000):
                logits = self._generate(min(50_000, n - begin), rng).detach().cpu().numpy()
                chunks.append(self.transformer_.inverse(logits, rng))
        return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]

    # -- for subclasses ---------------------------------------------------------------------------
    def _preprocessing_events(self, schema: Schema) -> list[dpa.DpEvent]:
        """The (discrete) Gaussian mechanisms a subclass's preprocessing will run, from the schema alone.

        None by default (the base class adds the row count itself).
        """
        return []

    def _preprocess(self, x: torch.Tensor, events: list[dpa.DpEvent]) -> None:
        """Run the preprocessing mechanisms ``events`` on the encoded rows ``x``, noise from ``self._noise``."""

    def _planned_details(self, events: list[dpa.DpEvent]) -> dict[str, Any]:
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
        """Drop training-only state after the last step; ``module`` is the trained module as built by
        :meth:`_build`, unwrapped from Opacus (``to_standard_module``: its hooks removed)."""

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


def apply_activations(
    raw: torch.Tensor, spans: Sequence[Span], softmax: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Raw outputs -> activated row vectors: ``softmax`` on categorical blocks, tanh on values."""
    parts = []
    for span in spans:
        block = raw[:, span.start : span.stop]
        parts.append(torch.tanh(block) if span.activation == "tanh" else softmax(block))
    return torch.cat(parts, dim=1)
