"""The one place privacy noise is drawn.

Every noise draw a DP guarantee rests on goes through a :class:`NoiseSource`,
which owns its random state and never shares it with anything that is
published (see docs/noise.md):

* :meth:`NoiseSource.discrete_gaussian`: integer counts plus discrete Gaussian
  noise ``N_Z(0, sigma^2)`` (Canonne, Kamath & Steinke 2020, "The Discrete
  Gaussian for Differential Privacy", NeurIPS). MST's and AIM's marginals,
  DP-CTGAN's category counts and the DP-SGD generators' row count. Accounted
  as :class:`~dpsynth.privacy.events.DiscreteGaussianDpEvent`.
* :meth:`NoiseSource.noisy_max_gumbel`: the index of the largest
  ``score + Gumbel(scale)``, i.e. the exponential mechanism (MST's tree edges,
  AIM's marginal selection).
* :meth:`NoiseSource.torch_generator`: the generator Opacus draws DP-SGD's
  gradient noise from, used for nothing else.

Two kinds of source:

* **secure** (the default): counts and selections by OpenDP's samplers
  (``make_gaussian`` on integer vectors, which samples the discrete Gaussian
  exactly in arbitrary-precision arithmetic from OpenDP's CSPRNG, and
  ``make_noisy_max`` with a zCDP output measure, exact Gumbel noisy max on
  floats); the torch generator is seeded with 64 bits of OS entropy
  (``secrets``). Nothing can seed it, so nothing can reproduce it.
* **seeded** (``--seed`` / an integer ``random_state`` without
  ``secure_noise``): the same distributions drawn from a numpy generator of
  their own, reproducible and therefore not secure against anyone who knows
  the seed. The discrete Gaussian then comes from :func:`sample_discrete_gaussian`,
  CKS 2020 Algorithm 3 vectorised over a numpy generator.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: MST and AIM need no torch
    import torch

SECURE_LABEL = "os-entropy"
SEEDED_LABEL = "fixed-seed (reproducible; not secure)"
_OPENDP_BATCH = 1 << 16


class NoiseSource:
    """Draws privacy noise; ``seed=None`` means OS entropy and OpenDP's samplers.

    ``used`` records which kinds of noise were drawn, for the manifest's
    ``noise_source`` (:meth:`describe`); ``draws`` counts calls (tests use it
    to check that noise comes from here).
    """

    def __init__(self, seed: int | np.random.SeedSequence | None = None) -> None:
        self.secure = seed is None
        self._rng = None if self.secure else np.random.default_rng(seed)
        self.used: set[str] = set()
        self.draws = 0

    # -- counting queries ----------------------------------------------------------------
    def discrete_gaussian(self, counts: np.ndarray | Sequence[int], sigma: float) -> np.ndarray:
        """``counts + N_Z(0, sigma^2)`` element-wise, as int64; ``counts`` must be whole numbers.

        One record changes one cell by one in every count vector dpsynth
        measures, so each call is one ``DiscreteGaussianDpEvent(sigma)``.
        """
        values = _as_counts(counts)
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"discrete Gaussian sigma must be a positive finite number, got {sigma!r}")
        self.draws += 1
        if self.secure:
            self.used.add("OpenDP discrete Gaussian")
            return values + _opendp_discrete_gaussian(values.size, float(sigma)).reshape(values.shape)
        self.used.add("discrete Gaussian")
        return values + sample_discrete_gaussian(self._rng, float(sigma), values.shape)

    # -- selection -----------------------------------------------------------------------
    def noisy_max_gumbel(self, scores: np.ndarray | Sequence[float], scale: float) -> int:
        """``argmax_i (scores_i + Gumbel(scale))``: index ``i`` with probability ``∝ exp(scores_i / scale)``.

        With ``scale = 2 sensitivity / epsilon`` this is the exponential
        mechanism (McSherry & Talwar 2007) by the Gumbel-max trick.
        """
        scores = np.asarray(scores, dtype=float)
        if scores.ndim != 1 or scores.size == 0 or not np.all(np.isfinite(scores)):
            raise ValueError("noisy_max_gumbel needs a non-empty vector of finite scores")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"noisy_max_gumbel scale must be a positive finite number, got {scale!r}")
        self.draws += 1
        if scores.size == 1:
            return 0
        if self.secure:
            self.used.add("OpenDP Gumbel noisy max")
            return int(_opendp_noisy_max(float(scale))(scores.tolist()))
        self.used.add("Gumbel noisy max")
        return int(np.argmax(scores + scale * self._rng.gumbel(size=scores.size)))

    # -- DP-SGD --------------------------------------------------------------------------
    def torch_generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """A fresh torch generator on ``device`` for Opacus' gradient noise; never use it for anything else."""
        import torch

        self.draws += 1
        generator = torch.Generator(device=device)
        if self.secure:
            self.used.add("torch generator seeded from OS entropy")
            generator.manual_seed(secrets.randbits(63))
        else:
            self.used.add("torch generator")
            generator.manual_seed(int(self._rng.integers(0, 2**63 - 1)))
        return generator

    def describe(self) -> str:
        """The manifest's ``noise_source``: where the noise came from and which samplers drew it."""
        label = SECURE_LABEL if self.secure else SEEDED_LABEL
        return f"{label}: {', '.join(sorted(self.used))}" if self.used else label


def _as_counts(counts: np.ndarray | Sequence[int]) -> np.ndarray:
    values = np.asarray(counts)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if (
        values.dtype.kind == "f"
        and np.all(np.isfinite(values))
        and np.all(values == np.round(values))
        and np.all(np.abs(values) < 2**53)
    ):
        return values.astype(np.int64)
    raise ValueError("discrete_gaussian adds noise to exact integer counts; got non-integral values")


def _opendp_discrete_gaussian(size: int, sigma: float) -> np.ndarray:
    """``size`` independent draws of ``N_Z(0, sigma^2)`` from OpenDP (exact, CSPRNG), in batches."""
    measurement = _opendp_gaussian(sigma)
    out = np.empty(size, dtype=np.int64)
    for begin in range(0, size, _OPENDP_BATCH):
        stop = min(size, begin + _OPENDP_BATCH)
        out[begin:stop] = measurement([0] * (stop - begin))
    return out


_CACHE: dict[tuple[str, float], object] = {}


def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def _opendp_gaussian(sigma: float):
    key = ("gaussian", sigma)
    if key not in _CACHE:
        dp = _opendp()
        _CACHE[key] = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int), scale=sigma)
    return _CACHE[key]


def _opendp_noisy_max(scale: float):
    key = ("noisy-max", scale)
    if key not in _CACHE:
        dp = _opendp()
        _CACHE[key] = dp.m.make_noisy_max(
            dp.vector_domain(dp.atom_domain(T=float, nan=False)),
            dp.linf_distance(T=float),
            dp.zero_concentrated_divergence(),
            scale=scale,
        )
    return _CACHE[key]


def sample_discrete_gaussian(rng: np.random.Generator, sigma: float, shape: int | tuple[int, ...]) -> np.ndarray:
    """Draws of ``N_Z(0, sigma^2)`` (``P(x) ∝ exp(-x^2 / (2 sigma^2))`` on the integers) from ``rng``.

    Canonne, Kamath & Steinke 2020, Algorithm 3, vectorised: propose a
    discrete Laplace ``Y`` of scale ``t = floor(sigma) + 1`` (a difference of
    two geometric variables), accept with probability
    ``exp(-(|Y| - sigma^2 / t)^2 / (2 sigma^2))``, repeat for the rejected
    ones. The acceptance test uses floating point, which is acceptable here
    because this sampler only serves the seeded (reproducible, not secure)
    path; the secure path uses OpenDP's exact sampler.
    """
    n = int(np.prod(shape))
    out = np.empty(n, dtype=np.int64)
    pending = np.arange(n)
    t = math.floor(sigma) + 1
    p = -math.expm1(-1.0 / t)  # success probability of each geometric: 1 - exp(-1/t)
    while pending.size:
        m = pending.size
        y = (rng.geometric(p, size=m) - rng.geometric(p, size=m)).astype(np.int64)
        accept = rng.random(m) < np.exp(-((np.abs(y) - sigma * sigma / t) ** 2) / (2 * sigma * sigma))
        out[pending[accept]] = y[accept]
        pending = pending[~accept]
    return out.reshape(shape)


def discrete_gaussian_variance(sigma: float) -> float:
    """The exact variance of ``N_Z(0, sigma^2)`` (slightly below ``sigma^2``), by summing its mass."""
    half = int(math.ceil(40 * sigma)) + 1
    x = np.arange(-half, half + 1, dtype=float)
    w = np.exp(-x * x / (2 * sigma * sigma))
    return float((x * x * w).sum() / w.sum())


__all__ = ["NoiseSource", "SECURE_LABEL", "SEEDED_LABEL", "discrete_gaussian_variance", "sample_discrete_gaussian"]
