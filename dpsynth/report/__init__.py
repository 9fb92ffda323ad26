"""The release report: a self-contained HTML page (inline CSS, base64 PNG figures).

* :func:`write_report` - figures + HTML, written atomically; what ``dpsynth release`` and
  ``dpsynth audit`` call.
* :func:`build_figures` / :func:`render_report` - the two steps separately.
* :func:`column_distribution` - the small-cell-suppressed aggregation behind the
  real-vs-synthetic plots (tested directly: no rare category or extreme value escapes).
"""

from dpsynth.report.distributions import ColumnDistribution, column_distribution
from dpsynth.report.figures import ColumnPanel, ReportFigures, build_figures
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
    "render_report",
    "write_report",
]
