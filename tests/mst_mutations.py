"""Deliberately broken MST fits, for measuring the canary audit's power (issue 7, item 8).

Each mutation is a realistic implementation bug that leaves the claimed
privacy cost untouched (the accountant still reports the original epsilon)
while the fit spends far more than that:

- ``scaled``: every Gaussian sigma is multiplied by ``factor`` (0.01: the
  noise is a hundredth of what the accountant charged for) and the tree
  selection's exponential-mechanism epsilon divided by it;
- ``skip_two_way``: the selected two-way marginals are measured without any
  noise (``which="all"``) or only the first of them (``which="first"``), while
  each measurement still records the sigma the accountant charged for, as a
  forgotten ``+ noise`` would.

They patch ``dpsynth.synthesizers.marginals`` only while one fit runs, so the
calibration (which calls ``mst_parameters``, not ``measure``) is unchanged.
Test and benchmark code only: nothing in ``dpsynth`` or ``audits`` imports this.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from unittest import mock

import pandas as pd

from dpsynth.synthesizers import marginals as mg

FitSample = Callable[[pd.DataFrame, int, int], pd.DataFrame]


@contextlib.contextmanager
def scaled_noise(factor: float) -> Iterator[None]:
    """Every MST/AIM noise draw at ``factor`` times its calibrated scale."""
    measure, choose = mg.measure, mg.exponential_mechanism

    def scaled_measure(codes, domain, cliques, sigma, rng):
        return measure(codes, domain, cliques, sigma * factor, rng)

    def scaled_choice(scores, epsilon, sensitivity, rng):
        return choose(scores, epsilon / factor, sensitivity, rng)

    with (
        mock.patch.object(mg, "measure", scaled_measure),
        mock.patch.object(mg, "exponential_mechanism", scaled_choice),
    ):
        yield


@contextlib.contextmanager
def noiseless_two_way(which: str = "all") -> Iterator[None]:
    """Two-way marginals measured exactly (``"all"`` of them, only the ``"first"``, or ``"every"``
    measurement, one-way too), sigma still recorded."""
    if which not in ("all", "first", "every"):
        raise ValueError(f"which must be 'all', 'first' or 'every', got {which!r}")
    measure = mg.measure

    def leaky_measure(codes, domain, cliques, sigma, rng):
        out = measure(codes, domain, cliques, sigma, rng)
        for i, clique in enumerate(cliques):
            if which == "every" or (len(clique) == 2 and (which == "all" or i == 0)):
                exact = mg.marginal(codes, domain, clique)
                out[i] = mg.LinearMeasurement(exact, tuple(clique), stddev=float(sigma))
        return out

    with mock.patch.object(mg, "measure", leaky_measure):
        yield


def mutated(fit_sample: FitSample, mutation: Callable[[], contextlib.AbstractContextManager]) -> FitSample:
    """``fit_sample`` with ``mutation()`` active during each call."""

    def broken(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
        with mutation():
            return fit_sample(df, n_rows, seed)

    return broken


MUTATIONS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "honest": contextlib.nullcontext,
    "noise_x0.01": lambda: scaled_noise(0.01),
    "noise_x0.1": lambda: scaled_noise(0.1),
    "noise_x0.03": lambda: scaled_noise(0.03),
    "two_way_noiseless": lambda: noiseless_two_way("all"),
    "one_two_way_noiseless": lambda: noiseless_two_way("first"),
    "all_noiseless": lambda: noiseless_two_way("every"),
}
