"""Random generators: OS entropy by default, reproducible with a fixed seed, labelled for the manifest."""

from __future__ import annotations

import numpy as np
import pytest

import dpsynth.randomness as randomness
from dpsynth.errors import UsageError
from dpsynth.randomness import make_rng


def test_fixed_seed_is_reproducible_and_labelled() -> None:
    a, label = make_rng(42)
    b, _ = make_rng(np.int64(42))
    assert label == "fixed-seed"
    np.testing.assert_array_equal(a.random(8), b.random(8))
    np.testing.assert_array_equal(make_rng(42)[0].random(8), np.random.default_rng(42).random(8))
    assert not np.array_equal(make_rng(43)[0].random(8), make_rng(42)[0].random(8))


def test_seed_zero_is_a_fixed_seed_not_a_default() -> None:
    rng, label = make_rng(0)
    assert label == "fixed-seed"
    np.testing.assert_array_equal(rng.random(4), np.random.default_rng(0).random(4))


def test_no_seed_draws_from_os_entropy(monkeypatch: pytest.MonkeyPatch) -> None:
    first, label = make_rng(None)
    second, _ = make_rng(None)
    assert label == "os-entropy"
    assert not np.array_equal(first.random(4), second.random(4))

    calls = []

    def fake_randbits(k: int) -> int:
        calls.append(k)
        return 123456789

    monkeypatch.setattr(randomness.secrets, "randbits", fake_randbits)
    rng, _ = make_rng(None)
    assert calls == [128]  # seeded from the cryptographic source with 128 bits, not from time or a constant
    np.testing.assert_array_equal(rng.random(4), np.random.default_rng(123456789).random(4))


def test_caller_generator_is_used_as_is() -> None:
    generator = np.random.default_rng(7)
    rng, label = make_rng(generator)
    assert rng is generator and label == "caller-generator"


@pytest.mark.parametrize("bad", [-1, True, False, 1.5, "7", np.random.RandomState(0), [1]])
def test_invalid_random_state_is_refused(bad: object) -> None:
    with pytest.raises(UsageError, match="random_state") as info:
        make_rng(bad)  # type: ignore[arg-type]
    assert info.value.exit_code == 2
