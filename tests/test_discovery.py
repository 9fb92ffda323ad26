"""DP domain discovery: the schema it learns, what it costs, and that the cost is OpenDP's own."""

from __future__ import annotations

import dp_accounting as dpa
import numpy as np
import opendp.prelude as dp
import pandas as pd
import pytest

from dpsynth.discovery import (
    OTHER_LABEL,
    CategoricalPlan,
    NumericPlan,
    candidate_grid,
    check_table,
    discover_schema,
    key_counts,
    plan_discovery,
    run_discovery,
)
from dpsynth.errors import DataError, SchemaError, UsageError
from dpsynth.privacy.accountant import compose, epsilon_for
from dpsynth.privacy.events import EpsilonDeltaDpEvent
from dpsynth.schema import DP, PRIVATE_DATA, Schema
from dpsynth.synthesizers.mst import MST
from dpsynth.tables import coerce, prepare

dp.enable_features("contrib")

FREQUENT = ("alpha", "beta", "gamma")
UNIQUE = "only-one-person-has-this"


def text_table(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Raw CSV cells (text): an integer age, a real score, a colour with one unique value, a label."""
    rng = np.random.default_rng(seed)
    age = np.clip(np.round(rng.normal(45, 12, n)), 18, 95).astype(int)
    colour = rng.choice(FREQUENT, n, p=[0.5, 0.3, 0.2]).astype(object)
    colour[7] = UNIQUE
    return pd.DataFrame(
        {
            "age": age.astype(str),
            "score": [f"{v:.3f}" for v in rng.gamma(2.0, 1.5, n)],
            "colour": colour,
            "label": rng.choice(["yes", "no"], n).astype(object),
        }
    )


HINTS = {"integer": ["age"], "numeric": ["score"], "ranges": {"age": (0, 120)}}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return text_table()


@pytest.fixture(scope="module")
def plan():
    return plan_discovery(["age", "score", "colour", "label"], 1.0, 1e-6, **HINTS)


@pytest.fixture(scope="module")
def discovered(table, plan) -> Schema:
    return run_discovery(table, plan, name="toy", target="label")


# -- candidates ----------------------------------------------------------------------------
def test_candidate_grid_is_public_and_cut_to_the_hinted_range() -> None:
    grid = candidate_grid()
    assert 0.0 in grid and all(float(v) in grid for v in range(100)) and 110.0 in grid and 105.0 not in grid
    assert min(grid) < -1e9 and max(grid) > 1e9 and list(grid) == sorted(set(grid))
    assert candidate_grid(0, 120, integer=True) == tuple(float(v) for v in range(121))
    wide = candidate_grid(0.5, 1e6, integer=True)
    assert wide[0] == 1.0 and wide[-1] == 1e6 and all(v == int(v) for v in wide)
    assert (
        candidate_grid(0, 1)[0] == 0
        and candidate_grid(0, 1)[-1] == 1
        and 0.25 in candidate_grid(0, 1)
        and 0.255 not in candidate_grid(0, 1)
    )


# -- accounting ----------------------------------------------------------------------------
def test_cost_is_the_composition_of_opendp_maps(plan) -> None:
    leaves = []
    for column in plan.columns:
        if isinstance(column, NumericPlan):
            for alpha, scale, rho in zip(column.alphas, column.scales, column.rho):
                meas = dp.m.make_private_quantile(
                    dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                    dp.symmetric_distance(),
                    dp.zero_concentrated_divergence(),
                    candidates=list(column.candidates),
                    alpha=alpha,
                    scale=scale,
                )
                assert meas.map(1) == rho
                leaves.append(dpa.ZCDpEvent(meas.map(1)))
    cats = plan.categories
    meas = dp.m.make_gaussian_threshold(
        dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int)),
        dp.l02inf_distance(dp.absolute_distance(T=int)),
        scale=cats.scale,
        threshold=cats.threshold,
    )
    # two categorical columns: one record changes at most two keys, each by one
    assert cats.d_in == (2, 2, 1) and meas.map((2, 2, 1)) == (cats.rho, cats.delta_threshold)
    converted = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(meas), cats.delta_conversion)
    assert converted.map((2, 2, 1)) == (cats.epsilon, cats.delta_conversion)
    leaves.append(EpsilonDeltaDpEvent(cats.epsilon, cats.delta_conversion + cats.delta_threshold))
    assert plan.cost.event == compose(leaves)
    assert plan.cost.epsilon == epsilon_for(compose(leaves), 1e-6)
    assert plan.cost.accountant == "pld+rdp" and plan.cost.delta == 1e-6
    # the whole budget is used, never exceeded
    assert 0.8 < plan.cost.epsilon <= 1.0
    # quantiles enter as zCDP (they compose well with MST), thresholds as (epsilon, delta)
    kinds = {type(leaf) for leaf in leaves}
    assert kinds == {dpa.ZCDpEvent, EpsilonDeltaDpEvent}


def test_category_histogram_delta_stays_below_its_share(plan) -> None:
    cats = plan.categories
    assert cats.columns == ("colour", "label") and cats.threshold > 1
    assert cats.delta_threshold <= 1e-6 / 4 and cats.delta_conversion <= 1e-6 / 4  # half of the half each
    assert [c.events() for c in plan.columns if isinstance(c, CategoricalPlan)] == [[], []]


def test_one_record_moves_at_most_k_keys_by_one(table, plan) -> None:
    """The (l0 = k, linf = 1) distance the joint histogram is paid for, on the real counting code."""
    base = key_counts(table, plan)
    for extra in (
        {"age": "30", "score": "1.0", "colour": "alpha", "label": "yes"},
        {"age": "30", "score": "1.0", "colour": "brand-new", "label": ""},
    ):
        grown = key_counts(pd.concat([table, pd.DataFrame([extra])], ignore_index=True), plan)
        changed = {k: grown.get(k, 0) - base.get(k, 0) for k in set(base) | set(grown)}
        changed = {k: v for k, v in changed.items() if v}
        assert len(changed) <= len(plan.categories.columns) and set(changed.values()) == {1}
    assert sum(base.values()) == 2 * len(table)  # one key per column per record


def test_joint_histogram_needs_a_lower_threshold_than_separate_ones() -> None:
    """sqrt(k) noise for k columns at once: the reason for one joint histogram."""
    names = [f"c{i}" for i in range(9)]
    joint = plan_discovery(names, 0.1, 1e-6).categories
    one = plan_discovery(names[:1], 0.1 / 9, 1e-6 / 9).categories  # what each column would get alone
    assert joint.threshold < 0.6 * one.threshold


def test_budget_split_follows_the_column_kinds() -> None:
    only_categorical = plan_discovery(["a", "b"], 0.5, 1e-6)
    assert only_categorical.cost.accountant == "pld" and only_categorical.cost.epsilon <= 0.5
    only_numeric = plan_discovery(["a"], 0.5, 1e-6, numeric=["a"])
    assert only_numeric.cost.accountant == "rdp" and 0.49 < only_numeric.cost.epsilon <= 0.5
    equal = plan_discovery(["a"], 0.5, 1e-6, numeric=["a"], edges="equal-width")
    assert len(equal.columns[0].alphas) == 2  # only the two bounds are DP quantiles


# -- what the schema holds -----------------------------------------------------------------
def test_schema_is_marked_dp_and_accepted_without_flag(discovered) -> None:
    assert discovered.source == DP and discovered.is_public
    discovered.require_public()  # no accept flag needed
    assert Schema.from_dict(discovered.to_dict()) == discovered
    assert discovered.target == "label"
    assert [c.kind for c in discovered] == ["numeric", "numeric", "categorical", "categorical"]


def test_value_held_by_one_record_never_appears(discovered, table) -> None:
    colour = discovered["colour"]
    assert UNIQUE not in colour.categories
    assert set(FREQUENT) <= set(colour.categories)  # each is held by hundreds of records, far above the threshold
    assert colour.other == OTHER_LABEL and colour.categories[-1] == OTHER_LABEL
    # the unique value is absorbed by "other": the table still conforms
    _, report = prepare(coerce(table, discovered), discovered)
    assert report.mapped_to_other == {"colour": 1}


def test_numeric_bounds_and_edges_cover_the_data_except_its_tails(discovered, table) -> None:
    age, score = discovered["age"], discovered["score"]
    values = table["age"].astype(int)
    assert age.integer and 0 <= age.lower <= values.quantile(0.05) and values.quantile(0.95) <= age.upper <= 120
    assert age.lower == int(age.lower) and all(e == int(e) for e in age.bin_edges())
    assert age.n_bins >= 4 and np.all(np.diff(age.bin_edges()) > 0)
    real = table["score"].astype(float)
    assert not score.integer and score.lower <= real.quantile(0.05) and score.upper >= real.quantile(0.95)
    _, report = prepare(coerce(table, discovered), discovered)
    clipped = sum(report.clipped_low.values()) + sum(report.clipped_high.values())
    assert clipped < 0.05 * len(table) * 2


def test_point_mass_gets_its_own_bin() -> None:
    rng = np.random.default_rng(1)
    gain = np.where(rng.random(4000) < 0.8, 0, rng.integers(1000, 20000, 4000))
    schema, _ = discover_schema(
        pd.DataFrame({"gain": gain.astype(str)}), 1.0, 1e-6, integer=["gain"], ranges={"gain": (0, 100000)}
    )
    edges = schema["gain"].bin_edges()
    assert edges[0] == 0 and edges[1] == 1  # [0, 1) holds exactly the zeros


def test_fitting_mst_with_the_dp_schema_needs_no_flag(discovered, table) -> None:
    model = MST(epsilon=1.0, delta=1e-6, random_state=0).fit(coerce(table, discovered), discovered)
    assert model.schema_leaked_ is False
    synthetic = model.sample(200)
    assert set(synthetic["colour"].dropna()) <= set(discovered["colour"].categories)


def test_private_data_schema_is_still_refused(discovered) -> None:
    leaked = Schema.from_dict({**discovered.to_dict(), "source": PRIVATE_DATA})
    with pytest.raises(SchemaError, match="private-data"):
        leaked.require_public()
    with pytest.raises(SchemaError, match="'source' must be one of"):
        Schema.from_dict({**discovered.to_dict(), "source": "dp-ish"})


# -- nulls and bad input -------------------------------------------------------------------
def test_nullable_comes_from_the_hint_and_unhinted_nulls_are_refused_before_spending(table) -> None:
    with_nulls = table.copy()
    with_nulls.loc[[3, 9], "label"] = ""
    with_nulls.loc[[4], "age"] = "NA"
    plan = plan_discovery(list(table.columns), 1.0, 1e-6, **HINTS)
    with pytest.raises(DataError, match="'age' has 1 null value.*--nullable age"):
        check_table(with_nulls, plan)
    plan = plan_discovery(list(table.columns), 1.0, 1e-6, nullable=["age", "label"], **HINTS)
    schema = run_discovery(with_nulls, plan)
    assert schema["age"].nullable and schema["label"].nullable and not schema["colour"].nullable
    assert "" not in schema["label"].categories
    prepare(coerce(with_nulls, schema), schema)


def test_bad_hints_and_budgets_name_the_option(table) -> None:
    names = list(table.columns)
    cases = [
        (dict(numeric=["nope"]), "--numeric names column"),
        (dict(ranges={"colour": (0, 1)}), "--range is given for \\['colour'\\]"),
        (dict(integer=["age"], ranges={"age": (5, 1)}), "LOW < HIGH"),
        (dict(bins=0), "--bins"),
        (dict(edges="log"), "edges must be"),
        (dict(drop=names), "every column is dropped"),
    ]
    for hints, message in cases:
        with pytest.raises(UsageError, match=message):
            plan_discovery(names, 1.0, 1e-6, **hints)
    for epsilon, delta, message in [(0, 1e-6, "--epsilon"), (1.0, 0.0, "--delta"), (float("nan"), 1e-6, "--epsilon")]:
        with pytest.raises(UsageError, match=message):
            plan_discovery(names, epsilon, delta)
    with pytest.raises(UsageError, match="--epsilon is too small"):
        plan_discovery(names, 1e-3, 1e-6, **HINTS)  # no noise gets the quantiles' zCDP under 5e-4 at this delta
    plan = plan_discovery(names, 1.0, 1e-6, numeric=["colour"])
    with pytest.raises(DataError, match="'colour' is declared numeric"):
        check_table(table, plan)
