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
  Binomial(r, e^eps / (1 + e^eps)) (their Theorem 5.2), whatever the score.
  The p-value and the bisection for the largest rejected eps below follow
  their Appendix D procedure; with delta = 0 the bound is the one-sided
  Clopper-Pearson bound.

Procedure here (docs/canary-audit.md gives the reasoning and the measured
power). Marginal-based generators (MST, AIM) keep low-order marginals, not
whole records, so a canary must be visible in a low-order marginal:

1. Cells. Categorical values and quantile bins of numeric columns (bins from
   the reference rows) define the one- and two-way cells.
2. Canaries are built greedily so that each one's two-way cells are, as far as
   possible, empty in the reference rows and unused by every other canary:
   whichever pairs the generator measures, a canary's presence adds a count
   to cells nothing else occupies. Each value is copied from a reference row,
   so every canary is in the public domain and its one-way cells are ordinary.
3. Each canary is included independently with probability 1/2; the generator
   is fit once on the reference rows plus the included canaries, and asked for
   ``sample_factor`` times as many rows as the expected training size (a
   number fixed before inclusion is drawn, so the output size reveals nothing).
4. Features: per canary and per clique, the synthetic count of its cell
   (rescaled to the training size) minus the reference count, shared among
   the canaries in that cell.
5. Half of the canaries are *calibration* canaries: their inclusion is used to
   weight the cliques (the generator's leaky marginals get the weight; a
   diagonal linear discriminant, clipped at 0). Guesses and the bound use only
   the other half. Conditioning on the calibration canaries makes them fixed
   records, so each guessed canary is still included independently of
   everything the score reads, and Theorem 5.2 holds with m = guessed canaries.
6. The ``k`` highest-scoring guessed canaries are guessed "in", the ``k``
   lowest "out".
"""

from __future__ import annotations

import itertools
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
from audits.spec import TableSpec, category_labels, numeric_values


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


def epsilon_lower_bound(
    m: int, r: int, v: int, delta: float = 0.0, confidence: float = 0.95, eps_max: float = 50.0, iterations: int = 60
) -> float:
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


class CellCoder:
    """Integer cell codes per column: declared categories, or quantile bins of the reference rows.

    Missing values and undeclared categories get their own codes. The bins come
    from the reference rows only, which are fixed before any canary is included.
    """

    def __init__(self, spec: TableSpec, reference: pd.DataFrame, max_bins: int = 10) -> None:
        if max_bins < 1:
            raise AuditInputError(f"canary audit: max_bins must be at least 1, got {max_bins}")
        self.spec = spec
        self._edges: dict[str, np.ndarray] = {}
        self._categories: dict[str, dict[str, int]] = {}
        self.cardinality: dict[str, int] = {}
        for col in spec.columns:
            if col.kind == "numeric":
                values = numeric_values(reference[col.name], col)
                values = values[~np.isnan(values)]
                inner = np.linspace(0.0, 1.0, max_bins + 1)[1:-1]
                edges = np.unique(np.quantile(values, inner)) if len(values) and len(inner) else np.array([])
                self._edges[col.name] = edges
                self.cardinality[col.name] = len(edges) + 2  # bins, then missing
            else:
                self._categories[col.name] = {c: i for i, c in enumerate(col.categories)}
                self.cardinality[col.name] = len(col.categories) + 2  # declared, undeclared, missing

    def codes(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """``{column: int64 codes}`` for the rows of ``df``."""
        out: dict[str, np.ndarray] = {}
        for col in self.spec.columns:
            if col.kind == "numeric":
                values = numeric_values(df[col.name], col)
                edges = self._edges[col.name]
                code = np.searchsorted(edges, values, side="right")
                code[np.isnan(values)] = len(edges) + 1
            else:
                table = self._categories[col.name]
                n = len(table)
                code = np.array(
                    [n + 1 if label is None else table.get(label, n) for label in category_labels(df[col.name])],
                    dtype=np.int64,
                )
            out[col.name] = code.astype(np.int64)
        return out

    def cell_keys(self, codes: dict[str, np.ndarray], clique: tuple[str, ...]) -> np.ndarray:
        """One int64 per row naming its cell of the marginal on ``clique``."""
        key = np.zeros(len(codes[clique[0]]), dtype=np.int64)
        for name in clique:
            key = key * self.cardinality[name] + codes[name]
        return key


def make_canaries(reference: pd.DataFrame, coder: CellCoder, m: int, rng: np.random.Generator) -> pd.DataFrame:
    """``m`` records whose two-way cells are, greedily, as empty as possible of reference rows and other canaries.

    Each canary fills its columns in a random order; each column takes the
    reference value that minimises the load of its cells with the columns
    already filled (``sum 1 / (1 + rows already in the cell)``, reference rows
    and earlier canaries alike; ties broken towards the more frequent value,
    then at random). The value itself is copied from a random reference row in
    that cell, so canaries stay inside the public domain.
    """
    names = coder.spec.names
    d = len(names)
    ref_codes = coder.codes(reference)
    load: dict[tuple[int, int], dict[tuple[int, int], int]] = {}
    for i in range(d):
        for j in range(i + 1, d):
            cells: dict[tuple[int, int], int] = {}
            for cell in zip(ref_codes[names[i]].tolist(), ref_codes[names[j]].tolist()):
                cells[cell] = cells.get(cell, 0) + 1
            load[i, j] = cells
    candidates = []
    for name in names:
        values, counts = np.unique(ref_codes[name], return_counts=True)
        candidates.append((values.tolist(), counts / counts.sum()))
    chosen_codes = np.empty((m, d), dtype=np.int64)
    for row in range(m):
        chosen: dict[int, int] = {}
        for col in rng.permutation(d).tolist():
            values, freq = candidates[col]
            gains = freq * 1e-3 + rng.random(len(values)) * 1e-6
            for other, x in chosen.items():
                cells = load[(col, other) if col < other else (other, col)]
                for t, v in enumerate(values):
                    gains[t] += 1.0 / (1.0 + cells.get((v, x) if col < other else (x, v), 0))
            chosen[col] = values[int(np.argmax(gains))]
        for (i, j), cells in load.items():
            cell = (chosen[i], chosen[j])
            cells[cell] = cells.get(cell, 0) + 1
        chosen_codes[row] = [chosen[c] for c in range(d)]
    columns = {}
    for c, name in enumerate(names):
        pool = reference[name].to_numpy(dtype=object)
        picks = [rng.choice(np.flatnonzero(ref_codes[name] == code)) for code in chosen_codes[:, c]]
        columns[name] = pd.Series(pool[picks], dtype=object).astype(reference[name].dtype)
    return pd.DataFrame(columns)


def cell_features(
    coder: CellCoder, canaries: pd.DataFrame, reference: pd.DataFrame, synthetic: pd.DataFrame, n_train: float
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Per canary and per one- or two-way clique: the excess synthetic count of its cell, per canary in the cell.

    ``(synthetic count * n_train / len(synthetic) - reference count) / canaries
    sharing the cell``: about 1 for an included canary alone in a cell the
    generator reproduces exactly, about 0 for an excluded one.
    """
    cq, rq, sq = coder.codes(canaries), coder.codes(reference), coder.codes(synthetic)
    names = coder.spec.names
    cliques = [(a,) for a in names] + list(itertools.combinations(names, 2))
    scale = n_train / len(synthetic)
    features = np.empty((len(canaries), len(cliques)))
    for j, clique in enumerate(cliques):
        keys = coder.cell_keys(cq, clique)
        shared = _count_in(keys, keys)
        features[:, j] = (
            _count_in(keys, coder.cell_keys(sq, clique)) * scale - _count_in(keys, coder.cell_keys(rq, clique))
        ) / shared
    return features, cliques


def feature_weights(features: np.ndarray, included: np.ndarray, threshold: float = 2.0) -> np.ndarray:
    """Weights on the features that separate included from excluded calibration canaries.

    Each feature is standardised; its weight is ``t - threshold`` with ``t``
    Welch's t statistic of included minus excluded calibration canaries, for
    the features whose ``t`` reaches both ``threshold`` and half the largest
    ``t`` (0 for the others): only features that clearly leak count, and one
    the generator keeps exactly is not diluted by weak ones. All weights are 0
    when nothing separates the calibration canaries.
    """
    inside, outside = features[included], features[~included]
    if len(inside) < 2 or len(outside) < 2:
        return np.zeros(features.shape[1])
    gap = inside.mean(axis=0) - outside.mean(axis=0)
    se = np.sqrt(inside.var(axis=0, ddof=1) / len(inside) + outside.var(axis=0, ddof=1) / len(outside))
    t = np.divide(gap, se, out=np.zeros_like(gap), where=se > 1e-12)
    strong = t >= max(threshold, 0.5 * float(t.max(initial=0.0)))  # a clear leak is not diluted by weak ones
    spread = features.std(axis=0)
    return np.divide(np.where(strong, t - threshold, 0.0), spread, out=np.zeros_like(gap), where=spread > 1e-12)


def canary_audit(
    data: AuditData,
    generator: Callable[[pd.DataFrame, int, int], pd.DataFrame],
    n_canaries: int = 400,
    reference_rows: int = 500,
    claimed_epsilon: float | None = None,
    delta: float = 0.0,
    k_guess: int | None = None,
    sample_factor: int = 5,
    max_bins: int = 10,
) -> AuditResult:
    """Fit the generator once on holdout rows + randomly included canaries; lower-bound epsilon.

    ``n_canaries`` canaries are made; half calibrate the feature weights and
    the other half are guessed on, ``k_guess`` on each side (default a quarter
    of the guessed canaries). ``sample_factor`` times the expected training
    size is the number of rows asked of the generator. The bound is valid at
    the policy's confidence whatever the generator does, because each guessed
    canary's inclusion is randomised independently of everything the score reads.
    """
    start = time.perf_counter()
    if sample_factor < 1:
        raise AuditInputError(f"canary audit: sample_factor must be at least 1, got {sample_factor}")
    rng = data.rng("canary")
    holdout = data.frames["holdout"]
    ref_idx = rng.choice(len(holdout), size=min(reference_rows, len(holdout)), replace=False)
    reference = holdout.iloc[ref_idx].reset_index(drop=True)
    coder = CellCoder(data.spec, reference, max_bins=max_bins)
    canaries = make_canaries(reference, coder, n_canaries, rng)
    m = len(canaries)
    included = rng.random(m) < 0.5
    calibration = np.zeros(m, dtype=bool)
    calibration[rng.permutation(m)[: m // 2]] = True
    guessed = np.flatnonzero(~calibration)
    m_guess = len(guessed)
    if m_guess < 4:
        raise AuditInputError(
            f"canary audit: n_canaries={n_canaries} leaves {m_guess} canaries to guess on; use at least 8"
        )
    k = min(k_guess if k_guess is not None else m_guess // 4, m_guess // 2)
    train = pd.concat([reference, canaries[included]], ignore_index=True)
    train = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    expected_train = len(reference) + m / 2  # fixed before inclusion is drawn
    n_rows = math.ceil(sample_factor * expected_train)
    fit_seed = int(rng.integers(2**31 - 1))
    t_fit = time.perf_counter()
    out = generator(train, n_rows, fit_seed)
    fit_seconds = time.perf_counter() - t_fit
    if not isinstance(out, pd.DataFrame) or len(out) == 0:
        raise AuditInputError("canary audit: the generator returned no rows (expected a non-empty DataFrame)")
    data.spec.check_frame(out, "canary generator output")
    cells, cliques = cell_features(coder, canaries, reference, out, expected_train)
    enc = MixedEncoder(data.spec).fit(reference, canaries, out)  # not ``train``: it depends on inclusion
    dist, _ = enc.knn(enc.transform(canaries), enc.transform(out), k=1)
    features = np.column_stack([cells, -dist[:, 0]])
    names = [list(c) for c in cliques] + [["nearest record"]]
    weights = feature_weights(features[calibration], included[calibration])
    scores = features[guessed] @ weights
    order = guessed[_rank_with_random_ties(scores, rng)]
    guess_in, guess_out = order[:k], order[m_guess - k :]
    correct = int(included[guess_in].sum() + (~included[guess_out]).sum())
    r = 2 * k
    bound = epsilon_lower_bound(m_guess, r, correct, delta=delta, confidence=data.confidence)
    top = np.argsort(-weights)[:3]
    return AuditResult(
        name="epsilon_lower_bound",
        family="epsilon",
        value=bound,
        direction="max",
        details={
            "claimed_epsilon": claimed_epsilon,
            "delta": delta,
            "confidence": data.confidence,
            "n_canaries": m,
            "n_guessed_canaries": m_guess,
            "n_included": int(included.sum()),
            "guesses": r,
            "correct": correct,
            "k_per_side": k,
            "reference_rows": len(reference),
            "synthetic_rows": len(out),
            "generator_seconds": fit_seconds,
            "leaky_features": [names[j] for j in top if weights[j] > 0],
            "score": "excess synthetic count of each canary's one- and two-way cells and minus the Gower "
            "distance to the nearest synthetic row, weighted by calibration canaries",
            "method": "Steinke, Nasr, Jagielski 2023, Theorem 5.2 / Appendix D",
        },
        seconds=time.perf_counter() - start,
    )


def _count_in(query: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """How many entries of ``pool`` equal each entry of ``query``."""
    if len(pool) == 0:
        return np.zeros(len(query))
    values, counts = np.unique(pool, return_counts=True)
    at = np.clip(np.searchsorted(values, query), 0, len(values) - 1)
    return np.where(values[at] == query, counts[at], 0).astype(float)


def _rank_with_random_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices from highest to lowest score, equal scores in random order."""
    jitter = rng.random(len(scores))
    return np.lexsort((jitter, -scores))
