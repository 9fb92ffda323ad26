"""The train / holdout split of an engine's encoded table: one independent coin per row.

The same split as :func:`dpsynth.release.split_holdout` (whose docstring,
and docs/threat-model.md, say why one coin per row and not a fixed-size
shuffle), for the rows an engine holds (:mod:`dpsynth.engines`). The coins
are drawn in numpy, in row order, from the release's split seed, exactly as
that function draws them, so a seed picks the same rows whichever engine
read the table; the engine only selects the rows the coins name.
"""

from __future__ import annotations

import numpy as np

from dpsynth.engines import EncodedTable
from dpsynth.errors import UsageError


def holdout_coins(n_rows: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """One independent coin per row, ``True`` (holdout) with probability ``fraction``: the split's only randomness.

    The draw :func:`dpsynth.release.split_holdout` makes for a pandas frame
    (``rng.random(n) < fraction``), so the same generator selects the same rows.
    """
    return rng.random(n_rows) < fraction


def _check_split(n_rows: int, n_train: int, n_holdout: int, fraction: float) -> None:
    if n_train == 0 or n_holdout == 0:
        raise UsageError(
            f"the table's {n_rows} rows split into {n_train} training and {n_holdout} holdout "
            f"rows (holdout fraction {fraction:g}); both must be non-empty: use a larger table"
        )


def split_encoded(table: EncodedTable, fraction: float, rng: np.random.Generator) -> tuple[EncodedTable, EncodedTable]:
    """``split_holdout`` for an engine's encoded table: the same coins, so the same rows, for a seed.

    Exactly as private as the frame's split: each row's membership is its own
    coin from :func:`holdout_coins`, independent of every other row and of the
    data, and the table only selects the rows the coins name, in order.
    Raises ``UsageError`` (the frame split's message) when a side is empty.
    """
    train, holdout = table.split(holdout_coins(len(table), fraction, rng))
    _check_split(len(table), len(train), len(holdout), fraction)
    return train, holdout


def split_persons(table: EncodedTable, fraction: float, rng: np.random.Generator) -> tuple[EncodedTable, EncodedTable]:
    """The person-level split: one coin per person (:func:`dpsynth.privacy.unit.person_coins`), all their rows follow.

    ``table.units`` must hold the person codes. No person is on both sides,
    so the holdout stays a set of non-members for the person-level audits,
    and adding or removing one person changes one side by that person only.
    """
    from dpsynth.privacy.unit import person_coins

    if table.units is None:
        raise UsageError(f"{table.source}: a person-level split needs the table's person codes (--privacy-unit)")
    train, holdout = table.split(person_coins(table.units, fraction, rng))
    _check_split(len(table), len(train), len(holdout), fraction)
    return train, holdout


__all__ = ["holdout_coins", "split_encoded", "split_persons"]
