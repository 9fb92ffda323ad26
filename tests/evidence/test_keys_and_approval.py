"""Keys (0600, ids, refusals), the policy's [release] table, and the ledger's approval states."""

from __future__ import annotations

import hashlib
import stat

import pytest

import audits
from dpsynth.errors import UsageError
from dpsynth.evidence.approval import approval_required
from dpsynth.evidence.keys import (
    key_id,
    load_identity,
    load_public,
    new_key,
    raw_public,
    trusted_keys,
)
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.ledger import init_ledger
from tests.privacy.test_ledger_postgres import backend, pg, pg_session  # noqa: F401  (fixtures)


def test_a_new_private_key_is_0600_and_its_id_is_the_sha256_of_the_raw_public_key(tmp_path):
    identity = new_key("olivia", tmp_path)
    assert stat.S_IMODE((tmp_path / "olivia.key").stat().st_mode) == 0o600
    public = load_public(tmp_path / "olivia.pub")
    assert identity.key_id == key_id(public) == hashlib.sha256(raw_public(public)).hexdigest()
    assert load_identity("olivia", tmp_path).key_id == identity.key_id
    assert trusted_keys(tmp_path) == {"olivia": identity.key_id}


def test_keys_are_never_overwritten_and_bad_names_are_refused(tmp_path):
    new_key("olivia", tmp_path)
    with pytest.raises(UsageError, match="already exists"):
        new_key("olivia", tmp_path)
    with pytest.raises(UsageError, match="identity name"):
        new_key("../evil", tmp_path)


def test_a_key_readable_by_others_or_missing_is_refused(tmp_path):
    new_key("olivia", tmp_path)
    (tmp_path / "olivia.key").chmod(0o644)
    with pytest.raises(UsageError, match="readable by others"):
        load_identity("olivia", tmp_path)
    with pytest.raises(UsageError, match="dpsynth keys new nobody"):
        load_identity("nobody", tmp_path)


def test_the_release_table_passes_through_audits_and_is_checked_by_dpsynth(tmp_path):
    policy = audits.Policy.from_dict({"release": {"approval_required": True}})
    assert approval_required(policy.release) is True
    assert approval_required(audits.Policy.default().release) is False
    with pytest.raises(UsageError, match="release.approve"):
        approval_required(audits.Policy.from_dict({"release": {"approve": True}}).release)
    with pytest.raises(UsageError, match="must be true or false"):
        approval_required(audits.Policy.from_dict({"release": {"approval_required": "yes"}}).release)


def test_the_ledger_accepts_spend_awaiting_approval_then_decision(tmp_path):
    ledger = init_ledger(tmp_path / "l.sqlite", "d", 2.0, 1e-6)
    spend = ledger.reserve("d", _cost())
    ledger.mark(spend.id, "awaiting-approval")
    assert ledger.summary("d")[0].entries[0].status == "awaiting-approval"
    ledger.record_decision(spend.id, "rejected", "omar", "too coarse", files={"x": "0" * 64})
    [entry] = ledger.summary("d")[0].entries
    assert (entry.status, entry.decision, entry.state) == ("awaiting-approval", "rejected", "rejected")
    assert ledger.verify().ok
    assert [r.status for r in ledger.status_records(spend.id)] == ["awaiting-approval", "rejected"]
    spent = ledger.summary("d")[0].spent_epsilon
    assert spent > 0  # the budget stays spent whatever the decision


def _cost() -> PrivacyCost:
    import dp_accounting as dpa

    return PrivacyCost.of("laplace", dpa.LaplaceDpEvent(2.0), delta=1e-7)


def test_awaiting_approval_then_decision_on_both_storages(backend):  # noqa: F811
    """PostgreSQL's append function allows the new outcome too (its list comes from FINAL_STATUSES)."""
    _, operator, approver = backend
    spend = operator.reserve("adult", _cost(), purpose="release", generator="mst")
    operator.mark(spend.id, "awaiting-approval")
    approver.record_decision(spend.id, "approved", "omar", "ok", files={"synthetic.csv": "ab" * 32})
    [entry] = operator.summary("adult")[0].entries
    assert (entry.status, entry.decision) == ("awaiting-approval", "approved")
    assert [r.status for r in operator.status_records(spend.id)] == ["awaiting-approval", "approved"]
    assert operator.verify().ok
