"""MST: maximum-spanning-tree synthetic data.

McKenna, Sheldon & Miklau (2021), "Winning the NIST Contest: A scalable and
general approach to differentially private synthetic data", Journal of
Privacy and Confidentiality 11(3). Algorithm 1 (MST), with the domain
compression of Sec. 4.

The budget is split in zCDP terms into three equal parts, rho/3 each:

1. measure every one-way marginal (discrete Gaussian, ``sigma1 = s sqrt(d)``, d of them);
2. choose d-1 pairs forming a maximum spanning tree, Kruskal-style, each by
   the exponential mechanism with quality ``||M_ab(D) - M_ab(p_hat)||_1``
   (sensitivity 1; ``epsilon_sel = 2 / (s sqrt(d-1))`` each, hence
   ``epsilon_sel^2 / 8`` zCDP);
3. measure the selected two-way marginals (``sigma2 = s sqrt(d-1)``).

Counts are exact integers noised by the discrete Gaussian and selections are
Gumbel noisy maxes, both from the fit's :class:`~dpsynth.privacy.noise.NoiseSource`
(OpenDP's exact samplers unless seeded; docs/noise.md).

The common scale ``s`` is calibrated so that the whole fit, as one DpEvent,
meets the target (epsilon, delta) by the RDP accountant (Balle et al. 2020's
conversion), which is tighter than the closed-form zCDP conversion the paper's
code uses. Fitting the graphical model and sampling are post-processing.
"""

from __future__ import annotations

import itertools
import math
from typing import ClassVar

import dp_accounting as dpa
import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import DisjointSet

from dpsynth.encoding import TableEncoder
from dpsynth.params import Constraint, Interval
from dpsynth.privacy.accountant import calibrate
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.events import DiscreteGaussianDpEvent, DiscreteGaussianVectorDpEvent
from dpsynth.privacy.noise import NoiseSource
from dpsynth.randomness import RandomState
from dpsynth.steps import current_steps
from dpsynth.synthesizers import marginals as mg
from dpsynth.synthesizers.base import Synthesizer


def mst_event(scale: float, n_columns: int, max_rows_per_unit: int = 1) -> dpa.DpEvent:
    """The whole MST fit as one DpEvent, for noise scale ``scale`` (each third costs 1/(2 scale^2) zCDP).

    With ``max_rows_per_unit`` K > 1 (a person with up to K rows,
    :mod:`dpsynth.privacy.unit`) every measurement is a
    :class:`DiscreteGaussianVectorDpEvent` of L2 sensitivity K at K times the
    row-level sigma, and every selection an exponential mechanism of quality
    sensitivity K at the same epsilon: the same zCDP per part, so the same
    ``scale`` meets the same target.
    """
    k = max_rows_per_unit
    sigma1, sigma2, epsilon_selection = mst_parameters(scale, n_columns, k)

    def gaussian(sigma: float) -> dpa.DpEvent:
        return DiscreteGaussianDpEvent(sigma) if k == 1 else DiscreteGaussianVectorDpEvent(sigma, float(k))

    one_way = dpa.SelfComposedDpEvent(gaussian(sigma1), n_columns)
    if n_columns == 1:
        return one_way
    return dpa.ComposedDpEvent(
        [
            one_way,
            # exponential mechanism, bounded range (Cesar & Rogers 2021); quality sensitivity K
            dpa.SelfComposedDpEvent(dpa.ZCDpEvent(epsilon_selection**2 / 8), n_columns - 1),
            dpa.SelfComposedDpEvent(gaussian(sigma2), n_columns - 1),
        ]
    )


def mst_parameters(scale: float, n_columns: int, max_rows_per_unit: int = 1) -> tuple[float, float, float]:
    """``(sigma_one_way, sigma_two_way, epsilon_selection)`` for noise scale ``scale``.

    With d columns, each part totals ``1 / (2 scale^2)`` zCDP: d one-way
    Gaussians at ``K scale sqrt(d)``, d-1 selections at ``2 / (scale sqrt(d-1))``
    (quality sensitivity K), d-1 two-way Gaussians at ``K scale sqrt(d-1)``,
    K the rows one unit may contribute (1 for record-level privacy). With one
    column the whole budget measures its one-way marginal at ``K scale``.
    """
    d, k = n_columns, max_rows_per_unit
    if d == 1:
        return k * scale, math.inf, 0.0
    return k * scale * math.sqrt(d), k * scale * math.sqrt(d - 1), 2.0 / (scale * math.sqrt(d - 1))


class MST(Synthesizer):
    """Differentially private synthetic data from a maximum spanning tree of two-way marginals.

    Parameters
    ----------
    epsilon, delta:
        Target (epsilon, delta)-DP guarantee of the whole fit (add/remove one record).
    random_state:
        Seed for noise and sampling, or a generator for sampling only; ``None``
        draws everything from OS entropy (:func:`dpsynth.randomness.make_streams`).
    secure_noise:
        With an integer ``random_state``, ``True`` keeps the noise fresh (OS
        entropy) while sampling stays reproducible.
    iters:
        Mirror-descent iterations for the final graphical model (mbi).
    compress:
        Merge values whose noisy one-way count is below 3 sigma (paper, Sec. 4);
        free, because it only reads noisy counts.
    max_rows_per_unit:
        K, the public bound on the rows one person contributes (person-level
        privacy, :mod:`dpsynth.privacy.unit`; 1: record-level). Every count
        and selection is calibrated to sensitivity K; an encoded table that
        carries person codes is trimmed to K rows a person before counting.
    """

    name = "mst"
    fits_on_codes = True
    _parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "iters": [Interval(int, 1, None)],
        "compress": [bool],
        "max_rows_per_unit": [Interval(int, 1, None)],
    }
    supports_person_units = True

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        random_state: RandomState = None,
        iters: int = 2000,
        compress: bool = True,
        secure_noise: bool | None = None,
        max_rows_per_unit: int = 1,
    ) -> None:
        super().__init__(epsilon=epsilon, delta=delta, random_state=random_state, secure_noise=secure_noise)
        self.iters = iters
        self.compress = compress
        self.max_rows_per_unit = max_rows_per_unit

    def _fit(self, data: mg.CountSource, rng: np.random.Generator) -> PrivacyCost:
        self.encoder_ = TableEncoder(self.schema_)
        codes, domain = mg.encode_table(self.encoder_, data)
        d, k = len(domain), self.max_rows_per_unit
        scale = calibrate(lambda s: mst_event(s, d, k), self.epsilon, self.delta, lower=1e-3, upper=1e7)
        sigma1, sigma2, epsilon_selection = mst_parameters(scale, d, k)

        steps = current_steps()
        with steps.step("mst_one_way", columns=d):
            raw_one_way = mg.measure(codes, domain, [(a,) for a in domain], sigma1, self._noise)
            compression = (
                mg.DomainCompression.from_one_way(domain, raw_one_way)
                if self.compress
                else mg.DomainCompression(domain)
            )
            codes, domain = compression.compress_codes(codes), compression.domain
            one_way = [compression.compress_measurement(m) for m in raw_one_way]
        with steps.step("mst_select_tree", columns=d):
            total = mg.estimate_total(raw_one_way)
            edges = select_tree(codes, domain, one_way, total, epsilon_selection, self._noise, sensitivity=k)
        with steps.step("mst_two_way", columns=d):
            two_way = mg.measure(codes, domain, edges, sigma2, self._noise)

        self.compression_ = compression
        self.measurements_ = raw_one_way + two_way  # DP outputs: safe to keep and inspect
        with steps.step("mst_estimate", iters=self.iters):
            self.model_ = mg.estimate(
                domain, one_way + two_way, iters=self.iters, total=mg.estimate_total(raw_one_way + two_way)
            )
        self.selected_edges_ = edges
        self.n_rows_estimate_ = max(1, round(float(self.model_.total)))  # from noisy counts only
        rho = (1.0 if d == 1 else 3.0) / (2 * scale**2)
        return PrivacyCost.of(
            self.name,
            mst_event(scale, d, k),
            self.delta,
            rho=rho,
            **({"max_rows_per_unit": k} if k > 1 else {}),
            noise_scale=scale,
            sigma_one_way=sigma1,
            sigma_two_way=sigma2 if d > 1 else None,
            epsilon_selection=epsilon_selection if d > 1 else None,
            selected_edges=[list(e) for e in edges],
            compressed_domain=dict(domain.config),
        )

    def _planned_cost(self, n_rows: int, schema) -> PrivacyCost:
        """MST's cost depends only on the number of columns and the target: exactly what ``fit`` spends."""
        d, k = len(schema), self.max_rows_per_unit
        scale = calibrate(lambda s: mst_event(s, d, k), self.epsilon, self.delta, lower=1e-3, upper=1e7)
        return PrivacyCost.of(self.name, mst_event(scale, d, k), self.delta, noise_scale=scale)

    def _sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        codes = mg.sample_records(self.model_, n, rng)
        return self.encoder_.decode(self.compression_.decompress_codes(codes, rng), rng)


def select_tree(
    codes: mg.CountData,
    domain: mg.Domain,
    one_way: list[mg.LinearMeasurement],
    total: float,
    epsilon: float,
    noise: NoiseSource,
    sensitivity: float = 1.0,
) -> list[mg.Clique]:
    """Kruskal's algorithm with noisy choices: d-1 pairs that join the columns into a tree.

    The current model is the one fitted to the noisy one-way marginals alone:
    a product distribution, whose two-way marginal for (a, b) is the outer
    product of a's and b's (each noisy one-way vector projected onto the
    simplex of the estimated total). Each step picks, among pairs that join
    two components, the one that model gets most wrong, by the exponential
    mechanism (quality sensitivity 1 per record; ``sensitivity`` K when a
    person may contribute K rows, each moving the L1 error by at most one).
    """
    fitted = {m.clique[0]: mg.project_to_simplex(_one_way_answer(m), total) for m in one_way}
    attributes = list(domain.attributes)
    pairs = list(itertools.combinations(attributes, 2))
    errors = {}
    for (a, b), exact in zip(pairs, mg.counts_many(codes, domain, pairs)):  # one pass over the data for all pairs
        estimate = np.outer(fitted[a], fitted[b]).ravel() / max(total, 1.0)
        errors[a, b] = float(np.abs(exact.astype(float) - estimate).sum())
    components = DisjointSet(attributes)
    tree: list[mg.Clique] = []
    for _ in range(len(attributes) - 1):
        candidates = [e for e in errors if not components.connected(*e)]
        chosen = candidates[
            mg.exponential_mechanism(np.array([errors[e] for e in candidates]), epsilon, sensitivity, noise)
        ]
        components.merge(*chosen)
        tree.append(chosen)
    return tree


def _one_way_answer(m: mg.LinearMeasurement) -> np.ndarray:
    """Unbiased noisy counts per (possibly merged) cell of a one-way measurement."""
    y = np.asarray(m.noisy_measurement, dtype=float)
    weights = getattr(m.query, "weights", None)
    return y if weights is None else y / np.asarray(weights, dtype=float)
