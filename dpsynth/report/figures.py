"""Figures for the release report: aggregates of the tables, drawn as embedded PNGs.

The report is read by the data owner, so it may show aggregates of the real
(training) table, but never a record. Two rules keep it that way:

* **Small cells are suppressed.** A category or histogram bin is shown only if
  at least ``min_cell`` real rows fall in it. Rare categories are merged into
  one "other" bar (whose real share is hidden too if it is itself small); rare
  bins are merged into their neighbour, so bar edges always come from a fixed
  grid, never from a record's value. This is the usual threshold rule of
  statistical disclosure control (Hundepool et al. 2012, *Statistical
  Disclosure Control*, Wiley, ch. 5); it is **not** differential privacy, and
  the page says so.
* **Bin edges never come from an individual value.** Numeric grids use the
  schema's public bounds when given; otherwise a range that leaves at least
  ``min_cell`` rows beyond each end, rounded outward to a "nice" step, with the
  tails clipped into the end bins. A unique extreme value therefore never
  becomes an axis limit or a label.

The shares of the shown buckets let a reader work out the merged bucket's
share (one minus the rest); that bucket pools every rare category, so what it
reveals is how many rows are rare, never which value a rare row holds.

Synthetic values are aggregated on the same buckets as the real ones (a
category that is rare in the real table is merged in the synthetic table as
well), so a generator that memorised a rare record cannot expose it here either.

Plots use matplotlib's object-oriented API with the Agg renderer (no pyplot, no
global backend switch, no display needed) and are returned as base64 PNG text
for ``<img src="data:...">``: the HTML file stays self-contained.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dpsynth.schema import category_label

REAL_COLOR = "#8c96a3"
SYNTHETIC_COLOR = "#1f5fa8"
HOLDOUT_COLOR = "#8c96a3"
ROC_COLORS = ("#1f5fa8", "#c2452d", "#2e8b57", "#8a5cb8", "#d08a1a", "#4a4a4a")
MAX_COLUMNS = 24
MAX_CATEGORIES = 12
NUMERIC_BINS = 20
_DPI = 96


@dataclass(frozen=True)
class PlotImage:
    """One embedded figure: base64 PNG plus the text a reader (or screen reader) needs."""

    title: str
    png_base64: str
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class ColumnDistribution:
    """Real-vs-synthetic counts of one column on shared buckets, small real cells flagged.

    ``labels`` name the buckets (categories, or ``"[a, b)"`` ranges for
    numeric columns whose ``edges`` are also kept). ``suppressed[i]`` is true
    when bucket ``i`` has fewer than ``min_cell`` real rows: its real share
    must not be shown. ``real_missing`` / ``synthetic_missing`` count nulls of
    numeric columns (categorical nulls are the ``"(missing)"`` bucket).
    """

    name: str
    kind: str
    labels: list[str]
    real_counts: np.ndarray
    synthetic_counts: np.ndarray | None
    suppressed: np.ndarray
    min_cell: int
    edges: np.ndarray | None = None
    real_missing: int = 0
    synthetic_missing: int = 0
    note: str = ""

    @property
    def n_real(self) -> int:
        return int(self.real_counts.sum()) + self.real_missing

    @property
    def n_synthetic(self) -> int:
        if self.synthetic_counts is None:
            return 0
        return int(self.synthetic_counts.sum()) + self.synthetic_missing

    def real_shares(self) -> np.ndarray:
        """Share of real rows per bucket (of all real rows, nulls included); NaN where suppressed."""
        shares = self.real_counts / max(self.n_real, 1)
        return np.where(self.suppressed, np.nan, shares)

    def synthetic_shares(self) -> np.ndarray | None:
        """Share of synthetic rows per bucket (of all synthetic rows, nulls included)."""
        if self.synthetic_counts is None:
            return None
        return self.synthetic_counts / max(self.n_synthetic, 1)

    def total_variation(self) -> float | None:
        """Total variation distance between the two bucketed distributions (nulls as one more bucket).

        0 means identical shares, 1 disjoint support. Computed on the merged
        buckets, so it is a lower bound on the distance at full resolution.
        """
        if self.synthetic_counts is None or self.n_real == 0 or self.n_synthetic == 0:
            return None
        real = np.append(self.real_counts, self.real_missing) / self.n_real
        syn = np.append(self.synthetic_counts, self.synthetic_missing) / self.n_synthetic
        return float(0.5 * np.abs(real - syn).sum())

    def missing_text(self, which: str) -> str:
        """Null share of a numeric column as display text, suppressed when the real count is small."""
        if which == "real":
            count, total = self.real_missing, self.n_real
            if 0 < count < self.min_cell:
                return f"suppressed (<{self.min_cell})"
        else:
            count, total = self.synthetic_missing, self.n_synthetic
        return f"{100.0 * count / total:.1f}%" if total else "n/a"


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


# ---------------------------------------------------------------------------- aggregation
def _category_counts(series: pd.Series) -> pd.Series:
    counts = series.value_counts(dropna=False, sort=False)
    labels = ["(missing)" if pd.isna(v) else category_label(v) for v in counts.index]
    return pd.Series(counts.to_numpy(), index=labels).groupby(level=0, sort=False).sum()


def categorical_distribution(
    name: str,
    real: pd.Series,
    synthetic: pd.Series | None,
    min_cell: int = 10,
    max_categories: int = MAX_CATEGORIES,
) -> ColumnDistribution:
    """Bucket a categorical column: the ``max_categories`` most common real categories with at
    least ``min_cell`` real rows each, and one merged bucket for everything else.

    The merged bucket holds rare categories, categories beyond the top ones and
    synthetic-only values; its label never names them. It is labelled
    ``"suppressed (<min_cell)"`` and its real share hidden when it holds fewer
    than ``min_cell`` real rows.
    """
    real_counts = _category_counts(real)
    frequent = real_counts[real_counts >= min_cell].sort_values(ascending=False, kind="stable")
    shown = list(frequent.index[:max_categories])
    merged_any = len(real_counts) > len(shown)
    syn_counts = _category_counts(synthetic) if synthetic is not None else None
    if syn_counts is not None and not set(syn_counts.index) <= set(shown):
        merged_any = True

    labels = [str(s) for s in shown]
    real_arr = [int(real_counts[s]) for s in shown]
    syn_arr = [int(syn_counts.get(s, 0)) for s in shown] if syn_counts is not None else None
    suppressed = [False] * len(shown)
    if merged_any:
        rest_real = int(real_counts.sum()) - sum(real_arr)
        small = 0 < rest_real < min_cell
        has_rare = bool((real_counts < min_cell).any())
        if small:
            labels.append(f"suppressed (<{min_cell})")
        elif has_rare:
            labels.append(f"other (incl. <{min_cell})")
        else:
            labels.append("other")
        real_arr.append(rest_real)
        suppressed.append(small)
        if syn_arr is not None and syn_counts is not None:
            syn_arr.append(int(syn_counts.sum()) - sum(syn_arr))
    note = ""
    if int(real_counts.sum()) < min_cell:
        note = f"fewer than {min_cell} real rows: real shares suppressed"
        suppressed = [True] * len(labels)
    return ColumnDistribution(
        name=name, kind="categorical", labels=labels,
        real_counts=np.asarray(real_arr, dtype=np.int64),
        synthetic_counts=None if syn_arr is None else np.asarray(syn_arr, dtype=np.int64),
        suppressed=np.asarray(suppressed, dtype=bool), min_cell=min_cell, note=note,
    )


def _nice_step(raw: float) -> float:
    """Smallest of 1, 2, 2.5, 5 x 10^k that is >= raw."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    exp = math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = mult * 10.0**exp
        if step >= raw * (1 - 1e-12):
            return step
    return 10.0 ** (exp + 1)


def numeric_grid(values: np.ndarray, min_cell: int, bins: int = NUMERIC_BINS,
                 bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Bin edges for a numeric column that no single record determines.

    The range is the public ``bounds`` when given; otherwise it runs from the
    ``min_cell``-th smallest to the ``min_cell``-th largest value (so at least
    ``min_cell`` rows lie at or beyond each end). The range is then covered by
    about ``bins`` bins of a "nice" width (1, 2, 2.5 or 5 times a power of
    ten) starting at a multiple of that width. Whole-number data gets a whole
    width and edges halfway between integers, so every bin holds the same
    number of possible values.
    """
    finite = values[np.isfinite(values)]
    if bounds is not None:
        lo, hi = sorted((float(bounds[0]), float(bounds[1])))
    elif finite.size == 0:
        return np.array([0.0, 1.0])
    else:
        k = min(max(min_cell, 1), finite.size) - 1
        part = np.partition(finite, (k, finite.size - 1 - k))
        lo, hi = float(part[k]), float(part[finite.size - 1 - k])
    integral = finite.size > 0 and bool(np.all(np.mod(finite, 1) == 0))
    step = _nice_step((hi - lo) / bins) if hi > lo else 1.0
    if integral:
        step = float(max(1, math.ceil(step)))
        first = math.floor(lo / step) * step - 0.5
        n = max(1, math.ceil((math.floor(hi) + 0.5 - first) / step))
    else:
        first = math.floor(lo / step) * step
        n = max(1, math.ceil((hi - first) / step))
    return first + step * np.arange(n + 1, dtype=float)


def _merge_small_bins(counts: np.ndarray, edges: np.ndarray, min_cell: int) -> np.ndarray:
    """Remove interior edges until every bin holds >= ``min_cell`` real rows (or one bin is left).

    The smallest bin is merged with its smaller neighbour, repeatedly, so the
    surviving edges are a subset of the original grid.
    """
    counts = [int(c) for c in counts]
    kept = list(edges)
    while len(counts) > 1:
        i = int(np.argmin(counts))
        if counts[i] >= min_cell:
            break
        if i == 0:
            j = 1
        elif i == len(counts) - 1:
            j = i - 1
        else:
            j = i - 1 if counts[i - 1] <= counts[i + 1] else i + 1
        a, b = min(i, j), max(i, j)
        counts[a] += counts[b]
        del counts[b]
        del kept[b]
    return np.asarray(kept, dtype=float)


def _fmt_edge(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 else f"{x:.3g}"


def _to_numeric(series: pd.Series, kind: str) -> np.ndarray:
    if kind == "datetime":
        ts = pd.to_datetime(series, errors="coerce")
        years = ts.dt.year + (ts.dt.dayofyear - 1) / 365.25
        return years.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def numeric_distribution(
    name: str,
    real: pd.Series,
    synthetic: pd.Series | None,
    min_cell: int = 10,
    bins: int = NUMERIC_BINS,
    bounds: tuple[float, float] | None = None,
    kind: str = "numeric",
) -> ColumnDistribution:
    """Histogram a numeric column on a common grid (see :func:`numeric_grid`), tails clipped into
    the end bins, then merge bins with fewer than ``min_cell`` real rows into a neighbour.

    Synthetic values are counted on the final real-derived edges. ``kind =
    "datetime"`` columns are histogrammed in decimal years.
    """
    r = _to_numeric(real, kind)
    r_ok = np.isfinite(r)
    edges = numeric_grid(r[r_ok], min_cell, bins, bounds)
    clip = (edges[0], edges[-1])
    r_counts, _ = np.histogram(np.clip(r[r_ok], *clip), bins=edges)
    edges = _merge_small_bins(r_counts, edges, min_cell)
    r_counts, _ = np.histogram(np.clip(r[r_ok], *clip), bins=edges)
    s_counts, s_missing = None, 0
    if synthetic is not None:
        s = _to_numeric(synthetic, kind)
        s_ok = np.isfinite(s)
        s_counts, _ = np.histogram(np.clip(s[s_ok], *clip), bins=edges)
        s_missing = int((~s_ok).sum())
    suppressed = r_counts < min_cell
    note = ""
    if int(r_ok.sum()) < min_cell:
        note = f"fewer than {min_cell} real non-missing values: real shares suppressed"
        suppressed[:] = True
    labels = [f"[{_fmt_edge(a)}, {_fmt_edge(b)})" for a, b in zip(edges[:-1], edges[1:])]
    return ColumnDistribution(
        name=name, kind="numeric", labels=labels, real_counts=r_counts.astype(np.int64),
        synthetic_counts=None if s_counts is None else s_counts.astype(np.int64),
        suppressed=suppressed, min_cell=min_cell, edges=edges,
        real_missing=int((~r_ok).sum()), synthetic_missing=s_missing, note=note,
    )


def column_distribution(
    name: str,
    real: pd.Series,
    synthetic: pd.Series | None,
    kind: str,
    min_cell: int = 10,
    bounds: tuple[float, float] | None = None,
) -> ColumnDistribution:
    """Dispatch on ``kind``: ``"categorical"`` -> bar buckets; ``"numeric"``/``"datetime"`` -> histogram."""
    if kind == "categorical":
        return categorical_distribution(name, real, synthetic, min_cell)
    if kind in ("numeric", "datetime"):
        return numeric_distribution(name, real, synthetic, min_cell, bounds=bounds, kind=kind)
    raise ValueError(f"column {name!r}: kind must be 'categorical', 'numeric' or 'datetime', got {kind!r}")


# ---------------------------------------------------------------------------- drawing
def _encode(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=7)


def _short(text: str, width: int = 20) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_distribution(dist: ColumnDistribution) -> PlotImage:
    """Small multiple of one column: horizontal share bars (categorical) or a density histogram
    (numeric). Suppressed real cells are left blank and marked."""
    fig = Figure(figsize=(3.5, 2.5))  # fixed margins: a layout engine would double the drawing time
    ax = fig.add_subplot()
    real = dist.real_shares()
    syn = dist.synthetic_shares()
    if dist.kind == "categorical":
        y = np.arange(len(dist.labels))[::-1]
        h = 0.4 if syn is not None else 0.7
        ax.barh(y + (h / 2 if syn is not None else 0), np.nan_to_num(real), height=h,
                color=REAL_COLOR, label="real")
        if syn is not None:
            ax.barh(y - h / 2, syn, height=h, color=SYNTHETIC_COLOR, label="synthetic")
        for yi, sup in zip(y, dist.suppressed):
            if sup:
                ax.text(0, yi + (h / 2 if syn is not None else 0), " real suppressed", fontsize=6,
                        va="center", color="#555555", style="italic")
        ax.set_yticks(y, [_short(lbl, 18) for lbl in dist.labels])
        ax.set_xlabel("share of rows", fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
        fig.subplots_adjust(left=0.34, right=0.97, top=0.87, bottom=0.17)
    else:
        edges = dist.edges if dist.edges is not None else np.arange(len(dist.labels) + 1, dtype=float)
        widths = np.diff(edges)
        dens_real = np.nan_to_num(real) / widths
        ax.bar(edges[:-1], dens_real, width=widths, align="edge", color=REAL_COLOR, label="real",
               linewidth=0)
        if syn is not None:
            ax.stairs(syn / widths, edges, color=SYNTHETIC_COLOR, linewidth=1.4, label="synthetic")
        for a, w, sup in zip(edges[:-1], widths, dist.suppressed):
            if sup:
                ax.axvspan(a, a + w, color="#dddddd", alpha=0.6, hatch="///", linewidth=0)
        ax.set_xlabel("value (tails clipped into end bins)", fontsize=7)
        ax.set_ylabel("density", fontsize=7)
        ax.set_yticks([])
        fig.subplots_adjust(left=0.07, right=0.97, top=0.87, bottom=0.17)
    _style(ax)
    fig.text(0.02, 0.95, _short(dist.name, 48), fontsize=9, weight="bold", va="top")
    ax.legend(fontsize=6, frameon=False, loc="best")
    alt = f"{dist.name}: real vs synthetic {'category shares' if dist.kind == 'categorical' else 'histogram'}"
    return PlotImage(title=dist.name, png_base64=_encode(fig), alt=alt)


def _curve(obj: Any, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not isinstance(obj, Mapping):
        return None
    try:
        x = np.asarray(obj.get(x_key), dtype=float)
        y = np.asarray(obj.get(y_key), dtype=float)
    except (TypeError, ValueError):
        return None
    if x.ndim != 1 or x.shape != y.shape or x.size < 2 or not np.all(np.isfinite(x) & np.isfinite(y)):
        return None
    return x, y


def plot_roc(results: Sequence[Mapping[str, Any]]) -> PlotImage | None:
    """Overlay the ROC curves found in ``details["roc"]`` of the audit results (linear and log-log
    panels; the log panel shows the low-FPR regime that matters for privacy), or ``None``."""
    curves = []
    for r in results:
        c = _curve((r.get("details") or {}).get("roc"), "fpr", "tpr")
        if c is not None:
            curves.append((str(r.get("name", "attack")), r.get("value"), c))
    if not curves:
        return None
    fig = Figure(figsize=(7.6, 3.2), layout="constrained")
    lin, log = fig.subplots(1, 2)
    for i, (name, value, (fpr, tpr)) in enumerate(curves):
        color = ROC_COLORS[i % len(ROC_COLORS)]
        label = name if not isinstance(value, int | float) else f"{name} (AUC {value:.3f})"
        lin.plot(fpr, tpr, color=color, linewidth=1.4, label=label)
        keep = (fpr > 0) & (tpr > 0)
        log.plot(fpr[keep], tpr[keep], color=color, linewidth=1.4)
    for ax in (lin, log):
        ax.plot([1e-4, 1], [1e-4, 1], color="#999999", linestyle="--", linewidth=0.8, label="_chance")
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
        _style(ax)
    lin.set_xlim(0, 1)
    lin.set_ylim(0, 1)
    lin.set_title("ROC (dashed: random guessing)", fontsize=9, loc="left")
    log.set_xscale("log")
    log.set_yscale("log")
    log.set_xlim(1e-2, 1)
    log.set_ylim(1e-2, 1)
    log.set_title("low false-positive region (log-log)", fontsize=9, loc="left")
    lin.legend(fontsize=7, frameon=False, loc="lower right")
    names = ", ".join(n for n, _, _ in curves)
    return PlotImage(
        title="Membership-inference ROC curves", png_base64=_encode(fig),
        alt=f"ROC curves of membership attacks: {names}",
        caption="A curve on the dashed diagonal means the attacker cannot tell training records "
                "from holdout records. The log-log panel shows the low false-positive rates where "
                "a confident attack on a few records would appear.",
    )


_HIST_CAPTIONS = {
    "dcr": "Distance from each synthetic row to its closest training row, next to the same distance "
           "for holdout rows (never seen by the generator). If the synthetic curve sits left of "
           "the holdout curve, synthetic rows are closer to training records than new real data "
           "would be: a sign of copying.",
    "nndr": "Nearest-neighbour distance ratio (closest / second closest training row). Synthetic "
            "ratios piled near 0, unlike holdout ratios, mean rows sit on top of one specific "
            "training record.",
}


def _histograms_of(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    details = result.get("details") or {}
    if not isinstance(details, Mapping):
        return []
    return [(key, value) for key, value in details.items()
            if (key == "histogram" or str(key).endswith("_histogram")) and isinstance(value, Mapping)]


def plot_distance_histogram(result_name: str, key: str, hist: Mapping[str, Any]) -> PlotImage | None:
    """Synthetic-to-train vs holdout-to-train distance shares on the audit's own bins, or ``None``
    when the histogram is malformed. Accepts ``edges`` or ``bins`` for the bin edges."""
    edges_raw = hist.get("edges", hist.get("bins"))
    try:
        edges = np.asarray(edges_raw, dtype=float)
    except (TypeError, ValueError):
        return None
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
        return None
    series = []
    for part, color, label in (("holdout_to_train", HOLDOUT_COLOR, "holdout → train (baseline)"),
                               ("synthetic_to_train", SYNTHETIC_COLOR, "synthetic → train")):
        try:
            counts = np.asarray(hist.get(part), dtype=float)
        except (TypeError, ValueError):
            continue
        if counts.shape == (edges.size - 1,) and np.all(np.isfinite(counts)) and counts.sum() > 0:
            series.append((counts / counts.sum(), color, label))
    if not series:
        return None
    fig = Figure(figsize=(3.7, 2.6), layout="constrained")
    ax = fig.add_subplot()
    for shares, color, label in series:
        if color == HOLDOUT_COLOR:
            ax.stairs(shares, edges, fill=True, color=color, alpha=0.7, label=label)
        else:
            ax.stairs(shares, edges, color=color, linewidth=1.6, label=label)
    kind = "nndr" if "nndr" in key or "nndr" in result_name else "dcr"
    ax.set_xlabel("distance ratio" if kind == "nndr" else "distance to closest training row", fontsize=7)
    ax.set_ylabel("share of rows", fontsize=7)
    _style(ax)
    title = f"{result_name}: {key.replace('_', ' ')}" if key != "histogram" else result_name
    ax.set_title(_short(title, 48), fontsize=9, loc="left")
    ax.legend(fontsize=6, frameon=False)
    return PlotImage(title=title, png_base64=_encode(fig), alt=f"{title}: synthetic vs holdout distances",
                     caption=_HIST_CAPTIONS[kind])


# ---------------------------------------------------------------------------- assembly
def build_figures(
    train: pd.DataFrame,
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
    ``None`` (nothing generated). Missing or malformed plot data in ``audit``
    is skipped, not fatal: the numbers table of the report still shows every
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
        figs.columns.append(ColumnPanel(
            name=name, kind=kind, image=image, tvd=dist.total_variation(),
            real_missing=dist.missing_text("real") if any_missing else "",
            synthetic_missing=(dist.missing_text("synthetic")
                               if any_missing and dist.synthetic_counts is not None else ""),
            note=note,
        ))
    return figs
