"""Benchmark utility scores: SDNist's k-marginal against a hand computation, and the other scores' anchors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dpsynth.benchmarking.metrics import (
    correlation_difference,
    kmarginal_score,
    propensity_scores,
    sdnist_bins,
    tstr_score,
)
from dpsynth.schema import Column, Schema

SCHEMA = Schema(
    columns=(
        Column(name="a", kind="categorical", categories=("x", "y")),
        Column(name="b", kind="categorical", categories=("u", "v")),
        Column(name="c", kind="categorical", categories=("p", "q")),
    ),
    source="public",
)


def test_kmarginal_is_1000_times_one_minus_mean_pairwise_tvd_by_hand():
    real = pd.DataFrame({"a": ["x", "x", "y", "y"], "b": ["u", "v", "u", "v"], "c": ["p", "p", "p", "q"]})
    synthetic = pd.DataFrame({"a": ["x", "x", "x", "y"], "b": ["u", "u", "v", "v"], "c": ["p", "p", "q", "q"]})
    # pair (a, b): real xu xv yu yv = 1/4 each; synthetic xu 1/2, xv 1/4, yv 1/4 -> L1 = 1/4+0+1/4+0 = 1/2
    # pair (a, c): real xp 1/2, yp 1/4, yq 1/4; synthetic xp 1/2, xq 1/4, yq 1/4 -> L1 = 1/4 + 1/4 = 1/2
    # pair (b, c): real up 1/2, vp 1/4, vq 1/4; synthetic up 1/2, vq 1/2 (vp 0) -> L1 = 1/4 + 1/4 = 1/2
    l1 = np.mean([0.5, 0.5, 0.5])
    assert kmarginal_score(real, synthetic, SCHEMA) == pytest.approx((2 - l1) * 500)  # 875
    assert kmarginal_score(real, real, SCHEMA) == pytest.approx(1000)
    disjoint = pd.DataFrame({"a": ["y"] * 4, "b": ["v"] * 4, "c": ["q"] * 4})
    assert kmarginal_score(real.iloc[:2], disjoint, SCHEMA) == pytest.approx(0)  # supports are disjoint


def test_kmarginal_leaves_out_puma_and_uses_every_pair_below_30_features():
    schema = Schema(
        columns=(*SCHEMA.columns, Column(name="PUMA", kind="categorical", categories=("1", "2"))), source="public"
    )
    real = pd.DataFrame({"a": ["x", "y"], "b": ["u", "v"], "c": ["p", "q"], "PUMA": ["1", "2"]})
    other_puma = real.assign(PUMA=["2", "2"])
    assert kmarginal_score(real, other_puma, schema) == pytest.approx(1000)  # PUMA is SDNist's group feature


def test_sdnist_binning_of_a_wide_numeric_column():
    rng = np.random.default_rng(0)
    real = pd.Series(rng.integers(0, 100, 2000).astype(float))
    synthetic = pd.Series(np.r_[rng.integers(0, 100, 500), [150.0]].astype(float))  # beyond the real maximum
    r, s = sdnist_bins(real, synthetic, 0, 150)
    assert r.nunique() <= 20 and set(s.unique()) <= set(range(21))
    assert s.iloc[-1] == r.max() + 1  # the synthetic maximum gets a top bin of its own
    narrow_r, _ = sdnist_bins(pd.Series([1.0, 2.0]), pd.Series([3.0]), 0, 20)
    assert list(narrow_r) == [1.0, 2.0]  # a range of at most 20 values is not binned
    with_null, _ = sdnist_bins(pd.Series([1.0, None, 80.0, 99.0]), pd.Series([5.0]), 0, 99)
    assert with_null.iloc[1] == "N"


def test_propensity_and_correlation_anchor_values():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.choice(["x", "y"], 600), "b": rng.choice(["u", "v"], 600)})
    df["c"] = np.where(df["a"] == "x", "p", "q")
    same = propensity_scores(df.iloc[:300], df.iloc[300:], seed=0)
    assert same["propensity_auc"] < 0.6 and same["pmse"] < 0.01
    flipped = df.iloc[300:].assign(c=np.where(df.iloc[300:]["a"] == "x", "q", "p"))
    apart = propensity_scores(df.iloc[:300], flipped, seed=0)
    assert apart["propensity_auc"] > 0.95 and apart["pmse"] > 0.15
    assert correlation_difference(df, df, SCHEMA) == pytest.approx(0)
    assert correlation_difference(df, flipped.reset_index(drop=True), SCHEMA) > 0.5


def test_tstr_picks_auc_accuracy_or_r2():
    rng = np.random.default_rng(2)
    x = rng.normal(size=400)
    df = pd.DataFrame({"x": x, "y": np.where(x > 0, "1", "0"), "z": 2 * x + rng.normal(0, 0.1, 400)})
    df["k"] = pd.cut(x, [-10, -0.5, 0.5, 10], labels=["a", "b", "c"]).astype(str)
    assert tstr_score(df[["x", "y"]], df[["x", "y"]], "y") == {"metric": "auc", "value": pytest.approx(1.0)}
    r2 = tstr_score(df[["x", "z"]].iloc[:200], df[["x", "z"]].iloc[200:], "z")
    assert r2["metric"] == "r2" and r2["value"] > 0.9
    acc = tstr_score(df[["x", "k"]].iloc[:200], df[["x", "k"]].iloc[200:], "k")
    assert acc["metric"] == "accuracy" and acc["value"] > 0.9


def test_a_score_that_cannot_be_computed_is_null_with_its_reason():
    from dpsynth.benchmarking.metrics import utility_scores

    tiny = pd.DataFrame({"a": ["x", "y", "x"], "b": ["u", "v", "u"], "c": ["p", "q", "q"]})
    scores = utility_scores(tiny, tiny, SCHEMA, "c")
    assert "pmse" not in scores and "at least 10 rows" in scores["errors"]["propensity"]
    assert scores["kmarginal"] == pytest.approx(1000) and scores["tstr_metric"] == "auc"
