"""Where random draws come from: three independent streams per fit.

* ``noise``: a :class:`~dpsynth.privacy.noise.NoiseSource`, the only source of
  privacy noise (noisy counts, noisy selections, DP-SGD's gradient noise).
* ``fit``: randomness a fit needs that is not privacy noise but is not
  published either (DP-SGD's Poisson sampling, weight initialisation, the GAN's
  fake rows, dropout).
* ``sample``: post-processing draws, the only stream that shapes what
  ``sample()`` writes (which rows, which value inside a bin).

``random_state`` chooses how they are seeded:

* ``None`` (default): every stream from OS entropy (``secrets``); the noise by
  OpenDP's CSPRNG-backed samplers.
* an integer: every stream derived from it (``numpy.random.SeedSequence(seed)``
  spawned three ways), so a run is reproducible -- and its noise is known to
  anyone who knows the seed. With ``secure_noise=True`` only the ``sample``
  stream comes from the seed: the noise and the fit stream stay fresh.
* a ``numpy.random.Generator``: used as the ``sample`` stream; noise and fit
  stream fresh from OS entropy.

Recovering the ``sample`` stream's state from published values (PCG64's
state is recoverable from its outputs) therefore tells nothing about the
noise, which never came from it (docs/noise.md).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from dpsynth.privacy.noise import NoiseSource

RandomState = int | np.random.Generator | None


@dataclass(frozen=True)
class Streams:
    """The three random streams of one fit; see the module docstring."""

    noise: NoiseSource
    fit: np.random.Generator
    sample: np.random.Generator


def make_streams(random_state: RandomState, secure_noise: bool | None = None) -> Streams:
    """The noise, fit and sample streams for ``random_state``.

    ``secure_noise`` defaults to ``random_state`` not being an integer; it can
    only be ``False`` with an integer seed (there is nothing to seed the noise
    from otherwise).
    """
    check_random_state(random_state)
    seeded = isinstance(random_state, (int, np.integer))
    if secure_noise is None:
        secure_noise = not seeded
    if not isinstance(secure_noise, bool):
        from dpsynth.errors import UsageError

        raise UsageError(f"secure_noise must be None, True or False, got {secure_noise!r}")
    if not secure_noise and not seeded:
        from dpsynth.errors import UsageError

        raise UsageError("secure_noise=False needs an integer random_state to seed the noise from")
    if seeded:
        noise_seed, fit_seed, sample_seed = np.random.SeedSequence(int(random_state)).spawn(3)
        sample = np.random.default_rng(sample_seed)
    else:
        noise_seed = fit_seed = None
        sample = random_state if isinstance(random_state, np.random.Generator) else _fresh()
    if secure_noise:
        return Streams(NoiseSource(None), _fresh(), sample)
    return Streams(NoiseSource(noise_seed), np.random.default_rng(fit_seed), sample)


def check_random_state(random_state: RandomState) -> None:
    """Refuse anything but None, a non-negative integer or a numpy Generator, naming the parameter."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) and random_state >= 0:
        return
    from dpsynth.errors import UsageError

    raise UsageError(f"random_state must be None, a non-negative integer or a numpy Generator, got {random_state!r}")


def _fresh() -> np.random.Generator:
    """A generator seeded with 128 bits of OS entropy."""
    return np.random.default_rng(secrets.randbits(128))


def make_rng(random_state: RandomState) -> tuple[np.random.Generator, str]:
    """One generator and its label (``os-entropy``, ``fixed-seed``, ``caller-generator``).

    For randomness that is neither privacy noise nor tied to a fit (e.g. the
    release's holdout split). Synthesizers use :func:`make_streams`.
    """
    check_random_state(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state, "caller-generator"
    if random_state is None:
        return _fresh(), "os-entropy"
    return np.random.default_rng(int(random_state)), "fixed-seed"
