"""The DP-SGD machinery shared by DP-CTGAN and DP-VAE: calibration, budget stop, clipping, noise, encoding."""

from __future__ import annotations

import dataclasses

import dp_accounting as dpa
import numpy as np
import pytest
import torch
from dp_accounting import pld
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dpsynth.errors import UsageError
from dpsynth.privacy.accountant import epsilon_for
from dpsynth.privacy.dpsgd import (
    calibrate_noise_multiplier,
    fit_event,
    plan_training,
    poisson_sample_rate,
    steps_within_budget,
)
from dpsynth.schema import Column, Schema
from dpsynth.synthesizers.dpsgd import private_backward
from dpsynth.synthesizers.tensor_encoding import TabularTransformer
from dpsynth.synthesizers.torch_support import resolve_device
from dpsynth.tables import prepare
from tests.conftest import make_mixed_frame, make_mixed_schema


def independent_pld_epsilon(
    q: float, sigma: float, steps: int, delta: float, preprocessing: tuple[float, ...] = ()
) -> float:
    """Epsilon of ``preprocessing`` Gaussians, then ``steps`` Poisson-subsampled Gaussian steps, by dp-accounting's
    PLD."""
    accountant = pld.PLDAccountant()
    for s in preprocessing:
        accountant.compose(dpa.GaussianDpEvent(s))
    accountant.compose(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)
    return accountant.get_epsilon(delta)


# -- calibration ---------------------------------------------------------------------------
@pytest.mark.parametrize("n, batch, epochs, epsilon", [(24_000, 1000, 8, 1.0), (3_000, 300, 3, 3.0)])
def test_calibrated_noise_reproduces_target_epsilon_within_one_percent(n, batch, epochs, epsilon) -> None:
    delta = 1e-6
    q, per_epoch = poisson_sample_rate(n, batch)
    steps = epochs * per_epoch
    sigma, accountant = calibrate_noise_multiplier(epsilon, delta, q, steps)
    assert accountant == "pld"  # the accountant that reports the cost
    reached = independent_pld_epsilon(q, sigma, steps, delta)
    assert 0.99 * epsilon <= reached <= epsilon
    # and the answer is the *smallest* such noise: 3% less noise overshoots the target
    assert independent_pld_epsilon(q, sigma * 0.97, steps, delta) > epsilon


def test_calibration_subtracts_preprocessing_by_composition() -> None:
    delta, epsilon = 1e-6, 1.0
    q, steps = 0.04, 100
    counts = (60.0,) * 4
    sigma, _ = calibrate_noise_multiplier(epsilon, delta, q, steps, [dpa.GaussianDpEvent(s) for s in counts])
    bare, _ = calibrate_noise_multiplier(epsilon, delta, q, steps)
    assert sigma > bare  # the counts took part of the budget
    reached = independent_pld_epsilon(q, sigma, steps, delta, counts)
    assert 0.99 * epsilon <= reached <= epsilon


def test_sampling_rate_is_opacus_rate() -> None:
    assert poisson_sample_rate(24_129, 1000) == (1 / 25, 25)
    assert poisson_sample_rate(1000, 1000) == (1.0, 1)


# -- budget stop ---------------------------------------------------------------------------------
def test_steps_within_budget_is_the_last_step_under_the_target() -> None:
    q, sigma, delta, epsilon = 1 / 6, 4.0, 1e-6, 1.0
    steps = steps_within_budget(epsilon, delta, q, sigma, 600)
    assert 0 < steps < 600
    assert independent_pld_epsilon(q, sigma, steps, delta) <= epsilon
    assert independent_pld_epsilon(q, sigma, steps + 1, delta) > epsilon


def test_plan_with_fixed_noise_caps_steps_and_calibrated_plan_runs_every_epoch() -> None:
    fixed = plan_training(1.0, 1e-6, n_rows=600, batch_size=100, epochs=50, noise_multiplier=4.0)
    assert fixed.calibrated_by == "given" and fixed.max_steps < fixed.planned_steps
    calibrated = plan_training(1.0, 1e-6, n_rows=600, batch_size=100, epochs=5, noise_multiplier=None)
    assert calibrated.max_steps == calibrated.planned_steps == 30
    event = fit_event([], calibrated.sample_rate, calibrated.noise_multiplier, calibrated.max_steps)
    assert epsilon_for(event, 1e-6) <= 1.0


def test_plan_is_a_pure_cached_function_of_public_inputs() -> None:
    """Estimators planning the same fit share one plan (no hidden per-instance cache); other inputs replan."""
    pre = [dpa.GaussianDpEvent(50.0)]
    first = plan_training(1.0, 1e-6, 600, 100, 5, None, pre)
    assert plan_training(1, 1e-6, 600, 100, 5, None, tuple(pre)) is first
    assert plan_training(2.0, 1e-6, 600, 100, 5, None, pre).noise_multiplier < first.noise_multiplier
    with pytest.raises(dataclasses.FrozenInstanceError):  # a shared plan cannot be changed by one of its users
        first.max_steps = 1  # type: ignore[misc]


# -- clipping and noise through Opacus -----------------------------------------------------------
pytestmark = pytest.mark.filterwarnings("ignore:Secure RNG turned off")


def _private(mode: str, noise: float, clip: float, batch: int = 10, seed: int = 0):
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    reference = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = TensorDataset(torch.zeros(100, 5))
    module, dp_optimizer, *_ = PrivacyEngine().make_private(
        module=model,
        optimizer=optimizer,
        data_loader=DataLoader(data, batch_size=batch),
        noise_multiplier=noise,
        max_grad_norm=clip,
        poisson_sampling=True,
        grad_sample_mode=mode,
    )
    return module, dp_optimizer, reference


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_private_backward_clips_each_row_to_max_grad_norm(mode: str) -> None:
    """Noise-free Opacus step == sum of per-row gradients each clipped to C, over the expected batch size."""
    clip = 0.5
    module, optimizer, reference = _private(mode, noise=0.0, clip=clip)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 5, generator=g) * 3, torch.randn(12, generator=g) * 5
    optimizer.zero_grad()
    private_backward(module, optimizer, (module(x).squeeze(1) - y) ** 2, mode)
    optimizer.pre_step()
    got = [p.grad.clone() for p in module.parameters()]

    expected = [torch.zeros_like(p) for p in reference.parameters()]
    norms = []
    for i in range(len(x)):
        reference.zero_grad()
        ((reference(x[i : i + 1]).squeeze(1) - y[i : i + 1]) ** 2).sum().backward()
        grads = [p.grad for p in reference.parameters()]
        norm = torch.sqrt(sum((gr**2).sum() for gr in grads))
        norms.append(float(norm))
        for e, gr in zip(expected, grads):
            e += gr * min(1.0, clip / (float(norm) + 1e-6))
    assert max(norms) > 5 * clip  # clipping is active for these rows
    for e, gr in zip(expected, got):
        torch.testing.assert_close(gr, e / optimizer.expected_batch_size, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_empty_poisson_batch_still_adds_noise_of_the_right_scale(mode: str) -> None:
    from opacus import PrivacyEngine

    torch.manual_seed(0)
    model = nn.Linear(200, 100)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    noise, clip = 2.0, 0.7
    module, dp_optimizer, *_ = PrivacyEngine().make_private(
        module=model,
        optimizer=optimizer,
        data_loader=DataLoader(TensorDataset(torch.zeros(100, 200)), batch_size=10),
        noise_multiplier=noise,
        max_grad_norm=clip,
        poisson_sampling=True,
        grad_sample_mode=mode,
    )
    dp_optimizer.zero_grad()
    private_backward(module, dp_optimizer, torch.zeros(0), mode)
    dp_optimizer.pre_step()
    grads = torch.cat([p.grad.flatten() for p in module.parameters()])
    expected = noise * clip / dp_optimizer.expected_batch_size
    assert abs(float(grads.std()) / expected - 1) < 0.03
    assert abs(float(grads.mean())) < 0.05 * expected


# -- encoding ---------------------------------------------------------------------------------------
def _as_logits(transformer: TabularTransformer, encoded: np.ndarray) -> np.ndarray:
    logits = np.zeros_like(encoded, dtype=np.float64)
    for span in transformer.spans:
        block = encoded[:, span.start : span.stop].astype(np.float64)
        if span.activation == "softmax":
            logits[:, span.start : span.stop] = block * 60.0
        else:
            logits[:, span.start : span.stop] = np.arctanh(np.clip(block, -1 + 1e-9, 1 - 1e-9))
    return logits


@pytest.mark.parametrize("numeric", ["bins", "minmax"])
def test_transformer_round_trip_keeps_values_categories_and_nulls(numeric: str) -> None:
    schema = make_mixed_schema()
    data, _ = prepare(make_mixed_frame(400), schema)
    transformer = TabularTransformer(schema, numeric)
    encoded = transformer.transform(data)
    assert encoded.shape == (400, transformer.dim) and encoded.dtype == np.float32
    assert encoded.min() >= -1 and encoded.max() <= 1
    back = transformer.inverse(_as_logits(transformer, encoded), np.random.default_rng(0))
    assert list(back.columns) == schema.names
    for column in schema:
        a, b = data[column.name], back[column.name]
        assert a.isna().equals(b.isna()), column.name
        if column.kind == "categorical":
            assert (a.dropna() == b.dropna()).all(), column.name
        elif column.integer:
            assert np.array_equal(a.dropna().to_numpy(), b.dropna().to_numpy()), column.name
        else:
            # up to the written precision (half a unit of the column's last decimal) and float32 encoding
            resolution = 0.5 * 10.0 ** -column.output_decimals()
            np.testing.assert_allclose(a.dropna(), b.dropna(), atol=resolution + 1e-5 * (column.upper - column.lower))
            np.testing.assert_allclose(b.dropna(), b.dropna().round(column.output_decimals()), atol=1e-12)


def test_transformer_uses_schema_only() -> None:
    """Two very different tables give the same layout: nothing is fitted on the data."""
    schema = make_mixed_schema()
    layouts = []
    for seed in (0, 1):
        frame = make_mixed_frame(50, seed=seed)
        frame["capital_gain"] = frame["capital_gain"] * 0 + 99999 * seed
        t = TabularTransformer(schema, "bins")
        t.transform(prepare(frame, schema)[0])
        layouts.append(t.spans)
    assert layouts[0] == layouts[1]
    # one block per categorical column (+ null slot), bins (+ null) and an in-bin offset per numeric column;
    # 'children' has one whole number per bin, so no offset
    spans = {(s.column, s.role): s.width for s in layouts[0]}
    assert spans[("education", "category")] == 7 and spans[("hours", "bin")] == 11
    assert ("children", "offset") not in spans and ("age", "offset") in spans


def test_sampled_categories_follow_softmax_probabilities() -> None:
    schema = Schema(columns=(Column("c", "categorical", categories=("a", "b", "c")),))
    transformer = TabularTransformer(schema)
    logits = np.tile(np.log([[0.2, 0.3, 0.5]]), (20_000, 1))
    shares = transformer.inverse(logits, np.random.default_rng(0))["c"].value_counts(normalize=True)
    np.testing.assert_allclose(shares[["a", "b", "c"]], [0.2, 0.3, 0.5], atol=0.015)


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")
