"""Utility of one synthetic table against real rows: the numbers a benchmark row carries.

Every score compares the synthetic table with real rows the generator never
saw (the holdout), so it is a statement about the population, not about
memorised training rows. None of them is differentially private: they are for
the benchmark report, never for release.

* :func:`kmarginal_score`: the k-marginal score as NIST's SDNist v2.5 computes
  it (``sdnist/metrics/kmarginal.py``, class ``KMarginal``, with the numeric
  binning of ``sdnist/report/dataset/binning.py``, ``bin_continuous_feature``,
  in github.com/usnistgov/SDNist at tag v2.5.0). SDNist's score is over
  2-way marginals (the feature *pairs*): every pair of the features when there
  are fewer than 30 of them, else 200 pairs drawn at random. For each pair it
  sums the absolute differences of the target's and the deidentified table's
  cell densities (the L1 distance, in [0, 2]), averages over the pairs and
  maps to ``(2 - mean L1) * 500``, i.e. ``1000 * (1 - mean TVD)``; the report
  shows its integer part. Numeric columns with more than 20 distinct values
  in their range are cut into 20 equal-frequency bins of the *target* (real)
  values first (nulls kept out of the bins as a value of their own).
* :func:`marginal_tvds`: mean 1/2/3-way TVD (:func:`dpsynth.utility.marginal_tvd`).
* :func:`tstr_score`: train on synthetic, test on real: ROC AUC for a binary
  target (:func:`dpsynth.utility.tstr_auc`), accuracy for a multi-class one,
  R^2 for a numeric one.
* :func:`propensity_scores`: can a classifier tell real from synthetic? pMSE
  (Woo et al. 2009; 0 is indistinguishable) and the classifier's
  cross-validated AUC (0.5 is indistinguishable).
* :func:`correlation_difference`: mean absolute difference of the pairwise
  Pearson correlations, on codes as SDNist's correlation plot uses them
  (numbers as numbers, categories as their index in the schema, null -1).
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from dpsynth.errors import DataError, UsageError
from dpsynth.schema import Schema
from dpsynth.utility import _features, _is_numeric, _labels, marginal_tvd, tstr_auc

SDNIST_BINS = 20  # bin_data(n_bins=20)
SDNIST_ALL_PAIRS_BELOW = 30  # get_marginal_pairs: every pair below 30 features
SDNIST_RANDOM_PAIRS = 200  # KMarginal.N_PERMUTATIONS


def sdnist_bins(real: pd.Series, synthetic: pd.Series, lower: float, upper: float) -> tuple[pd.Series, pd.Series]:
    """Equal-frequency binning of one numeric column as SDNist's ``bin_continuous_feature`` does it.

    Columns whose declared range spans at most 20 values are left as they
    are. Otherwise the edges are the ``i * 100/20`` percentiles (``method=
    "higher"``) of the real non-null values, plus the real maximum; a
    synthetic maximum above it (minimum below the real one) adds an edge and
    takes one of the 20 bins. Nulls are their own value.
    """
    if upper - lower <= SDNIST_BINS:
        return real, synthetic
    r = pd.to_numeric(real, errors="coerce")
    s = pd.to_numeric(synthetic, errors="coerce")
    r_values, s_values = r.dropna().to_numpy(dtype=float), s.dropna().to_numpy(dtype=float)
    if r_values.size == 0:
        return real, synthetic
    n_bins = SDNIST_BINS
    extra = [r_values.max()]
    if s_values.size and s_values.max() > r_values.max():
        n_bins -= 1
        extra.append(s_values.max())
    if s_values.size and s_values.min() < r_values.min():
        extra = [s_values.min(), *extra]
        n_bins -= 1
    percentiles = [i * (100 / n_bins) for i in range(n_bins)]
    edges = list(np.unique(np.percentile(r_values, percentiles, method="higher"))) + extra
    if edges[-1] == edges[-2]:
        edges = edges[:-1]
    edges = sorted(edges)

    def cut(values: pd.Series) -> pd.Series:
        binned = pd.cut(values, bins=edges, labels=False, include_lowest=True, duplicates="drop")
        return binned.astype(object).where(values.notna(), "N")

    return cut(r), cut(s)


def kmarginal_score(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int = 0) -> float:
    """SDNist's k-marginal score of ``synthetic`` against ``real`` (0 worst .. 1000 identical); see the module doc."""
    columns = sorted(c for c in real.columns if c != "PUMA")  # SDNist leaves the PUMA group feature out
    if not columns:
        raise DataError("kmarginal_score needs at least one column besides PUMA")
    missing = [c for c in columns if c not in synthetic.columns]
    if missing:
        raise DataError(f"the synthetic table lacks column(s) {missing}")
    if len(real) == 0 or len(synthetic) == 0:
        raise DataError("kmarginal_score needs non-empty real and synthetic tables")
    r, s = pd.DataFrame(index=real.index), pd.DataFrame(index=synthetic.index)
    for name in columns:
        column = schema[name] if name in schema.names else None
        if column is not None and column.kind == "numeric":
            r[name], s[name] = sdnist_bins(real[name], synthetic[name], float(column.lower), float(column.upper))
        else:
            r[name], s[name] = _labels(real[name]), _labels(synthetic[name])
        r[name], s[name] = r[name].astype(str), s[name].astype(str)
    if len(columns) == 1:
        pairs: list[tuple[str, ...]] = [(columns[0],)]
    elif len(columns) < SDNIST_ALL_PAIRS_BELOW:
        pairs = list(itertools.combinations(columns, 2))
    else:
        rng = np.random.default_rng(seed)
        pairs = [tuple(rng.choice(columns, size=2)) for _ in range(SDNIST_RANDOM_PAIRS)]
    total = 0.0
    for pair in pairs:
        p = r.groupby(list(dict.fromkeys(pair))).size() / len(r)
        q = s.groupby(list(dict.fromkeys(pair))).size() / len(s)
        total += float(p.subtract(q, fill_value=0).abs().sum())
    return (2 - total / len(pairs)) * 500


def marginal_tvds(real: pd.DataFrame, synthetic: pd.DataFrame, seed: int = 0, max_marginals: int = 200) -> dict:
    """Mean 1-, 2- and 3-way marginal TVD (up to ``max_marginals`` marginals each, seeded)."""
    out = {}
    for way in (1, 2, 3):
        if way <= len(real.columns):
            out[f"tvd_{way}way"] = marginal_tvd(real, synthetic, way, max_marginals=max_marginals, seed=seed)
    return out


def tstr_score(synthetic: pd.DataFrame, real_test: pd.DataFrame, target: str, seed: int = 0) -> dict[str, Any]:
    """``{"metric": "auc" | "accuracy" | "r2", "value": ...}`` of a model trained on synthetic, tested on real."""
    if target not in real_test.columns:
        raise UsageError(f"target column {target!r} is not in the table; columns are {list(real_test.columns)}")
    if _is_numeric(real_test[target]):
        return {"metric": "r2", "value": _tstr_regression(synthetic, real_test, target, seed)}
    classes = real_test[target].dropna().astype(str).unique()
    if len(classes) == 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {"metric": "auc", "value": tstr_auc(synthetic, real_test, target, random_state=seed)}
    return {"metric": "accuracy", "value": _tstr_multiclass(synthetic, real_test, target, seed)}


def _xy(df: pd.DataFrame, target: str, like: pd.DataFrame) -> pd.DataFrame:
    features = [c for c in like.columns if c != target]
    numeric = [c for c in features if _is_numeric(like[c])]
    return _features(df, numeric, [c for c in features if c not in numeric])


def _model(x: pd.DataFrame, regression: bool, seed: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    categorical = [c for c in x.columns if not _is_numeric(x[c])]
    encode = ColumnTransformer(
        [("c", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), categorical)],
        remainder="passthrough",
    )
    native = np.array([True] * len(categorical) + [False] * (x.shape[1] - len(categorical)), dtype=bool)
    cls = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
    return make_pipeline(encode, cls(max_iter=100, categorical_features=native, random_state=seed))


def _tstr_regression(synthetic: pd.DataFrame, real: pd.DataFrame, target: str, seed: int) -> float:
    from sklearn.metrics import r2_score
    from threadpoolctl import threadpool_limits

    train = synthetic.dropna(subset=[target])
    test = real.dropna(subset=[target])
    if len(train) < 2 or len(test) < 2:
        return math.nan
    with threadpool_limits(1):
        model = _model(_xy(train, target, real), True, seed).fit(_xy(train, target, real), pd.to_numeric(train[target]))
        return float(r2_score(pd.to_numeric(test[target]), model.predict(_xy(test, target, real))))


def _tstr_multiclass(synthetic: pd.DataFrame, real: pd.DataFrame, target: str, seed: int) -> float:
    from threadpoolctl import threadpool_limits

    y_train, y_test = _labels(synthetic[target]), _labels(real[target])
    if y_train.nunique() < 2:
        return float((y_test == y_train.iloc[0]).mean()) if len(y_train) else math.nan
    with threadpool_limits(1):
        model = _model(_xy(synthetic, target, real), False, seed).fit(_xy(synthetic, target, real), y_train)
        return float((model.predict(_xy(real, target, real)) == y_test.to_numpy()).mean())


def propensity_scores(real: pd.DataFrame, synthetic: pd.DataFrame, seed: int = 0, max_rows: int = 5000) -> dict:
    """pMSE and the cross-validated AUC of a classifier telling ``real`` rows from ``synthetic`` ones.

    Both tables are subsampled to the same size (at most ``max_rows`` each),
    so ``c = 1/2`` and pMSE lies in [0, 1/4]; 3-fold out-of-fold propensities.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    n = min(len(real), len(synthetic), max_rows)
    if n < 10:
        raise DataError(f"propensity_scores needs at least 10 rows on each side, got {n}")
    a = real.iloc[rng.choice(len(real), n, replace=False)].reset_index(drop=True)
    b = synthetic[list(real.columns)].iloc[rng.choice(len(synthetic), n, replace=False)].reset_index(drop=True)
    both = pd.concat([a, b], ignore_index=True)
    x = _xy(both, "", real)
    y = np.r_[np.zeros(n), np.ones(n)]
    with threadpool_limits(1):
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
        p = cross_val_predict(_model(x, False, seed), x, y, cv=folds, method="predict_proba")[:, 1]
    return {"pmse": float(np.mean((p - 0.5) ** 2)), "propensity_auc": float(roc_auc_score(y, p))}


def _codes(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    out = {}
    for name in df.columns:
        column = schema[name]
        if column.kind == "numeric":
            out[name] = pd.to_numeric(df[name], errors="coerce").fillna(-1).astype(float)
        else:
            lookup = {label: i for i, label in enumerate(column.categories)}
            out[name] = _labels(df[name]).map(lookup).fillna(-1).astype(float)
    return pd.DataFrame(out)


def correlation_difference(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> float:
    """Mean |corr_real - corr_synthetic| over column pairs (constant columns count as correlation 0)."""
    if len(real.columns) < 2:
        return math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        a = _codes(real, schema).corr().fillna(0).to_numpy()
        b = _codes(synthetic[list(real.columns)], schema).corr().fillna(0).to_numpy()
    upper = np.triu_indices(len(real.columns), 1)
    return float(np.abs(a - b)[upper].mean())


def utility_scores(
    real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, target: str | None, seed: int = 0
) -> dict[str, Any]:
    """Every score above for one synthetic table, keyed as in results.json (``docs/benchmark.md``).

    A score that cannot be computed on these tables (too few rows for the
    propensity folds, a target with one class in the holdout) is null, with
    the reason under ``errors``; the other scores still stand.
    """
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}

    def attempt(name: str, compute) -> None:
        try:
            value = compute()
        except (DataError, UsageError, ValueError) as exc:
            errors[name] = str(exc)
            return
        out.update(value if isinstance(value, dict) else {name: value})

    attempt("kmarginal", lambda: kmarginal_score(real, synthetic, schema, seed))
    attempt("tvd", lambda: marginal_tvds(real, synthetic, seed))
    attempt("propensity", lambda: propensity_scores(real, synthetic, seed))
    attempt("correlation_difference", lambda: correlation_difference(real, synthetic, schema))
    if target is not None:
        attempt("tstr", lambda: dict(zip(("tstr_metric", "tstr"), tstr_score(synthetic, real, target, seed).values())))
    if errors:
        out["errors"] = errors
    return out


__all__ = [
    "correlation_difference",
    "kmarginal_score",
    "marginal_tvds",
    "propensity_scores",
    "sdnist_bins",
    "tstr_score",
    "utility_scores",
]
