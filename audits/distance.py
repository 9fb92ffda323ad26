"""Distance-based privacy checks: DCR share, NNDR, exact copies and the DCR membership attack.

References
----------
- Distance to closest record (DCR) and nearest-neighbour distance ratio (NNDR):
  Park et al. 2018, "Data Synthesis based on Generative Adversarial Networks"
  (VLDB); Zhao et al. 2021, "CTAB-GAN". The *share* form (is a synthetic row
  closer to a training record than to an equally large holdout?) follows the
  holdout-based test of Platzer & Reutterer 2021, "Holdout-Based Empirical
  Assessment of Mixed-Type Synthetic Data" (Frontiers in Big Data): 0.5 is the
  ideal; values near 1 mean the generator reproduces its training records.
- DCR membership attack: the distance-to-closest-synthetic-record score used
  as a baseline attack by Chen et al. 2020, "GAN-Leaks" (CCS) and Hilprecht et
  al. 2019, "Monte Carlo and Reconstruction Membership Inference Attacks
  against Generative Models" (PoPETs).

All distances are the Gower-style distance of :mod:`audits.embedding`.
"""

from __future__ import annotations

import time

import numpy as np

from audits.data import AuditData, per_person
from audits.results import AuditResult
from audits.stats import bootstrap_ratio_of_means, mean_interval, roc_summary, wilson_interval

DCR_HIST_BINS = 40


def _histograms(named: dict[str, np.ndarray], bins: int = DCR_HIST_BINS) -> dict[str, object]:
    """Binned counts on shared edges (plots only; never raw distances)."""
    every = np.concatenate(list(named.values()))
    upper = float(np.quantile(every, 0.995)) if every.size else 1.0
    upper = max(upper, 1e-6)
    edges = np.linspace(0.0, upper, bins + 1)
    out: dict[str, object] = {"edges": edges.tolist()}
    for name, values in named.items():
        counts, _ = np.histogram(np.clip(values, 0.0, upper), bins=edges)
        out[name] = counts.tolist()
    return out


def dcr_share(data: AuditData) -> AuditResult:
    """Share of synthetic rows closer to train than to holdout, on an equal-size scale; 0.5 is ideal.

    For each synthetic row we find the nearest records in train and in holdout
    and take the fraction of train records among all records at the nearest
    distance (1 if train is strictly closer, 0 if holdout is, ``c_T/(c_T+c_H)``
    for ties among ``c_T`` train and ``c_H`` holdout rows). If the generator
    ignores which records it saw, train and holdout are exchangeable and this
    fraction averages ``n_T/(n_T+n_H)``. We report the mean fraction converted
    to the equal-size scale (odds divided by ``n_T/n_H``), so 0.5 is ideal
    whatever the split, and it equals the plain "strictly closer to train,
    ties count half" share when the sizes are equal and ties are single pairs.

    Why not subsample train to the holdout's size: a generator that copies
    its training rows is then only caught on the copies of the subsample's
    rows (a 24k/6k split caps the share at 0.625 instead of 1.0).
    """
    start = time.perf_counter()
    d_train, c_train = data.nearest("synthetic_q", "train", k=2)
    d_hold, c_hold = data.nearest("synthetic_q", "holdout", k=1)
    d_train, d_hold = d_train[:, 0], d_hold[:, 0]
    frac = np.where(d_train < d_hold, 1.0, 0.0)
    tie = d_train == d_hold
    frac[tie] = c_train[tie] / (c_train[tie] + c_hold[tie])
    mean, lo, hi = mean_interval(frac, data.confidence)
    n_t, n_h = data.size("train"), data.size("holdout")
    to_equal = _equal_size_share(n_t, n_h)
    d_base, _ = data.nearest("holdout_ref", "train", k=2)
    hist = _histograms({"synthetic_to_train": d_train, "holdout_to_train": d_base[:, 0]})
    return AuditResult(
        name="dcr_share",
        family="distance",
        value=to_equal(mean),
        ci_low=to_equal(lo),
        ci_high=to_equal(hi),
        direction="max",
        baseline=0.5,
        details={
            "n_synthetic_queries": len(frac),
            "n_train": n_t,
            "n_holdout": n_h,
            "mean_train_fraction": mean,
            "null_train_fraction": n_t / (n_t + n_h),
            "share_strictly_closer_to_train": float(np.mean(d_train < d_hold)),
            "share_ties": float(np.mean(tie)),
            "median_dcr_synthetic_to_train": float(np.median(d_train)),
            "median_dcr_holdout_to_train": float(np.median(d_base[:, 0])),
            "dcr_histogram": hist,
        },
        seconds=time.perf_counter() - start,
    )


def _equal_size_share(n_train: int, n_holdout: int):
    """Map a mean train fraction f to the equal-size scale: odds(f) / (n_T/n_H), back to a probability."""

    def convert(f: float) -> float:
        f = min(max(f, 0.0), 1.0)
        num = f * n_holdout
        den = num + (1.0 - f) * n_train
        return num / den if den > 0 else 0.5

    return convert


def _nndr(d: np.ndarray) -> np.ndarray:
    """d1 / d2 per row; 1.0 where both are 0 (a copy of a duplicated record is not distinctive)."""
    d1, d2 = d[:, 0], d[:, 1]
    out = np.ones_like(d1)
    nz = d2 > 0
    out[nz] = d1[nz] / d2[nz]
    return out


def nndr(data: AuditData) -> AuditResult:
    """Mean nearest-neighbour distance ratio of synthetic->train over holdout->train (1.0 is ideal).

    A ratio well below 1 means synthetic rows sit unusually close to one
    specific training record relative to its neighbours: a sign of copying
    outliers. The test is ``min``-directed: the ratio must not fall below
    the threshold.
    """
    start = time.perf_counter()
    d_syn, _ = data.nearest("synthetic_q", "train", k=2)
    d_hold, _ = data.nearest("holdout_ref", "train", k=2)
    r_syn, r_hold = _nndr(d_syn), _nndr(d_hold)
    value, lo, hi = bootstrap_ratio_of_means(
        r_syn, r_hold, n_bootstrap=data.n_bootstrap, confidence=data.confidence, seed=data.seed
    )
    edges = np.linspace(0.0, 1.0, 21)
    return AuditResult(
        name="nndr_ratio",
        family="distance",
        value=value,
        ci_low=lo,
        ci_high=hi,
        direction="min",
        baseline=1.0,
        details={
            "mean_nndr_synthetic": float(r_syn.mean()),
            "mean_nndr_holdout": float(r_hold.mean()),
            "n_synthetic_queries": len(r_syn),
            "n_holdout_queries": len(r_hold),
            "nndr_histogram": {
                "edges": edges.tolist(),
                "synthetic_to_train": np.histogram(r_syn, edges)[0].tolist(),
                "holdout_to_train": np.histogram(r_hold, edges)[0].tolist(),
            },
        },
        seconds=time.perf_counter() - start,
    )


def exact_copy_rate(data: AuditData) -> AuditResult:
    """Share of synthetic rows identical to some train row, next to the holdout's own share.

    The holdout's rate is the baseline: in a table with many duplicates
    (Adult: ~11% of rows repeat) an honest generator reproduces common rows too.
    """
    start = time.perf_counter()
    train, holdout = data.sources["train"], data.sources["holdout"]
    syn_keys = data.encoder.row_keys(data.frame("synthetic"), data.encoded("synthetic"))
    syn_hits = int(train.contains(data.encoder, syn_keys).sum())
    hold_hits = holdout.rows_found_in(data.encoder, train)  # where the tables live: no keys of real rows cross
    n_syn, n_hold = len(syn_keys), len(holdout)
    lo, hi = wilson_interval(syn_hits, n_syn, data.confidence)
    b_lo, b_hi = wilson_interval(hold_hits, n_hold, data.confidence)
    return AuditResult(
        name="exact_copy_rate",
        family="distance",
        value=syn_hits / n_syn,
        ci_low=lo,
        ci_high=hi,
        direction="max",
        baseline=hold_hits / n_hold,
        details={
            "synthetic_copies": syn_hits,
            "n_synthetic": n_syn,
            "holdout_copies": hold_hits,
            "n_holdout": n_hold,
            "holdout_rate_ci": [b_lo, b_hi],
            "synthetic_unique_rate": float(len(np.unique(syn_keys)) / n_syn),
        },
        seconds=time.perf_counter() - start,
    )


def dcr_membership_attack(data: AuditData) -> AuditResult:
    """Membership inference with score = minus the distance to the closest synthetic row.

    Members are train rows, non-members holdout rows, equal in number; the
    value is the AUC (0.5 = no better than guessing), with TPR at 1% and 10%
    FPR in ``details``.
    """
    start = time.perf_counter()
    d_mem, _ = data.knn("members", "synthetic", k=1)
    d_non, _ = data.knn("nonmembers", "synthetic", k=1)
    # person-level: a person's score is their best row's (per_person; row-level: unchanged)
    s_mem = per_person(-d_mem[:, 0], data.groups("members"))
    s_non = per_person(-d_non[:, 0], data.groups("nonmembers"))
    scores = np.r_[s_mem, s_non]
    labels = np.r_[np.ones(len(s_mem)), np.zeros(len(s_non))]
    extra = {"score": "minus Gower distance to the closest synthetic row"}
    if data.person_level:
        extra["target"] = "person: the highest score over the person's rows"
    return roc_result("mia_distance", scores, labels, data, start, extra)


def roc_result(
    name: str, scores: np.ndarray, labels: np.ndarray, data: AuditData, start: float, extra: dict[str, object]
) -> AuditResult:
    """Package a membership attack's scores as an AUC result with TPR@FPR and ROC points in details."""
    s = roc_summary(scores, labels, n_bootstrap=data.n_bootstrap, confidence=data.confidence, seed=data.seed)
    details: dict[str, object] = dict(extra)
    details.update(
        {
            "auc": s.auc,
            "tpr_at_fpr_0.01": s.tpr_at[0.01][0],
            "tpr_at_fpr_0.01_ci": list(s.tpr_at[0.01][1:]),
            "tpr_at_fpr_0.1": s.tpr_at[0.1][0],
            "tpr_at_fpr_0.1_ci": list(s.tpr_at[0.1][1:]),
            "tpr_at_fpr_0.01_p_value": s.tpr_p_values[0.01],
            "tpr_at_fpr_0.1_p_value": s.tpr_p_values[0.1],
            "n_members": s.n_members,
            "n_nonmembers": s.n_nonmembers,
            "n_bootstrap": s.n_bootstrap,
            "n_permutations": s.n_permutations,
            "roc": {"fpr": s.roc_fpr, "tpr": s.roc_tpr},
        }
    )
    return AuditResult(
        name=name,
        family="membership",
        value=s.auc,
        ci_low=s.auc_ci[0],
        ci_high=s.auc_ci[1],
        direction="max",
        baseline=0.5,
        details=details,
        p_value=s.auc_p_value,
        seconds=time.perf_counter() - start,
    )
