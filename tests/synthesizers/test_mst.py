"""MST: privacy accounting, the noise it adds, its output, and the shared marginal machinery."""

from __future__ import annotations

import math
import time
from pathlib import Path

import dp_accounting as dpa
import numpy as np
import pandas as pd
import pytest
from dp_accounting import rdp

from dpsynth.encoding import TableEncoder
from dpsynth.errors import UsageError
from dpsynth.privacy.accountant import epsilon_for, zcdp_epsilon
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.events import DiscreteGaussianDpEvent
from dpsynth.privacy.noise import NoiseSource
from dpsynth.schema import Column, Schema
from dpsynth.synthesizers import marginals as mg
from dpsynth.synthesizers.mst import MST, mst_event, mst_parameters
from dpsynth.tables import prepare

REPO = Path(__file__).resolve().parents[2]
ADULT = REPO.parent / "shared" / "data" / "adult" / "adult.csv"
BIG = tuple(f"k{i:03d}" for i in range(120))


def make_schema(source: str = "public") -> Schema:
    return Schema(
        name="toy",
        source=source,
        columns=(
            Column("a", "categorical", categories=("w", "x", "y", "z")),
            Column("b", "categorical", categories=("w", "x", "y", "z")),
            Column("age", "numeric", lower=17, upper=90, bins=8, integer=True),
            Column("score", "numeric", lower=0.0, upper=1.0, bins=5, nullable=True),
            Column("big", "categorical", categories=BIG),
        ),
    )


def make_frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``b`` copies ``a`` 90% of the time: a strong two-way dependency."""
    rng = np.random.default_rng(seed)
    a = rng.choice(list("wxyz"), n)
    b = np.where(rng.random(n) < 0.9, a, rng.choice(list("wxyz"), n))
    score = rng.random(n)
    score[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {"a": a, "b": b, "age": rng.integers(17, 91, n).astype(float), "score": score, "big": rng.choice(BIG, n)}
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[MST, pd.DataFrame, float]:
    df = make_frame()
    start = time.perf_counter()
    model = MST(epsilon=1.0, delta=1e-6, random_state=0).fit(df, make_schema())
    synthetic = model.sample()
    return model, synthetic, time.perf_counter() - start


# -- privacy accounting --------------------------------------------------------------
@pytest.mark.parametrize("epsilon", [0.3, 1.0, 3.0])
def test_calibrated_epsilon_meets_target_within_one_percent(epsilon: float) -> None:
    from dpsynth.privacy.accountant import calibrate

    d, delta = 5, 1e-6
    scale = calibrate(lambda s: mst_event(s, d), epsilon, delta, lower=1e-3, upper=1e7)
    reached = epsilon_for(mst_event(scale, d), delta)
    assert reached <= epsilon
    assert reached >= 0.99 * epsilon


def test_reported_cost_matches_rdp_accountant_composed_by_hand(fitted) -> None:
    model, _, _ = fitted
    cost, d = model.privacy_cost_, 5
    assert cost.mechanism == "mst" and cost.accountant == "rdp"
    assert 0.99 <= cost.epsilon <= 1.0
    details = cost.details
    accountant = rdp.RdpAccountant()
    accountant.compose(dpa.GaussianDpEvent(details["sigma_one_way"]), d)
    accountant.compose(dpa.ZCDpEvent(details["epsilon_selection"] ** 2 / 8), d - 1)
    accountant.compose(dpa.GaussianDpEvent(details["sigma_two_way"]), d - 1)
    assert accountant.get_epsilon(1e-6) == pytest.approx(cost.epsilon, rel=1e-9)
    # dropping any one of the three parts would understate the cost by a lot
    partial = rdp.RdpAccountant()
    partial.compose(dpa.GaussianDpEvent(details["sigma_two_way"]), d - 1)
    assert partial.get_epsilon(1e-6) < 0.8 * cost.epsilon
    assert PrivacyCost.from_dict(cost.to_dict()).event == cost.event


def test_sigmas_follow_the_closed_form_of_the_calibrated_rho(fitted) -> None:
    model, _, _ = fitted
    details, d = model.privacy_cost_.details, 5
    rho = details["rho"]
    assert details["sigma_one_way"] == pytest.approx(math.sqrt(3 * d / (2 * rho)), rel=1e-12)
    assert details["sigma_two_way"] == pytest.approx(math.sqrt(3 * (d - 1) / (2 * rho)), rel=1e-12)
    assert details["epsilon_selection"] == pytest.approx(math.sqrt(8 * (rho / 3) / (d - 1)), rel=1e-12)
    # the whole fit is rho-zCDP, and epsilon is RDP's conversion of it, tighter than the closed form
    assert epsilon_for(dpa.ZCDpEvent(rho), 1e-6, accountant="rdp") == pytest.approx(model.privacy_cost_.epsilon)
    assert zcdp_epsilon(rho, 1e-6) > 1.1


def test_noise_actually_added_has_the_reported_sigma(fitted) -> None:
    model, _, _ = fitted
    data, _ = prepare(make_frame(), make_schema())
    codes, domain = mg.encode_table(TableEncoder(make_schema()), data)
    (big,) = [m for m in model.measurements_ if m.clique == ("big",)]
    residual = np.asarray(big.noisy_measurement) - mg.marginal(codes, domain, ("big",))
    sigma = model.privacy_cost_.details["sigma_one_way"]
    assert big.stddev == pytest.approx(sigma)
    assert np.std(residual) == pytest.approx(sigma, rel=0.2)  # 120 cells
    assert abs(np.mean(residual)) < 4 * sigma / math.sqrt(residual.size)


def test_single_column_spends_everything_on_its_one_way_marginal() -> None:
    scale = 10.0
    assert mst_parameters(scale, 1)[0] == scale
    assert epsilon_for(mst_event(scale, 1), 1e-6) == pytest.approx(epsilon_for(DiscreteGaussianDpEvent(scale), 1e-6))


# -- schema and parameter checks ---------------------------------------------------------
def test_private_schema_is_fitted_when_accepted_and_marked_leaked() -> None:
    """The refusal is in test_contract.py; accepting it is the caller's choice, recorded on the model."""
    model = MST(random_state=0, iters=50).fit(
        make_frame(500), make_schema(source="private-data"), accept_private_schema=True
    )
    assert model.schema_leaked_


@pytest.mark.parametrize(
    "params, name", [({"iters": 0}, "iters"), ({"iters": 1.5}, "iters"), ({"compress": "yes"}, "compress")]
)
def test_bad_parameters_are_refused_naming_the_parameter(params, name) -> None:
    with pytest.raises(UsageError, match=name):
        MST(**params).fit(make_frame(200), make_schema())


# -- output -------------------------------------------------------------------------------
def test_output_models_nulls_at_roughly_their_rate(fitted) -> None:
    """The schema-domain checks are in test_contract.py."""
    _, synthetic, _ = fitted
    assert 0 < synthetic["score"].isna().mean() < 0.3  # nulls are modelled, roughly at their 10% rate


def test_fit_and_sample_take_seconds(fitted) -> None:
    _, _, seconds = fitted
    assert seconds < 45  # ~5 s on an idle 2-core machine; generous for a loaded CI box


def test_strong_two_way_dependency_survives(fitted) -> None:
    model, synthetic, _ = fitted
    assert ("a", "b") in model.selected_edges_ or ("b", "a") in model.selected_edges_
    agreement = (synthetic["a"] == synthetic["b"]).mean()
    assert agreement > 0.8  # real: 0.925; independent columns would give 0.25
    # and the independent pair stays independent-looking
    assert abs((synthetic["a"] == "w").mean() - 0.25) < 0.06


# -- shared marginal machinery ----------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, None], ids=["seeded", "opendp"])
def test_exponential_mechanism_uses_half_epsilon_over_sensitivity(seed: int | None) -> None:
    noise = NoiseSource(seed)
    n = 20_000 if seed is not None else 3_000  # OpenDP's exact sampler takes ~0.5 ms a draw on a busy machine
    draws = [mg.exponential_mechanism(np.array([0.0, 1.0]), 2.0, 1.0, noise) for _ in range(n)]
    # P(best) = e^{eps/2} / (1 + e^{eps/2}) = 0.731 (a missing 1/2 would give 0.881); 4 standard errors
    assert np.mean(draws) == pytest.approx(math.e / (1 + math.e), abs=4 * math.sqrt(0.731 * 0.269 / n))
    assert mg.exponential_mechanism(np.array([0.0, 5.0, 1.0]), 1e4, 1.0, noise) == 1
    assert mg.exponential_mechanism(np.array([3.0]), 1.0, 1.0, noise) == 0


def test_default_row_count_is_the_noisy_total_not_the_exact_one(fitted) -> None:
    """sample() defaults to mbi's total from the noisy measurements: the exact n (2000) is private."""
    model, synthetic, _ = fitted
    assert model.n_train_rows_ == 2000
    assert model.n_rows_estimate_ == max(1, round(mg.estimate_total(model.measurements_)))
    assert model.n_rows_estimate_ != 2000  # seed 0's noise moves it; the exact count would be 2000
    assert abs(model.n_rows_estimate_ - 2000) < 200
    assert len(synthetic) == model.n_rows_estimate_


def test_project_to_simplex() -> None:
    np.testing.assert_allclose(mg.project_to_simplex(np.array([3.0, 1.0, -1.0]), 2.0), [2.0, 0.0, 0.0])
    x = mg.project_to_simplex(np.array([5.0, -2.0, 7.0, 0.5]), 10.0)
    assert x.min() >= 0 and x.sum() == pytest.approx(10.0)


def test_domain_compression_round_trip() -> None:
    domain = mg.Domain(["c"], [4])
    measurement = mg.LinearMeasurement(np.array([100.0, 1.0, 2.0, 50.0]), ("c",), stddev=10.0)
    compression = mg.DomainCompression.from_one_way(domain, [measurement])
    np.testing.assert_array_equal(compression.mappings["c"], [0, 2, 2, 1])
    assert compression.domain.shape == (3,)
    merged = compression.compress_measurement(measurement)
    assert np.asarray(merged.noisy_measurement)[2] == pytest.approx(3.0 / math.sqrt(2))  # sum, rescaled to sigma
    codes = {"c": np.array([0, 1, 2, 3, 3, 0])}
    back = compression.decompress_codes(compression.compress_codes(codes), np.random.default_rng(0))
    np.testing.assert_array_equal(back["c"][[0, 3, 4, 5]], [0, 3, 3, 0])
    assert set(back["c"][[1, 2]]) <= {1, 2}


def test_sampler_matches_model_marginals_and_is_seeded() -> None:
    domain = mg.Domain(["p", "q"], [3, 2])
    joint = np.array([[300.0, 100.0], [50.0, 250.0], [150.0, 150.0]])
    exact = [mg.LinearMeasurement(joint.ravel(), ("p", "q"), stddev=1.0)]
    model = mg.estimate(domain, exact, iters=500, total=1000.0)
    codes = mg.sample_records(model, 1000, np.random.default_rng(1))
    counts = mg.marginal(codes, domain, ("p", "q")).reshape(3, 2)
    assert np.abs(counts - joint).max() <= 2  # stratified draws: counts match up to rounding
    again = mg.sample_records(model, 1000, np.random.default_rng(1))
    np.testing.assert_array_equal(codes["p"], again["p"])


# -- the benchmark's public Adult schema ------------------------------------------------------
def test_adult_schema_covers_the_adult_table() -> None:
    if not ADULT.is_file():
        pytest.skip(f"Adult data not found: {ADULT}")
    schema = Schema.load(REPO / "benchmarks" / "adult.schema.json")
    assert schema.is_public and schema.target == "income"
    df = pd.read_csv(ADULT, skipinitialspace=True, dtype=str, keep_default_na=False).drop(columns=["fnlwgt"])
    data, report = prepare(df, schema)
    assert report.total_changed == 0  # every value lies in the documented domain
    assert TableEncoder(schema).encode(data)["capital_gain"].min() == 0
    assert (TableEncoder(schema).encode(data)["capital_gain"] == 0).mean() > 0.8  # the bin of exactly 0


def test_planned_cost_is_exactly_what_fit_spends(fitted) -> None:
    """The ledger reserves planned_cost before fit: for MST it must be the realised event itself."""
    from dpsynth.privacy.cost import event_to_dict

    model = fitted[0]
    planned = MST(epsilon=1.0, delta=1e-6).planned_cost(model.n_train_rows_, model.schema_)
    assert event_to_dict(planned.event) == event_to_dict(model.privacy_cost_.event)
    assert planned.epsilon == pytest.approx(model.privacy_cost_.epsilon)
