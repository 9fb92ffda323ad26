"""``dpsynth report RELEASE_DIR``: the report of an existing release, re-rendered from its files.

A release directory is sealed by ``bundle.json``: ``dpsynth verify`` fails on
any added or changed file. So this writes **outside** it, by default beside
it (``RELEASE_DIR.report.html`` / ``RELEASE_DIR.report.pdf``), and refuses an
output path inside it.

What it reads: ``manifest.json``, ``audit.json`` and the signed bundle,
checked as ``dpsynth verify`` checks them; a release whose files or
signatures do not match is refused (exit 6), so a filing copy always
describes the files that were signed. The approval block then shows the
operator's and the approver's signatures.

What it cannot read: the training rows, which are never kept with a
release. The attack plots are drawn again from ``audit.json``; the
real-vs-synthetic column panels (small-cell-suppressed aggregates, drawn at
release time) are copied from the sealed ``report.html``: only each panel's
PNG (checked to be a base64 PNG data URL), alt text and caption text are
taken, and re-escaped, never its markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from dpsynth._files import atomic_write_text
from dpsynth.errors import UsageError, VerificationFailed
from dpsynth.report.figures import build_figures
from dpsynth.report.html import render_report
from dpsynth.report.plots import PlotImage
from dpsynth.report.signoff import Evidence, read_evidence

_PNG = re.compile(r"^data:image/png;base64,([A-Za-z0-9+/]+={0,2})$")


class _ColumnPanels(HTMLParser):
    """Collects ``<figure>`` panels inside ``<section id="columns">`` (img, text and caption of each)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.panels: list[PlotImage] = []
        self._section_depth = 0  # >0 while inside the columns section (counts nested sections)
        self._figure: dict[str, Any] | None = None
        self._in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            if self._section_depth or values.get("id") == "columns":
                self._section_depth += 1
            return
        if not self._section_depth:
            return
        if tag == "figure":
            self._figure = {"png": "", "alt": "", "text": [], "caption": []}
        elif self._figure is not None and tag == "img":
            match = _PNG.match(values.get("src") or "")
            if match:
                self._figure["png"] = match.group(1)
                self._figure["alt"] = values.get("alt") or ""
        elif self._figure is not None and tag == "figcaption":
            self._in_caption = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self._section_depth:
            self._section_depth -= 1
        elif tag == "figcaption":
            self._in_caption = False
        elif tag == "figure" and self._figure is not None:
            f = self._figure
            text = " ".join(" ".join(f["text"]).split())
            caption = " ".join(" ".join(f["caption"]).split())
            self.panels.append(PlotImage(title="", png_base64=f["png"], alt=f["alt"] or text, caption=caption))
            self._figure = None

    def handle_data(self, data: str) -> None:
        if self._figure is not None:
            self._figure["caption" if self._in_caption else "text"].append(data)


def sealed_column_panels(html: str) -> list[PlotImage]:
    """The real-vs-synthetic panels of a report's HTML, as image + alt + caption (no markup kept)."""
    parser = _ColumnPanels()
    parser.feed(html)
    parser.close()
    return parser.panels


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"{path} not found: {path.parent} is not a dpsynth release directory")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path} must hold a JSON object")
    return value


def render_release(
    directory: Path, ledger: Any | None = None, trusted: dict[str, str] | None = None
) -> tuple[str, Evidence | None]:
    """The HTML report of the release in ``directory`` and its checked evidence (``None``: unsigned).

    Raises ``VerificationFailed`` when a file or signature does not match the
    signed bundle; ledger problems (with ``ledger``) are shown in the report's
    approval block instead, since a rejected or undecided release is one too.
    ``trusted`` (``{name: key id}``): every signer must hold their trusted key.
    """
    directory = Path(directory)
    manifest = _load_json(directory / "manifest.json")
    audit = _load_json(directory / "audit.json")
    evidence = read_evidence(directory, ledger, trusted)
    if evidence is not None and evidence.problems:
        raise VerificationFailed(
            f"{directory} does not match its signed bundle, so no report is rendered from it:\n  "
            + "\n  ".join(evidence.problems)
        )
    figures = build_figures(None, None, {}, audit)
    figures.has_synthetic = manifest.get("decision") == "PASS"
    sealed = directory / "report.html"
    if sealed.is_file():
        figures.sealed_columns = sealed_column_panels(sealed.read_text(encoding="utf-8"))
    if not figures.sealed_columns:
        figures.notes.append(
            "The release directory holds no column panels to copy, and the real rows are not kept with a "
            "release, so the real-vs-synthetic panels cannot be shown here."
        )
    return render_report(manifest, audit, figures, evidence), evidence


def default_output(directory: Path, pdf: bool) -> Path:
    """``RELEASE_DIR.report.pdf`` (or ``.html``) beside the release directory, never inside it."""
    directory = Path(directory).resolve()
    return directory.parent / f"{directory.name}.report.{'pdf' if pdf else 'html'}"


def write_release_report(
    directory: Path,
    out: Path | None = None,
    pdf: bool = False,
    ledger: Any | None = None,
    progress: Callable[[str], None] | None = None,
    trusted: dict[str, str] | None = None,
) -> tuple[Path, Evidence | None]:
    """Render the release's report to ``out`` (HTML, or PDF with ``pdf``), atomically; return (path, evidence).

    Refuses (``UsageError``) an ``out`` inside the release directory: the
    bundle seals it, and ``dpsynth verify`` would then fail.
    """
    say = progress or (lambda message: None)
    directory = Path(directory)
    target = Path(out) if out is not None else default_output(directory, pdf)
    if target.resolve().parent == directory.resolve() or directory.resolve() in target.resolve().parents:
        raise UsageError(
            f"--out {target} is inside the release directory {directory}, which bundle.json seals "
            "(`dpsynth verify` fails on an added file): write the report beside it",
            parameter="out",
        )
    if target.is_dir():
        raise UsageError(f"--out {target} is a directory: name the file to write", parameter="out")
    if pdf:
        from dpsynth.report.browser import find_browser, html_to_pdf

        find_browser()  # fail before the work when Chromium is missing
    say(f"checking the bundle of {directory} and rendering its report")
    html, evidence = render_release(directory, ledger, trusted)
    if pdf:
        html_to_pdf(html, target, progress=say)
    else:
        atomic_write_text(target, html)
    return target, evidence


__all__ = ["default_output", "render_release", "sealed_column_panels", "write_release_report"]
