"""The exact index (audits.neighbours) against all pairs: same distances, tie counts, tie order, audit results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

import audits
import audits.embedding
import audits.neighbours as nb
import audits.sources
from audits import MixedEncoder, TableSpec


def _all_pairs(enc: MixedEncoder, q, r, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference: the full distance matrix from the dense embedding, a stable sort per row."""
    d = cdist(enc.embed(q), enc.embed(r), "cityblock") / enc.n_columns_
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(d, idx, axis=1)
    ties = np.isclose(d, dist[:, :1], rtol=0, atol=1e-12).sum(axis=1)
    return dist, idx, ties


def _rough_table(n: int, seed: int) -> pd.DataFrame:
    """Few levels, coarse numbers (many exact ties between distinct rows), nulls everywhere, repeated rows."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.choice(["x", "y", "z"], n, p=[0.6, 0.3, 0.1]),
            "b": rng.choice(["p", "q"], n),
            "u": rng.integers(0, 6, n).astype(float),
            "v": np.round(rng.normal(50, 10, n), 0),
            "c": rng.choice([f"l{i}" for i in range(12)], n),
        }
    )
    df.loc[rng.random(n) < 0.1, "a"] = None
    df.loc[rng.random(n) < 0.1, "u"] = np.nan
    df.loc[rng.random(n) < 0.05, "v"] = np.nan
    return pd.concat([df, df.iloc[: n // 5]], ignore_index=True)  # exact duplicates


@pytest.fixture(params=["default", "trees", "scan"])
def search_mode(request, monkeypatch):
    """default settings; k-d trees in every group; the exact scan after the own-signature groups."""
    if request.param == "trees":
        monkeypatch.setattr(nb, "TREE_MIN_ROWS", 3)
    if request.param == "scan":
        monkeypatch.setattr(nb, "MAX_DIFFERING_BLOCKS", 0)
    monkeypatch.setattr(nb, "_ENTRY_BUDGET", 500)  # many chunks
    return request.param


@pytest.mark.parametrize("maker", ["mixed", "rough"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_index_equals_all_pairs(maker, k, search_mode, table_maker):
    for seed in range(1):
        df = table_maker(700, seed) if maker == "mixed" else _rough_table(600, seed)
        spec = TableSpec.infer(df)
        enc = MixedEncoder(spec).fit(df)
        rng = np.random.default_rng(seed)
        q = enc.transform(df.iloc[rng.choice(len(df), 150)])  # queries that repeat reference rows
        r = enc.transform(df.iloc[rng.permutation(len(df))[:500]])
        want_d, _, want_t = _all_pairs(enc, q, r, k)
        full = cdist(enc.embed(q), enc.embed(r), "cityblock") / enc.n_columns_
        got_d, got_i, got_t = enc.knn(q, r, k=k, ties=True, method="index")
        brute_d, brute_i, brute_t = enc.knn(q, r, k=k, ties=True, method="brute")
        np.testing.assert_allclose(got_d, want_d, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.take_along_axis(full, got_i, axis=1), want_d, rtol=0, atol=1e-12)
        # Bit for bit as all pairs: same summation order, so the same exact ties and the same tie order.
        np.testing.assert_array_equal(got_d, brute_d)
        np.testing.assert_array_equal(got_t, brute_t)
        np.testing.assert_array_equal(got_i, brute_i)  # the lower row first among equal distances
        assert (got_t >= 1).all() and (got_t <= want_t).all()  # the reference's ties are within 1e-12


def test_index_on_numeric_only_and_categorical_only_tables(search_mode):
    rng = np.random.default_rng(5)
    tables = [
        pd.DataFrame({"x": rng.integers(0, 20, 400).astype(float), "y": rng.normal(size=400).round(1)}),
        pd.DataFrame({"a": rng.choice(list("abc"), 400), "b": rng.choice(list("pq"), 400)}),
    ]
    for df in tables:
        enc = MixedEncoder(TableSpec.infer(df)).fit(df)
        q, r = enc.transform(df.iloc[:90]), enc.transform(df.iloc[90:])
        for k in (1, 2):
            got = enc.knn(q, r, k=k, ties=True, method="index")
            np.testing.assert_allclose(got[0], _all_pairs(enc, q, r, k)[0], rtol=0, atol=1e-12)
            for a, b in zip(got, enc.knn(q, r, k=k, ties=True, method="brute")):
                np.testing.assert_array_equal(a, b)


def test_index_dedupes_and_keeps_multiplicities():
    df = pd.DataFrame({"x": [1.0, 1.0, 1.0, 2.0, np.nan, np.nan], "c": ["a", "a", "a", "b", None, None]})
    enc = MixedEncoder(TableSpec.infer(df)).fit(df)
    index = enc.index(enc.transform(df))
    assert (index.n, index.n_unique, index.n_groups) == (6, 3, 3)
    dist, idx, ties = enc.knn(enc.transform(df.iloc[[0, 4]]), index, k=3, ties=True)
    assert ties.tolist() == [3, 2]
    assert idx[0].tolist() == [0, 1, 2] and idx[1, :2].tolist() == [4, 5]
    assert dist[0].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="k must be"):
        index.query(np.zeros((1, 1)), np.zeros((1, 1), dtype=np.int32), k=7)


def test_audit_results_are_the_same_with_the_index_and_with_all_pairs(monkeypatch, table_maker):
    df = table_maker(1500, 7)
    train, holdout, synthetic = df.iloc[:700], df.iloc[700:1000], df.iloc[1000:]
    spec = TableSpec.infer(df, quasi_identifiers=["age", "sex", "region"])

    def run(pairs: float, use_index: bool) -> audits.AuditReport:
        with monkeypatch.context() as m:
            for module in (audits.embedding, audits.sources):
                m.setattr(module, "BRUTE_FORCE_PAIRS", pairs)
            if not use_index:
                m.setattr(MixedEncoder, "index", lambda self, ref: ref)
            m.setattr(nb, "TREE_MIN_ROWS", 20)  # trees inside the larger groups too
            return audits.run(train, holdout, synthetic, spec, tier="quick", seed=3)

    indexed, brute = run(0, True), run(float("inf"), False)
    assert [r.name for r in indexed.results] == [r.name for r in brute.results]
    for a, b in zip(indexed.results, brute.results):
        assert a.status == b.status == "ok", (a.name, a.message, b.message)
        assert a.value == pytest.approx(b.value, abs=1e-12), a.name
        assert (a.ci_low, a.ci_high) == pytest.approx((b.ci_low, b.ci_high), abs=1e-12), a.name
    assert indexed.decision == brute.decision


def test_restricted_encoder_projects_like_a_refit(table_maker):
    df = table_maker(400, 2)
    spec = TableSpec.infer(df)
    full = MixedEncoder(spec).fit(df)
    columns = ["hours", "sex", "age", "region"]  # hours has missing values: a missing-flag block
    sub, fresh = full.restricted(columns), MixedEncoder(spec, columns).fit(df)
    projected, refit = sub.project(full.transform(df)), fresh.transform(df)
    np.testing.assert_array_equal(projected.num, refit.num)
    np.testing.assert_array_equal(projected.codes, refit.codes)
    np.testing.assert_array_equal(sub.block_weights_, fresh.block_weights_)
    assert sub.n_columns_ == fresh.n_columns_ == 4 and sub.blocks_ == fresh.blocks_
    with pytest.raises(ValueError, match="restricted"):
        fresh.project(refit)


def test_singling_out_null_drawn_on_matched_records_has_the_law_of_full_splits():
    """The permutation null re-splits only matched records; its law must be that of full equal splits."""
    from scipy import sparse

    from audits.singling_out import _permutation_risks, _singled_out
    from audits.stats import risk_values

    rng = np.random.default_rng(0)
    n_pred, n_side = 120, 150
    # Most predicates match one record of their own (so how many matched records fall on side A
    # drives the risk), some match two or three, all within 160 of the 300 records.
    rows = np.r_[np.arange(n_pred), rng.integers(0, n_pred, 60)]
    cols = np.r_[rng.permutation(160)[:n_pred], rng.integers(0, 160, 60)]
    pooled = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n_pred, 2 * n_side))
    pooled.data[:] = 1.0
    fast = _permutation_risks(pooled, n_side, 3000, np.random.default_rng(1), 0.95)
    full = []
    for _ in range(3000):
        split = (np.random.default_rng(len(full) + 7).permutation(2 * n_side) < n_side).astype(np.float32)
        a, b = _singled_out(pooled, split[:, None])
        full.append(risk_values(a, n_pred, b, n_pred, 0.95)[0])
    full = np.array(full)
    se = np.sqrt(fast.var() / len(fast) + full.var() / len(full))
    assert abs(fast.mean() - full.mean()) < 4 * se
    assert fast.std() == pytest.approx(full.std(), rel=0.1)
