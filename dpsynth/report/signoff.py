"""The report's approval block: who ran the release, who decided it, when, with which key, and why.

Two moments fill it differently:

* **At release time** (``report.html`` / ``report.pdf`` inside the release
  directory) the bundle is not signed yet (it lists this report's sha256), so
  the block names the operator from the manifest and says whether a reviewer
  is awaited or not required.
* **Afterwards** (``dpsynth report RELEASE_DIR``) it reads ``bundle.json`` and
  ``bundle.sig.json``: the operator's and, after ``dpsynth approve`` /
  ``reject``, the approver's signed decision (name, key id, date, reason,
  ledger record), with the result of checking every file and signature, and
  optionally the ledger, when the copy was rendered (:func:`read_evidence`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dpsynth.errors import DpsynthError


@dataclass(frozen=True)
class Evidence:
    """A release directory's signed bundle, as read and checked by :func:`read_evidence`."""

    index: dict[str, Any]
    signatures: dict[str, Any]
    bundle_sha256: str
    problems: list[str] = field(default_factory=list)  # files and signatures; empty: all matched
    ledger_location: str | None = None  # None: the ledger was not checked
    ledger_problems: list[str] = field(default_factory=list)
    checked_at: str = ""
    trusted_checked: bool = False  # every signer's key was checked against trusted public keys


def read_evidence(directory: Path, ledger: Any | None = None, trusted: dict[str, str] | None = None) -> Evidence | None:
    """Read and check ``bundle.json`` / ``bundle.sig.json`` of ``directory``; ``None`` for an unsigned release.

    Every check of ``dpsynth verify`` runs (files, signatures, and with
    ``ledger`` the ledger's chain, spend and decision records); the problems
    are returned, not raised, so the caller decides what is fatal. With
    ``trusted`` (``{name: key id}``) every signer must hold their trusted key.
    """
    from dpsynth.evidence.bundle import BUNDLE, read_bundle
    from dpsynth.evidence.verify import check_files, check_ledger, check_signatures

    if not (directory / BUNDLE).is_file():
        return None
    data, index, signatures = read_bundle(directory)
    problems = check_files(directory, index) + check_signatures(data, index, signatures, trusted)
    ledger_problems: list[str] = []
    if ledger is not None:
        try:
            ledger_problems = check_ledger(index, signatures, ledger)
        except DpsynthError as exc:
            ledger_problems = [f"ledger: {exc}"]
    return Evidence(
        index=index,
        signatures=signatures,
        bundle_sha256=hashlib.sha256(data).hexdigest(),
        problems=problems,
        ledger_location=getattr(ledger, "location", None) if ledger is not None else None,
        ledger_problems=ledger_problems,
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        trusted_checked=trusted is not None,
    )


def _signature(evidence: Evidence, role: str) -> Mapping[str, Any] | None:
    records = evidence.signatures.get("signatures")
    if not isinstance(records, list):
        return None
    found = [s for s in records if isinstance(s, Mapping) and s.get("role") == role]
    return found[0] if found else None


STATUS_TEXT = {
    "approved": ("APPROVED", "pass", "A reviewer other than the operator approved the release and signed it."),
    "rejected": ("REJECTED", "fail", "A reviewer other than the operator rejected the release: it is not released."),
    "awaiting-approval": (
        "AWAITING APPROVAL",
        "warn",
        "The policy requires a reviewer other than the operator; the release is not out until `dpsynth approve` "
        "records the decision.",
    ),
    "not-required": ("NOT REQUIRED", "info", "The policy does not require a second reviewer for this release."),
    "withheld": ("NOT APPLICABLE", "info", "The gate withheld the release: there is nothing to approve."),
    "unsigned": ("UNSIGNED", "warn", "The release was made without an operator identity: it carries no signatures."),
}


def approval_context(manifest: Mapping[str, Any], evidence: Evidence | None = None) -> dict[str, Any]:
    """The approval block as plain values: status, operator row, approver row, checks."""
    recorded = manifest.get("approval") if isinstance(manifest.get("approval"), Mapping) else {}
    index = evidence.index if evidence is not None else {}
    operator_index = index.get("operator") if isinstance(index.get("operator"), Mapping) else {}
    operator_name = operator_index.get("name") or recorded.get("operator")
    operator_key = operator_index.get("key_id") or recorded.get("operator_key_id")
    required = bool(index.get("approval_required", recorded.get("required", False)))
    approver_sig = _signature(evidence, "approver") if evidence is not None else None
    decision = approver_sig.get("decision") if approver_sig is not None else None
    decision = decision if isinstance(decision, Mapping) else {}

    if manifest.get("decision") == "FAIL":
        status = "withheld"
    elif decision.get("decision") in ("approved", "rejected"):
        status = str(decision["decision"])
    elif required:
        status = "awaiting-approval"
    elif operator_name is None:
        status = "unsigned"
    else:
        status = "not-required"
    label, css, text = STATUS_TEXT[status]

    operator = None
    if operator_name is not None:
        if evidence is None:
            signed = "signs bundle.json, the index that lists this report's sha256, in bundle.sig.json"
        elif _signature(evidence, "operator") is not None and not evidence.problems:
            signed = "signed bundle.json (Ed25519; the signature verified when this copy was rendered)"
        else:
            signed = "signature of bundle.json did not verify (see the problems below)"
        operator = {
            "name": operator_name,
            "key_id": operator_key,
            "date": index.get("created_at") or manifest.get("created_at"),
            "signed": signed,
        }
    approver = None
    if approver_sig is not None:
        approver = {
            "name": approver_sig.get("name"),
            "key_id": approver_sig.get("key_id"),
            "date": decision.get("at"),
            "decision": decision.get("decision"),
            "reason": decision.get("reason") or "",
            "ledger_entry_id": decision.get("ledger_entry_id"),
            "ledger_entry_hash": decision.get("ledger_entry_hash"),
        }
    checks = []
    if evidence is not None:
        files = index.get("files") if isinstance(index.get("files"), list) else []
        if not evidence.problems:
            checks.append(
                f"bundle.json lists {len(files)} files; each matched its size and sha256, and every signature "
                f"verified, on {evidence.checked_at}."
            )
            checks.append(
                "Every signer's key matched their trusted public key."
                if evidence.trusted_checked
                else "Signers were not checked against trusted public keys (dpsynth report --trusted-keys DIR)."
            )
        if evidence.ledger_location is None:
            checks.append("The ledger was not checked for this copy (dpsynth report --ledger L checks it).")
        elif not evidence.ledger_problems:
            checks.append(f"Ledger {evidence.ledger_location}: the chain, the spend and the decision records agree.")
    return {
        "status": status,
        "label": label,
        "css": css,
        "text": text,
        "required": required,
        "operator": operator,
        "approver": approver,
        "release_id": index.get("release_id") or manifest.get("release_id"),
        "bundle_sha256": evidence.bundle_sha256 if evidence is not None else None,
        "sealed": evidence is not None,
        "checks": checks,
        "problems": list(evidence.problems) + list(evidence.ledger_problems) if evidence is not None else [],
    }


__all__ = ["Evidence", "approval_context", "read_evidence"]
