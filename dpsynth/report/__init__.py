"""The release report: a self-contained HTML page (inline CSS, base64 PNG figures).

* :func:`write_report` - figures + HTML, written atomically; what ``dpsynth release`` and
  ``dpsynth audit`` call.
* :func:`build_figures` / :func:`render_report` - the two steps separately.
* :func:`column_distribution` - the small-cell-suppressed aggregation behind the
  real-vs-synthetic plots (tested directly: no rare category or extreme value escapes).
* :mod:`dpsynth.report.criteria` / :mod:`dpsynth.report.signoff` - the sections a reviewer
  files: one per policy-profile criterion, assumptions and residual risk, the approval block.
* :func:`write_release_report` - ``dpsynth report RELEASE_DIR``: re-rendered from a sealed
  release, written beside it; :func:`html_to_pdf` - the PDF, by headless Chromium.
"""

from dpsynth.report.browser import html_to_pdf
from dpsynth.report.distributions import ColumnDistribution, column_distribution
from dpsynth.report.figures import ColumnPanel, ReportFigures, build_figures
from dpsynth.report.filing import write_release_report
from dpsynth.report.html import describe_failure, render_report, write_report
from dpsynth.report.plots import PlotImage

__all__ = [
    "ColumnDistribution",
    "ColumnPanel",
    "PlotImage",
    "ReportFigures",
    "build_figures",
    "column_distribution",
    "describe_failure",
    "html_to_pdf",
    "render_report",
    "write_release_report",
    "write_report",
]
