"""Shadow-model membership inference against a generator (the "groundhog" attack).

References
----------
- Stadler, Oprisanu, Troncoso 2022, "Synthetic Data – Anonymisation
  Groundhog Day" (USENIX Security): for a target record, fit the generator
  many times on reference data with and without the target, featurise each
  synthetic output (naive statistics, marginal histograms, correlations),
  train a classifier to tell "with" from "without", then apply it to the
  real release.
- Carlini et al. 2022, "Membership Inference Attacks From First Principles"
  (IEEE S&P): shadow runs where every target is included independently with
  probability 1/2, so one set of fits serves all targets.

Design here:

- targets: the ``n_targets`` most outlying train records (members; largest
  distance to the nearest holdout record) and as many outlying holdout
  records (non-members; largest distance to the nearest train record);
  outliers are the records a generator is most likely to leak;
- ``n_runs`` generator fits, each on ``reference_rows`` holdout rows (never
  the non-member targets) plus each target with probability 1/2 (balanced
  so every target is in exactly half of the runs);
- features of a synthetic table ``S`` for target ``t``: distance from ``t``
  to its nearest 1 and 5 rows of ``S`` and the share of ``S`` within a small
  radius (closest-record features), for every column the share of ``S``
  sharing ``t``'s category or lying within 5% of its range of ``t``'s value
  (marginal features), mean and spread of each numeric column (naive
  features) and the pairwise correlations of the columns encoded relative
  to ``t`` (correlation features); by default only the closest-record and
  marginal groups are used (see ``DEFAULT_FEATURES`` for why);
- one classifier per target (logistic regression by default, random forest
  on request); its cross-validated accuracy on the shadow
  runs is the generator's vulnerability for that target (Stadler et al.'s
  measure), and its probability of "in" on the real release is the attack
  score, evaluated by AUC over member vs non-member targets.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audits.data import AuditData
from audits.distance import roc_result
from audits.embedding import Encoded, MixedEncoder
from audits.errors import AuditInputError
from audits.results import AuditResult
from audits.spec import category_labels, numeric_values

RADIUS = 0.02  # Gower distance counted as "right next to the target"
FEATURE_GROUPS = ("closest", "marginal", "naive", "correlation")
# With the 8-32 runs a tier can afford, adding groundhog's naive and correlation groups lets the
# classifier fit noise: on the calibration table a leaky generator's AUC fell from 1.0 (closest +
# marginal) to 0.81-0.94 (all four groups), and the four groups without closest-record features
# scored 0.39-0.83. They stay available through ``features=``.
DEFAULT_FEATURES = ("closest", "marginal")


class _Featuriser:
    """Target-relative features of synthetic tables (see module docstring)."""

    def __init__(self, data: AuditData, targets: pd.DataFrame, groups: tuple[str, ...]) -> None:
        unknown = set(groups) - set(FEATURE_GROUPS)
        if unknown or not groups:
            raise AuditInputError(f"features must be a non-empty subset of {FEATURE_GROUPS}, got {groups}")
        self.groups = groups
        self.data = data
        self.spec = data.spec
        self.encoder: MixedEncoder = data.encoder
        self.targets = targets
        self.target_enc: Encoded = self.encoder.transform(targets)
        self.target_num = {c.name: numeric_values(targets[c.name], c) for c in self.spec.columns if c.kind == "numeric"}
        self.target_cat = {
            c.name: category_labels(targets[c.name]) for c in self.spec.columns if c.kind == "categorical"
        }

    def __call__(self, synthetic: pd.DataFrame) -> np.ndarray:
        """Feature matrix ``(n_targets, n_features)`` for one synthetic table."""
        self.spec.check_frame(synthetic, "generator output")
        syn_enc = self.encoder.transform(synthetic)
        dist, _ = self.encoder.knn(self.target_enc, syn_enc, k=min(64, len(synthetic)))
        near = (dist <= RADIUS).sum(axis=1) / len(synthetic)  # capped at 64 rows: enough to rank targets
        closest = [dist[:, 0], dist[:, :5].mean(axis=1), near]
        marginal: list[np.ndarray] = []
        n_t = len(self.targets)
        rel_cols = []  # per column, per target: 0/1 (or closeness) of each synthetic row relative to t
        naive = []
        for col in self.spec.columns:
            if col.kind == "numeric":
                x = numeric_values(synthetic[col.name], col)
                t = self.target_num[col.name]
                with np.errstate(invalid="ignore"):
                    close = np.abs(x[None, :] - t[:, None]) <= 0.05 * col.span
                scaled = np.clip((x - float(col.lower)) / col.span, 0, 1)  # type: ignore[arg-type]
                scaled = np.nan_to_num(scaled, nan=0.5)
                naive += [np.full(n_t, scaled.mean()), np.full(n_t, scaled.std())]
                rel_cols.append(np.broadcast_to(scaled, (n_t, len(scaled))))
            else:
                labels = category_labels(synthetic[col.name])
                t = self.target_cat[col.name]
                close = labels[None, :] == t[:, None]
                rel_cols.append(close.astype(float))
            marginal.append(close.mean(axis=1))
        feats: list[np.ndarray] = []
        if "closest" in self.groups:
            feats += closest
        if "marginal" in self.groups:
            feats += marginal
        if "naive" in self.groups:
            feats += naive
        if "correlation" in self.groups:
            feats.append(self._correlations(rel_cols))
        return np.column_stack([f if f.ndim == 2 else f[:, None] for f in feats])

    @staticmethod
    def _correlations(rel_cols: list[np.ndarray]) -> np.ndarray:
        """Upper-triangle correlations between columns, per target: ``(n_targets, p(p-1)/2)``."""
        stack = np.stack(rel_cols, axis=1)  # (n_targets, p, n_rows)
        centred = stack - stack.mean(axis=2, keepdims=True)
        norm = np.sqrt((centred**2).sum(axis=2))
        cov = np.einsum("tpn,tqn->tpq", centred, centred)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / (norm[:, :, None] * norm[:, None, :])
        iu = np.triu_indices(stack.shape[1], k=1)
        return np.nan_to_num(corr[:, iu[0], iu[1]], nan=0.0)


def _classifier(kind: str, seed: int):
    if kind == "forest":
        return RandomForestClassifier(n_estimators=64, random_state=seed, n_jobs=1)
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, solver="liblinear"))


def _outliers(data: AuditData, part: str, other: str, n: int) -> np.ndarray:
    d, _ = data.nearest(part, other, k=1)  # type: ignore[arg-type]
    return np.argsort(-d[:, 0], kind="stable")[:n]


def shadow_model_attack(
    data: AuditData,
    generator: Callable[[pd.DataFrame, int, int], pd.DataFrame],
    n_targets: int = 8,
    n_runs: int = 16,
    reference_rows: int = 1000,
    n_rows: int | None = None,
    classifier: str = "logistic",
    features: tuple[str, ...] = DEFAULT_FEATURES,
) -> AuditResult:
    """Groundhog shadow-model attack; value = AUC of P("in") over member vs non-member outlier targets.

    ``n_rows`` is the size of each shadow output (default: the shadow training
    set's size). Costs ``n_runs`` generator fits. ``classifier`` is
    ``"logistic"`` (L2-regularised logistic regression on standardised
    features: robust with the few runs a tier can afford) or ``"forest"``
    (random forest, Stadler et al.'s choice; needs many more runs to avoid
    fitting noise features, and is much slower per target: see benchmarks/README.md).
    """
    if classifier not in ("logistic", "forest"):
        raise AuditInputError(f"classifier must be 'logistic' or 'forest', got {classifier!r}")
    start = time.perf_counter()
    if n_runs < 4 or n_runs % 2:
        raise AuditInputError(f"n_runs must be an even number >= 4, got {n_runs}")
    n_targets = min(n_targets, data.size("train"), data.size("holdout") // 2)
    if n_targets < 1:
        raise AuditInputError("shadow-model attack: the holdout is too small to hold targets and reference rows")
    rng = data.rng("shadow")
    mem = _outliers(data, "train", "holdout", n_targets)
    non = _outliers(data, "holdout", "train", n_targets)
    targets = pd.concat([data.frames["train"].iloc[mem], data.frames["holdout"].iloc[non]], ignore_index=True)
    labels = np.r_[np.ones(n_targets), np.zeros(n_targets)]
    pool = np.setdiff1d(np.arange(data.size("holdout")), non)
    reference_rows = min(reference_rows, len(pool))
    featurise = _Featuriser(data, targets, tuple(features))

    n_all = len(targets)
    # Balanced inclusion: each target is in exactly half of the runs, in a random set of runs.
    inclusion = np.zeros((n_runs, n_all), dtype=bool)
    for t in range(n_all):
        inclusion[rng.permutation(n_runs)[: n_runs // 2], t] = True
    features = []
    fit_seconds = 0.0
    for j in range(n_runs):
        base = data.frames["holdout"].iloc[rng.choice(pool, size=reference_rows, replace=False)]
        shadow_train = pd.concat([base, targets[inclusion[j]]], ignore_index=True)
        shadow_train = shadow_train.iloc[rng.permutation(len(shadow_train))].reset_index(drop=True)
        t0 = time.perf_counter()
        out = generator(shadow_train, n_rows or len(shadow_train), int(rng.integers(2**31 - 1)))
        fit_seconds += time.perf_counter() - t0
        if not isinstance(out, pd.DataFrame) or len(out) == 0:
            raise AuditInputError("shadow-model attack: the generator returned no rows")
        features.append(featurise(out))
    features_arr = np.stack(features)  # (n_runs, n_targets_all, n_features)
    release = featurise(data.frames["synthetic"])

    scores = np.empty(n_all)
    accuracies = np.empty(n_all)
    folds = min(4, n_runs // 2)
    for t in range(n_all):
        X, y = features_arr[:, t, :], inclusion[:, t].astype(int)
        clf = _classifier(classifier, int(rng.integers(2**31 - 1)))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
        accuracies[t] = float(np.mean(cross_val_score(clf, X, y, cv=cv)))
        clf.fit(X, y)
        scores[t] = float(clf.predict_proba(release[t : t + 1])[0, list(clf.classes_).index(1)])
    result = roc_result(
        "mia_shadow",
        scores,
        labels,
        data,
        start,
        {
            "score": f"{classifier} P(in) from shadow fits with/without each target (groundhog)",
            "n_runs": n_runs,
            "reference_rows": reference_rows,
            "n_targets_per_side": n_targets,
            "shadow_accuracy_mean": float(accuracies.mean()),
            "shadow_accuracy_members": float(accuracies[:n_targets].mean()),
            "shadow_accuracy_nonmembers": float(accuracies[n_targets:].mean()),
            "generator_seconds": fit_seconds,
            "n_features": int(features_arr.shape[2]),
        },
    )
    return result
