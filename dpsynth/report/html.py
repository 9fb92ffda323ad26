"""The release report: one self-contained HTML page for the person who signs the release off.

Order follows the questions a compliance officer asks: was it released (and
if not, which test failed by how much)? what did it cost in privacy budget and
what is left? can the domain be trusted? what did the attacks find? does the
synthetic table look like the real one? can the run be reproduced?

The page embeds its CSS and figures (base64 PNG), loads nothing from the
network, and shows only aggregates of the real table, with small cells
suppressed (see :mod:`dpsynth.report.distributions`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from dpsynth._files import atomic_write_text
from dpsynth.errors import UsageError
from dpsynth.report.criteria import criteria_context, release_risks
from dpsynth.report.figures import ReportFigures, build_figures
from dpsynth.report.signoff import Evidence, approval_context


def fmt_number(x: Any) -> str:
    """Human form of a number: ints with thousands separators, floats to 3 decimals (at least 2),
    tiny values in scientific notation, ``None``/NaN as an em dash."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(f):
        return "∞" if f > 0 else ("−∞" if f < 0 else "—")
    if f != 0 and abs(f) < 1e-3:
        return f"{f:.3g}"
    if abs(f) >= 1e4:
        return f"{f:,.0f}"
    text = f"{f:.3f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{f:.2f}"
    return text


def template_environment(directory: Path) -> jinja2.Environment:
    """The reports' jinja2 setup for templates in ``directory``: autoescaped, strict, with the ``num`` filter."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_number
    return env


_ENV = template_environment(Path(__file__).resolve().parent / "templates")


def _small(count: Any, min_cell: int) -> str:
    """A count of real rows, shown as ``"<min_cell"`` when it is small but not zero."""
    if not isinstance(count, int | float) or isinstance(count, bool):
        return "—"
    count = int(count)
    return f"<{min_cell}" if 0 < count < min_cell else f"{count:,}"


# ---------------------------------------------------------------------------- decision
def describe_failure(result: Mapping[str, Any], confidence: float = 0.95) -> str:
    """One sentence saying which test failed and by how much, e.g.
    ``"dcr_share = 0.98 exceeds threshold 0.60 by 0.38"``.

    Used when the audit result carries no ``message`` of its own (the audits
    policy writes one for every failure; the report prefers it so the page and
    the CLI say the same words).
    """
    name = str(result.get("name", "test"))
    message = str(result.get("message") or "")
    status = result.get("status", "ok")
    if status != "ok":
        why = f": {message}" if message else ""
        return f"{name} did not complete (status {status}){why}; a required test that does not run fails the gate"
    value, judged, threshold = result.get("value"), result.get("judged_value"), result.get("threshold")
    x = judged if judged is not None else value
    if threshold is None or x is None:
        return message or f"{name} failed (no value or threshold recorded)"
    upper = result.get("direction", "max") == "max"
    margin = float(x) - float(threshold) if upper else float(threshold) - float(x)
    if judged is not None and value is not None and judged != value:
        side = "upper" if upper else "lower"
        subject = (
            f"{name}: {side} {100 * confidence:g}% confidence bound {fmt_number(judged)} (estimate {fmt_number(value)})"
        )
    else:
        subject = f"{name} = {fmt_number(x)}"
    if margin < 0:  # failed for another reason than the value (e.g. a policy rule); say what we know
        return f"{subject}, threshold {fmt_number(threshold)}" + (f": {message}" if message else "")
    verb = "exceeds" if upper else "is below"
    return f"{subject} {verb} threshold {fmt_number(threshold)} by {fmt_number(margin)}"


def _failed(result: Mapping[str, Any]) -> bool:
    return bool(result.get("required", True)) and result.get("passed") is not True


def _decision(manifest: Mapping[str, Any], audit: Mapping[str, Any]) -> tuple[str, list[str], list[str]]:
    """(decision, failure sentences, extra warnings). The manifest's decision is the gate's final
    word; the audit's is used when there is no manifest decision (``dpsynth audit``)."""
    decision = manifest.get("decision") or audit.get("decision")
    if decision not in ("PASS", "FAIL"):
        raise UsageError(
            f"report: a 'decision' of PASS or FAIL is required in the manifest or the audit, got {decision!r}"
        )
    confidence = float(audit.get("confidence", 0.95) or 0.95)
    results = [r for r in audit.get("results", []) or [] if isinstance(r, Mapping)]
    failures = [str(r.get("message") or "") or describe_failure(r, confidence) for r in results if _failed(r)]
    warnings = []
    audit_decision = audit.get("decision")
    if audit_decision in ("PASS", "FAIL") and audit_decision != decision:
        warnings.append(f"The audit's own decision was {audit_decision}; the release gate decided {decision}.")
    return decision, failures, warnings


# ---------------------------------------------------------------------------- sections
def _budget(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    privacy = manifest.get("privacy") or {}
    budget = manifest.get("budget") or {}
    if not privacy and not budget:
        return None
    eps = privacy.get("epsilon")
    cap = budget.get("epsilon_cap")
    spent = budget.get("spent_epsilon")
    naive = budget.get("naive_sum_epsilon")
    remaining = budget.get("remaining_epsilon")
    if remaining is None and cap is not None and spent is not None:
        remaining = max(float(cap) - float(spent), 0.0)
    values = [float(v) for v in (eps, cap, spent, naive) if isinstance(v, int | float)]
    scale = max(values) if values and max(values) > 0 else 1.0
    bars = []
    for label, value, css in (
        ("This release", eps, "this"),
        ("Dataset total (composed, what the ledger charges)", spent, "spent"),
        ("Naive sum of all releases (for comparison)", naive, "naive"),
    ):
        if isinstance(value, int | float):
            over = cap is not None and float(value) > float(cap) + 1e-12 and css != "naive"
            bars.append(
                {
                    "label": label,
                    "value": value,
                    "pct": 100.0 * float(value) / scale,
                    "css": css + (" over" if over else ""),
                }
            )
    saved = None
    if isinstance(naive, int | float) and isinstance(spent, int | float) and naive > spent:
        saved = float(naive) - float(spent)
    return {
        "epsilon": eps,
        "delta": privacy.get("delta"),
        "accountant": privacy.get("accountant"),
        "neighbouring": privacy.get("neighbouring"),
        "event": json.dumps(privacy["event"], indent=1, sort_keys=True) if privacy.get("event") else None,
        "cap": cap,
        "delta_cap": budget.get("delta_cap"),
        "spent": spent,
        "remaining": remaining,
        "naive": naive,
        "saved": saved,
        "bars": bars,
        "cap_pct": None if cap is None else 100.0 * float(cap) / scale,
        "remaining_pct": (None if remaining is None or not cap else 100.0 * float(remaining) / float(cap)),
    }


def _domain_rows(domain: Mapping[str, Any], min_cell: int) -> tuple[list[dict[str, str]], list[str]]:
    parts = {k: domain.get(k) for k in ("clipped_low", "clipped_high", "mapped_to_other")}
    if all(isinstance(v, int | float) or v is None for v in parts.values()):
        if all(v is None for v in parts.values()):
            return [], list(domain.get("ignored_columns") or [])
        rows = [{"column": "all columns", **{k: _small(v or 0, min_cell) for k, v in parts.items()}}]
    else:
        columns: list[str] = []
        for v in parts.values():
            for c in (v or {}) if isinstance(v, Mapping) else ():
                if c not in columns:
                    columns.append(c)
        rows = [
            {
                "column": c,
                **{k: _small((v or {}).get(c, 0) if isinstance(v, Mapping) else 0, min_cell) for k, v in parts.items()},
            }
            for c in columns
        ]
    return rows, [str(c) for c in domain.get("ignored_columns") or []]


def _detail_items(details: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Scalar details of a result (plot data and nested structures are left to the figures)."""
    items = []
    for key, value in details.items():
        if isinstance(value, bool | int | float) or value is None:
            items.append((str(key), fmt_number(value)))
        elif isinstance(value, str) and len(value) <= 200:
            items.append((str(key), value))
        elif isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
            items.append((str(key), f"[{fmt_number(value[0])}, {fmt_number(value[1])}]"))
    return items


def _result_rows(audit: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in audit.get("results", []) or []:
        if not isinstance(r, Mapping):
            continue
        required = bool(r.get("required", True))
        status = r.get("status", "ok")
        if status != "ok":
            verdict, css = ("NOT RUN" if status == "not_run" else "ERROR"), "fail" if required else "info"
        elif r.get("passed") is True:
            verdict, css = "PASS", "pass"
        elif r.get("passed") is False:
            verdict, css = ("FAIL", "fail") if required else ("ADVISORY", "warn")
        else:
            verdict, css = "—", "info"
        upper = r.get("direction", "max") == "max"
        rows.append(
            {
                "name": r.get("name", ""),
                "family": r.get("family", ""),
                "value": r.get("value"),
                "ci_low": r.get("ci_low"),
                "ci_high": r.get("ci_high"),
                "baseline": r.get("baseline"),
                "threshold": r.get("threshold"),
                "rule": "≤" if upper else "≥",
                "judged": r.get("judged_value") if r.get("judged_value") != r.get("value") else None,
                "verdict": verdict,
                "css": css,
                "required": required,
                "message": r.get("message") or "",
                "details": _detail_items(r.get("details") or {}),
            }
        )
    return rows


def _mapping_rows(obj: Any) -> list[tuple[str, str]]:
    """(key, value) pairs shown exactly as recorded (JSON form), so parameters can be copied back."""
    if not isinstance(obj, Mapping):
        return []
    return [(str(k), v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)) for k, v in obj.items()]


def build_context(
    manifest: Mapping[str, Any], audit: Mapping[str, Any], figures: ReportFigures, evidence: Evidence | None = None
) -> dict[str, Any]:
    """Everything the template shows, as plain values (no formatting logic in the template).

    ``evidence`` (the release directory's checked bundle, when re-rendering a
    release) fills the approval block with the signatures; without it the
    block shows what the manifest knows at release time.
    """
    manifest = manifest or {}
    audit = audit or {}
    decision, failures, warnings = _decision(manifest, audit)
    results = _result_rows(audit)
    reasons = [str(x) for x in manifest.get("reasons") or [] if str(x) not in failures]
    schema = manifest.get("schema") or {}
    ledger = manifest.get("ledger") or {}
    domain_rows, ignored = _domain_rows(manifest.get("domain_report") or {}, figures.min_cell)
    is_release = any(k in manifest for k in ("generator", "privacy", "budget"))
    return {
        "kind": "release" if is_release else "audit",
        "decision": decision,
        "failures": failures,
        "reasons": reasons,
        "warnings": warnings,
        "dataset_id": manifest.get("dataset_id"),
        "generator": manifest.get("generator"),
        "parameters": _mapping_rows(manifest.get("parameters")),
        "created_at": manifest.get("created_at"),
        "budget": _budget(manifest),
        "schema": {
            "name": schema.get("name"),
            "source": schema.get("source"),
            "sha256": schema.get("sha256"),
            "leaked": bool(schema.get("leaked_domain", False)),
        }
        if schema
        else None,
        "rows": manifest.get("rows") or audit.get("sizes") or {},
        "audit": {
            "tier": audit.get("tier"),
            "confidence": audit.get("confidence", 0.95),
            "seed": audit.get("seed"),
            "seconds": audit.get("seconds"),
            "policy": json.dumps(audit["policy"], indent=1, sort_keys=True) if audit.get("policy") else None,
            "claimed_epsilon": audit.get("claimed_epsilon"),
        },
        "results": results,
        "criteria": criteria_context(manifest, results, release_risks(manifest)) if is_release else None,
        "approval": approval_context(manifest, evidence) if is_release else None,
        "domain_rows": domain_rows,
        "ignored_columns": ignored,
        "has_domain_report": bool(manifest.get("domain_report")),
        "repro": {
            "seed": manifest.get("seed"),
            "noise_source": manifest.get("noise_source"),
            "sha256": manifest.get("synthetic_sha256"),
            "entry_id": ledger.get("entry_id"),
            "entry_hash": ledger.get("entry_hash"),
            "head_hash": ledger.get("head_hash"),
            "versions": _mapping_rows(manifest.get("versions")),
        },
        "fig": figures,
    }


def render_report(
    manifest: Mapping[str, Any], audit: Mapping[str, Any], figures: ReportFigures, evidence: Evidence | None = None
) -> str:
    """The report as HTML text (self-contained: inline CSS, base64 images, no network resources).

    ``manifest`` may be partial (``dpsynth audit`` has no generator or budget);
    sections without data say so instead of failing. Raises ``UsageError`` if
    neither dict has a PASS/FAIL ``decision``. ``evidence``: see :func:`build_context`.
    """
    return _ENV.get_template("report.html").render(**build_context(manifest, audit, figures, evidence))


def write_report(
    path: str | Path,
    manifest: Mapping[str, Any],
    audit: Mapping[str, Any],
    train: pd.DataFrame,
    synthetic: pd.DataFrame | None,
    column_kinds: Mapping[str, str],
    min_cell: int = 10,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Build the figures, render and write the report atomically (temp file, fsync, rename).

    ``train`` is the table the generator saw (the real data, aggregated with
    small-cell suppression); ``bounds`` are optional public numeric bounds
    (e.g. from the schema) for the histogram grids. Returns the path written.
    """
    _decision(manifest or {}, audit or {})  # fail fast, before the (slower) figures
    figures = build_figures(train, synthetic, column_kinds, audit, min_cell=min_cell, bounds=bounds)
    html = render_report(manifest, audit, figures)
    target = Path(path)
    atomic_write_text(target, html)
    return target


__all__ = ["render_report", "write_report", "build_context", "describe_failure", "fmt_number"]
