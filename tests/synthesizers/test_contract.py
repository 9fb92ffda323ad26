"""The contract every registered generator keeps, checked on each (after scikit-learn's ``parametrize_with_checks``).

Every name in :data:`dpsynth.synthesizers.GENERATORS` gets every check here:
a new generator gets them by being registered. ``FAST`` is the one place
that says how to make each generator fit in a second or two (a generator
missing from it is checked with its defaults). Generator-specific behaviour
(its privacy accounting, its output quality) stays in ``test_<name>.py``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from dpsynth.errors import SchemaError, UsageError
from dpsynth.privacy.accountant import epsilon_for
from dpsynth.schema import Schema
from dpsynth.synthesizers import GENERATORS, Synthesizer, generator_class, make_synthesizer
from tests.conftest import make_mixed_frame, make_mixed_schema
from tests.synthesizers.checks import assert_respects_schema

#: Per generator, parameters small enough for a test fit (300 rows); the contract holds for any values.
FAST: dict[str, dict[str, Any]] = {
    "mst": {"iters": 100},
    "aim": {"max_iters": 100, "rounds": 12},
    "dpctgan": {"epochs": 2, "batch_size": 50, "progress": False},
    "dpvae": {"epochs": 2, "batch_size": 50, "progress": False},
}
EPSILON, DELTA, ROWS, SEED = 1.0, 1e-6, 300, 0

#: Invalid values of the parameters every generator shares, and the parameter each must be blamed on.
BAD_COMMON = [
    ({"epsilon": 0.0}, "epsilon"),
    ({"epsilon": math.inf}, "epsilon"),
    ({"epsilon": True}, "epsilon"),
    ({"delta": 0.0}, "delta"),
    ({"delta": 0.5}, "delta"),
    ({"random_state": -1}, "random_state"),
    ({"random_state": 1.5}, "random_state"),
    ({"secure_noise": "yes"}, "secure_noise"),
    ({"secure_noise": False, "random_state": None}, "secure_noise"),
]


def build(name: str, **params: Any) -> Synthesizer:
    return make_synthesizer(name, **{**FAST.get(name, {}), **params})


@pytest.fixture(scope="module", params=GENERATORS)
def fitted(request) -> tuple[str, Synthesizer, pd.DataFrame]:
    """One seeded fit per generator, and the first rows it sampled."""
    model = build(request.param, epsilon=EPSILON, delta=DELTA, random_state=SEED)
    assert model.fit(make_mixed_frame(ROWS), make_mixed_schema()) is model
    return request.param, model, model.sample(200)


# -- construction and parameters ------------------------------------------------------------------------
@pytest.mark.parametrize("name", GENERATORS)
def test_constructor_stores_parameters_and_the_registry_finds_the_class(name: str) -> None:
    cls = generator_class(name)
    model = build(name, epsilon=0.5)
    assert type(model) is cls and cls.name == name
    params = model.get_params()
    assert params["epsilon"] == 0.5 and all(params[k] == v for k, v in FAST.get(name, {}).items())
    assert not [k for k in vars(model) if k.endswith("_")], "the constructor must not learn anything"
    assert repr(model).startswith(f"{cls.__name__}(epsilon=0.5")
    with pytest.raises(UsageError, match="no_such_parameter") as info:
        build(name, no_such_parameter=1)
    assert info.value.parameter == "no_such_parameter"


@pytest.mark.parametrize("name", GENERATORS)
def test_every_parameter_is_declared_and_a_foreign_value_is_refused_naming_it(name: str) -> None:
    cls = generator_class(name)
    constraints = cls.parameter_constraints()
    assert set(constraints) == set(build(name).get_params()), "declare every constructor parameter's constraint"
    for parameter in constraints:
        with pytest.raises(UsageError) as info:
            build(name, **{parameter: object()}).planned_cost(ROWS, make_mixed_schema())
        assert info.value.parameter == parameter
        assert str(info.value).startswith(f"{cls.__name__} parameter {parameter!r} must be ")


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("params, parameter", BAD_COMMON, ids=[repr(p) for p, _ in BAD_COMMON])
def test_bad_common_parameters_are_refused_before_fitting_naming_them(name: str, params: dict, parameter: str) -> None:
    with pytest.raises(UsageError, match=parameter) as info:
        build(name, **params).fit(make_mixed_frame(100), make_mixed_schema())
    assert info.value.parameter == parameter


# -- the schema -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GENERATORS)
def test_fit_needs_a_public_dpsynth_schema(name: str) -> None:
    frame = make_mixed_frame(100)
    with pytest.raises(UsageError, match="schema"):
        build(name).fit(frame, None)  # type: ignore[arg-type]
    private = Schema.from_dict({**make_mixed_schema().to_dict(), "source": "private-data"})
    with pytest.raises(SchemaError, match="private"):
        build(name).fit(frame, private)


# -- fitting and its cost -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", GENERATORS)
def test_sample_before_fit_is_refused(name: str) -> None:
    with pytest.raises(UsageError, match="not fitted"):
        build(name).sample(10)


def test_fit_spends_the_target_and_no_more(fitted) -> None:
    _, model, _ = fitted
    cost = model.privacy_cost_
    assert 0.9 * EPSILON <= cost.epsilon <= EPSILON * (1 + 1e-9) and cost.delta <= DELTA
    assert epsilon_for(cost.event, DELTA) == pytest.approx(cost.epsilon)
    assert model.noise_source_.startswith("fixed-seed") and not model.schema_leaked_


def test_planned_cost_bounds_the_realised_cost_at_every_delta(fitted) -> None:
    """The ledger reserves planned_cost before fit; the realised cost never exceeds it."""
    _, model, _ = fitted
    planned = model.planned_cost(ROWS, make_mixed_schema())  # a function of the parameters, n and the schema
    assert planned.epsilon <= EPSILON * (1 + 1e-9)
    for delta in (DELTA, 1e-5, 1e-8):
        assert epsilon_for(model.privacy_cost_.event, delta) <= epsilon_for(planned.event, delta) + 1e-9


# -- sampling ---------------------------------------------------------------------------------------------
def test_sample_respects_the_schema_and_defaults_to_the_dp_row_count(fitted) -> None:
    _, model, first = fitted
    assert_respects_schema(first, make_mixed_schema(), rows=200)
    assert model.n_train_rows_ == ROWS and isinstance(model.n_rows_estimate_, int) and model.n_rows_estimate_ >= 1
    assert len(model.sample()) == model.n_rows_estimate_
    for bad in (0, -3, 2.5, True):
        with pytest.raises(UsageError, match="'n'"):
            model.sample(bad)


def test_fixed_seed_reproduces_model_and_rows_and_another_seed_differs(fitted) -> None:
    name, model, first = fitted
    frame, schema = make_mixed_frame(ROWS), make_mixed_schema()
    again = build(name, epsilon=EPSILON, delta=DELTA, random_state=SEED).fit(frame, schema)
    pd.testing.assert_frame_equal(again.sample(200), first)
    assert again.privacy_cost_.event == model.privacy_cost_.event
    assert not again.sample(200).equals(first)  # later draws continue the stream
    other = build(name, epsilon=EPSILON, delta=DELTA, random_state=SEED + 1).fit(frame, schema)
    assert not other.sample(200).equals(first)
