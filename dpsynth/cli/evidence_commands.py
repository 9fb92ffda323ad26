"""``dpsynth keys``, ``approve``, ``reject`` and ``verify``: identities, decisions, evidence."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dpsynth.cli._app import (
    _fail,
    app,
    keys_app,
    out,
)
from dpsynth.errors import DpsynthError, UsageError

KEYS_DIR_HELP = "Key directory (default $DPSYNTH_KEYS or ~/.config/dpsynth/keys)."
TRUSTED_HELP = "Directory of NAME.pub: the operator's signature must be by their trusted key."


@keys_app.command("new")
def keys_new(
    name: str = typer.Argument(..., help="Identity name (e.g. the person's login)."),
    key_dir: Path | None = typer.Option(None, "--dir", help=KEYS_DIR_HELP),
) -> None:
    """Create an Ed25519 key pair: NAME.key (mode 0600) and NAME.pub (share it with verifiers)."""
    from dpsynth.evidence.keys import default_key_dir, new_key

    try:
        identity = new_key(name, key_dir)
    except DpsynthError as exc:
        _fail(exc)
    directory = key_dir or default_key_dir()
    out.print(
        f"key {name}: id {identity.key_id[:16]} (sha256 of the public key {identity.key_id}); private "
        f"{directory / (name + '.key')} (0600), public {directory / (name + '.pub')}",
        highlight=False,
    )


@keys_app.command("export")
def keys_export(
    name: str = typer.Argument(..., help="Identity name."),
    key_dir: Path | None = typer.Option(None, "--dir", help=KEYS_DIR_HELP),
) -> None:
    """Print NAME's public key (PEM), for a verifier's --trusted-keys directory (save it as NAME.pub)."""
    from dpsynth.evidence.keys import default_key_dir, export_public, load_public

    try:
        path = (key_dir or default_key_dir()) / f"{name}.pub"
        if not path.is_file():
            raise UsageError(f"no public key {path}: create it with `dpsynth keys new {name}`")
        public = load_public(path)
    except DpsynthError as exc:
        _fail(exc)
    sys.stdout.write(export_public(public).decode())


def _decide(
    release_dir: Path,
    ledger: str,
    name: str,
    reason: str,
    keys_dir: Path | None,
    trusted_keys: Path | None,
    decision: str,
) -> None:
    from dpsynth.evidence.approval import decide
    from dpsynth.evidence.keys import load_identity
    from dpsynth.evidence.keys import trusted_keys as load_trusted
    from dpsynth.privacy.ledger import open_ledger

    try:
        approver = load_identity(name, keys_dir)
        trusted = load_trusted(trusted_keys) if trusted_keys is not None else None
        result = decide(release_dir, open_ledger(ledger), approver, decision, reason, trusted=trusted)
    except DpsynthError as exc:
        _fail(exc, {"approver": "--as", "reason": "--reason", "ledger": "--ledger"})
    out.print(
        f"{decision.upper()} {release_dir} by {result.by} (key {approver.key_id[:16]}): ledger entry "
        f"{result.ledger_entry_id} on spend {result.entry_id}, {len(result.files)} file hash(es) recorded; "
        "the budget stays spent",
        highlight=False,
    )


@app.command("approve")
def approve(
    release_dir: Path = typer.Argument(..., help="Release directory awaiting approval."),
    ledger: str = typer.Option(..., "--ledger", help="The ledger the release was spent from."),
    name: str = typer.Option(..., "--as", help="Approver (not the operator); signs with this key."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the ledger and signed)."),
    keys_dir: Path | None = typer.Option(None, "--keys-dir", help=KEYS_DIR_HELP),
    trusted_keys: Path | None = typer.Option(None, "--trusted-keys", help=TRUSTED_HELP),
) -> None:
    """Approve a release: a decision record in the ledger plus the approver's signature over the bundle."""
    _decide(release_dir, ledger, name, reason, keys_dir, trusted_keys, "approved")


@app.command("reject")
def reject(
    release_dir: Path = typer.Argument(..., help="Release directory awaiting approval."),
    ledger: str = typer.Option(..., "--ledger", help="The ledger the release was spent from."),
    name: str = typer.Option(..., "--as", help="Reviewer (not the operator); signs with this key."),
    reason: str = typer.Option(..., "--reason", help="Why the release is rejected (required)."),
    keys_dir: Path | None = typer.Option(None, "--keys-dir", help=KEYS_DIR_HELP),
    trusted_keys: Path | None = typer.Option(None, "--trusted-keys", help=TRUSTED_HELP),
) -> None:
    """Reject a release: recorded and signed like an approval; the budget stays spent."""
    _decide(release_dir, ledger, name, reason, keys_dir, trusted_keys, "rejected")


@app.command("verify")
def verify(
    release_dir: Path = typer.Argument(..., help="Signed release directory."),
    ledger: str | None = typer.Option(
        None, "--ledger", help="Also check the spend, the approval and the chain in this ledger."
    ),
    trusted_keys: Path | None = typer.Option(
        None, "--trusted-keys", help="Directory of NAME.pub: every signer must be one of them."
    ),
) -> None:
    """Check every file's size and sha256, every signature, and (with --ledger) the ledger: exit 0, or 6."""
    from dpsynth.evidence.keys import trusted_keys as load_trusted
    from dpsynth.evidence.verify import verify_release
    from dpsynth.privacy.ledger import open_ledger

    try:
        trusted = load_trusted(trusted_keys) if trusted_keys is not None else None
        report = verify_release(release_dir, open_ledger(ledger) if ledger is not None else None, trusted)
    except DpsynthError as exc:
        _fail(exc)
    caveats = []
    if not report.ledger_checked:
        caveats.append("ledger not checked (add --ledger)")
    if trusted is None:
        caveats.append("signers not checked against trusted keys (add --trusted-keys)")
    out.print(
        f"[bold green]VERIFIED[/] {release_dir}: {report.files} files, status {report.status}, signed by "
        + ", ".join(report.signatures)
        + ("; " + "; ".join(caveats) if caveats else ""),
        highlight=False,
    )


# -- audit ---------------------------------------------------------------------------------
