"""Confidence intervals and the statistics every attack reports.

- Wilson score interval (Wilson 1927) and Clopper-Pearson exact interval
  (Clopper & Pearson 1934) for success rates.
- ROC analysis with per-sample weights, so a stratified bootstrap of AUC and
  TPR-at-FPR costs one sort plus O(n) per replicate (Efron & Tibshirani 1993,
  percentile intervals). Ties in scores are handled as a randomised threshold:
  the ROC is linear between distinct scores, AUC equals the Mann-Whitney
  statistic with ties counted half, and TPR at a given FPR is read off that
  piecewise-linear curve.
- Baseline-normalised risk ``(r_train - r_control) / (1 - r_control)`` as
  anonymeter defines it (Giomi et al. 2023, "A Unified Framework for
  Quantifying Privacy Risk in Synthetic Data", PoPETs), so our numbers are
  comparable with theirs. Its interval is the MOVER interval for a ratio of
  two independent proportions (Zou & Donner 2008, "Construction of confidence
  limits about effect measures: a general approach", Statistics in Medicine
  27:1693-1702), built from Wilson limits: the risk is one minus the ratio of
  the two *failure* rates, ``1 - (1 - r_train) / (1 - r_control)``.
- Bonferroni's correction (:func:`bonferroni_confidence`) when a result
  reports the worst of several attacks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as _st


@functools.lru_cache(maxsize=64)
def z_value(confidence: float) -> float:
    """Two-sided normal quantile for ``confidence`` (1.959964 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return float(_st.norm.ppf(0.5 * (1.0 + confidence)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; ``(0, 1)`` when ``n == 0``."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    z = z_value(confidence)
    phat = successes / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges (no rounding residue)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def clopper_pearson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (conservative) binomial interval from Beta quantiles; ``(0, 1)`` when ``n == 0``."""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    lo = 0.0 if successes == 0 else float(_st.beta.ppf(alpha / 2, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(_st.beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return lo, hi


@dataclass(frozen=True)
class Rate:
    """A success rate as anonymeter estimates it: Wilson centre ``value`` and half-width ``error``."""

    value: float
    error: float
    successes: int
    n: int


def success_rate(successes: int, n: int, confidence: float = 0.95) -> Rate:
    """Wilson-centred success rate and its half-width (anonymeter's ``success_rate``)."""
    if n <= 0:
        raise ValueError("a success rate needs at least one trial (n >= 1)")
    z = z_value(confidence)
    z2 = z * z
    denom = n + z2
    value = (successes + 0.5 * z2) / denom
    error = (z / denom) * math.sqrt(successes * (n - successes) / n + 0.25 * z2)
    return Rate(value=value, error=error, successes=int(successes), n=int(n))


@dataclass(frozen=True)
class Risk:
    """Baseline-normalised risk: estimate, interval and the two rates behind it.

    ``anonymeter_error`` is anonymeter's first-order propagated half-width,
    kept for comparison with their reports.
    """

    value: float
    ci_low: float
    ci_high: float
    attack: Rate
    control: Rate
    anonymeter_error: float
    confidence: float = 0.95


def bonferroni_confidence(confidence: float, k: int) -> float:
    """Per-comparison confidence so that ``k`` intervals hold simultaneously at ``confidence``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return 1.0 - (1.0 - confidence) / k


def _residual(a: float, c: float) -> float:
    if c >= 1.0:
        return -1.0 if a < 1.0 else 0.0
    return (a - c) / (1.0 - c)


def ratio_interval(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """MOVER interval for ``p1 / p2``, two independent binomial proportions (Zou & Donner 2008).

    Each limit solves ``(p1 - t p2)^2 = (p1 - l1)^2 + t^2 (u2 - p2)^2`` (lower)
    or its mirror (upper), with ``(l, u)`` the Wilson limits of each
    proportion: the square-and-add rule that Newcombe's (1998) interval for a
    difference uses, applied to ``p1 - t p2``. Unlike the delta method it
    stays sensible at 0 and 1 counts; the upper limit is ``inf`` when
    ``x2 == 0``.
    """
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    # Lower limit: root of A t^2 - 2 p1 p2 t + C = 0 with A = u2 (2 p2 - u2), C = l1 (2 p1 - l1).
    a_lo, c_lo = u2 * (2 * p2 - u2), l1 * (2 * p1 - l1)
    if a_lo == 0.0:
        lower = c_lo / (2 * p1 * p2) if p1 * p2 > 0 else 0.0
    else:
        lower = (p1 * p2 - math.sqrt(max(0.0, (p1 * p2) ** 2 - a_lo * c_lo))) / a_lo
    a_hi, c_hi = l2 * (2 * p2 - l2), u1 * (2 * p1 - u1)
    if a_hi <= 0.0:
        upper = math.inf
    else:
        upper = (p1 * p2 + math.sqrt(max(0.0, (p1 * p2) ** 2 - a_hi * c_hi))) / a_hi
    return max(0.0, lower), upper


def risk_values(
    success_train: np.ndarray, n_train: int, success_control: np.ndarray, n_control: int, confidence: float = 0.95
) -> np.ndarray:
    """Point estimates of :func:`normalised_risk` for arrays of success counts (vectorised, no intervals)."""
    z2 = z_value(confidence) ** 2
    a = (np.asarray(success_train, dtype=float) + 0.5 * z2) / (n_train + z2)
    c = (np.asarray(success_control, dtype=float) + 0.5 * z2) / (n_control + z2)
    return np.clip((a - c) / (1.0 - c), -1.0, 1.0)  # Wilson centres are < 1, so 1 - c > 0


def normalised_risk(
    success_train: int, n_train: int, success_control: int, n_control: int, confidence: float = 0.95
) -> Risk:
    """``(r_train - r_control) / (1 - r_control)`` on Wilson-centred rates (as anonymeter), clipped to [-1, 1].

    The interval is that of ``1 - f_train / f_control`` with ``f = 1 - r`` the
    failure rates, from :func:`ratio_interval`; it is a proper interval at
    ``confidence`` (its lower limit exceeds 0 about ``(1 - confidence) / 2``
    of the time when train and control targets are equally easy to attack),
    where the former interval arithmetic on two Wilson intervals was far
    wider than its nominal level. The estimate is always inside it (if the
    Wilson-centred estimate falls just outside the interval built on the raw
    rates, the interval is widened to include it).

    Anonymeter's first-order propagation (also returned, ``anonymeter_error``)
    divides by ``(1 - r_control)^2`` and explodes when the control success
    nears 1, which happens exactly in the safest case (e.g. the holdout itself
    used as the synthetic table). Unlike anonymeter we do not clip at 0: a
    negative risk says control records were easier to attack than training
    records, worth seeing in a calibration check.
    """
    a = success_rate(success_train, n_train, confidence)
    c = success_rate(success_control, n_control, confidence)
    clip = lambda v: min(1.0, max(-1.0, v))  # noqa: E731
    value = clip(_residual(a.value, c.value))
    margin = 1.0 - c.value
    if margin > 0:
        err = math.sqrt((a.error / margin) ** 2 + (c.error * (a.value - 1.0) / margin**2) ** 2)
    else:
        err = float("inf")
    ratio_lo, ratio_hi = ratio_interval(
        n_train - success_train, n_train, n_control - success_control, n_control, confidence
    )
    ci_low, ci_high = clip(1.0 - ratio_hi), clip(1.0 - ratio_lo)
    return Risk(
        value=value,
        ci_low=min(ci_low, value),
        ci_high=max(ci_high, value),
        attack=a,
        control=c,
        anonymeter_error=err,
        confidence=confidence,
    )


def mean_interval(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and normal-approximation interval (for large samples of bounded values)."""
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = z_value(confidence) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, m - half, m + half


# ----------------------------------------------------------------------------- ROC
class WeightedROC:
    """ROC of scores for labels (1 = member), re-weightable for a fast bootstrap.

    Higher score = "more likely a member". Build once (one sort), then
    :meth:`curve` with integer weights gives the ROC of a resample.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=float)
        labels = np.asarray(labels).astype(bool)
        if scores.shape != labels.shape or scores.ndim != 1:
            raise ValueError("scores and labels must be 1-d arrays of equal length")
        if labels.all() or not labels.any():
            raise ValueError("ROC needs both members (label 1) and non-members (label 0)")
        if not np.all(np.isfinite(scores)):
            raise ValueError("attack scores must be finite")
        order = np.argsort(-scores, kind="stable")
        self.scores = scores[order]
        self.labels = labels[order]
        self.order = order
        # Last position of each run of equal scores: the distinct thresholds.
        self.ends = np.flatnonzero(np.r_[self.scores[1:] != self.scores[:-1], True])

    def curve(self, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(fpr, tpr)`` starting at (0, 0), one point per distinct score."""
        pos = self.labels.astype(float)
        neg = 1.0 - pos
        if weights is not None:
            w = np.asarray(weights, dtype=float)[self.order]
            pos, neg = pos * w, neg * w
        tp = np.cumsum(pos)[self.ends]
        fp = np.cumsum(neg)[self.ends]
        tpr = np.r_[0.0, tp / tp[-1]]
        fpr = np.r_[0.0, fp / fp[-1]]
        return fpr, tpr


def auc_from_curve(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) * 0.5))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """TPR of the (randomised-threshold) ROC at false-positive rate ``target``."""
    # Where the curve is vertical (several TPRs at one FPR), take the highest: the attacker's best.
    right = np.searchsorted(fpr, target, side="right")
    if right > 0 and fpr[right - 1] == target:
        return float(tpr[right - 1])
    return float(np.interp(target, fpr, tpr))


def tpr_at_fpr_rows(fpr: np.ndarray, tpr: np.ndarray, target: float) -> np.ndarray:
    """:func:`tpr_at_fpr` for each row of ``(n_curves, n_points)`` arrays of ROC curves (same reading)."""
    rows = np.arange(fpr.shape[0])
    right = (fpr <= target).sum(axis=1)  # curves start at (0, 0), so right >= 1 for target >= 0
    last = right - 1
    nxt = np.minimum(right, fpr.shape[1] - 1)
    f0, f1 = fpr[rows, last], fpr[rows, nxt]
    t0, t1 = tpr[rows, last], tpr[rows, nxt]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(f1 > f0, (target - f0) / (f1 - f0), 0.0)
    return np.where(f0 == target, t0, t0 + w * (t1 - t0))


@dataclass(frozen=True)
class RocSummary:
    """AUC and TPR at fixed FPRs, with percentile-bootstrap intervals, one-sided p-values of the
    no-signal null (members and non-members exchangeable) and a thinned ROC for plots."""

    auc: float
    auc_ci: tuple[float, float]
    tpr_at: dict[float, tuple[float, float, float]]  # fpr -> (tpr, ci_low, ci_high)
    roc_fpr: list[float]
    roc_tpr: list[float]
    n_members: int
    n_nonmembers: int
    n_bootstrap: int
    auc_p_value: float = 1.0
    tpr_p_values: dict[float, float] = field(default_factory=dict)
    n_permutations: int = 0


def auc_p_value(scores: np.ndarray, labels: np.ndarray) -> float:
    """One-sided Mann-Whitney p-value of "members score no higher than non-members" (AUC > 0.5).

    Exact for small samples without ties, normal approximation with tie
    correction otherwise (scipy's ``method="auto"``). The AUC equals the
    Mann-Whitney U statistic divided by ``n_members * n_nonmembers``.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=float)
    return float(_st.mannwhitneyu(scores[labels], scores[~labels], alternative="greater").pvalue)


def tpr_permutation_p_values(
    roc: WeightedROC, observed: dict[float, float], n_permutations: int, rng: np.random.Generator, chunk: int = 200
) -> dict[float, float]:
    """One-sided permutation p-values of TPR at each FPR: labels shuffled over the fixed scores.

    The percentile bootstrap is unreliable for TPR at a low FPR on small
    samples (at 1% FPR with 150 non-members the "threshold" is 1.5 records),
    so the no-signal test uses the exact null instead: ``P[TPR_perm >= TPR]``
    with the ``+1`` correction, so it is never below ``1 / (n_permutations + 1)``.
    """
    if n_permutations <= 0:
        return {f: 1.0 for f in observed}
    n = len(roc.labels)
    exceed = {f: 0 for f in observed}
    done = 0
    while done < n_permutations:
        m = min(chunk, n_permutations - done)
        pos = rng.permuted(np.broadcast_to(roc.labels.astype(np.float32), (m, n)), axis=1)  # scores fixed
        tp = np.cumsum(pos, axis=1)[:, roc.ends]
        fp = np.cumsum(1.0 - pos, axis=1)[:, roc.ends]
        tpr = np.c_[np.zeros(m), tp / tp[:, -1:]]
        fpr = np.c_[np.zeros(m), fp / fp[:, -1:]]
        for f, t_obs in observed.items():
            exceed[f] += int(np.sum(tpr_at_fpr_rows(fpr, tpr, f) >= t_obs - 1e-12))
        done += m
    return {f: (1 + exceed[f]) / (1 + n_permutations) for f in observed}


def roc_summary(
    scores: np.ndarray,
    labels: np.ndarray,
    fprs: tuple[float, ...] = (0.01, 0.1),
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    roc_points: int = 101,
    n_permutations: int | None = None,
) -> RocSummary:
    """AUC and TPR@FPR with a stratified bootstrap (members and non-members resampled separately).

    Also the no-signal p-values: Mann-Whitney for the AUC, label permutations
    for TPR@FPR. ``n_permutations`` defaults to enough for a p-value below
    ``(1 - confidence) / 2`` to be reachable four times over (at least
    ``n_bootstrap``).
    """
    roc = WeightedROC(scores, labels)
    fpr, tpr = roc.curve()
    auc = auc_from_curve(fpr, tpr)
    point_tprs = {f: tpr_at_fpr(fpr, tpr, f) for f in fprs}
    rng = np.random.default_rng(seed)
    labels_b = np.asarray(labels).astype(bool)
    pos_idx, neg_idx = np.flatnonzero(labels_b), np.flatnonzero(~labels_b)
    aucs = np.empty(n_bootstrap)
    tprs = {f: np.empty(n_bootstrap) for f in fprs}
    for b in range(n_bootstrap):
        w = np.zeros(len(labels_b))
        w[pos_idx] = np.bincount(rng.integers(0, len(pos_idx), len(pos_idx)), minlength=len(pos_idx))
        w[neg_idx] = np.bincount(rng.integers(0, len(neg_idx), len(neg_idx)), minlength=len(neg_idx))
        bf, bt = roc.curve(w)
        aucs[b] = auc_from_curve(bf, bt)
        for f in fprs:
            tprs[f][b] = tpr_at_fpr(bf, bt, f)
    alpha = 1.0 - confidence
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    if n_bootstrap > 0:
        auc_ci = tuple(float(v) for v in np.percentile(aucs, q))
        tpr_at = {f: (point_tprs[f], *(float(v) for v in np.percentile(tprs[f], q))) for f in fprs}
    else:
        auc_ci = (auc, auc)
        tpr_at = {f: (point_tprs[f], point_tprs[f], point_tprs[f]) for f in fprs}
    if n_permutations is None:
        n_permutations = max(n_bootstrap, int(math.ceil(4.0 / ((1.0 - confidence) / 2.0))))
    p_auc = auc_p_value(scores, labels)
    p_tpr = tpr_permutation_p_values(roc, point_tprs, n_permutations, np.random.default_rng([seed, 1]))
    grid = np.linspace(0.0, 1.0, roc_points)
    # Log-spaced low-FPR points too: the low-FPR regime is what matters for privacy (Carlini et al. 2022).
    grid = np.unique(np.r_[grid, np.logspace(-3, -1, 9)])
    thin_tpr = [tpr_at_fpr(fpr, tpr, g) for g in grid]
    return RocSummary(
        auc=auc,
        auc_ci=auc_ci,
        tpr_at=tpr_at,
        roc_fpr=[float(g) for g in grid],
        roc_tpr=[float(t) for t in thin_tpr],
        n_members=len(pos_idx),
        n_nonmembers=len(neg_idx),
        n_bootstrap=n_bootstrap,
        auc_p_value=p_auc,
        tpr_p_values=p_tpr,
        n_permutations=n_permutations,
    )


def bootstrap_ratio_of_means(
    x: np.ndarray, y: np.ndarray, n_bootstrap: int = 200, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(x) / mean(y)`` with a percentile bootstrap resampling x and y independently."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    my = y.mean()
    point = float(x.mean() / my) if my > 0 else float("inf")
    rng = np.random.default_rng(seed)
    reps = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        bx = x[rng.integers(0, len(x), len(x))].mean()
        by = y[rng.integers(0, len(y), len(y))].mean()
        reps[b] = bx / by if by > 0 else np.inf
    alpha = 1.0 - confidence
    lo, hi = np.percentile(reps, (100 * alpha / 2, 100 * (1 - alpha / 2)))
    return point, float(lo), float(hi)
