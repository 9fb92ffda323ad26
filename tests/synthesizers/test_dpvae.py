"""DP-VAE: its DP-SGD cost, budget stop, refusals, output and reproducibility."""

from __future__ import annotations

import dp_accounting as dpa
import pandas as pd
import pytest
import torch
from dp_accounting import pld

from dpsynth.errors import UsageError
from dpsynth.privacy.accountant import epsilon_for, gaussian_sigma
from dpsynth.privacy.events import DiscreteGaussianDpEvent
from dpsynth.synthesizers.dpvae import DPVAE, TabularVAE, row_losses
from dpsynth.synthesizers.tensor_encoding import TabularTransformer
from dpsynth.tables import prepare
from tests.conftest import make_mixed_frame, make_mixed_schema

EPSILON, DELTA = 1.0, 1e-6
FAST = dict(epochs=4, batch_size=50, progress=False)


@pytest.fixture(scope="module")
def fitted() -> DPVAE:
    return DPVAE(epsilon=EPSILON, delta=DELTA, random_state=0, **FAST).fit(make_mixed_frame(300), make_mixed_schema())


def test_reported_event_is_the_row_count_then_the_dpsgd_steps(fitted) -> None:
    event, plan = fitted.privacy_cost_.event, fitted.plan_
    sigma = fitted.privacy_cost_.details["rows_noise_sigma"]
    assert sigma == pytest.approx(gaussian_sigma(0.02 * EPSILON, 0.02 * DELTA))
    assert event == dpa.ComposedDpEvent(
        [
            DiscreteGaussianDpEvent(sigma),
            dpa.SelfComposedDpEvent(
                dpa.PoissonSampledDpEvent(plan.sample_rate, dpa.GaussianDpEvent(plan.noise_multiplier)), 24
            ),
        ]
    )
    assert fitted.training_.steps == plan.planned_steps == 24 and fitted.training_.stopped_by == "epochs"


def test_calibrated_noise_meets_target_within_one_percent_by_independent_pld(fitted) -> None:
    plan = fitted.plan_
    accountant = pld.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(
        dpa.PoissonSampledDpEvent(plan.sample_rate, dpa.GaussianDpEvent(plan.noise_multiplier)), fitted.training_.steps
    )
    rows = pld.privacy_loss_distribution.from_discrete_gaussian_mechanism(
        fitted.privacy_cost_.details["rows_noise_sigma"], sensitivity=1, value_discretization_interval=1e-4
    )
    independent = accountant._pld.compose(rows).get_epsilon_for_delta(DELTA)
    assert 0.99 * EPSILON <= independent <= EPSILON
    assert fitted.privacy_cost_.epsilon == pytest.approx(independent, rel=2e-3)
    assert fitted.privacy_cost_.details["calibrated_by"] == "pld"


def test_planned_cost_matches_a_full_run(fitted) -> None:
    planned = DPVAE(epsilon=EPSILON, delta=DELTA, **FAST).planned_cost(300, make_mixed_schema())
    assert planned.event == fitted.privacy_cost_.event and planned.epsilon <= EPSILON


def test_run_that_would_exceed_the_budget_stops_at_it() -> None:
    model = DPVAE(
        epsilon=EPSILON, delta=DELTA, noise_multiplier=4.0, epochs=30, batch_size=50, random_state=0, progress=False
    ).fit(make_mixed_frame(300), make_mixed_schema())
    steps = model.training_.steps
    assert model.training_.stopped_by == "budget" and 0 < steps < model.plan_.planned_steps
    assert model.privacy_cost_.epsilon <= EPSILON
    rows, taken = model.privacy_cost_.event.events
    assert epsilon_for(dpa.ComposedDpEvent([rows, dpa.SelfComposedDpEvent(taken.event, steps + 1)]), DELTA) > EPSILON
    assert model.planned_cost(300, make_mixed_schema()).event == model.privacy_cost_.event  # stopped at the cap


def test_hooks_mode_trains_the_same_model_as_ghost_mode() -> None:
    """Both per-sample clipping implementations give the same clipped gradients, hence the same weights."""
    params = dict(
        epsilon=EPSILON, delta=DELTA, noise_multiplier=5.0, epochs=2, batch_size=50, random_state=3, progress=False
    )
    frame, schema = make_mixed_frame(300), make_mixed_schema()
    ghost = DPVAE(grad_sample_mode="ghost", **params).fit(frame, schema)
    hooks = DPVAE(grad_sample_mode="hooks", **params).fit(frame, schema)
    for a, b in zip(ghost.decoder_.parameters(), hooks.decoder_.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"hidden_dim": []}, "hidden_dim"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"loss_factor": -1}, "loss_factor"),
        ({"value_scale": 0}, "value_scale"),
        ({"epochs": 1.5}, "epochs"),
        ({"num_threads": 0}, "num_threads"),
        ({"progress": "yes"}, "progress"),
    ],
)
def test_invalid_parameters_are_refused_naming_the_parameter(params, name) -> None:
    with pytest.raises(UsageError, match=name):
        DPVAE(**{**FAST, **params}).fit(make_mixed_frame(100), make_mixed_schema())


def test_nulls_are_modelled_in_every_nullable_column(fitted) -> None:
    """The schema-domain checks are in test_contract.py."""
    schema = make_mixed_schema()
    out = fitted.sample(2000)
    assert all(out[c.name].isna().any() for c in schema if c.nullable)


def test_reconstruction_loss_is_per_row() -> None:
    """Each row's loss depends on that row only: the premise of per-sample clipping."""
    schema = make_mixed_schema()
    transformer = TabularTransformer(schema)
    x = torch.as_tensor(transformer.transform(prepare(make_mixed_frame(20), schema)[0]))
    raw = torch.randn(20, transformer.dim)
    full = row_losses(raw, x, transformer.spans, 0.1)
    alone = torch.cat([row_losses(raw[i : i + 1], x[i : i + 1], transformer.spans, 0.1) for i in range(20)])
    torch.testing.assert_close(full, alone)
    assert TabularVAE(transformer.dim, (8,), 4)(x)[0].shape == x.shape


def test_fitted_model_pickles_without_opacus_hooks(fitted) -> None:
    import pickle

    assert not any(m._forward_hooks for m in fitted.decoder_.modules())
    clone = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(clone.sample(200), fitted.sample(200))
