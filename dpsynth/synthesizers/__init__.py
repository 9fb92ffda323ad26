"""DP generators, all following :class:`~dpsynth.synthesizers.base.Synthesizer`."""

from __future__ import annotations

from dpsynth.synthesizers.base import Synthesizer

GENERATORS = ("mst", "aim", "dpctgan", "dpvae")


def make_synthesizer(name: str, **params) -> Synthesizer:
    """Build a generator by its CLI name (``mst``, ``aim``, ``dpctgan``, ``dpvae``)."""
    from dpsynth.errors import UsageError

    if name == "mst":
        from dpsynth.synthesizers.mst import MST

        return MST(**params)
    if name == "aim":
        from dpsynth.synthesizers.aim import AIM

        return AIM(**params)
    if name == "dpctgan":
        from dpsynth.synthesizers.dpctgan import DPCTGAN

        return DPCTGAN(**params)
    if name == "dpvae":
        from dpsynth.synthesizers.dpvae import DPVAE

        return DPVAE(**params)
    raise UsageError(f"unknown generator {name!r}; choose one of {', '.join(GENERATORS)}")


__all__ = ["GENERATORS", "Synthesizer", "make_synthesizer"]
