"""The benchmark report: one self-contained HTML page (and optionally a PDF of it) beside results.json.

For a reviewer deciding "which generator, at which epsilon": utility-vs-epsilon
and risk-vs-epsilon plots per generator (mean over repeats, with the range
over repeats for utility and the audits' own confidence intervals for risk),
the table behind them, one recommendation per epsilon (the generator with the
best k-marginal score among those whose every repeat passed the audit policy),
the consistency-rule violation rates, the budget the grid spent, and the
exact command and versions to reproduce it. Figures are base64 PNG drawn
with the release report's plotting helpers; the page loads nothing.

PDF: :func:`write_report` takes ``render_pdf(html_path, pdf_path)``; the CLI
passes the release report's PDF renderer when that is available
(``dpsynth.report.render_pdf``, headless chromium), so both reports print the
same way.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dpsynth._files import atomic_write_text
from dpsynth.report.html import template_environment
from dpsynth.report.plots import ROC_COLORS, PlotImage, _encode, _style

_ENV = template_environment(Path(__file__).resolve().parent / "templates")

#: utility scores plotted, with whether higher is better
UTILITY_PLOTS = (
    ("kmarginal", "SDNist k-marginal (0-1000)", True),
    ("tvd_2way", "mean 2-way marginal TVD", False),
    ("tstr", "TSTR on the target", True),
    ("propensity_auc", "propensity AUC (0.5 = indistinguishable)", False),
    ("correlation_difference", "correlation difference", False),
)
PdfRenderer = Callable[[Path, Path], None]


def _ok(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"]


def _utility(row: Mapping[str, Any], key: str) -> float | None:
    value = (row.get("utility") or {}).get(key)
    return None if value is None or not math.isfinite(float(value)) else float(value)


def recommend(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per epsilon: the generator with the best mean k-marginal among those whose every run passed the policy.

    A generator with a failed, crashed or timed-out repeat at that epsilon is
    not recommended there: a recommendation must hold for every repeat seen.
    """
    by_cell: dict[tuple[float, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_cell[(float(row["epsilon"]), row["generator"])].append(row)
    out = []
    for epsilon in sorted({e for e, _ in by_cell}):
        candidates, excluded = [], []
        for (e, generator), cell in sorted(by_cell.items()):
            if e != epsilon:
                continue
            failed = [r for r in cell if r.get("status") != "ok"]
            refused = [r for r in cell if r.get("status") == "ok" and (r.get("audit") or {}).get("decision") != "PASS"]
            scores = [s for s in (_utility(r, "kmarginal") for r in cell) if s is not None]
            if failed:
                excluded.append(f"{generator}: {len(failed)} of {len(cell)} run(s) {failed[0]['status']}")
            elif refused:
                what = "not audited" if not refused[0].get("audit") else "refused by the policy"
                excluded.append(f"{generator}: {len(refused)} of {len(cell)} run(s) {what}")
            elif scores:
                candidates.append((float(np.mean(scores)), generator))
        best = max(candidates) if candidates else None
        out.append(
            {
                "epsilon": epsilon,
                "generator": best[1] if best else None,
                "kmarginal": best[0] if best else None,
                "excluded": excluded,
            }
        )
    return out


def _series(rows: Sequence[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float | None]) -> dict:
    """generator -> sorted [(epsilon, mean, low, high)] over the repeats with a value."""
    cells: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in _ok(rows):
        v = value(row)
        if v is not None:
            cells[row["generator"]][float(row["epsilon"])].append(v)
    return {
        g: [(e, float(np.mean(vs)), float(min(vs)), float(max(vs))) for e, vs in sorted(by_eps.items())]
        for g, by_eps in sorted(cells.items())
    }


def _panel(ax: Any, series: dict, title: str, reference: float | None = None, threshold: float | None = None) -> None:
    from matplotlib.ticker import NullLocator

    epsilons = sorted({p[0] for points in series.values() for p in points})
    for i, (generator, points) in enumerate(series.items()):
        e, mean, low, high = (np.array(v) for v in zip(*points, strict=True))
        color = ROC_COLORS[i % len(ROC_COLORS)]
        ax.errorbar(e, mean, yerr=[mean - low, high - mean], marker="o", ms=3, lw=1.2, capsize=2, color=color)
        ax.plot([], [], color=color, label=generator)
    if reference is not None:
        ax.axhline(reference, color="#4a4a4a", lw=0.8, ls="--", label="real training rows")
    if threshold is not None:
        ax.axhline(threshold, color="#b3261e", lw=0.8, ls=":", label="policy threshold")
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(epsilons, [f"{e:g}" for e in epsilons])
    ax.set_xlabel("epsilon", fontsize=7)
    ax.set_title(title, fontsize=8)
    _style(ax)


def _figure(panels: list[tuple], title: str, alt: str) -> PlotImage | None:
    """Small multiples; each panel is ``(series, title, reference line or None, threshold line or None)``."""
    panels = [p for p in panels if p[0]]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.5 * rows))
    for index, (series, name, reference, threshold) in enumerate(panels):
        _panel(fig.add_subplot(rows, cols, index + 1), series, name, reference, threshold)
    fig.axes[0].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return PlotImage(title=title, png_base64=_encode(fig), alt=alt)


def utility_figure(results: Mapping[str, Any]) -> PlotImage | None:
    """Utility vs epsilon per generator: mean over repeats, bars from the worst to the best repeat."""
    reference = (results.get("reference") or {}).get("utility") or {}
    panels = [
        (_series(results["runs"], lambda r, k=key: _utility(r, k)), label, reference.get(key), None)
        for key, label, _ in UTILITY_PLOTS
    ]
    return _figure(panels, "Utility vs epsilon", "utility scores against epsilon, one line per generator")


def risk_figure(results: Mapping[str, Any]) -> PlotImage | None:
    """Each audit result vs epsilon per generator: mean estimate, bars from the mean interval's low to high."""
    names = sorted({a["name"] for r in _ok(results["runs"]) for a in (r.get("audit") or {}).get("results", [])})
    panels = []
    for name in names:

        def pick(row: Mapping[str, Any], key: str, name: str = name) -> float | None:
            for a in (row.get("audit") or {}).get("results", []):
                if a["name"] == name and a.get(key) is not None:
                    return float(a[key])
            return None

        series = _series(results["runs"], lambda r: pick(r, "value"))
        lows = _series(results["runs"], lambda r: pick(r, "ci_low"))
        highs = _series(results["runs"], lambda r: pick(r, "ci_high"))
        for g, points in series.items():  # bars: mean interval over repeats where the audit gives one
            lo = {p[0]: p[1] for p in lows.get(g, [])}
            hi = {p[0]: p[1] for p in highs.get(g, [])}
            series[g] = [(e, m, min(lo.get(e, m), m), max(hi.get(e, m), m)) for e, m, _, _ in points]
        thresholds = {pick(r, "threshold") for r in _ok(results["runs"])} - {None}
        panels.append((series, name, None, thresholds.pop() if len(thresholds) == 1 else None))
    return _figure(panels, "Risk vs epsilon", "audit estimates with intervals against epsilon, per generator")


def table_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per generator x epsilon: means over the ok repeats, counts of runs by status."""
    cells: dict[tuple[str, float], list[Mapping[str, Any]]] = defaultdict(list)
    for row in results["runs"]:
        cells[(row["generator"], float(row["epsilon"]))].append(row)
    out = []
    for (generator, epsilon), cell in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ok = _ok(cell)

        def mean(get: Callable[[Mapping[str, Any]], Any], rows: list = ok) -> float | None:
            values = [float(v) for v in (get(r) for r in rows) if v is not None]
            return float(np.mean(values)) if values else None

        out.append(
            {
                "generator": generator,
                "epsilon": epsilon,
                "runs": len(cell),
                "ok": len(ok),
                "problems": "; ".join(f"{r['run_id']}: {r['status']} ({r['message']})" for r in cell if r not in ok),
                "passed": sum(1 for r in ok if (r.get("audit") or {}).get("decision") == "PASS"),
                "planned_epsilon": mean(lambda r: r["planned"]["epsilon"], cell),
                **{key: mean(lambda r, k=key: _utility(r, k)) for key, _, _ in UTILITY_PLOTS},
                "tvd_1way": mean(lambda r: _utility(r, "tvd_1way")),
                "tvd_3way": mean(lambda r: _utility(r, "tvd_3way")),
                "violation_rate": mean(lambda r: (r.get("consistency") or {}).get("any_rate")),
                "fit_seconds": mean(lambda r: (r.get("cost") or {}).get("fit_seconds")),
                "peak_rss_mb": mean(lambda r: (r.get("cost") or {}).get("peak_rss_mb")),
            }
        )
    return out


def rule_rows(results: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Consistency rules x (reference, each generator x epsilon): mean violation rate."""
    names = sorted({n for r in _ok(results["runs"]) for n in (r.get("consistency") or {}).get("rules", {})})
    reference = ((results.get("reference") or {}).get("consistency") or {}).get("rules", {})
    columns = sorted({(r["generator"], float(r["epsilon"])) for r in _ok(results["runs"])}, key=lambda c: (c[1], c[0]))
    rows = []
    for name in names:
        rates = []
        for generator, epsilon in columns:
            values = [
                r["consistency"]["rules"][name]["rate"]
                for r in _ok(results["runs"])
                if r["generator"] == generator and float(r["epsilon"]) == epsilon and name in r["consistency"]["rules"]
            ]
            rates.append(float(np.mean(values)) if values else None)
        rows.append({"name": name, "reference": (reference.get(name) or {}).get("rate"), "rates": rates})
    return [f"{g} ε={e:g}" for g, e in columns], rows


def render(results: Mapping[str, Any]) -> str:
    """The report's HTML text."""
    headers, rules = rule_rows(results)
    return _ENV.get_template("benchmark.html").render(
        r=results,
        utility=utility_figure(results),
        risk=risk_figure(results),
        table=table_rows(results),
        rule_headers=headers,
        rules=rules,
        recommendations=results.get("recommendations") or recommend(results["runs"]),
    )


def write_report(out: Path, results: Mapping[str, Any], render_pdf: PdfRenderer | None = None) -> Path:
    """Write ``out/report.html`` (atomically) and, with ``render_pdf``, ``out/report.pdf`` from it."""
    html_path = out / "report.html"
    atomic_write_text(html_path, render(results))
    if render_pdf is not None:
        render_pdf(html_path, out / "report.pdf")
    return html_path


__all__ = ["PdfRenderer", "recommend", "render", "risk_figure", "table_rows", "utility_figure", "write_report"]
