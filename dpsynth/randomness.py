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

from dpsynth.params import Constraint, Interval, Satisfies, validate_params
from dpsynth.privacy.noise import NoiseSource

RandomState = int | np.random.Generator | None

#: What ``random_state`` accepts (:mod:`dpsynth.params`): None, a seed >= 0, or a Generator.
RANDOM_STATE_CONSTRAINTS: list[Constraint] = [
    None,
    Interval(int, 0, None),
    Satisfies(lambda v: isinstance(v, np.random.Generator), "a numpy Generator"),
]


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
    validate_params(
        {"random_state": random_state, "secure_noise": secure_noise},
        {"random_state": RANDOM_STATE_CONSTRAINTS, "secure_noise": [None, bool]},
    )
    seeded = isinstance(random_state, (int, np.integer))
    if secure_noise is None:
        secure_noise = not seeded
    if not secure_noise and not seeded:
        from dpsynth.errors import UsageError

        raise UsageError(
            "parameter 'secure_noise'=False needs an integer random_state to seed the noise from",
            parameter="secure_noise",
        )
    if seeded:
        noise_seed, fit_seed, sample_seed = np.random.SeedSequence(int(random_state)).spawn(3)
        sample = np.random.default_rng(sample_seed)
    else:
        noise_seed = fit_seed = None
        sample = random_state if isinstance(random_state, np.random.Generator) else _fresh()
    if secure_noise:
        return Streams(NoiseSource(None), _fresh(), sample)
    return Streams(NoiseSource(noise_seed), np.random.default_rng(fit_seed), sample)


def unit_stream(random_state: RandomState, secure_noise: bool | None = None) -> np.random.Generator:
    """The stream that picks which rows a person keeps under a contribution bound (:mod:`dpsynth.privacy.unit`).

    Independent of the three fit streams: with an integer seed it is the
    fourth child of ``SeedSequence(seed)`` (the others are the first three,
    unchanged), so a seeded person-level fit is reproducible and a
    record-level fit draws exactly what it always drew; otherwise (or with
    ``secure_noise=True``) fresh OS entropy, like the noise.
    """
    seeded = isinstance(random_state, (int, np.integer))
    if seeded and secure_noise is not True:
        return np.random.default_rng(np.random.SeedSequence(int(random_state)).spawn(4)[3])
    return _fresh()


def check_random_state(random_state: RandomState) -> None:
    """Refuse anything but None, a non-negative integer or a numpy Generator, naming the parameter."""
    validate_params({"random_state": random_state}, {"random_state": RANDOM_STATE_CONSTRAINTS})


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
