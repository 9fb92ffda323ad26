"""DP generators, all following :class:`~dpsynth.synthesizers.base.Synthesizer`."""

from __future__ import annotations

from dpsynth.synthesizers.base import Synthesizer

GENERATORS = ("mst", "aim", "dpctgan", "dpvae")


def generator_class(name: str) -> type[Synthesizer]:
    """The class behind a generator's CLI name (``mst``, ``aim``, ``dpctgan``, ``dpvae``)."""
    from dpsynth.errors import UsageError

    if name == "mst":
        from dpsynth.synthesizers.mst import MST

        return MST
    if name == "aim":
        from dpsynth.synthesizers.aim import AIM

        return AIM
    if name == "dpctgan":
        from dpsynth.synthesizers.dpctgan import DPCTGAN

        return DPCTGAN
    if name == "dpvae":
        from dpsynth.synthesizers.dpvae import DPVAE

        return DPVAE
    raise UsageError(f"unknown generator {name!r}; choose one of {', '.join(GENERATORS)}")


def make_synthesizer(name: str, **params) -> Synthesizer:
    """Build a generator by its CLI name; an unknown parameter is refused with the valid ones listed."""
    import inspect

    from dpsynth.errors import UsageError

    cls = generator_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UsageError(
            f"generator {name!r} has no parameter(s) {', '.join(map(repr, unknown))}; its parameters "
            f"are {', '.join(accepted)}",
            parameter=unknown[0],
        )
    return cls(**params)


__all__ = ["GENERATORS", "Synthesizer", "generator_class", "make_synthesizer"]
