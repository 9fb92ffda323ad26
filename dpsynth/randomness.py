"""Where random draws come from.

Every draw goes through one ``numpy.random.Generator``. With no seed it is
seeded from the operating system's entropy pool (``secrets``), so privacy
noise is not predictable from a default seed; with a user-fixed seed runs are
reproducible, and the manifest records which of the two was used.
"""

from __future__ import annotations

import secrets

import numpy as np

RandomState = int | np.random.Generator | None


def make_rng(random_state: RandomState) -> tuple[np.random.Generator, str]:
    """Return a generator and a label for the manifest: ``os-entropy`` or ``fixed-seed``."""
    if isinstance(random_state, np.random.Generator):
        return random_state, "caller-generator"
    if random_state is None:
        return np.random.default_rng(secrets.randbits(128)), "os-entropy"
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) and random_state >= 0:
        return np.random.default_rng(int(random_state)), "fixed-seed"
    from dpsynth.errors import UsageError

    raise UsageError(f"random_state must be None, a non-negative integer or a numpy Generator, got {random_state!r}")
