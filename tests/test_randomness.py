"""Random streams: noise, fit and sample kept apart; OS entropy by default, reproducible with a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest

import dpsynth.randomness as randomness
from dpsynth.errors import UsageError
from dpsynth.randomness import make_rng, make_streams


def zeros(k: int = 16) -> np.ndarray:
    return np.zeros(k, dtype=np.int64)


def test_fixed_seed_reproduces_every_stream_and_is_labelled_not_secure() -> None:
    a, b = make_streams(42), make_streams(np.int64(42))
    assert not a.noise.secure and a.noise.describe().startswith("fixed-seed")
    np.testing.assert_array_equal(a.noise.discrete_gaussian(zeros(), 5.0), b.noise.discrete_gaussian(zeros(), 5.0))
    np.testing.assert_array_equal(a.fit.random(8), b.fit.random(8))
    np.testing.assert_array_equal(a.sample.random(8), b.sample.random(8))
    assert not np.array_equal(make_streams(43).sample.random(8), make_streams(42).sample.random(8))


def test_the_three_streams_are_distinct_generators() -> None:
    streams = make_streams(7)
    generators = [streams.noise._rng, streams.fit, streams.sample]
    assert len({id(g) for g in generators}) == 3
    first = [g.random(4) for g in generators]
    assert not np.array_equal(first[0], first[2]) and not np.array_equal(first[1], first[2])


def test_secure_noise_with_a_seed_fixes_sampling_only() -> None:
    """The caller can reproduce the rows drawn from a model while every fit's noise stays fresh."""
    a, b = make_streams(42, secure_noise=True), make_streams(42, secure_noise=True)
    assert a.noise.secure and b.noise.secure
    np.testing.assert_array_equal(a.sample.random(8), b.sample.random(8))
    assert not np.array_equal(a.noise.discrete_gaussian(zeros(), 50.0), b.noise.discrete_gaussian(zeros(), 50.0))
    assert not np.array_equal(a.fit.random(8), b.fit.random(8))  # Poisson sampling must stay secret too


def test_no_seed_draws_every_stream_from_os_entropy(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = make_streams(None), make_streams(None)
    assert first.noise.secure and first.noise.describe().startswith("os-entropy")
    assert not np.array_equal(first.sample.random(4), second.sample.random(4))

    calls = []

    def fake_randbits(k: int) -> int:
        calls.append(k)
        return 123456789

    monkeypatch.setattr(randomness.secrets, "randbits", fake_randbits)
    streams = make_streams(None)
    assert calls == [128, 128]  # fit and sample, each with 128 bits of the cryptographic source
    np.testing.assert_array_equal(streams.sample.random(4), np.random.default_rng(123456789).random(4))
    assert streams.noise.secure  # the noise is OpenDP's, which nothing seeds


def test_caller_generator_is_the_sample_stream_only() -> None:
    generator = np.random.default_rng(7)
    streams = make_streams(generator)
    assert streams.sample is generator and streams.fit is not generator
    assert streams.noise.secure and streams.noise._rng is None


def test_secure_noise_false_needs_a_seed() -> None:
    with pytest.raises(UsageError, match="secure_noise"):
        make_streams(None, secure_noise=False)
    with pytest.raises(UsageError, match="secure_noise"):
        make_streams(1, secure_noise="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, True, False, 1.5, "7", np.random.RandomState(0), [1]])
def test_invalid_random_state_is_refused(bad: object) -> None:
    for make in (make_rng, make_streams):
        with pytest.raises(UsageError, match="random_state") as info:
            make(bad)  # type: ignore[arg-type]
        assert info.value.exit_code == 2


def test_make_rng_still_serves_non_noise_draws() -> None:
    rng, label = make_rng(0)
    assert label == "fixed-seed"
    np.testing.assert_array_equal(rng.random(4), np.random.default_rng(0).random(4))
    assert make_rng(None)[1] == "os-entropy"
    generator = np.random.default_rng(1)
    assert make_rng(generator) == (generator, "caller-generator")


@pytest.mark.parametrize(
    "params, words",
    [
        ({"secure_noise": "yes"}, "secure_noise"),
        ({"secure_noise": 1}, "secure_noise"),
        ({"secure_noise": False}, "integer random_state"),
        ({"random_state": -3}, "random_state"),
    ],
)
def test_synthesizers_refuse_bad_stream_parameters_before_the_data(params: dict, words: str) -> None:
    from dpsynth.synthesizers.mst import MST
    from tests.conftest import make_mixed_schema

    with pytest.raises(UsageError, match=words) as info:
        MST(**params).planned_cost(1000, make_mixed_schema())  # what the ledger reserves: refused up front
    assert info.value.exit_code == 2
