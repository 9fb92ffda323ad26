"""Utility metrics: hand-checkable TVD cases and train-on-synthetic AUC."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from dpsynth.errors import DataError, UsageError
from dpsynth.utility import marginal_tvd, tstr_auc


def table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "colour": rng.choice(["red", "green", "blue"], n),
            "size": rng.integers(0, 100, n).astype(float),
            "x": x,
            "label": np.where(x + 0.5 * rng.normal(size=n) > 0, "yes", "no"),
        }
    )


# -- marginal_tvd ----------------------------------------------------------------------------
@pytest.mark.parametrize("way", [1, 2, 3])
def test_identical_tables_have_zero_tvd(way: int) -> None:
    df = table()
    assert marginal_tvd(df, df.sample(frac=1.0, random_state=1), way) == pytest.approx(0.0, abs=1e-12)


def test_disjoint_tables_have_tvd_one() -> None:
    real = pd.DataFrame({"c": ["a", "b"] * 50, "d": ["u"] * 100})
    synthetic = pd.DataFrame({"c": ["z"] * 80, "d": ["v"] * 80})
    assert marginal_tvd(real, synthetic, 1) == pytest.approx(1.0)
    assert marginal_tvd(real, synthetic, 2) == pytest.approx(1.0)


def test_hand_computed_one_way_tvd() -> None:
    real = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    synthetic = pd.DataFrame({"c": ["a"] * 80 + ["b"] * 20})
    assert marginal_tvd(real, synthetic, 1) == pytest.approx(0.3)  # |0.5-0.8|/2 + |0.5-0.2|/2


def test_two_way_tvd_sees_a_broken_dependency_that_one_way_misses() -> None:
    rng = np.random.default_rng(0)
    a = rng.choice(["p", "q"], 2000)
    real = pd.DataFrame({"a": a, "b": a})  # b == a
    shuffled = pd.DataFrame({"a": a, "b": rng.permutation(a)})  # same one-way marginals, independent
    assert marginal_tvd(real, shuffled, 1) == pytest.approx(0.0)
    assert marginal_tvd(real, shuffled, 2) == pytest.approx(0.5, abs=0.03)


def test_numeric_columns_use_quantile_bins_of_the_real_table() -> None:
    real = pd.DataFrame({"v": np.arange(1000, dtype=float)})
    # all synthetic mass in the real table's top decile: 90% of real mass is elsewhere
    synthetic = pd.DataFrame({"v": np.full(100, 950.0)})
    assert marginal_tvd(real, synthetic, 1, bins=10) == pytest.approx(0.9, abs=0.01)
    # values beyond the real range fall into the outermost bins rather than vanishing
    assert marginal_tvd(real, pd.DataFrame({"v": np.full(10, 5000.0)}), 1) == pytest.approx(0.9, abs=0.01)


def test_point_mass_at_zero_gets_its_own_bin() -> None:
    real = pd.DataFrame({"gain": np.r_[np.zeros(900), np.linspace(1, 1000, 100)]})
    all_zero = pd.DataFrame({"gain": np.zeros(100)})
    assert marginal_tvd(real, all_zero, 1) == pytest.approx(0.1)


def test_nulls_are_their_own_category() -> None:
    real = pd.DataFrame({"c": ["a"] * 10, "v": [1.0] * 10})
    synthetic = pd.DataFrame({"c": [np.nan] * 10, "v": [np.nan] * 10})
    assert marginal_tvd(real, synthetic, 1) == pytest.approx(1.0)


def test_max_marginals_samples_a_seeded_subset() -> None:
    real, synthetic = table(seed=0), table(seed=1)
    full = marginal_tvd(real, synthetic, 2)
    subset = marginal_tvd(real, synthetic, 2, max_marginals=3, seed=5)
    assert subset == marginal_tvd(real, synthetic, 2, max_marginals=3, seed=5)
    assert marginal_tvd(real, synthetic, 2, max_marginals=100) == full  # more than exist: all of them
    assert 0 < subset < 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"way": 0}, "way"),
        ({"way": 5}, "way"),
        ({"way": 1, "bins": 0}, "bins"),
        ({"way": 1, "max_marginals": 0}, "max_marginals"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match) -> None:
    with pytest.raises(UsageError, match=match):
        marginal_tvd(table(), table(), **kwargs)


def test_missing_synthetic_column_is_refused() -> None:
    with pytest.raises(DataError, match="colour"):
        marginal_tvd(table(), table().drop(columns=["colour"]), 1)


# -- tstr_auc ------------------------------------------------------------------------------------
def test_training_on_real_data_beats_training_on_noise() -> None:
    train, test = table(2000, seed=0), table(1000, seed=1)
    good = tstr_auc(train, test, "label")
    noise = train.assign(label=np.random.default_rng(2).permutation(train["label"].to_numpy()))
    bad = tstr_auc(noise, test, "label")
    assert good > 0.85
    assert abs(bad - 0.5) < 0.1
    # AUC does not depend on which label is called positive (up to the retrained model's rounding)
    assert tstr_auc(train, test, "label", positive="no") == pytest.approx(good, abs=0.01)


def test_categorical_features_carry_signal() -> None:
    rng = np.random.default_rng(0)

    def make(n: int) -> pd.DataFrame:
        colour = rng.choice(["red", "green", "blue", "grey"], n)
        label = np.where(np.isin(colour, ["red", "blue"]) ^ (rng.random(n) < 0.1), "1", "0")
        return pd.DataFrame({"colour": colour, "label": label})

    assert tstr_auc(make(1000), make(500), "label") > 0.85


def test_unseen_category_in_test_rows_is_tolerated() -> None:
    train, test = table(500, seed=0), table(200, seed=1)
    test.loc[:10, "colour"] = "purple"
    assert 0.5 < tstr_auc(train, test, "label") <= 1.0


def test_single_class_synthetic_target_returns_chance_with_warning() -> None:
    train, test = table(200, seed=0), table(200, seed=1)
    with pytest.warns(RuntimeWarning, match="single class"):
        assert tstr_auc(train.assign(label="no"), test, "label") == 0.5


def test_tstr_auc_checks_its_inputs() -> None:
    train, test = table(200, seed=0), table(200, seed=1)
    with pytest.raises(DataError, match="target"):
        tstr_auc(train, test, "nope")
    with pytest.raises(DataError, match="binary"):
        tstr_auc(train, test.assign(label=np.arange(200) % 3), "label")
    with pytest.raises(UsageError, match="positive"):
        tstr_auc(train, test, "label", positive="maybe")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tstr_auc(train, test, "label")  # a normal call warns about nothing
