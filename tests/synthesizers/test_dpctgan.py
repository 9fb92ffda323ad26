"""DP-CTGAN: its privacy cost (noisy counts + DP-SGD), budget stop, refusals, output and reproducibility."""

from __future__ import annotations

import math
from pathlib import Path

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting import pld

from dpsynth.errors import UsageError
from dpsynth.privacy.accountant import epsilon_for, gaussian_sigma
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.events import DiscreteGaussianDpEvent
from dpsynth.schema import Schema
from dpsynth.synthesizers import make_synthesizer
from dpsynth.synthesizers.dpctgan import DPCTGAN
from tests.conftest import make_mixed_frame, make_mixed_schema

REPO = Path(__file__).resolve().parents[2]
ADULT = REPO.parent / "shared" / "data" / "adult" / "adult.csv"
EPSILON, DELTA = 1.0, 1e-6
FAST = dict(epochs=4, batch_size=50, progress=False)
CATEGORICAL = ["sex", "education", "country", "income"]


@pytest.fixture(scope="module")
def fitted(monkeypatch_module) -> tuple[DPCTGAN, dict]:
    """One calibrated fit on 300 rows; records what Opacus was asked to do."""
    import opacus

    seen: dict = {}
    original = opacus.PrivacyEngine.make_private

    def spy(self, **kwargs):
        seen.update({k: kwargs[k] for k in ("noise_multiplier", "max_grad_norm", "poisson_sampling")})
        return original(self, **kwargs)

    monkeypatch_module.setattr(opacus.PrivacyEngine, "make_private", spy)
    model = DPCTGAN(epsilon=EPSILON, delta=DELTA, random_state=0, **FAST).fit(
        make_mixed_frame(300), make_mixed_schema()
    )
    return model, seen


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


# -- privacy accounting ---------------------------------------------------------------------------
def test_reported_event_is_noisy_counts_then_dpsgd_steps(fitted) -> None:
    model, _ = fitted
    event = model.privacy_cost_.event
    assert isinstance(event, dpa.ComposedDpEvent)
    rows, *counts, dpsgd = event.events
    assert rows == DiscreteGaussianDpEvent(model.privacy_cost_.details["rows_noise_sigma"])
    assert len(counts) == len(CATEGORICAL) == len(model.cond_spans_)
    assert all(isinstance(c, DiscreteGaussianDpEvent) and c.sensitivity == 1 for c in counts)
    assert {c.sigma for c in counts} == {model.count_noise_multiplier_}
    assert dpsgd == dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(model.plan_.sample_rate, dpa.GaussianDpEvent(model.plan_.noise_multiplier)),
        model.training_.steps,
    )
    assert model.training_.steps == model.plan_.planned_steps == 4 * 6  # 300 rows / batch 50, 4 epochs
    assert model.plan_.sample_rate == pytest.approx(50 / 300)


def test_whole_fit_meets_target_within_one_percent_by_independent_pld(fitted) -> None:
    model, _ = fitted
    accountant = pld.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(
        dpa.PoissonSampledDpEvent(model.plan_.sample_rate, dpa.GaussianDpEvent(model.plan_.noise_multiplier)),
        model.training_.steps,
    )
    total = accountant._pld  # dp-accounting composes the discrete Gaussians' own PLDs below
    for sigma in [model.privacy_cost_.details["rows_noise_sigma"]] + [model.count_noise_multiplier_] * len(CATEGORICAL):
        total = total.compose(
            pld.privacy_loss_distribution.from_discrete_gaussian_mechanism(
                sigma, sensitivity=1, value_discretization_interval=1e-4
            )
        )
    independent = total.get_epsilon_for_delta(DELTA)
    assert 0.99 * EPSILON <= independent <= EPSILON
    cost = model.privacy_cost_
    assert cost.accountant == "pld" and cost.delta == DELTA
    assert cost.epsilon == pytest.approx(independent, rel=2e-3) and cost.epsilon <= EPSILON


def test_count_noise_spends_its_fraction_of_the_budget(fitted) -> None:
    """k histograms of sensitivity 1 with noise s compose to one Gaussian s/sqrt(k), set to (f eps, f delta)."""
    model, _ = fitted
    f, k = model.count_budget_fraction, len(CATEGORICAL)
    assert model.count_noise_multiplier_ == pytest.approx(gaussian_sigma(f * EPSILON, f * DELTA) * math.sqrt(k))
    counts_only = dpa.ComposedDpEvent([DiscreteGaussianDpEvent(model.count_noise_multiplier_)] * k)
    assert epsilon_for(counts_only, f * DELTA) == pytest.approx(f * EPSILON, rel=0.01)


def test_planned_cost_is_known_before_the_data_and_matches_a_full_run(fitted) -> None:
    model, _ = fitted
    fresh = DPCTGAN(epsilon=EPSILON, delta=DELTA, random_state=0, **FAST)
    planned = fresh.planned_cost(300, make_mixed_schema())  # row count and schema only: what the ledger reserves
    assert planned.event == model.privacy_cost_.event
    assert planned.epsilon == pytest.approx(model.privacy_cost_.epsilon) and planned.epsilon <= EPSILON


def test_opacus_receives_the_calibrated_noise_and_clip(fitted) -> None:
    model, seen = fitted
    assert seen == {"noise_multiplier": model.plan_.noise_multiplier, "max_grad_norm": 1.0, "poisson_sampling": True}
    assert model.privacy_cost_.details["noise_multiplier"] == model.plan_.noise_multiplier


def test_cost_round_trips_through_the_ledger_form(fitted) -> None:
    model, _ = fitted
    again = PrivacyCost.from_dict(model.privacy_cost_.to_dict())
    assert again.event == model.privacy_cost_.event
    assert epsilon_for(again.event, DELTA) == pytest.approx(model.privacy_cost_.epsilon)


def test_unconditional_fit_spends_nothing_on_counts() -> None:
    model = DPCTGAN(epsilon=EPSILON, delta=DELTA, conditional="none", random_state=0, **FAST)
    model.fit(make_mixed_frame(300), make_mixed_schema())
    rows, dpsgd = model.privacy_cost_.event.events  # the noisy row count, then DP-SGD: no category counts
    assert isinstance(rows, DiscreteGaussianDpEvent)
    assert isinstance(dpsgd, dpa.SelfComposedDpEvent) and dpsgd.count == 24
    assert 0.99 * EPSILON <= model.privacy_cost_.epsilon <= EPSILON
    assert model.sample(50).shape == (50, 9)


def test_run_that_would_exceed_the_budget_stops_at_it() -> None:
    model = DPCTGAN(
        epsilon=EPSILON, delta=DELTA, noise_multiplier=4.0, epochs=30, batch_size=50, random_state=0, progress=False
    )
    model.fit(make_mixed_frame(300), make_mixed_schema())
    record, cost = model.training_, model.privacy_cost_
    assert record.stopped_by == "budget"
    assert 0 < record.steps < model.plan_.planned_steps
    assert cost.epsilon <= EPSILON
    one_more = dpa.ComposedDpEvent(
        [*cost.event.events[:-1], dpa.SelfComposedDpEvent(cost.event.events[-1].event, record.steps + 1)]
    )
    assert epsilon_for(one_more, DELTA) > EPSILON  # it stopped at the last affordable step
    assert cost.details["stopped_by"] == "budget" and cost.details["steps"] == record.steps


def test_max_seconds_stops_early_and_reports_the_lower_cost() -> None:
    model = DPCTGAN(epsilon=EPSILON, delta=DELTA, noise_multiplier=4.0, max_seconds=1e-9, random_state=0, **FAST).fit(
        make_mixed_frame(300), make_mixed_schema()
    )
    assert model.training_.stopped_by == "max_seconds" and model.training_.steps == 0
    assert all(isinstance(e, DiscreteGaussianDpEvent) for e in model.privacy_cost_.event.events)  # counts only
    assert model.privacy_cost_.epsilon < 0.2 * EPSILON
    assert model.planned_cost(300, make_mixed_schema()).epsilon > model.privacy_cost_.epsilon
    assert len(model.sample(20)) == 20


# -- refusals and validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1}, "batch_size"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"generator_lr": float("nan")}, "generator_lr"),
        ({"noise_multiplier": 0.0}, "noise_multiplier"),
        ({"max_seconds": -5}, "max_seconds"),
        ({"conditional": "uniform"}, "conditional"),
        ({"count_budget_fraction": 0.9}, "count_budget_fraction"),
        ({"generator_dim": ()}, "generator_dim"),
        ({"discriminator_dim": (0,)}, "discriminator_dim"),
        ({"numeric_encoding": "gmm"}, "numeric_encoding"),
        ({"device": "tpu"}, "device"),
        ({"grad_sample_mode": "ew"}, "grad_sample_mode"),
    ],
)
def test_invalid_parameters_are_refused_naming_the_parameter(params, name) -> None:
    with pytest.raises(UsageError, match=name):
        DPCTGAN(**{**FAST, **params}).fit(make_mixed_frame(100), make_mixed_schema())


# -- output -------------------------------------------------------------------------------------------------
def test_nulls_are_modelled(fitted) -> None:
    """The schema-domain checks are in test_contract.py."""
    model, _ = fitted
    schema = make_mixed_schema()
    out = model.sample(2000)
    assert sum(out[c.name].isna().any() for c in schema if c.nullable) >= 2  # nulls are modelled, not dropped


def test_defaults_through_make_synthesizer_work_on_a_small_table() -> None:
    model = make_synthesizer("dpctgan", epsilon=EPSILON, delta=DELTA, random_state=0)
    assert isinstance(model, DPCTGAN) and model.name == "dpctgan"
    model.progress = False
    model.fit(make_mixed_frame(300), make_mixed_schema())
    assert model.batch_size_ == 75  # the default 1000 is capped at a quarter of the table
    assert model.privacy_cost_.epsilon <= EPSILON
    assert model.sample(10).shape == (10, 9)


@pytest.mark.skipif(not ADULT.is_file(), reason=f"Adult data not found: {ADULT}")
def test_adult_smoke() -> None:
    from dpsynth.tables import read_csv

    schema = Schema.load(REPO / "benchmarks" / "adult.schema.json")
    frame = read_csv(ADULT, schema).iloc[:3000]
    model = DPCTGAN(epsilon=EPSILON, delta=DELTA, epochs=2, batch_size=500, random_state=0, progress=False)
    out = model.fit(frame, schema).sample(500)
    assert list(out.columns) == schema.names
    assert set(out["income"]) <= {"<=50K", ">50K"} and out["age"].between(17, 90).all()
    assert model.privacy_cost_.epsilon <= EPSILON


def test_rake_matches_target_shares_without_touching_the_pool() -> None:
    from dpsynth.synthesizers.dpctgan import rake

    schema = make_mixed_schema()
    pool = make_mixed_frame(5000, seed=3)
    targets = {
        "sex": np.array([0.7, 0.3]),
        "income": np.array([0.4, 0.6]),
        "education": np.array([0.1, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1]),
    }  # last share: null
    weights = rake(pool, targets, schema)
    assert (weights >= 0).all() and len(weights) == len(pool)
    for name, target in targets.items():
        column = schema[name]
        labels = list(column.categories) + ([np.nan] if column.nullable else [])
        shares = [
            weights[(pool[name].isna() if isinstance(label, float) else pool[name] == label).to_numpy()].sum()
            for label in labels
        ]
        np.testing.assert_allclose(np.asarray(shares) / weights.sum(), target, atol=1e-3)


def test_matched_sample_follows_the_noisy_counts(fitted) -> None:
    model, _ = fitted
    out = model.sample(3000)
    for span, frequencies in zip(model.cond_spans_, model.cond_frequencies_):
        column = make_mixed_schema()[span.column]
        shares = out[span.column].value_counts(normalize=True, dropna=False)
        got = [shares.get(label, 0.0) for label in column.categories]
        np.testing.assert_allclose(got, frequencies[: len(column.categories)], atol=0.05)


# -- exact category counts (issue 7, item 7) ------------------------------------------------------------------
class _RecordingNoise:
    """Stands in for the NoiseSource: records what is noised and adds nothing (to read the counts back)."""

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def discrete_gaussian(self, counts, sigma):
        self.seen.append(np.asarray(counts))
        return np.asarray(counts)


def test_category_counts_are_exact_integers_above_float32_precision() -> None:
    """2^24 + 1 records of one category: a float32 sum says 2^24, so one record would move the count by 0 or 2."""
    import torch

    from dpsynth.schema import Column
    from dpsynth.synthesizers.dpctgan import category_counts

    n = 2**24 + 1
    x = torch.tensor([[1.0, 0.0, 0.0]]).expand(n, 3)  # a one-hot column, without allocating n rows
    assert float(x.sum(dim=0)[0]) == 2**24  # what the old float32 sum counted
    schema = Schema(columns=(Column("c", "categorical", categories=("p", "q", "r")),), name="big")
    model = DPCTGAN(epsilon=EPSILON, delta=DELTA, **FAST)
    model.schema_ = schema
    model._noise = _RecordingNoise()
    model._preprocess(x, model._preprocessing_events(schema))
    (counts,) = model._noise.seen
    assert counts.dtype == np.int64 and counts.tolist() == [n, 0, 0]
    np.testing.assert_allclose(model.cond_frequencies_[0], [1.0, 0.0, 0.0])
    span = model.cond_spans_[0]
    assert category_counts(x[:1000], span).tolist() == [1000, 0, 0]
