"""Empirical lower bound on epsilon from canaries, with one generator fit.

References
----------
- Jagielski, Ullman, Oprea 2020, "Auditing Differentially Private Machine
  Learning: How Private is Private SGD?" (NeurIPS): turn a distinguishing
  attack into a statistically valid lower bound on epsilon.
- Steinke, Nasr, Jagielski 2023, "Privacy Auditing with One (1) Training
  Run" (NeurIPS): insert m canaries, each independently with probability
  1/2, train once, guess inclusion for some canaries and abstain on the rest.
  If the mechanism is (eps, delta)-DP, the number of correct guesses among r
  guesses is, up to a delta term, stochastically dominated by
  Binomial(r, e^eps / (1 + e^eps)) (their Theorem 5.2). The p-value and the
  bisection for the largest rejected eps below follow their Appendix D
  procedure; with delta = 0 the bound is the one-sided Clopper-Pearson bound.

Procedure here: canaries are synthesized outliers (each categorical column
takes a uniformly random declared category, so combinations are rare; each
numeric column sits at its lower or upper public bound). The generator is fit
once on holdout rows plus the included canaries; each canary is scored by
minus its distance to the nearest row of that fit's synthetic output; the
``k`` highest-scoring canaries are guessed "in", the ``k`` lowest "out".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats as _st

from audits.data import AuditData
from audits.embedding import MixedEncoder
from audits.errors import AuditInputError
from audits.results import AuditResult
from audits.spec import TableSpec


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """P[at least v of r guesses correct] under the null "the mechanism is (eps, delta)-DP".

    Steinke et al. 2023, Theorem 5.2: ``P[W >= v] <= f(v) + 2 m delta max_i (f(v - i) - f(v)) / i``
    with ``f(v) = P[Binomial(r, q) >= v]`` and ``q = e^eps / (1 + e^eps)``.
    """
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    if eps < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need eps >= 0 and 0 <= delta <= 1, got eps={eps}, delta={delta}")
    q = 1.0 / (1.0 + math.exp(-eps))
    beta = float(_st.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    if delta == 0:
        return min(beta, 1.0)
    alpha, acc = 0.0, 0.0
    for i in range(1, v + 1):
        acc += float(_st.binom.pmf(v - i, r, q))  # P[v > Binomial(r, q) >= v - i]
        alpha = max(alpha, acc / i)
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float = 0.0, confidence: float = 0.95,
                        eps_max: float = 50.0, iterations: int = 60) -> float:
    """Largest eps the observation (v correct of r guesses, m canaries) rejects at ``confidence``.

    Returns 0 when nothing is rejected. Bisection keeps ``p_value(eps_lo) < 1 - confidence``.
    """
    p = 1.0 - confidence
    if not 0 < p < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if r == 0 or p_value(m, r, v, 0.0, delta) >= p:
        return 0.0
    lo, hi = 0.0, 1.0
    while hi < eps_max and p_value(m, r, v, hi, delta) < p:
        lo, hi = hi, hi * 2
    hi = min(hi, eps_max)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if p_value(m, r, v, mid, delta) < p:
            lo = mid
        else:
            hi = mid
    return lo


def make_canaries(spec: TableSpec, m: int, rng: np.random.Generator) -> pd.DataFrame:
    """``m`` distinct outlier records within the spec's public domain."""
    cols: dict[str, np.ndarray] = {}
    for col in spec.columns:
        if col.kind == "categorical":
            cols[col.name] = rng.choice(np.array(col.categories, dtype=object), size=m)
        else:
            side = rng.integers(0, 2, size=m)
            values = np.where(side == 1, float(col.upper), float(col.lower))  # type: ignore[arg-type]
            if col.is_datetime:
                cols[col.name] = pd.to_datetime(values, unit="s")
            else:
                cols[col.name] = values
    df = pd.DataFrame(cols)
    return df.drop_duplicates().reset_index(drop=True)


def canary_audit(data: AuditData, generator: Callable[[pd.DataFrame, int, int], pd.DataFrame],
                 n_canaries: int = 200, reference_rows: int = 2000, claimed_epsilon: float | None = None,
                 delta: float = 0.0, k_guess: int | None = None) -> AuditResult:
    """Fit the generator once on holdout rows + randomly included canaries; lower-bound epsilon.

    ``k_guess`` guesses are made on each side (default ``n_canaries // 4``, so
    half the canaries are guessed on). The bound is valid at the policy's
    confidence whatever the generator does, because inclusion is randomised
    independently of everything the scoring sees.
    """
    start = time.perf_counter()
    rng = data.rng("canary")
    canaries = make_canaries(data.spec, n_canaries, rng)
    m = len(canaries)
    if m < 4:
        raise AuditInputError(f"canary audit: only {m} distinct canaries could be made; the table's domain "
                              "is too small for this audit")
    k = min(k_guess if k_guess is not None else m // 4, m // 2)
    included = rng.random(m) < 0.5
    holdout = data.frames["holdout"]
    ref_idx = rng.choice(len(holdout), size=min(reference_rows, len(holdout)), replace=False)
    train = pd.concat([holdout.iloc[ref_idx], canaries[included]], ignore_index=True)
    train = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    fit_seed = int(rng.integers(2**31 - 1))
    t_fit = time.perf_counter()
    out = generator(train, len(train), fit_seed)
    fit_seconds = time.perf_counter() - t_fit
    if not isinstance(out, pd.DataFrame) or len(out) == 0:
        raise AuditInputError("canary audit: the generator returned no rows (expected a non-empty DataFrame)")
    data.spec.check_frame(out, "canary generator output")
    enc = MixedEncoder(data.spec).fit(train, canaries, out)
    dist, _ = enc.knn(enc.transform(canaries), enc.transform(out), k=1)
    scores = -dist[:, 0]
    order = _rank_with_random_ties(scores, rng)
    guess_in, guess_out = order[:k], order[m - k:]
    correct = int(included[guess_in].sum() + (~included[guess_out]).sum())
    r = 2 * k
    bound = epsilon_lower_bound(m, r, correct, delta=delta, confidence=data.confidence)
    return AuditResult(
        name="epsilon_lower_bound", family="epsilon", value=bound, direction="max",
        details={
            "claimed_epsilon": claimed_epsilon, "delta": delta, "confidence": data.confidence,
            "n_canaries": m, "n_included": int(included.sum()), "guesses": r, "correct": correct,
            "k_per_side": k, "reference_rows": len(ref_idx), "generator_seconds": fit_seconds,
            "score": "minus Gower distance to the nearest row of the canary fit's output",
            "method": "Steinke, Nasr, Jagielski 2023, Theorem 5.2 / Appendix D",
        },
        seconds=time.perf_counter() - start,
    )


def _rank_with_random_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices from highest to lowest score, equal scores in random order."""
    jitter = rng.random(len(scores))
    return np.lexsort((jitter, -scores))
