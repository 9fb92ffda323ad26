"""``dpsynth report``: the filing copy of an existing release, written beside its sealed directory."""

from __future__ import annotations

from pathlib import Path

import typer

from dpsynth.cli._app import _fail, app, err, out
from dpsynth.errors import DpsynthError


@app.command("report")
def report(
    release_dir: Path = typer.Argument(..., help="Release directory (made by `dpsynth release`)."),
    pdf: bool = typer.Option(False, "--pdf", help="Write a PDF (headless Chromium, Debian package chromium)."),
    out_path: Path | None = typer.Option(
        None, "--out", help="File to write (default: RELEASE_DIR.report.html or .pdf beside the directory)."
    ),
    ledger: str | None = typer.Option(
        None, "--ledger", help="Also check the spend and the decision in this ledger, and say so in the report."
    ),
    trusted_keys: Path | None = typer.Option(
        None, "--trusted-keys", help="Directory of NAME.pub: every signer must be one of them (as for verify)."
    ),
) -> None:
    """Re-render a release's report from its files, with the approval block filled in from the signatures.

    The release directory is sealed by bundle.json, so the report is written outside it. A directory whose
    files or signatures do not match the bundle is refused (exit 6).
    """
    from dpsynth.evidence.keys import trusted_keys as load_trusted
    from dpsynth.privacy.ledger import open_ledger
    from dpsynth.report.filing import write_release_report

    try:
        opened = open_ledger(ledger) if ledger is not None else None
        trusted = load_trusted(trusted_keys) if trusted_keys is not None else None
        with err.status("reading the release") as status:
            target, evidence = write_release_report(
                release_dir,
                out_path,
                pdf=pdf,
                ledger=opened,
                trusted=trusted,
                progress=lambda message: status.update(message),
            )
    except DpsynthError as exc:
        _fail(exc, {"out": "--out", "ledger": "--ledger"})
    if evidence is not None and evidence.ledger_problems:
        err.print(
            "[yellow]note:[/] the ledger check found: "
            + "; ".join(evidence.ledger_problems)
            + " (shown in the report)",
            highlight=False,
        )
    signed = "unsigned release" if evidence is None else f"bundle {evidence.bundle_sha256[:16]} checked"
    out.print(f"wrote {target} ({signed}); {release_dir} is unchanged", highlight=False)
