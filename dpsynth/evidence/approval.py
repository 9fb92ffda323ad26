"""Approval as a step of the release: the policy's ``[release]`` table and a reviewer's decision.

A gate policy (audits' TOML) may carry a ``[release]`` table, which
``audits.Policy`` keeps as given (``Policy.release``) without reading it, so
the audits stay independent of dpsynth. This module validates it::

    [release]
    approval_required = true   # a release that passes the gate awaits a reviewer (exit 5)

A decision (:func:`decide`) is recorded twice, each checkable without the
other: as a decision record in the ledger's hash chain (who, why, the sha256
of every file reviewed) and as the approver's signature in
``bundle.sig.json`` over the bundle's sha256 and that record. The reviewer
must not be the operator who ran the release (four-eyes principle): a
different name and a different key. The budget stays spent whatever the
decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dpsynth.errors import UsageError, VerificationFailed
from dpsynth.evidence.bundle import add_approver_signature, read_bundle
from dpsynth.evidence.keys import Identity
from dpsynth.privacy.ledger import AnyLedger
from dpsynth.profiles import release_rules

AWAITING = "awaiting-approval"


def approval_required(release: Mapping[str, Any], source: str = "<policy>") -> bool:
    """The policy's ``release.approval_required`` (default false); ``UsageError`` naming any bad key.

    The whole ``[release]`` table is validated by :func:`dpsynth.profiles.release_rules`.
    """
    return release_rules(release, source).approval_required


@dataclass(frozen=True)
class Decision:
    """A recorded decision: what ``dpsynth approve`` / ``reject`` reports."""

    decision: str
    by: str
    entry_id: int
    ledger_entry_id: int
    files: dict[str, str]


def decide(
    directory: Path,
    ledger: AnyLedger,
    approver: Identity,
    decision: str,
    reason: str,
    trusted: dict[str, str] | None = None,
) -> Decision:
    """Record ``approved`` / ``rejected`` on the release in ``directory``: ledger record, then signature.

    Refuses (``UsageError``) a release that does not await approval, a
    reviewer who is its operator (same name or same key), a ledger that is
    not the release's, and (``VerificationFailed``) files that no longer
    match the operator's signed bundle (with ``trusted``, ``{name: key id}``,
    signed by the operator's trusted key): a reviewer signs only what the
    operator released.
    """
    from dpsynth.evidence.verify import check_files, check_signatures

    data, index, signatures = read_bundle(directory)
    problems = check_files(directory, index) + check_signatures(data, index, signatures, trusted)
    if problems:
        raise VerificationFailed(
            f"{directory} does not match its signed bundle, so it cannot be reviewed:\n  " + "\n  ".join(problems)
        )
    if index.get("status") != AWAITING:
        raise UsageError(
            f"{directory}: release status is {index.get('status')!r}, not {AWAITING!r}; only a "
            "release whose policy requires approval, and that passed the gate, can be decided"
        )
    operator = index["operator"]
    if approver.name == operator["name"] or approver.key_id == operator["key_id"]:
        raise UsageError(
            f"self-approval refused: {approver.name!r} ran this release (operator "
            f"{operator['name']!r}, key {operator['key_id'][:16]}); another person must review it",
            parameter="approver",
        )
    if reason is None or (decision == "rejected" and not reason.strip()):
        raise UsageError("--reason is required to reject a release: say why", parameter="reason")
    spend = index["ledger"]["entry_id"]
    ledger_entries = {e.id: e for s in ledger.summary(index["dataset_id"]) for e in s.entries}
    if spend not in ledger_entries or ledger_entries[spend].hash != index["ledger"]["entry_hash"]:
        raise UsageError(
            f"ledger {ledger.location} has no spend {spend} with hash "
            f"{index['ledger']['entry_hash'][:16]}: it is not the ledger this release was made with",
            parameter="ledger",
        )
    files = {f["name"]: f["sha256"] for f in index["files"]}
    files["bundle.json"] = hashlib.sha256(data).hexdigest()
    record = ledger.record_decision(spend, decision, approver.name, reason, files=files)
    signed = {
        "decision": decision,
        "by": approver.name,
        "reason": reason,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ledger_entry_id": record.id,
        "ledger_entry_hash": record.hash,
        "spend_entry_id": spend,
    }
    add_approver_signature(directory, approver, signed)
    return Decision(decision=decision, by=approver.name, entry_id=spend, ledger_entry_id=record.id, files=files)


__all__ = ["AWAITING", "Decision", "approval_required", "decide"]
