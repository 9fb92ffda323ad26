"""Headless Chromium: the report's PDF (``--print-to-pdf``) and its rendered DOM (``--dump-dom``, for tests).

The PDF is printed from the very HTML the release writes, by the browser
engine a reviewer opens it in, so the page and the filing copy cannot
disagree (docs/decisions.md, record 10). Chromium is a system program, the
Debian package ``chromium``; it is looked up on ``PATH`` (or
``$DPSYNTH_CHROMIUM``) and a missing one is a usage error naming the package.

Each run gets a fresh profile directory and runs without the sandbox (which
needs user namespaces, absent in containers and for root); it loads only
the report, a self-contained file with no scripts and no network
resources. A run that does not finish within ``timeout`` seconds is killed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from dpsynth._files import atomic_write_bytes
from dpsynth.errors import DpsynthError, UsageError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ENV_VAR = "DPSYNTH_CHROMIUM"
DEFAULT_TIMEOUT = 120.0
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-background-networking",
    "--no-first-run",
    "--no-default-browser-check",
)


def find_browser() -> str:
    """The Chromium executable: ``$DPSYNTH_CHROMIUM`` or the first of :data:`CANDIDATES` on ``PATH``.

    Raises ``UsageError`` (exit 2) saying what to install when none is found.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        found = shutil.which(override)
        if found is None:
            raise UsageError(f"${ENV_VAR} is {override!r}, which is not an executable program")
        return found
    for name in CANDIDATES:
        found = shutil.which(name)
        if found is not None:
            return found
    raise UsageError(
        "--pdf needs headless Chromium, which was not found on PATH (looked for "
        + ", ".join(CANDIDATES)
        + "). Install the Debian package: `apt-get install chromium` (or set $DPSYNTH_CHROMIUM to its path); "
        "the HTML report needs no browser"
    )


def _run(args: list[str], profile: Path, timeout: float, what: str) -> subprocess.CompletedProcess:
    command = [find_browser(), *FLAGS, f"--user-data-dir={profile}", *args]
    try:
        done = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DpsynthError(f"headless Chromium did not finish {what} within {timeout:g} s; it was stopped") from None
    if done.returncode != 0:
        raise DpsynthError(f"headless Chromium failed {what} (exit {done.returncode}): {_tail(done.stderr)}")
    return done


def _tail(stderr: bytes) -> str:
    """The last meaningful lines of Chromium's stderr (it logs D-Bus noise on machines without a session bus)."""
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip() and "dbus" not in ln]
    return " / ".join(lines[-3:]) or "no message"


def html_to_pdf(
    html: str, target: Path, timeout: float = DEFAULT_TIMEOUT, progress: Callable[[str], None] | None = None
) -> Path:
    """Print ``html`` to a PDF at ``target`` with headless Chromium; written atomically (complete or absent)."""
    target = Path(target)
    say = progress or (lambda message: None)
    with tempfile.TemporaryDirectory(prefix="dpsynth-pdf-") as tmp:
        page, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        say(f"rendering {target.name} with headless Chromium")
        args = ["--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()]
        _run(args, Path(tmp) / "profile", timeout, "printing the PDF")
        data = pdf.read_bytes() if pdf.is_file() else b""
        if not data.startswith(b"%PDF"):
            raise DpsynthError(f"headless Chromium wrote no PDF for {target}")
        atomic_write_bytes(target, data)
    return target


def dump_dom(html_path: Path, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The DOM of ``html_path`` after Chromium loaded and laid it out (``--dump-dom``), as HTML text."""
    with tempfile.TemporaryDirectory(prefix="dpsynth-dom-") as tmp:
        done = _run(["--dump-dom", Path(html_path).resolve().as_uri()], Path(tmp) / "profile", timeout, "loading")
    return done.stdout.decode("utf-8", "replace")


__all__ = ["CANDIDATES", "DEFAULT_TIMEOUT", "dump_dom", "find_browser", "html_to_pdf"]
