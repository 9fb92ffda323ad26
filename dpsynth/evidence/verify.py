"""Every check of ``dpsynth verify RELEASE_DIR``: files, signatures, ledger.

Three independent families, each returning one message per problem (an empty
list means the family passed):

* :func:`check_files`: each file listed in ``bundle.json`` exists with the
  listed size and sha256, and no other file is in the directory.
* :func:`check_signatures`: ``bundle.json`` is canonical JSON; the operator
  named in it signed exactly its bytes with the key it names; every
  approver's signature covers the bundle's sha256 and its decision, by a key
  that is not the operator's; with trusted keys, every signer's name maps to
  the key that signed.
* :func:`check_ledger`: the ledger's hash chain verifies; it holds the spend
  (entry id and hash) and head hash the bundle names; the spend's outcome
  matches the bundle's status; and, when approval is required, an
  ``approved`` decision record whose reviewer and file hashes match the
  approver's signed decision.

:func:`verify_release` runs them all and raises
:class:`~dpsynth.errors.VerificationFailed` (exit 6) listing every problem.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpsynth.errors import DpsynthError, VerificationFailed
from dpsynth.evidence.approval import AWAITING
from dpsynth.evidence.bundle import (
    BUNDLE_FORMAT,
    EVIDENCE_FILES,
    canonical,
    decision_message,
    read_bundle,
    sha256_file,
)
from dpsynth.evidence.keys import key_id, public_from_hex, signature_valid
from dpsynth.privacy.ledger import AnyLedger


@dataclass(frozen=True)
class VerifyReport:
    """What passed: counts for the message of a successful ``dpsynth verify``."""

    files: int
    signatures: list[str]
    ledger_checked: bool
    status: str
    problems: list[str] = field(default_factory=list)


def check_files(directory: Path, index: dict[str, Any]) -> list[str]:
    problems = []
    listed = index.get("files")
    if not isinstance(listed, list):
        return ["bundle.json: no file list"]
    names = set()
    for item in listed:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
            problems.append(f"bundle.json: malformed file entry {item!r}")
            continue
        names.add(name)
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: listed in the bundle but missing")
            continue
        size = path.stat().st_size
        if size != item.get("size"):
            problems.append(f"{name}: size {size} bytes, the bundle says {item.get('size')}: the file was changed")
        if sha256_file(path) != item.get("sha256"):
            problems.append(f"{name}: sha256 does not match the bundle: the file was changed")
    for path in sorted(directory.iterdir()):
        if path.name not in names and path.name not in EVIDENCE_FILES:
            problems.append(f"{path.name}: in the directory but not in the signed bundle: it was added")
    return problems


def _signer_problems(sig: dict[str, Any], trusted: dict[str, str] | None) -> tuple[list[str], Any]:
    """Problems with a signature record's key (id matches public key; trusted name), and the key."""
    who = f"{sig.get('role')} signature by {sig.get('name')!r}"
    try:
        public = public_from_hex(str(sig.get("public_key")))
    except ValueError:
        return [f"{who}: malformed public key"], None
    problems = []
    if key_id(public) != sig.get("key_id"):
        problems.append(f"{who}: key id does not match its public key")
    if trusted is not None:
        if sig.get("name") not in trusted:
            problems.append(f"{who}: {sig.get('name')!r} is not among the trusted keys")
        elif trusted[sig["name"]] != key_id(public):
            problems.append(
                f"{who}: signed with key {key_id(public)[:16]}, but the trusted key of "
                f"{sig['name']!r} is {trusted[sig['name']][:16]}"
            )
    return problems, public


def check_signatures(
    data: bytes, index: dict[str, Any], signatures: dict[str, Any], trusted: dict[str, str] | None
) -> list[str]:
    problems = []
    if index.get("format") != BUNDLE_FORMAT:
        problems.append(f"bundle.json: format {index.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    if canonical(index) != data:
        problems.append("bundle.json: not in canonical form: it was edited")
    digest = hashlib.sha256(data).hexdigest()
    if signatures.get("bundle_sha256") != digest:
        problems.append("bundle.sig.json: names a different bundle (bundle_sha256 does not match bundle.json)")
    operator = index.get("operator") if isinstance(index.get("operator"), dict) else {}
    records = signatures.get("signatures") if isinstance(signatures.get("signatures"), list) else []
    operators = [s for s in records if isinstance(s, dict) and s.get("role") == "operator"]
    approvers = [s for s in records if isinstance(s, dict) and s.get("role") == "approver"]
    if len(operators) != 1:
        problems.append(f"bundle.sig.json: {len(operators)} operator signatures, expected exactly one")
    for sig in operators:
        found, public = _signer_problems(sig, trusted)
        problems += found
        if sig.get("name") != operator.get("name") or sig.get("key_id") != operator.get("key_id"):
            problems.append(
                f"operator signature by {sig.get('name')!r} (key {str(sig.get('key_id'))[:16]}): the "
                f"bundle names operator {operator.get('name')!r} (key {str(operator.get('key_id'))[:16]})"
            )
        if public is not None and not signature_valid(public, str(sig.get("signature")), data):
            problems.append(f"operator signature by {sig.get('name')!r}: invalid for bundle.json")
    for sig in approvers:
        found, public = _signer_problems(sig, trusted)
        problems += found
        decision = sig.get("decision") if isinstance(sig.get("decision"), dict) else {}
        if sig.get("name") == operator.get("name") or sig.get("key_id") == operator.get("key_id"):
            problems.append(f"approver signature by {sig.get('name')!r}: the operator cannot approve their own release")
        if decision.get("by") != sig.get("name"):
            problems.append(f"approver signature by {sig.get('name')!r}: the decision names {decision.get('by')!r}")
        if public is not None and not signature_valid(
            public, str(sig.get("signature")), decision_message(digest, decision)
        ):
            problems.append(f"approver signature by {sig.get('name')!r}: invalid for this bundle and decision")
    if len(approvers) > 1:
        problems.append(f"bundle.sig.json: {len(approvers)} approver signatures; a release is decided once")
    return problems


def check_ledger(index: dict[str, Any], signatures: dict[str, Any], ledger: AnyLedger) -> list[str]:
    where = f"ledger {ledger.location}"
    ref = index.get("ledger") if isinstance(index.get("ledger"), dict) else {}
    result = ledger.verify(expected_head=ref.get("head_hash") if isinstance(ref.get("head_hash"), str) else None)
    problems = [f"{where}: {p}" for p in result.problems]
    spend_id, spend_hash = ref.get("entry_id"), ref.get("entry_hash")
    entries = {e.id: e for s in ledger.summary() for e in s.entries}
    spend = entries.get(spend_id)
    if spend is None or spend.hash != spend_hash or spend.dataset_id != index.get("dataset_id"):
        return problems + [
            (
                f"{where}: holds no spend {spend_id} on dataset {index.get('dataset_id')!r} with hash "
                f"{str(spend_hash)[:16]}: this release was not spent from this ledger"
            )
        ]
    records = ledger.status_records(spend_id)
    outcomes = [r for r in records if r.status not in ("approved", "rejected")]
    decisions = [r for r in records if r.status in ("approved", "rejected")]
    if [r.status for r in outcomes] != [index.get("status")]:
        problems.append(
            f"{where}: spend {spend_id}'s outcome is {[r.status for r in outcomes]}, the bundle says "
            f"{index.get('status')!r}"
        )
    approvers = [s for s in signatures.get("signatures", []) if isinstance(s, dict) and s.get("role") == "approver"]
    if index.get("approval_required") and index.get("status") == AWAITING:
        if not decisions:
            problems.append(
                f"{where}: no approval record for spend {spend_id}: the release was never approved, or "
                "its approval was removed from the ledger"
            )
        if not approvers:
            problems.append("bundle.sig.json: no approver signature, but the policy requires approval")
    for record in decisions:
        if record.status != "approved":
            problems.append(f"{where}: spend {spend_id} was {record.status} by {(record.details or {}).get('by')!r}")
    for sig in approvers:
        decision = sig.get("decision") or {}
        match = [r for r in decisions if r.id == decision.get("ledger_entry_id")]
        if not match:
            problems.append(
                f"{where}: the approver's signed decision names ledger entry "
                f"{decision.get('ledger_entry_id')}, which is not a decision on spend {spend_id}"
            )
            continue
        record, details = match[0], match[0].details or {}
        if (
            record.hash != decision.get("ledger_entry_hash")
            or record.status != decision.get("decision")
            or details.get("by") != decision.get("by")
            or details.get("reason") != decision.get("reason")
        ):
            problems.append(f"{where}: decision entry {record.id} differs from the approver's signed decision")
        reviewed = {f["name"]: f["sha256"] for f in index.get("files", []) if isinstance(f, dict)}
        reviewed["bundle.json"] = signatures.get("bundle_sha256")
        if details.get("files") != reviewed:
            problems.append(f"{where}: decision entry {record.id} reviewed other files than this bundle lists")
    return problems


def verify_release(
    directory: Path, ledger: AnyLedger | None = None, trusted: dict[str, str] | None = None
) -> VerifyReport:
    """Run every check; raise :class:`VerificationFailed` listing all problems, else report what passed."""
    data, index, signatures = read_bundle(directory)
    problems = check_files(directory, index) + check_signatures(data, index, signatures, trusted)
    if ledger is not None:
        try:
            problems += check_ledger(index, signatures, ledger)
        except DpsynthError as exc:
            problems.append(f"ledger: {exc}")
    status = index.get("status", "?")
    approvers = [s for s in signatures.get("signatures", []) if isinstance(s, dict) and s.get("role") == "approver"]
    if index.get("approval_required") and status == AWAITING and not approvers:
        problems.append(f"{directory}: awaiting approval (status {status!r}): not approved yet")
    for sig in approvers:
        decision = sig.get("decision") if isinstance(sig.get("decision"), dict) else {}
        if decision.get("decision") != "approved":
            problems.append(
                f"{directory}: {decision.get('decision')} by {sig.get('name')!r} "
                f"({decision.get('reason')!r}): not approved"
            )
    if problems:
        raise VerificationFailed(
            f"{directory} FAILED verification ({len(problems)} problem(s)):\n  " + "\n  ".join(dict.fromkeys(problems))
        )
    names = [f"{s.get('role')} {s.get('name')} ({str(s.get('key_id'))[:16]})" for s in signatures.get("signatures", [])]
    return VerifyReport(
        files=len(index["files"]),
        signatures=names,
        ledger_checked=ledger is not None,
        status="approved" if approvers else status,
    )


__all__ = ["VerifyReport", "check_files", "check_ledger", "check_signatures", "verify_release"]
