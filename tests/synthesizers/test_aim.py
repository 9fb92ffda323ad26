"""AIM: the budget is never exceeded, every event is composed, and the output is usable."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pandas as pd
import pytest
from dp_accounting import rdp

from dpsynth.errors import UsageError
from dpsynth.privacy.accountant import epsilon_for, zcdp_epsilon
from dpsynth.schema import Column, Schema
from dpsynth.synthesizers import marginals as mg
from dpsynth.synthesizers.aim import AIM, _pace, combine_repeats, compile_workload, zcdp_budget

FAST = {"max_iters": 300, "rounds": 8}


def make_schema(source: str = "public") -> Schema:
    return Schema(
        name="toy",
        source=source,
        columns=(
            Column("a", "categorical", categories=("w", "x", "y", "z")),
            Column("b", "categorical", categories=("w", "x", "y", "z")),
            Column("age", "numeric", lower=17, upper=90, bins=6, integer=True),
            Column("flag", "categorical", categories=("no", "yes"), nullable=True),
        ),
    )


def make_frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """``b`` copies ``a`` 90% of the time; ``flag`` depends on ``age``."""
    rng = np.random.default_rng(seed)
    a = rng.choice(list("wxyz"), n)
    age = rng.integers(17, 91, n).astype(float)
    flag = np.where(rng.random(n) < np.where(age > 50, 0.8, 0.2), "yes", "no").astype(object)
    flag[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {"a": a, "b": np.where(rng.random(n) < 0.9, a, rng.choice(list("wxyz"), n)), "age": age, "flag": flag}
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[AIM, pd.DataFrame]:
    model = AIM(epsilon=1.0, delta=1e-6, random_state=0, **FAST).fit(make_frame(), make_schema())
    return model, model.sample()


# -- privacy accounting ------------------------------------------------------------------------
@pytest.mark.parametrize("epsilon", [0.1, 1.0, 5.0])
def test_zcdp_budget_is_calibrated_by_rdp_not_the_loose_bound(epsilon: float) -> None:
    rho = zcdp_budget(epsilon, 1e-6)
    reached = epsilon_for(dpa.ZCDpEvent(rho), 1e-6, accountant="rdp")
    assert reached <= epsilon and reached >= 0.999 * epsilon
    assert zcdp_epsilon(rho, 1e-6) > epsilon  # the closed form would have wasted budget


def test_fit_never_exceeds_and_nearly_uses_the_target(fitted) -> None:
    model, _ = fitted
    cost = model.privacy_cost_
    assert cost.mechanism == "aim" and cost.accountant == "rdp"
    assert 0.99 <= cost.epsilon <= 1.0
    assert cost.details["rounds"] >= 2 and cost.details["stopped"] == "budget"


def test_reported_cost_is_the_composition_of_every_measurement_and_selection(fitted) -> None:
    model, _ = fitted
    details, d = model.privacy_cost_.details, 4
    accountant = rdp.RdpAccountant()
    accountant.compose(dpa.GaussianDpEvent(details["sigma_initial"]), d)
    rho = d / (2 * details["sigma_initial"] ** 2)
    for step in details["selected"]:
        accountant.compose(dpa.ZCDpEvent(step["epsilon_selection"] ** 2 / 8))
        accountant.compose(dpa.GaussianDpEvent(step["sigma"]))
        rho += 1 / (2 * step["sigma"] ** 2) + step["epsilon_selection"] ** 2 / 8
    assert accountant.get_epsilon(1e-6) == pytest.approx(model.privacy_cost_.epsilon, rel=1e-9)
    assert rho == pytest.approx(details["rho"], rel=1e-9) and rho <= details["rho"] * (1 + 1e-12)
    # one measurement per round plus the initial one-way marginals, each with its recorded sigma
    assert len(model.measurements_) == d + len(details["selected"])
    assert [m.stddev for m in model.measurements_[d:]] == pytest.approx([s["sigma"] for s in details["selected"]])


def test_running_out_of_time_still_spends_exactly_the_budget() -> None:
    model = AIM(epsilon=1.0, random_state=1, max_seconds=1e-6, **FAST).fit(make_frame(1000), make_schema())
    details = model.privacy_cost_.details
    assert details["stopped"] == "time" and details["rounds"] == 1
    assert 0.99 <= model.privacy_cost_.epsilon <= 1.0


def test_pace_spreads_the_remaining_budget_over_the_rounds_that_fit() -> None:
    sigma, epsilon = 10.0, 0.1
    per_round = 1 / (2 * sigma**2) + epsilon**2 / 8
    # plenty of time: unchanged
    assert _pace(3 * per_round, sigma, epsilon, 100.0, 1.0) == (sigma, epsilon, False)
    # time for 4 rounds but budget for 10 at this pace: each round gets a quarter of what is left
    s, e, stop = _pace(10 * per_round, sigma, epsilon, 4.5, 1.0)
    assert not stop and 1 / (2 * s**2) + e**2 / 8 == pytest.approx(10 * per_round / 4)
    # no time for more than this round: it takes everything
    s, e, stop = _pace(10 * per_round, sigma, epsilon, 0.5, 1.0)
    assert stop and 1 / (2 * s**2) + e**2 / 8 == pytest.approx(10 * per_round)


# -- selection machinery ------------------------------------------------------------------------
def test_compile_workload_weights_by_overlap() -> None:
    domain = mg.Domain(["a", "b", "c"], [2, 2, 2])
    weights = compile_workload([("a", "b"), ("b", "c")], domain)
    # (a, b) overlaps (a, b) in 2 columns and (b, c) in 1
    assert weights == {("a",): 1.0, ("b",): 2.0, ("c",): 1.0, ("a", "b"): 3.0, ("b", "c"): 3.0}


def test_repeated_measurements_combine_by_inverse_variance() -> None:
    first = mg.LinearMeasurement(np.array([10.0, 20.0]), ("a",), stddev=1.0)
    second = mg.LinearMeasurement(np.array([15.0, 10.0]), ("a",), stddev=2.0)
    other = mg.LinearMeasurement(np.array([1.0]), ("b",), stddev=3.0)
    combined = combine_repeats([first, other, second])
    assert [m.clique for m in combined] == [("a",), ("b",)]
    np.testing.assert_allclose(combined[0].noisy_measurement, [(4 * 10 + 15) / 5, (4 * 20 + 10) / 5])
    assert combined[0].stddev == pytest.approx(1 / math.sqrt(1 + 1 / 4))


def test_custom_workload_limits_what_is_measured() -> None:
    model = AIM(epsilon=2.0, random_state=2, workload=[("age", "flag")], **FAST).fit(make_frame(1000), make_schema())
    assert set(model.selected_) <= {("age",), ("flag",), ("age", "flag")}
    assert model.privacy_cost_.epsilon <= 2.0


# -- checks and refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, name",
    [
        ({"workload": [("a", "nope")]}, "workload"),
        ({"workload": "ab"}, "workload"),
        ({"workload": []}, "workload"),
        ({"workload": [("a", "a")]}, "workload"),
        ({"max_model_size": 0}, "max_model_size"),
        ({"max_iters": 0}, "max_iters"),
        ({"max_seconds": -1}, "max_seconds"),
        ({"rounds": 0}, "rounds"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(params, name) -> None:
    with pytest.raises(UsageError, match=name):
        AIM(**params).fit(make_frame(200), make_schema())


# -- output -------------------------------------------------------------------------------------
def test_output_keeps_the_strong_dependencies_and_a_noisy_total(fitted) -> None:
    model, synthetic = fitted
    assert model.n_train_rows_ == 3000 and model.n_rows_estimate_ != 3000  # a noisy total, not the exact n
    assert abs(model.n_rows_estimate_ - 3000) < 300
    assert model.n_rows_estimate_ == round(mg.estimate_total(combine_repeats(model.measurements_)))
    assert (synthetic["a"] == synthetic["b"]).mean() > 0.8  # real: 0.925, independent: 0.25
    old, young = synthetic[synthetic["age"] > 55], synthetic[synthetic["age"] < 45]
    assert (old["flag"] == "yes").mean() - (young["flag"] == "yes").mean() > 0.3  # real: 0.8 vs 0.2
