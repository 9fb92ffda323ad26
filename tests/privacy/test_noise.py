"""The noise source: the discrete Gaussian's law (seeded and OpenDP), the noisy max, the torch generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dpsynth.privacy import noise as noise_module
from dpsynth.privacy.noise import (
    SEEDED_LABEL,
    NoiseSource,
    discrete_gaussian_variance,
    sample_discrete_gaussian,
)


def discrete_gaussian_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    half = int(math.ceil(40 * sigma)) + 1
    x = np.arange(-half, half + 1, dtype=float)
    norm = np.exp(-x * x / (2 * sigma * sigma)).sum()
    return np.exp(-(support.astype(float) ** 2) / (2 * sigma * sigma)) / norm


def test_exact_variance_is_just_below_sigma_squared() -> None:
    assert discrete_gaussian_variance(0.5) < 0.25 * 0.9  # small sigma: clearly below
    assert discrete_gaussian_variance(3.0) == pytest.approx(9.0, rel=1e-9)  # large sigma: indistinguishable
    assert discrete_gaussian_variance(3.0) <= 9.0 * (1 + 1e-12)


@pytest.mark.parametrize("sigma", [0.7, 2.5, 40.0])
def test_seeded_sampler_has_the_discrete_gaussian_variance(sigma: float) -> None:
    draws = sample_discrete_gaussian(np.random.default_rng(1), sigma, 200_000)
    assert draws.dtype == np.int64
    variance = discrete_gaussian_variance(sigma)
    # the sample variance's standard error is about variance * sqrt(2 / n): 0.3% here; allow 5 of them
    assert draws.var() == pytest.approx(variance, rel=5 * math.sqrt(2 / 200_000) * 1.2)
    assert abs(draws.mean()) < 5 * math.sqrt(variance / 200_000)


def test_seeded_sampler_matches_the_probability_mass_function() -> None:
    sigma = 1.5
    draws = sample_discrete_gaussian(np.random.default_rng(2), sigma, 100_000)
    support = np.arange(-6, 7)
    expected = discrete_gaussian_pmf(sigma, support) * draws.size
    observed = np.array([(draws == k).sum() for k in support])
    tail = draws.size - observed.sum()  # |x| > 6: ~1e-4 of the mass
    observed = np.append(observed, tail)
    expected = np.append(expected, draws.size - expected.sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_opendp_path_has_the_same_law() -> None:
    noise = NoiseSource()
    assert noise.secure
    draws = noise.discrete_gaussian(np.zeros(30_000, dtype=np.int64), 2.5)
    assert draws.dtype == np.int64
    assert draws.var() == pytest.approx(discrete_gaussian_variance(2.5), rel=0.05)  # 6 standard errors
    assert "OpenDP discrete Gaussian" in noise.describe() and noise.describe().startswith("os-entropy")


def test_counts_are_noised_element_wise_and_must_be_whole() -> None:
    noise = NoiseSource(0)
    counts = np.array([5, 0, 100_000_000_000])
    noisy = noise.discrete_gaussian(counts, 1e-3)  # negligible noise: the counts come back
    np.testing.assert_array_equal(noisy, counts)
    with pytest.raises(ValueError, match="integer counts"):
        noise.discrete_gaussian(np.array([1.5, 2.0]), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        noise.discrete_gaussian([1], 0.0)


def test_secure_source_cannot_be_reproduced_and_seeded_source_can() -> None:
    assert not np.array_equal(
        NoiseSource().discrete_gaussian(np.zeros(50, int), 10.0),
        NoiseSource().discrete_gaussian(np.zeros(50, int), 10.0),
    )
    np.testing.assert_array_equal(
        NoiseSource(5).discrete_gaussian(np.zeros(50, int), 10.0),
        NoiseSource(5).discrete_gaussian(np.zeros(50, int), 10.0),
    )
    assert NoiseSource(5).describe() == SEEDED_LABEL


def test_secure_source_draws_nothing_from_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secure path is OpenDP's CSPRNG: no numpy generator is ever made or used for the noise."""

    def refuse(*args, **kwargs):
        raise AssertionError("a numpy generator was used for secure noise")

    monkeypatch.setattr(noise_module, "sample_discrete_gaussian", refuse)
    monkeypatch.setattr(noise_module.np.random, "default_rng", refuse)
    noise = NoiseSource()
    noise.discrete_gaussian([3, 4], 2.0)
    noise.noisy_max_gumbel([0.0, 1.0, 2.0], 1.0)
    assert noise._rng is None


@pytest.mark.parametrize("seed", [3, None])
def test_noisy_max_picks_proportionally_to_exp_score_over_scale(seed: int | None) -> None:
    noise = NoiseSource(seed)
    scores, scale = np.array([0.0, 1.0, 2.0]), 2.0
    picks = np.bincount([noise.noisy_max_gumbel(scores, scale) for _ in range(4000)], minlength=3) / 4000
    expected = np.exp(scores / scale) / np.exp(scores / scale).sum()
    np.testing.assert_allclose(picks, expected, atol=0.03)
    with pytest.raises(ValueError, match="finite scores"):
        noise.noisy_max_gumbel([0.0, np.nan], 1.0)


def test_torch_generators_are_fresh_unless_seeded() -> None:
    import torch

    a, b = NoiseSource().torch_generator(), NoiseSource().torch_generator()
    assert a.initial_seed() != b.initial_seed()
    s, t = NoiseSource(9).torch_generator(), NoiseSource(9).torch_generator()
    assert s.initial_seed() == t.initial_seed()
    assert isinstance(a, torch.Generator)


def test_vector_count_privacy_loss_is_the_one_dimensional_one() -> None:
    """docs/noise.md: when one record moves one cell of a count vector by one, the other cells' noise cancels
    out of the privacy loss, so the vector's (epsilon, delta) profile is the 1-D discrete Gaussian's (which the
    PLD accountant computes exactly; tests/privacy/test_events.py)."""
    sigma, half = 1.3, 12
    support = np.arange(-half, half + 1)
    p = discrete_gaussian_pmf(sigma, support)
    joint = np.outer(p, p)  # noise on two cells; x = (0, 0)
    shifted = np.outer(np.append(p[1:], 0.0), p)  # x' = (1, 0): cell 0 moved by one (truncated at the edge)
    inside = (joint > 0) & (shifted > 0)
    for epsilon in (0.2, 1.0, 2.0):
        vector_delta = np.maximum(joint[inside] - np.exp(epsilon) * shifted[inside], 0).sum()
        one_d = p[1:] > 0
        scalar_delta = np.maximum(p[:-1][one_d] - np.exp(epsilon) * p[1:][one_d], 0).sum() * p.sum()
        assert vector_delta == pytest.approx(scalar_delta, rel=1e-9, abs=1e-15)
