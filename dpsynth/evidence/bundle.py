"""The signed index of a release directory: ``bundle.json`` and ``bundle.sig.json``.

``bundle.json`` lists every other file of the directory (name, size, sha256)
with the release id, the operator, whether approval is required, and the
ledger spend the release stands on (entry id and hash, head hash when the
bundle was made). It is canonical JSON (sorted keys, no spaces, ASCII), so
the same content always has the same bytes and its sha256 identifies the
release. It never changes after the release is written.

``bundle.sig.json`` holds the signatures, kept apart so the index stays
stable: the operator's Ed25519 signature of the ``bundle.json`` bytes, and,
after review, the approver's signature of the canonical JSON of
``{"bundle_sha256": ..., "decision": {...}}`` (:func:`decision_message`),
which binds the decision (who, when, why, its ledger record) to exactly the
files reviewed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from dpsynth._files import atomic_write_text, sha256_file
from dpsynth.errors import UsageError
from dpsynth.evidence.keys import Identity

BUNDLE = "bundle.json"
SIGNATURES = "bundle.sig.json"
BUNDLE_FORMAT = "dpsynth-bundle/1"
SIGNATURES_FORMAT = "dpsynth-signatures/1"
EVIDENCE_FILES = (BUNDLE, SIGNATURES)


def canonical(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def file_entries(directory: Path) -> list[dict[str, Any]]:
    """``[{name, size, sha256}]`` of every file of ``directory`` except the evidence files, by name."""
    out = []
    for path in sorted(directory.iterdir()):
        if path.name in EVIDENCE_FILES:
            continue
        if not path.is_file() or path.is_symlink():
            raise UsageError(f"{path}: a release directory holds regular files only")
        out.append({"name": path.name, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return out


def build_index(
    directory: Path,
    *,
    release_id: str,
    dataset_id: str,
    created_at: str,
    status: str,
    approval_required: bool,
    operator: Identity,
    ledger: dict[str, Any],
) -> dict[str, Any]:
    """The ``bundle.json`` content for ``directory`` as it is now."""
    return {
        "format": BUNDLE_FORMAT,
        "release_id": release_id,
        "dataset_id": dataset_id,
        "created_at": created_at,
        "status": status,
        "approval_required": bool(approval_required),
        "operator": {"name": operator.name, "key_id": operator.key_id},
        "ledger": {
            "location": ledger["location"],
            "entry_id": int(ledger["entry_id"]),
            "entry_hash": ledger["entry_hash"],
            "head_hash": ledger["head_hash"],
        },
        "files": file_entries(directory),
    }


def signature_record(identity: Identity, role: str, signature: str, **extra: Any) -> dict[str, Any]:
    return {
        "role": role,
        "name": identity.name,
        "key_id": identity.key_id,
        "public_key": identity.public_hex,
        **extra,
        "signature": signature,
    }


def write_signed_bundle(directory: Path, index: dict[str, Any], operator: Identity) -> str:
    """Write ``bundle.json`` and ``bundle.sig.json`` (the operator's signature); return the bundle's sha256."""
    data = canonical(index)
    atomic_write_text(directory / BUNDLE, data.decode("ascii"))
    digest = hashlib.sha256(data).hexdigest()
    signatures = {
        "format": SIGNATURES_FORMAT,
        "bundle_sha256": digest,
        "signatures": [signature_record(operator, "operator", operator.sign(data))],
    }
    atomic_write_text(directory / SIGNATURES, json.dumps(signatures, indent=2, sort_keys=True) + "\n")
    return digest


def read_bundle(directory: Path) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """``(bundle.json bytes, its content, bundle.sig.json content)``; ``UsageError`` if absent or not JSON."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a release directory")
    paths = {name: directory / name for name in EVIDENCE_FILES}
    for name, path in paths.items():
        if not path.is_file():
            raise UsageError(
                f"{directory} has no {name}: it is not a signed release (releases made by "
                "`dpsynth release --as NAME` carry one)"
            )
    data = paths[BUNDLE].read_bytes()
    try:
        index = json.loads(data)
        signatures = json.loads(paths[SIGNATURES].read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{directory}: bundle files are not valid JSON: {exc}") from None
    if not isinstance(index, dict) or not isinstance(signatures, dict):
        raise UsageError(f"{directory}: bundle files must each hold a JSON object")
    return data, index, signatures


def decision_message(bundle_sha256: str, decision: dict[str, Any]) -> bytes:
    """What an approver signs: the bundle's sha256 and the decision record, as canonical JSON."""
    return canonical({"bundle_sha256": bundle_sha256, "decision": decision})


def add_approver_signature(directory: Path, approver: Identity, decision: dict[str, Any]) -> None:
    """Append the approver's signature over (bundle sha256, ``decision``) to ``bundle.sig.json``, atomically."""
    data, _, signatures = read_bundle(directory)
    digest = hashlib.sha256(data).hexdigest()
    signature = approver.sign(decision_message(digest, decision))
    signatures.setdefault("signatures", []).append(signature_record(approver, "approver", signature, decision=decision))
    atomic_write_text(directory / SIGNATURES, json.dumps(signatures, indent=2, sort_keys=True) + "\n")


__all__ = [
    "BUNDLE",
    "EVIDENCE_FILES",
    "SIGNATURES",
    "add_approver_signature",
    "build_index",
    "canonical",
    "decision_message",
    "file_entries",
    "read_bundle",
    "sha256_file",
    "write_signed_bundle",
]
