"""The ``dpsynth`` command line.

Exit codes (stable; pipelines script against them):
0 released / passed / verified, 1 other error, 2 usage or bad input, 3 refused by the gate,
4 over budget, 5 awaiting approval (the gate passed; the policy requires a reviewer:
``dpsynth approve`` / ``reject``), 6 verification failed (``dpsynth verify``).
A user mistake prints one clear message, never a traceback.
"""

from __future__ import annotations

import sys

from dpsynth.cli import (  # noqa: F401  (register the commands)
    benchmark_commands,
    budget_commands,
    evidence_commands,
    policy_commands,
    release_commands,
    report_commands,
    schema_commands,
)
from dpsynth.cli._app import BUDGET_OPTIONS, DISCOVER_OPTIONS, RELEASE_OPTIONS, _fail, app, err


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


__all__ = ["BUDGET_OPTIONS", "DISCOVER_OPTIONS", "RELEASE_OPTIONS", "_fail", "app", "main"]
