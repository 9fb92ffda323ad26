"""Drawing the report's figures: column small multiples, ROC curves, distance histograms.

This module owns everything matplotlib: it draws what it is given (already
aggregated and suppressed by :mod:`dpsynth.report.distributions`, or the
audit's own binned plot data) and aggregates nothing. Plots use matplotlib's
object-oriented API with the Agg renderer (no pyplot, no global backend
switch, no display needed) and are returned as base64 PNG text for
``<img src="data:...">``: the HTML file stays self-contained. PNGs carry no
timestamp, so the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dpsynth.report.distributions import ColumnDistribution

REAL_COLOR = "#8c96a3"
SYNTHETIC_COLOR = "#1f5fa8"
HOLDOUT_COLOR = "#8c96a3"
ROC_COLORS = ("#1f5fa8", "#c2452d", "#2e8b57", "#8a5cb8", "#d08a1a", "#4a4a4a")
_DPI = 96


@dataclass(frozen=True)
class PlotImage:
    """One embedded figure: base64 PNG plus the text a reader (or screen reader) needs."""

    title: str
    png_base64: str
    alt: str
    caption: str = ""


# ---------------------------------------------------------------------------- plumbing
def _encode(fig: Figure) -> str:
    """Render ``fig`` with Agg to a PNG without a timestamp, as base64 text for a ``data:`` URL."""
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


# ---------------------------------------------------------------------------- column small multiples
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
        ax.barh(y + (h / 2 if syn is not None else 0), np.nan_to_num(real), height=h, color=REAL_COLOR, label="real")
        if syn is not None:
            ax.barh(y - h / 2, syn, height=h, color=SYNTHETIC_COLOR, label="synthetic")
        for yi, sup in zip(y, dist.suppressed):
            if sup:
                ax.text(
                    0,
                    yi + (h / 2 if syn is not None else 0),
                    " real suppressed",
                    fontsize=6,
                    va="center",
                    color="#555555",
                    style="italic",
                )
        ax.set_yticks(y, [_short(lbl, 18) for lbl in dist.labels])
        ax.set_xlabel("share of rows", fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
        fig.subplots_adjust(left=0.34, right=0.97, top=0.87, bottom=0.17)
    else:
        edges = dist.edges if dist.edges is not None else np.arange(len(dist.labels) + 1, dtype=float)
        widths = np.diff(edges)
        dens_real = np.nan_to_num(real) / widths
        ax.bar(edges[:-1], dens_real, width=widths, align="edge", color=REAL_COLOR, label="real", linewidth=0)
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


# ---------------------------------------------------------------------------- attack plots
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
        title="Membership-inference ROC curves",
        png_base64=_encode(fig),
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
    for part, color, label in (
        ("holdout_to_train", HOLDOUT_COLOR, "holdout → train (baseline)"),
        ("synthetic_to_train", SYNTHETIC_COLOR, "synthetic → train"),
    ):
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
    return PlotImage(
        title=title,
        png_base64=_encode(fig),
        alt=f"{title}: synthetic vs holdout distances",
        caption=_HIST_CAPTIONS[kind],
    )
