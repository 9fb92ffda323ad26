"""How useful a synthetic table is: marginal fidelity and train-on-synthetic accuracy.

Two measures, both standard in the DP synthetic-data literature (e.g. the
NIST 2018 challenge and Tao et al. 2021, "Benchmarking differentially private
synthetic data generation algorithms"):

* :func:`marginal_tvd`: the mean total-variation distance between the real
  and synthetic distributions of k-way marginals. 0 means identical, 1 means
  disjoint supports. Numeric columns are cut into quantile bins of the
  *real* table, so the bins say nothing the real table would not.
* :func:`tstr_auc`: "train on synthetic, test on real": fit a classifier on
  the synthetic table and report its ROC AUC on real held-out rows.

These compare against the real table and are therefore *not* differentially
private: they are for benchmarks and for the data owner's report, never for
release.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd

from dpsynth.errors import DataError, UsageError
from dpsynth.params import Interval, validate_params

_TVD_CONSTRAINTS = {
    "way": [Interval(int, 1, None)],
    "bins": [Interval(int, 1, None)],
    "max_marginals": [None, Interval(int, 1, None)],
}

_MISSING = "\x00<missing>"
_MAX_CATEGORIES = 250  # HistGradientBoosting splits natively on at most 255 categories


def marginal_tvd(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    way: int,
    bins: int = 10,
    max_marginals: int | None = None,
    seed: int = 0,
) -> float:
    """Mean total-variation distance over the ``way``-way marginals of the real table's columns.

    Numeric columns (by the real table's dtype) are discretised with up to
    ``bins`` quantile bins of the real values; the real minimum gets a bin of
    its own, so a column that is mostly 0 (capital gain) splits into "0" and
    the quantile bins above it. Nulls are a category of their own. With
    ``max_marginals``, a random subset (seeded by ``seed``) of that many
    marginals is averaged instead of all of them.
    """
    validate_params({"way": way, "bins": bins, "max_marginals": max_marginals}, _TVD_CONSTRAINTS, owner="marginal_tvd")
    columns = _shared_columns(real, synthetic)
    if way > len(columns):
        raise UsageError(f"way={way} exceeds the number of columns ({len(columns)})")
    if len(real) == 0 or len(synthetic) == 0:
        raise DataError("marginal_tvd needs non-empty real and synthetic tables")
    coded = {c: _discretise(real[c], synthetic[c], bins) for c in columns}
    marginals = list(itertools.combinations(columns, way))
    if max_marginals is not None:
        if max_marginals < len(marginals):
            chosen = np.random.default_rng(seed).choice(len(marginals), size=max_marginals, replace=False)
            marginals = [marginals[i] for i in sorted(chosen)]
    return float(np.mean([_tvd(coded, clique) for clique in marginals]))


def tstr_auc(
    synthetic_train: pd.DataFrame,
    real_test: pd.DataFrame,
    target: str,
    positive: Hashable | None = None,
    random_state: int = 0,
) -> float:
    """ROC AUC on ``real_test`` of a gradient-boosting classifier trained on ``synthetic_train``.

    Features are every other column of ``real_test``: categoricals with the
    model's native categorical splits (levels unseen in training count as
    missing), numerics as they are (nulls handled by the model). ``positive`` is the label treated as the positive class
    (default: the last of the two sorted labels; AUC does not depend on the
    choice). A synthetic target with a single class cannot train a
    classifier: that returns 0.5 (chance) with a warning, since it is a
    legitimate, if poor, synthetic table.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder
    from threadpoolctl import threadpool_limits

    if target not in real_test.columns:
        raise DataError(f"target column {target!r} is not in the real test table; it has {list(real_test.columns)}")
    if target not in synthetic_train.columns:
        raise DataError(f"target column {target!r} is not in the synthetic table")
    features = [c for c in _shared_columns(real_test, synthetic_train) if c != target]
    if not features:
        raise DataError("tstr_auc needs at least one feature column besides the target")
    test_labels = real_test[target].map(_label)
    classes = sorted(test_labels.dropna().unique(), key=str)
    if len(classes) != 2:
        raise DataError(f"tstr_auc needs a binary target; {target!r} has {len(classes)} classes in the real test table")
    positive = classes[-1] if positive is None else _label(positive)
    if positive not in classes:
        raise UsageError(f"positive label {positive!r} is not one of the target's classes {classes}")
    y_train = (synthetic_train[target].map(_label) == positive).to_numpy()
    if y_train.all() or not y_train.any():
        warnings.warn(
            f"the synthetic target {target!r} has a single class; TSTR AUC is reported as 0.5 (chance)",
            RuntimeWarning,
            stacklevel=2,
        )
        return 0.5
    y_test = (test_labels == positive).to_numpy()

    numeric = [c for c in features if _is_numeric(real_test[c])]
    categorical = [c for c in features if c not in numeric]
    x_train, x_test = _features(synthetic_train, numeric, categorical), _features(real_test, numeric, categorical)
    # Categories as ordinal codes with the model's native categorical splits (unseen levels become missing);
    # a column with more levels than the model can split on is used as an ordinal code instead.
    encode = ColumnTransformer(
        [("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan), categorical)],
        remainder="passthrough",
    )
    native = [x_train[c].nunique() < _MAX_CATEGORIES for c in categorical] + [False] * len(numeric)
    model = make_pipeline(
        encode,
        HistGradientBoostingClassifier(
            max_iter=200,
            learning_rate=0.1,
            early_stopping=False,
            categorical_features=np.array(native, dtype=bool),
            random_state=random_state,
        ),
    )
    # One thread: the result is the same, and on a busy machine OpenMP threads
    # oversubscribe the cores (Adult: 1.7 s single-threaded against 7-20 s).
    with threadpool_limits(1):
        model.fit(x_train, y_train)
        scores = model.predict_proba(x_test)[:, 1]
    return float(roc_auc_score(y_test, scores))


# -- helpers ---------------------------------------------------------------------------
def _shared_columns(real: pd.DataFrame, synthetic: pd.DataFrame) -> list[str]:
    missing = [c for c in real.columns if c not in synthetic.columns]
    if missing:
        raise DataError(f"the synthetic table lacks column(s) {missing} of the real table")
    return list(real.columns)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _label(value: Any) -> Any:
    """Canonical label, so that 1, 1.0 and "1" count as the same class."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.nan
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer()):
        return str(int(value))
    return str(value)


def _labels(series: pd.Series) -> pd.Series:
    """Canonical string labels, with nulls as a label of their own."""
    labels = series.astype(object).map(_label)
    return labels.where(labels.notna(), _MISSING).astype(str)


def _features(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    out = {c: pd.to_numeric(df[c], errors="coerce").astype(float) for c in numeric}
    out.update({c: _labels(df[c]) for c in categorical})
    return pd.DataFrame(out, index=df.index)[categorical + numeric]


def _discretise(real: pd.Series, synthetic: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes of the real and synthetic column on a shared grid, and the number of codes."""
    if _is_numeric(real):
        real_values = real.to_numpy(dtype=float)
        synthetic_values = pd.to_numeric(synthetic, errors="coerce").to_numpy(dtype=float)
        finite = real_values[~np.isnan(real_values)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1))) if finite.size else np.zeros(1)

        def code(values: np.ndarray) -> np.ndarray:
            # bin 0 is "<= real minimum", bin i is (edge[i-1], edge[i]]; beyond the real maximum joins the top bin
            codes = np.minimum(np.searchsorted(edges, values, side="left"), edges.size - 1)
            return np.where(np.isnan(values), edges.size, codes)

        return code(real_values), code(synthetic_values), edges.size + 1
    real_labels, synthetic_labels = _labels(real), _labels(synthetic)
    levels = pd.Index(sorted(set(real_labels) | set(synthetic_labels)))
    return levels.get_indexer(real_labels), levels.get_indexer(synthetic_labels), len(levels)


def _tvd(coded: dict[str, tuple[np.ndarray, np.ndarray, int]], clique: tuple[str, ...]) -> float:
    shape = tuple(coded[c][2] for c in clique)
    size = int(np.prod(shape))
    histograms = []
    for side in (0, 1):
        index = np.ravel_multi_index(tuple(coded[c][side] for c in clique), shape)
        counts = np.bincount(index, minlength=size).astype(float)
        histograms.append(counts / counts.sum())
    return float(0.5 * np.abs(histograms[0] - histograms[1]).sum())
