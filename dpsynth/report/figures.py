"""The report's figures, assembled: what the HTML page shows as pictures.

:func:`build_figures` reads the tables and the audit JSON, aggregates each
column (:mod:`dpsynth.report.distributions`, which owns small-cell
suppression: the report shows aggregates of the real table, never a record),
draws it (:mod:`dpsynth.report.plots`, which owns matplotlib and the base64
PNG embedding) and collects the results in :class:`ReportFigures`. Missing
or malformed plot data is skipped here, never fatal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dpsynth.report.distributions import column_distribution
from dpsynth.report.distributions import numeric_grid as numeric_grid  # re-exported: its home before the split
from dpsynth.report.plots import PlotImage, plot_distance_histogram, plot_distribution, plot_roc

MAX_COLUMNS = 24


@dataclass(frozen=True)
class ColumnPanel:
    """A column's small multiple: its distribution summary and (unless fully suppressed) its plot."""

    name: str
    kind: str
    image: PlotImage | None
    tvd: float | None
    real_missing: str
    synthetic_missing: str
    note: str = ""


@dataclass
class ReportFigures:
    """Everything the HTML shows as pictures, already aggregated and encoded.

    ``roc`` overlays every membership attack's ROC curve; ``distance`` holds
    the DCR / NNDR histograms; ``columns`` the per-column small multiples (at
    most :data:`MAX_COLUMNS`; the rest are listed in ``columns_omitted``).
    """

    roc: PlotImage | None = None
    distance: list[PlotImage] = field(default_factory=list)
    columns: list[ColumnPanel] = field(default_factory=list)
    columns_omitted: list[str] = field(default_factory=list)
    min_cell: int = 10
    has_synthetic: bool = False
    notes: list[str] = field(default_factory=list)
    # a re-rendered release (no access to the rows): the column panels of its sealed report.html, as they were signed
    sealed_columns: list[PlotImage] = field(default_factory=list)


def _histograms_of(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The binned distance histograms in a result's ``details`` (keys ``histogram`` or ``*_histogram``)."""
    details = result.get("details") or {}
    if not isinstance(details, Mapping):
        return []
    return [
        (key, value)
        for key, value in details.items()
        if (key == "histogram" or str(key).endswith("_histogram")) and isinstance(value, Mapping)
    ]


# ---------------------------------------------------------------------------- assembly
def build_figures(
    train: pd.DataFrame | None,
    synthetic: pd.DataFrame | None,
    column_kinds: Mapping[str, str],
    audit: Mapping[str, Any] | None,
    min_cell: int = 10,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    max_columns: int = MAX_COLUMNS,
) -> ReportFigures:
    """Aggregate and draw every figure of the report.

    ``column_kinds`` maps column name -> ``"categorical"``, ``"numeric"`` or
    ``"datetime"`` and fixes the order of the small multiples; at most
    ``max_columns`` are drawn. ``bounds`` (optional) gives public numeric
    bounds, e.g. from the schema, for the histogram grids. ``synthetic`` may be
    ``None`` (nothing generated); ``train`` too (a release re-rendered from its
    directory, which holds no real rows: only the audit's figures are drawn).
    Missing or malformed plot data in ``audit`` is skipped, not fatal: the numbers table of the report still shows every
    result.
    """
    if min_cell < 1:
        raise ValueError(f"min_cell must be >= 1, got {min_cell}")
    figs = ReportFigures(min_cell=int(min_cell), has_synthetic=synthetic is not None)
    results = [r for r in (audit or {}).get("results", []) or [] if isinstance(r, Mapping)]
    figs.roc = plot_roc([r for r in results if r.get("family") in ("membership", "epsilon")])
    for r in results:
        for key, hist in _histograms_of(r):
            img = plot_distance_histogram(str(r.get("name", "test")), str(key), hist)
            if img is not None:
                figs.distance.append(img)

    if train is None:
        return figs
    names = [n for n in column_kinds if n in train.columns]
    absent = [n for n in column_kinds if n not in train.columns]
    if absent:
        figs.notes.append(f"columns not in the training table, not plotted: {', '.join(absent)}")
    figs.columns_omitted = names[max_columns:]
    for name in names[:max_columns]:
        kind = column_kinds[name]
        syn_col = synthetic[name] if synthetic is not None and name in synthetic.columns else None
        col_bounds = (bounds or {}).get(name)
        dist = column_distribution(name, train[name], syn_col, kind, min_cell, col_bounds)
        fully_suppressed = bool(dist.suppressed.all()) and syn_col is None
        image = None if fully_suppressed or len(dist.labels) == 0 else plot_distribution(dist)
        note = dist.note
        if synthetic is not None and syn_col is None:
            note = (note + "; " if note else "") + "column absent from the synthetic table"
        any_missing = dist.kind == "numeric" and (dist.real_missing or dist.synthetic_missing)
        figs.columns.append(
            ColumnPanel(
                name=name,
                kind=kind,
                image=image,
                tvd=dist.total_variation(),
                real_missing=dist.missing_text("real") if any_missing else "",
                synthetic_missing=(
                    dist.missing_text("synthetic") if any_missing and dist.synthetic_counts is not None else ""
                ),
                note=note,
            )
        )
    return figs
