"""TableSpec construction and the exact Gower-style nearest-neighbour search."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from audits import MixedEncoder, SpecError, TableSpec


def test_from_schema_dict_reads_dpsynth_schema():
    spec = TableSpec.from_schema_dict(
        {
            "name": "adult",
            "source": "public",
            "quasi_identifiers": ["age", "sex"],
            "na_values": ["?"],
            "columns": [
                {"name": "age", "kind": "numeric", "lower": 17, "upper": 90, "bins": 10, "integer": True},
                {"name": "hours", "kind": "numeric", "edges": [0, 40, 99]},
                {"name": "sex", "kind": "categorical", "categories": ["F", "M"], "nullable": True, "other": None},
                {"name": "code", "kind": "categorical", "categories": [1, 2.0, "x"]},
            ],
        }
    )
    assert spec.names == ["age", "hours", "sex", "code"]
    assert spec.column("hours").lower == 0 and spec.column("hours").upper == 99
    assert spec.column("code").categories == ("1", "2", "x")
    assert spec.quasi_identifiers == ("age", "sex") and spec.secret is None


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"columns": []}, "'columns'"),
        ({"columns": [{"name": "a", "kind": "text"}]}, "'kind'"),
        ({"columns": [{"name": "a", "kind": "numeric", "lower": 0}]}, "'upper'"),
        ({"columns": [{"name": "a", "kind": "categorical"}]}, "'categories'"),
        (
            {"columns": [{"name": "a", "kind": "categorical", "categories": ["x"]}], "quasi_identifiers": ["b"]},
            "quasi_identifiers",
        ),
    ],
)
def test_bad_schema_errors_name_the_problem(bad, key):
    with pytest.raises(SpecError, match=key):
        TableSpec.from_schema_dict(bad)


def test_infer_and_frame_check():
    df = pd.DataFrame({"x": [1.0, 5.0, np.nan], "c": ["a", None, "b"], "flag": [True, False, True]})
    spec = TableSpec.infer(df)
    assert spec.column("x").kind == "numeric" and (spec.column("x").lower, spec.column("x").upper) == (1.0, 5.0)
    assert spec.column("c").categories == ("a", "b") and spec.column("c").nullable
    assert spec.column("flag").kind == "categorical"
    with pytest.raises(SpecError, match="lacks spec columns \\['c'\\]"):
        spec.check_frame(df[["x", "flag"]], "synthetic")


def _gower(a: pd.DataFrame, b: pd.DataFrame, spec: TableSpec) -> np.ndarray:
    """Reference implementation, row by row."""
    out = np.zeros((len(a), len(b)))
    rows_a, rows_b = a.to_dict("records"), b.to_dict("records")
    for i, ra in enumerate(rows_a):
        for j, rb in enumerate(rows_b):
            total = 0.0
            for col in spec.columns:
                x, y = ra[col.name], rb[col.name]
                if col.kind == "numeric":
                    xm, ym = pd.isna(x), pd.isna(y)
                    sx = 0.5 if xm else min(max((x - col.lower) / col.span, 0), 1)
                    sy = 0.5 if ym else min(max((y - col.lower) / col.span, 0), 1)
                    total += abs(sx - sy) + (0.5 if xm != ym else 0.0)
                else:
                    total += 0.0 if (pd.isna(x) and pd.isna(y)) or x == y else 1.0
            out[i, j] = total / len(spec.columns)
    return out


def test_knn_is_exact_gower(table_maker):
    df = table_maker(190, 3)
    a, b = df.iloc[:40].reset_index(drop=True), df.iloc[40:].reset_index(drop=True)
    spec = TableSpec.infer(df)
    enc = MixedEncoder(spec).fit(a, b)
    ref = _gower(a, b, spec)
    dist, idx = enc.knn(enc.transform(a), enc.transform(b), k=3)
    np.testing.assert_allclose(dist, np.sort(ref, axis=1)[:, :3], atol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(ref, idx, axis=1), dist, atol=1e-12)
    # The dense embedding gives the same distance as L1 / number of columns.
    emb_a, emb_b = enc.embed(enc.transform(a)), enc.embed(enc.transform(b))
    np.testing.assert_allclose(cdist(emb_a, emb_b, "cityblock") / len(spec.columns), ref, atol=1e-12)


def test_ties_and_row_keys():
    df = pd.DataFrame({"x": [1.0, 1.0, 2.0, np.nan], "c": ["a", "a", "b", None]})
    spec = TableSpec.infer(df)
    enc = MixedEncoder(spec).fit(df)
    q = enc.transform(df.iloc[[0]])
    dist, idx, ties = enc.knn(q, enc.transform(df), k=1, ties=True)
    assert dist[0, 0] == 0.0 and ties[0] == 2
    keys = enc.row_keys(pd.DataFrame({"x": [1, 1.0000000000001, np.nan], "c": ["a", "a", None]}))
    assert keys[0] == keys[1] and keys[2] == enc.row_keys(df.iloc[[3]])[0]


def test_projecting_rows_in_one_step_equals_take_then_project():
    """Linkage and inference search the synthetic rows in a random order, projected to a column subset."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=200),
            "b": pd.Categorical(rng.choice(["x", "y", "z"], 200)),
            "c": rng.integers(0, 9, 200).astype(float),
            "d": pd.Categorical(rng.choice(["p", "q"], 200)),
        }
    )
    frame.loc[::7, "c"] = np.nan
    spec = TableSpec.infer(frame)
    encoder = MixedEncoder(spec)
    (encoded,) = encoder.fit_transform(frame)
    sub = encoder.restricted(["b", "c"])
    rows = rng.permutation(200)
    at_once, in_two = sub.project(encoded, rows), sub.project(encoded.take(rows))
    np.testing.assert_array_equal(at_once.num, in_two.num)
    np.testing.assert_array_equal(at_once.codes, in_two.codes)
    assert at_once.codes.shape == (200, 2) and at_once.num.shape == (200, 1)  # b; c and its missing flag
