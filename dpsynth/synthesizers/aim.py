"""AIM: an adaptive and iterative mechanism for workload-aware synthetic data.

McKenna, Mullins, Sheldon & Miklau (2022), "AIM: An Adaptive and Iterative
Mechanism for Differentially Private Synthetic Data", PVLDB 15(11).
Algorithm 1, with the quality score of Sec. 4.2, the model-size filter of
Sec. 4.4 and the budget annealing of Sec. 4.3, in zCDP:

    rho <- the zCDP budget whose RDP conversion is the target (epsilon, delta)
    sigma <- sqrt(T / (2 alpha rho)), eps <- sqrt(8 (1 - alpha) rho / T)    (T = 16 d, alpha = 0.9)
    measure every one-way marginal with sigma; p_hat <- fit
    while budget remains:
        if fewer than two rounds' worth remain: spend all of it this round, then stop
        candidates <- workload's downward closure whose model fits in
                      max_model_size * (budget used / budget)
        r <- exponential mechanism(eps) on  w_r (||M_r(D) - M_r(p_hat)||_1 - sqrt(2/pi) sigma n_r)
        measure M_r with sigma; p_hat <- fit (warm start)
        if p_hat's M_r moved less than the expected noise: sigma /= 2, eps *= 2

Every measurement is a ``DiscreteGaussianDpEvent(sigma)`` (exact integer
counts plus discrete Gaussian noise from the fit's
:class:`~dpsynth.privacy.noise.NoiseSource`, L2 sensitivity 1; its zCDP is
that of the continuous Gaussian, CKS 2020) and
every selection a ``ZCDpEvent(eps^2 / 8)`` (the exponential mechanism is
eps-bounded-range; Cesar & Rogers 2021). The reported cost is the
composition of exactly those events. The zCDP target ``rho`` is calibrated
against the RDP accountant, which gives a larger rho than the closed-form
conversion ``epsilon = rho + 2 sqrt(rho log(1/delta))`` the paper's code
uses, and RDP composes Gaussians and zCDP events exactly additively, so the
composed events never exceed the target.

Person-level privacy (``max_rows_per_unit`` K > 1, :mod:`dpsynth.privacy.unit`):
the schedule above is kept in units of sensitivity one, and every
measurement's noise is K times its sigma (a
``DiscreteGaussianVectorDpEvent(K sigma, K)``, the same zCDP) while every
selection's quality sensitivity is K times the largest weight.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence
from typing import ClassVar

import dp_accounting as dpa
import numpy as np
import pandas as pd

from dpsynth.encoding import TableEncoder
from dpsynth.errors import UsageError
from dpsynth.params import POSITIVE, Constraint, Interval, Satisfies
from dpsynth.privacy.accountant import calibrate, compose
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.events import DiscreteGaussianDpEvent, DiscreteGaussianVectorDpEvent
from dpsynth.privacy.noise import NoiseSource
from dpsynth.randomness import RandomState
from dpsynth.steps import current_steps
from dpsynth.synthesizers import _mbi_compat as compat
from dpsynth.synthesizers import marginals as mg
from dpsynth.synthesizers.base import Synthesizer

log = logging.getLogger(__name__)

ALPHA = 0.9  # share of each round's budget spent on measuring (the rest selects)
ROUNDS_PER_COLUMN = 16  # the paper's T = 16 d


def zcdp_budget(epsilon: float, delta: float) -> float:
    """Largest rho (up to calibration tolerance) whose rho-zCDP guarantee is (epsilon, delta)-DP by RDP."""
    x = calibrate(
        lambda x: dpa.ZCDpEvent(1.0 / (2 * x * x)),
        epsilon,
        delta,
        lower=1e-4,
        upper=1e7,
        rel_tol=1e-6,
        accountant="rdp",
    )
    return (1.0 / (2 * x * x)) * (1 - 1e-9)  # a hair below, so float rounding in the sums cannot overshoot


class AIM(Synthesizer):
    """Workload-adaptive marginal selection and measurement, then a graphical model (mbi).

    Parameters
    ----------
    epsilon, delta:
        Target (epsilon, delta)-DP guarantee of the whole fit (add/remove one record).
    random_state:
        Seed for noise, selection and sampling, or a generator for sampling only;
        ``None`` uses OS entropy (:func:`dpsynth.randomness.make_streams`).
    secure_noise:
        With an integer ``random_state``, ``True`` keeps the noise fresh (OS
        entropy) while sampling stays reproducible.
    workload:
        Marginals the synthetic data should preserve: a list of column tuples
        (default: every two-way marginal). Candidates are all their subsets.
    max_model_size:
        Cap (MB) on the graphical model's size; the cap grows with the budget
        spent, as in the paper.
    max_iters:
        Mirror-descent iterations per model fit.
    max_seconds:
        Wall-clock allowance for the adaptive rounds (default 150 s, so a fit
        on an Adult-sized table ends in a few minutes (benchmarks/README.md); ``None``
        runs the paper's schedule to the end, and only then is a seeded fit
        exactly reproducible). Each round
        (mostly one XLA compilation of the grown model) is assumed to take as
        long as the previous one; when the rounds that still fit cannot use
        the budget at the current pace, each gets a larger share, and the last
        round that fits spends whatever is left. The privacy cost is the same
        (the whole budget, accounted event by event); only the schedule
        changes.
    rounds:
        The paper's T, the number of rounds the initial budget split assumes
        (default 16 x number of columns). Annealing usually ends AIM earlier.
    max_rows_per_unit:
        K, the public bound on one person's rows (person-level privacy; 1:
        record-level). Noise and selection sensitivity scale with K.
    """

    name = "aim"
    fits_on_codes = True
    _parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        "workload": [
            None,
            Satisfies(
                lambda w: isinstance(w, (list, tuple)) and len(w) > 0,
                "a non-empty list of column tuples, e.g. [('age', 'sex')]",
            ),
        ],
        "max_model_size": [POSITIVE],
        "max_iters": [Interval(int, 1, None)],
        "max_seconds": [None, POSITIVE],
        "rounds": [None, Interval(int, 1, None)],
        "max_rows_per_unit": [Interval(int, 1, None)],
    }
    supports_person_units = True

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        random_state: RandomState = None,
        workload: Sequence[Sequence[str]] | None = None,
        max_model_size: float = 80.0,
        max_iters: int = 1000,
        max_seconds: float | None = 150.0,
        rounds: int | None = None,
        secure_noise: bool | None = None,
        max_rows_per_unit: int = 1,
    ) -> None:
        super().__init__(epsilon=epsilon, delta=delta, random_state=random_state, secure_noise=secure_noise)
        self.workload = workload
        self.max_model_size = max_model_size
        self.max_iters = max_iters
        self.max_seconds = max_seconds
        self.rounds = rounds
        self.max_rows_per_unit = max_rows_per_unit

    def _validate_parameters(self) -> None:
        """The declared constraints, then each workload entry (a constraint on every element)."""
        super()._validate_parameters()
        for entry in self.workload or ():
            if (
                isinstance(entry, str)
                or not isinstance(entry, (tuple, list))
                or len(entry) == 0
                or len(set(entry)) != len(entry)
                or not all(isinstance(c, str) for c in entry)
            ):
                raise UsageError(
                    f"AIM parameter 'workload': entry {entry!r} must be a non-empty tuple of distinct column names",
                    parameter="workload",
                )

    def _fit(self, data: mg.CountSource, rng: np.random.Generator) -> PrivacyCost:
        self.encoder_ = TableEncoder(self.schema_)
        codes, domain = mg.encode_table(self.encoder_, data)
        candidates = compile_workload(self._workload(domain), domain)
        answers = {c: a.astype(float) for c, a in zip(candidates, mg.counts_many(codes, domain, candidates))}
        d = len(domain)
        rho = zcdp_budget(self.epsilon, self.delta)
        rounds = self._rounds(d)
        sigma = math.sqrt(rounds / (2 * ALPHA * rho))
        epsilon = math.sqrt(8 * (1 - ALPHA) * rho / rounds)
        initial = (sigma, epsilon)
        k = self.max_rows_per_unit  # noise is k * sigma; the budget arithmetic below is in sensitivity-1 units

        steps = current_steps()
        with steps.step("aim_one_way", columns=d):
            measurements = mg.measure(codes, domain, [(a,) for a in domain], k * sigma, self._noise)
            events: list[dpa.DpEvent] = [_gaussian_event(sigma, k)] * d
            rho_used = d / (2 * sigma**2)
            start = time.monotonic()
            model = self._estimate(domain, measurements)
        round_seconds = time.monotonic() - start  # a fit is most of a round: the first round's estimate
        selected: list[dict] = []
        stop_reason = "budget"
        while rho_used < rho:
            with steps.step("aim_round", index=len(selected) + 1, rounds_planned=rounds) as this_round:
                round_start = time.monotonic()
                remaining = rho - rho_used
                if self.max_seconds is not None:
                    sigma, epsilon, out_of_time = _pace(
                        remaining, sigma, epsilon, self.max_seconds - (round_start - start), round_seconds
                    )
                    stop_reason = "time" if out_of_time else stop_reason
                last = remaining < 2 * (1 / (2 * sigma**2) + epsilon**2 / 8)
                if last:  # spend exactly what is left, in the same measure/select proportions
                    sigma = math.sqrt(1 / (2 * ALPHA * remaining))
                    epsilon = math.sqrt(8 * (1 - ALPHA) * remaining)
                rho_used = rho if last else rho_used + 1 / (2 * sigma**2) + epsilon**2 / 8

                current = mg.ModelMarginals(model)
                allowed = filter_candidates(candidates, model.cliques, domain, self.max_model_size * rho_used / rho)
                clique = worst_approximated(allowed, answers, current, epsilon, k * sigma, self._noise, k)
                events += [dpa.ZCDpEvent(epsilon**2 / 8), _gaussian_event(sigma, k)]
                measurements += mg.measure(codes, domain, [clique], k * sigma, self._noise)
                before = current.project(clique).ravel()
                model = self._estimate(domain, measurements, warm_start=model)
                after = mg.ModelMarginals(model).project(clique).ravel()
                selected.append({"clique": list(clique), "sigma": k * sigma, "epsilon_selection": epsilon})
                round_seconds = time.monotonic() - round_start
                log.info(
                    "AIM round %d: measured %s with sigma=%.3g (%.0f%% of rho, %.1f s)",
                    len(selected),
                    clique,
                    k * sigma,
                    100 * rho_used / rho,
                    time.monotonic() - start,
                )
                this_round.set(budget_used=round(rho_used / rho, 4))
                if last:
                    break
                if np.abs(after - before).sum() <= math.sqrt(2 / math.pi) * k * sigma * before.size:
                    sigma, epsilon = sigma / 2, epsilon * 2  # the model barely moved: measure more precisely

        self.model_ = model
        self.n_rows_estimate_ = max(1, round(float(model.total)))  # mbi's estimate from the noisy counts
        self.measurements_ = measurements  # DP outputs: safe to keep and inspect
        self.selected_ = [tuple(s["clique"]) for s in selected]
        return PrivacyCost.of(
            self.name,
            compose(events, regroup=True),
            self.delta,
            rho=rho,
            rounds_planned=rounds,
            rounds=len(selected),
            stopped=stop_reason,
            sigma_initial=k * initial[0],
            epsilon_selection_initial=initial[1],
            selected=selected,
            **({"max_rows_per_unit": k} if k > 1 else {}),
        )

    def _rounds(self, n_columns: int) -> int:
        """The paper's T, refused where the d one-way measurements alone would overspend.

        Every measurement costs ``alpha rho / T`` zCDP, so the first step (d
        one-way marginals) costs ``d alpha rho / T``; with ``T < d / alpha``
        it would take at least ``alpha^2 rho`` and leave too little for one
        adaptive round, and with ``T < d alpha`` more than the whole budget.
        """
        rounds = self.rounds or ROUNDS_PER_COLUMN * n_columns
        minimum = math.ceil(n_columns / ALPHA)
        if rounds < minimum:
            raise UsageError(
                f"rounds={rounds} is too small for {n_columns} columns: AIM measures every one-way marginal at "
                f"the per-round noise first, which with fewer than ceil(d / {ALPHA}) = {minimum} rounds would "
                f"use up (or exceed) the budget before any adaptive round. Use rounds >= {minimum}, or leave it "
                f"unset (default {ROUNDS_PER_COLUMN} x columns = {ROUNDS_PER_COLUMN * n_columns})."
            )
        return rounds

    def _planned_cost(self, n_rows: int, schema) -> PrivacyCost:
        """The whole zCDP budget: every round AIM runs is accounted inside it, so fit never exceeds it."""
        self._rounds(len(schema))
        rho = zcdp_budget(self.epsilon, self.delta)
        return PrivacyCost.of(self.name, dpa.ZCDpEvent(rho), self.delta, rho=rho)

    def _sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        return self.encoder_.decode(mg.sample_records(self.model_, n, rng), rng)

    def _workload(self, domain: mg.Domain) -> list[mg.Clique]:
        if self.workload is None:
            attributes = list(domain.attributes)
            return list(itertools.combinations(attributes, 2)) if len(attributes) > 1 else [tuple(attributes)]
        out = []
        for entry in self.workload:
            unknown = [c for c in entry if c not in domain.attributes]
            if unknown:
                raise UsageError(
                    f"workload entry {tuple(entry)!r} names column(s) {unknown} that are not in the "
                    f"schema; columns are {list(domain.attributes)}"
                )
            out.append(domain.canonical(entry))
        return out

    def _estimate(self, domain: mg.Domain, measurements: list[mg.LinearMeasurement], warm_start=None):
        combined = combine_repeats(measurements)
        return mg.estimate(
            domain, combined, iters=self.max_iters, total=mg.estimate_total(combined), warm_start=warm_start
        )


def _gaussian_event(sigma: float, max_rows_per_unit: int) -> dpa.DpEvent:
    """One measurement at sensitivity-one scale ``sigma``: noise ``K sigma`` on a vector of L2 sensitivity K."""
    if max_rows_per_unit == 1:
        return DiscreteGaussianDpEvent(sigma)
    return DiscreteGaussianVectorDpEvent(max_rows_per_unit * sigma, float(max_rows_per_unit))


def _pace(
    remaining: float, sigma: float, epsilon: float, seconds_left: float, round_seconds: float
) -> tuple[float, float, bool]:
    """Round parameters that spend ``remaining`` zCDP within the time left.

    If the rounds that fit in ``seconds_left`` (each assumed to last as long
    as the last one) cannot use up the budget at the current pace, each
    round's share grows so that they can; with at most one round left, the
    third value says to stop after it. The schedule depends only on elapsed
    time, which the earlier (DP) choices and the machine determine: adaptive
    composition covers it as it covers annealing, and every round's actual
    events are accounted.
    """
    rounds_left = int(seconds_left // max(round_seconds, 1e-3))
    if rounds_left <= 1:
        return math.sqrt(1 / (2 * ALPHA * remaining)), math.sqrt(8 * (1 - ALPHA) * remaining), True
    per_round = 1 / (2 * sigma**2) + epsilon**2 / 8
    if remaining > rounds_left * per_round:
        share = remaining / rounds_left
        return math.sqrt(1 / (2 * ALPHA * share)), math.sqrt(8 * (1 - ALPHA) * share), False
    return sigma, epsilon, False


def compile_workload(workload: Sequence[mg.Clique], domain: mg.Domain) -> dict[mg.Clique, float]:
    """Candidates (every non-empty subset of a workload marginal) and their weights (paper, Sec. 4.2).

    A candidate r weighs ``sum over workload marginals W of |r & W|``: how much
    of the workload measuring r informs.
    """
    closure = {
        domain.canonical(subset)
        for clique in workload
        for k in range(1, len(clique) + 1)
        for subset in itertools.combinations(clique, k)
    }
    return {r: float(sum(len(set(r) & set(w)) for w in workload)) for r in sorted(closure, key=lambda c: (len(c), c))}


def filter_candidates(
    candidates: dict[mg.Clique, float], model_cliques: Sequence[mg.Clique], domain: mg.Domain, size_limit: float
) -> dict[mg.Clique, float]:
    """Candidates whose addition keeps the model under ``size_limit`` MB, or that add nothing to it."""
    model_cliques = [tuple(c) for c in model_cliques]
    free = {
        domain.canonical(s) for c in model_cliques for k in range(1, len(c) + 1) for s in itertools.combinations(c, k)
    }
    return {
        r: w
        for r, w in candidates.items()
        if r in free or compat.hypothetical_model_size(domain, model_cliques + [r]) <= size_limit
    }


def worst_approximated(
    candidates: dict[mg.Clique, float],
    answers: dict[mg.Clique, np.ndarray],
    model: mg.ModelMarginals,
    epsilon: float,
    sigma: float,
    noise: NoiseSource,
    max_rows_per_unit: int = 1,
) -> mg.Clique:
    """The exponential mechanism's pick among ``candidates`` (paper, Sec. 4.2).

    Quality ``w_r (||M_r(D) - M_r(p_hat)||_1 - sqrt(2/pi) sigma n_r)``: the
    model's error on r minus the error measuring r would itself leave. Adding
    or removing a record moves ``M_r(D)`` by 1 in one cell, so the
    sensitivity is ``max_r w_r``; a person with up to K rows moves it by at
    most K in L1, so ``K max_r w_r``. ``sigma`` is the noise the measurement
    would get (K times the sensitivity-one sigma).
    """
    cliques = list(candidates)
    scores = np.array(
        [
            candidates[r]
            * (np.abs(answers[r] - model.project(r).ravel()).sum() - math.sqrt(2 / math.pi) * sigma * answers[r].size)
            for r in cliques
        ]
    )
    sensitivity = max_rows_per_unit * max(abs(candidates[r]) for r in cliques)
    return cliques[mg.exponential_mechanism(scores, epsilon, sensitivity, noise)]


def combine_repeats(measurements: list[mg.LinearMeasurement]) -> list[mg.LinearMeasurement]:
    """One measurement per clique: repeats merged by inverse-variance weighting.

    For the L2 loss mbi minimises this is the same objective up to a
    constant, with fewer terms (and fewer distinct programs to compile).
    """
    groups: dict[mg.Clique, list[mg.LinearMeasurement]] = {}
    for m in measurements:
        groups.setdefault(tuple(m.clique), []).append(m)
    out = []
    for clique, group in groups.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        precision = np.array([1.0 / m.stddev**2 for m in group])
        y = sum(p * np.asarray(m.noisy_measurement, dtype=float) for p, m in zip(precision, group)) / precision.sum()
        out.append(mg.LinearMeasurement(y, clique, stddev=float(1.0 / math.sqrt(precision.sum()))))
    return out
