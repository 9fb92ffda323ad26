"""Privacy noise never comes from, and never shares state with, the stream that draws the published rows.

Issue 7, item 2: ``sample()`` used to reuse the PCG64 generator that drew the
noise, and PCG64's state is recoverable from published values. Each test here
fails on that design: the generator passed as ``random_state`` (the sample
stream) must be untouched by ``fit``, every noise call must come from the
model's own :class:`~dpsynth.privacy.noise.NoiseSource`, and a fixed sampling
seed must not fix the noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from dpsynth.privacy.noise import NoiseSource
from dpsynth.synthesizers import make_synthesizer
from tests.conftest import make_mixed_frame, make_mixed_schema

PARAMS = {
    "mst": {"iters": 100},
    "aim": {"max_iters": 100, "rounds": 8, "max_seconds": 5.0},
    "dpctgan": {"epochs": 1, "batch_size": 50, "progress": False, "noise_multiplier": 2.0},
    "dpvae": {"epochs": 1, "batch_size": 50, "progress": False, "noise_multiplier": 2.0},
}
GENERATORS = list(PARAMS)
COLUMNS = ["age", "score", "sex", "income"]  # small: the tests are about streams, not about utility


def table():
    return make_mixed_frame(300)[COLUMNS], make_mixed_schema().subset(COLUMNS)


def build(name: str, **extra):
    return make_synthesizer(name, epsilon=1.0, delta=1e-6, **PARAMS[name], **extra)


@pytest.fixture()
def noise_calls(monkeypatch: pytest.MonkeyPatch):
    """Record every NoiseSource call with its arguments and the generator behind it."""
    calls: list[tuple[str, NoiseSource, tuple, dict]] = []
    for method in ("discrete_gaussian", "noisy_max_gumbel", "torch_generator"):
        original = getattr(NoiseSource, method)

        def spy(self, *args, _original=original, _method=method, **kwargs):
            calls.append((_method, self, args, kwargs))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(NoiseSource, method, spy)
    return calls


@pytest.mark.parametrize("name", GENERATORS)
def test_the_sample_stream_is_never_used_for_noise(name: str, noise_calls) -> None:
    published = np.random.default_rng(123)  # the stream synthetic.csv would be drawn with
    before = published.bit_generator.state
    model = build(name, random_state=published).fit(*table())

    assert published.bit_generator.state == before, "fit drew from the stream that writes the synthetic rows"
    assert noise_calls, "the fit drew no noise through the NoiseSource"
    kinds = {call[0] for call in noise_calls}
    assert "discrete_gaussian" in kinds  # noisy marginals, or the noisy row count
    assert ("noisy_max_gumbel" in kinds) == (name in ("mst", "aim"))
    assert ("torch_generator" in kinds) == (name in ("dpctgan", "dpvae"))
    for _, source, args, kwargs in noise_calls:
        assert source is model._noise and source.secure and source._rng is None
        assert all(value is not published for value in (*args, *kwargs.values()))
    fit_calls = len(noise_calls)

    synthetic = model.sample(40)
    assert published.bit_generator.state != before  # sampling is what the stream is for
    assert len(noise_calls) == fit_calls  # and sampling draws no privacy noise
    assert len(synthetic) == 40


@pytest.mark.parametrize("name", ["mst", "aim", "dpvae"])  # DP-CTGAN shares DP-VAE's DP-SGD set-up
def test_fixed_sampling_seed_with_fresh_noise_draws_different_noise(name: str, monkeypatch) -> None:
    seeds: list[int] = []
    original = NoiseSource.torch_generator

    def record(self, *args, **kwargs):
        generator = original(self, *args, **kwargs)
        seeds.append(generator.initial_seed())
        return generator

    monkeypatch.setattr(NoiseSource, "torch_generator", record)
    frame, schema = table()
    a = build(name, random_state=5, secure_noise=True).fit(frame, schema)
    seeds_a, seeds[:] = list(seeds), []
    b = build(name, random_state=5, secure_noise=True).fit(frame, schema)
    assert a._rng.bit_generator.state == b._rng.bit_generator.state  # the same post-processing stream
    assert a.noise_source_.startswith("os-entropy") and b.noise_source_.startswith("os-entropy")
    if name in ("mst", "aim"):
        first = np.concatenate([m.noisy_measurement for m in a.measurements_[:3]])
        second = np.concatenate([m.noisy_measurement for m in b.measurements_[:3]])
        assert not np.array_equal(first, second)
    else:
        assert seeds_a and seeds and seeds_a != seeds  # Opacus' noise generator differs


@pytest.mark.parametrize("name", ["mst"])  # DP-CTGAN: test_dpctgan.py::test_fixed_seed_gives_the_same_model_and_rows
def test_fixed_seed_alone_still_reproduces_the_whole_run(name: str) -> None:
    frame, schema = table()
    a = build(name, random_state=5).fit(frame, schema)
    b = build(name, random_state=5).fit(frame, schema)
    assert a.noise_source_.startswith("fixed-seed")
    assert a.n_rows_estimate_ == b.n_rows_estimate_
    assert a.sample(60).equals(b.sample(60))
