"""The release's person-level plumbing: which unit a release protects, and what that asks of the generator.

:mod:`dpsynth.privacy.unit` defines the unit and the contribution bound;
this module applies them to a :class:`~dpsynth.release.ReleaseRequest`: it
resolves the unit from the options and the schema, refuses a generator that
cannot calibrate to K > 1 (DP-CTGAN, DP-VAE: docs/dpsgd.md) before any
budget is spent, and hands MST and AIM their ``max_rows_per_unit``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dpsynth.engines import EncodedTable
from dpsynth.errors import UsageError
from dpsynth.holdout import split_encoded, split_persons
from dpsynth.privacy.unit import PrivacyUnit, resolve_unit
from dpsynth.schema import Schema
from dpsynth.synthesizers import generator_class


def release_unit(
    generator: str,
    privacy_unit: str | None,
    max_rows_per_unit: int | None,
    schema: Schema,
    generator_params: dict[str, Any],
    panel_time: str | None = None,
) -> tuple[PrivacyUnit, dict[str, Any]]:
    """The release's :class:`PrivacyUnit` and the generator parameters that implement it.

    K > 1 needs a generator that calibrates every query to sensitivity K
    (``supports_person_units``: MST, AIM); the others are refused with a
    ``UsageError`` (K = 1, one row kept per person, works with every
    generator). ``max_rows_per_unit`` given as a generator ``--param`` is
    refused too: the bound is the release's, stated in the manifest.

    A panel (``panel_time``) is a person with K = T rows (T public times);
    its generator fits one wide row per person, so it needs no K of its own
    and every generator works.
    """
    if "max_rows_per_unit" in generator_params:
        raise UsageError(
            "set the contribution bound with --max-rows-per-unit (with --privacy-unit), not --param",
            parameter="max_rows_per_unit",
        )
    if panel_time is not None:
        from dpsynth.panel import check_panel

        column = privacy_unit if privacy_unit is not None else schema.privacy_unit
        n_times = len(check_panel(schema, panel_time, column).times)
        if max_rows_per_unit not in (None, n_times):
            raise UsageError(
                f"--max-rows-per-unit {max_rows_per_unit} contradicts --panel-time {panel_time!r}: a balanced panel "
                f"has K = {n_times} rows a person (its number of times); leave --max-rows-per-unit out",
                parameter="max_rows_per_unit",
            )
        return resolve_unit(column, n_times, schema.privacy_unit, None), dict(generator_params)
    unit = resolve_unit(privacy_unit, max_rows_per_unit, schema.privacy_unit, schema.max_rows_per_unit)
    cls = generator_class(generator)
    if unit.max_rows > 1 and not cls.supports_person_units:
        raise UsageError(
            f"generator {generator!r} does not support person-level privacy with --max-rows-per-unit "
            f"{unit.max_rows} > 1: its DP-SGD accounting is per row (docs/dpsgd.md). Use mst or aim, or "
            "--max-rows-per-unit 1 (one row kept per person), or aggregate to one row per person first.",
            parameter="max_rows_per_unit",
        )
    params = dict(generator_params)
    if unit.max_rows > 1:
        params["max_rows_per_unit"] = unit.max_rows
    return unit, params


def split_table(
    table: EncodedTable, unit: PrivacyUnit, fraction: float, rng: np.random.Generator
) -> tuple[EncodedTable, EncodedTable]:
    """Train / holdout: one coin per row (record unit), or one coin per person (person unit)."""
    if unit.is_person:
        return split_persons(table, fraction, rng)
    return split_encoded(table, fraction, rng)


def n_units(table: EncodedTable) -> int:
    """How many units the table holds: persons when it carries person codes, else rows (internal only)."""
    return len(table) if table.units is None else int(len(np.unique(table.units)))


__all__ = ["n_units", "release_unit", "split_table"]
