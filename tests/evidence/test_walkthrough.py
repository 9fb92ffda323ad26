"""docs/compliance.md, run through the CLI: keys, release awaiting approval, approve, verify, tamper.

One release of a small slice of the RAND HIE demo table (MST, 200 iterations)
under the example policy that requires approval; the approved directory and
its ledger are copied for each refusal test, which tampers with one thing and
expects ``dpsynth verify`` to fail (exit 6) naming it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpsynth.cli import app
from dpsynth.demo import demo_schema, demo_table
from dpsynth.evidence.bundle import canonical
from dpsynth.evidence.keys import load_identity

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "dpsynth" / "data" / "approval-policy.toml"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> dict:
    """The walk-through's steps, each result kept for the assertions."""
    root = tmp_path_factory.mktemp("walk")
    keys, trusted = root / "keys", root / "trusted"
    data, schema, ledger = root / "hie.csv", root / "hie.schema.json", root / "ledger.sqlite"
    demo_table("randhie").sample(2000, random_state=1).to_csv(data, index=False)
    demo_schema("randhie").save(schema)
    steps: dict = {"root": root, "keys": keys, "trusted": trusted, "ledger": ledger, "out": root / "release"}
    steps["key_op"] = invoke("keys", "new", "olivia", "--dir", keys)
    steps["key_officer"] = invoke("keys", "new", "omar", "--dir", keys)
    trusted.mkdir()
    for name in ("olivia", "omar"):
        result = invoke("keys", "export", name, "--dir", keys)
        (trusted / f"{name}.pub").write_text(result.stdout)
    steps["init"] = invoke("budget", "init", ledger, "--dataset", "hie", "--epsilon", "3", "--delta", "1e-5")
    steps["release"] = invoke(
        "release",
        data,
        "--schema",
        schema,
        "--generator",
        "mst",
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--ledger",
        ledger,
        "--dataset",
        "hie",
        "--out",
        steps["out"],
        "--seed",
        "7",
        "--param",
        "iters=200",
        "--policy",
        POLICY,
        "--as",
        "olivia",
        "--keys-dir",
        keys,
    )
    steps["show_awaiting"] = invoke("budget", "show", ledger, "--json")
    steps["verify_awaiting"] = invoke("verify", steps["out"], "--ledger", ledger)
    steps["self_approve"] = invoke("approve", steps["out"], "--ledger", ledger, "--as", "olivia", "--keys-dir", keys)
    steps["approve"] = invoke(
        "approve",
        steps["out"],
        "--ledger",
        ledger,
        "--as",
        "omar",
        "--keys-dir",
        keys,
        "--reason",
        "audit figures within policy",
        "--trusted-keys",
        trusted,
    )
    steps["show_approved"] = invoke("budget", "show", ledger, "--json")
    steps["show_table"] = invoke("budget", "show", ledger)
    steps["verify"] = invoke("verify", steps["out"], "--ledger", ledger, "--trusted-keys", trusted)
    return steps


def copy(walk: dict, tmp_path: Path) -> tuple[Path, Path]:
    out, ledger = tmp_path / "release", tmp_path / "ledger.sqlite"
    shutil.copytree(walk["out"], out)
    shutil.copy(walk["ledger"], ledger)
    return out, ledger


def verify(out: Path, ledger: Path | None, trusted: Path | None = None):
    args = ["verify", out] + (["--ledger", ledger] if ledger else []) + (["--trusted-keys", trusted] if trusted else [])
    return invoke(*args)


def test_walkthrough(walk):
    for step in ("key_op", "key_officer", "init"):
        assert walk[step].exit_code == 0, walk[step].output
    assert walk["release"].exit_code == 5, walk["release"].output
    assert "AWAITING APPROVAL" in walk["release"].output
    out = walk["out"]
    assert {p.name for p in out.iterdir()} == {
        "synthetic.csv",
        "privacy.json",
        "manifest.json",
        "audit.json",
        "report.html",
        "bundle.json",
        "bundle.sig.json",
    }
    assert json.loads((out / "privacy.json").read_text())["status"] == "awaiting-approval"
    assert json.loads((out / "manifest.json").read_text())["approval"]["status"] == "awaiting-approval"
    assert [e["status"] for e in json.loads(walk["show_awaiting"].output)[0]["entries"]] == ["awaiting-approval"]
    assert walk["verify_awaiting"].exit_code == 6 and "not approved yet" in walk["verify_awaiting"].output
    assert walk["self_approve"].exit_code == 2, walk["self_approve"].output
    assert "self-approval refused" in walk["self_approve"].output
    assert walk["approve"].exit_code == 0, walk["approve"].output
    [entry] = json.loads(walk["show_approved"].output)[0]["entries"]
    assert (entry["status"], entry["decision"]) == ("awaiting-approval", "approved")
    assert "approved" in walk["show_table"].output
    assert walk["verify"].exit_code == 0, walk["verify"].output
    assert "VERIFIED" in walk["verify"].output and "approver omar" in walk["verify"].output


@pytest.mark.parametrize("name", ["synthetic.csv", "privacy.json", "report.html"])
def test_one_changed_byte_fails_verification(walk, tmp_path, name):
    out, ledger = copy(walk, tmp_path)
    assert verify(out, ledger).exit_code == 0
    data = bytearray((out / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / name).write_bytes(bytes(data))
    result = verify(out, ledger)
    assert result.exit_code == 6, result.output
    assert f"{name}: sha256 does not match the bundle" in result.output


def test_an_added_file_fails_verification(walk, tmp_path):
    out, ledger = copy(walk, tmp_path)
    (out / "extra.csv").write_text("a\n1\n")
    result = verify(out, ledger)
    assert result.exit_code == 6 and "extra.csv: in the directory but not in the signed bundle" in result.output


def test_another_keys_signature_fails_verification(walk, tmp_path):
    """The operator's signature replaced by the officer's (valid, over the same bundle), with and without its key."""
    out, ledger = copy(walk, tmp_path)
    officer = load_identity("omar", walk["keys"])
    signed = json.loads((out / "bundle.sig.json").read_text())
    operator = next(s for s in signed["signatures"] if s["role"] == "operator")
    operator["signature"] = officer.sign((out / "bundle.json").read_bytes())
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    result = verify(out, ledger)
    assert result.exit_code == 6 and "operator signature by 'olivia': invalid for bundle.json" in result.output
    # the whole signer swapped: a valid signature, but not by the key the bundle names (nor the trusted one)
    operator.update(key_id=officer.key_id, public_key=officer.public_hex)
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    result = verify(out, ledger, walk["trusted"])
    assert result.exit_code == 6
    assert "the bundle names operator 'olivia'" in result.output and "the trusted key of 'olivia'" in result.output


def test_an_untrusted_approver_fails_verification(walk, tmp_path):
    """A stranger's key signs the same decision under the officer's name: only trusted keys catch it."""
    from dpsynth.evidence.bundle import decision_message
    from dpsynth.evidence.keys import new_key

    out, ledger = copy(walk, tmp_path)
    stranger = new_key("mallory", tmp_path / "k")
    signed = json.loads((out / "bundle.sig.json").read_text())
    approver = next(s for s in signed["signatures"] if s["role"] == "approver")
    approver.update(
        key_id=stranger.key_id,
        public_key=stranger.public_hex,
        signature=stranger.sign(decision_message(signed["bundle_sha256"], approver["decision"])),
    )
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    assert verify(out, ledger).exit_code == 0  # self-consistent without trusted keys: say so in the docs
    result = verify(out, ledger, walk["trusted"])
    assert result.exit_code == 6 and "the trusted key of 'omar' is" in result.output


def test_a_tampered_release_cannot_be_approved(tmp_path, walk):
    out, ledger = copy(walk, tmp_path)
    signed = json.loads((out / "bundle.sig.json").read_text())
    signed["signatures"] = [s for s in signed["signatures"] if s["role"] == "operator"]
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    with open(out / "synthetic.csv", "a") as handle:
        handle.write("\n")
    result = invoke("approve", out, "--ledger", ledger, "--as", "omar", "--keys-dir", walk["keys"])
    assert result.exit_code == 6 and "cannot be reviewed" in result.output and "synthetic.csv" in result.output


def test_an_edited_bundle_fails_verification(walk, tmp_path):
    out, ledger = copy(walk, tmp_path)
    index = json.loads((out / "bundle.json").read_text())
    index["approval_required"] = False
    (out / "bundle.json").write_bytes(canonical(index))
    result = verify(out, ledger)
    assert result.exit_code == 6 and "operator signature by 'olivia': invalid for bundle.json" in result.output


def test_deleting_the_approval_from_the_ledger_fails_verification(walk, tmp_path):
    out, ledger = copy(walk, tmp_path)
    with sqlite3.connect(ledger) as con:
        deleted = con.execute("DELETE FROM entries WHERE kind = 'status' AND status = 'approved'").rowcount
    assert deleted == 1
    result = verify(out, ledger)
    assert result.exit_code == 6, result.output
    assert "no approval record for spend" in result.output


def test_a_different_ledger_fails_verification(walk, tmp_path):
    out, _ = copy(walk, tmp_path)
    other = tmp_path / "other.sqlite"
    assert invoke("budget", "init", other, "--dataset", "hie", "--epsilon", "3", "--delta", "1e-5").exit_code == 0
    result = verify(out, other)
    assert result.exit_code == 6 and "this release was not spent from this ledger" in result.output


def test_the_same_key_under_another_name_cannot_approve(walk, tmp_path):
    out, ledger = copy(walk, tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    for suffix in (".key", ".pub"):
        shutil.copy(walk["keys"] / f"olivia{suffix}", keys / f"olivia2{suffix}")
    (keys / "olivia2.key").chmod(0o600)
    # a fresh awaiting copy: drop the officer's signature so the release looks undecided to the tool
    signed = json.loads((out / "bundle.sig.json").read_text())
    signed["signatures"] = [s for s in signed["signatures"] if s["role"] == "operator"]
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    result = invoke("approve", out, "--ledger", ledger, "--as", "olivia2", "--keys-dir", keys)
    assert result.exit_code == 2 and "self-approval refused" in result.output


def test_a_decided_release_is_not_decided_twice(walk, tmp_path):
    out, ledger = copy(walk, tmp_path)
    keys = tmp_path / "keys"
    invoke("keys", "new", "rita", "--dir", keys)
    result = invoke("reject", out, "--ledger", ledger, "--as", "rita", "--keys-dir", keys, "--reason", "no")
    assert result.exit_code == 1 and "a decision is recorded once" in result.output


def test_a_missing_operator_key_refuses_before_any_spend(walk, tmp_path):
    _, ledger = copy(walk, tmp_path)
    with sqlite3.connect(ledger) as con:
        before = con.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    result = invoke(
        "release",
        walk["root"] / "hie.csv",
        "--schema",
        walk["root"] / "hie.schema.json",
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--ledger",
        ledger,
        "--dataset",
        "hie",
        "--out",
        tmp_path / "r",
        "--as",
        "nobody",
        "--keys-dir",
        walk["keys"],
    )
    assert result.exit_code == 2, result.output
    assert "no key" in result.output and "dpsynth keys new nobody" in result.output
    with sqlite3.connect(ledger) as con:
        assert con.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == before
    assert not (tmp_path / "r").exists()


def test_the_report_says_the_release_awaits_approval(walk):
    html = (walk["out"] / "report.html").read_text()
    assert "Awaiting approval" in html and "olivia" in html


def test_a_rejected_release_fails_verification(walk, tmp_path):
    """Reject a copy whose approval is undone (signature dropped, ledger from before the approval)."""
    out, ledger = copy(walk, tmp_path)
    with sqlite3.connect(ledger) as con:  # a ledger as it was before the decision: drop the last record
        last = con.execute("SELECT MAX(id) FROM entries").fetchone()[0]
        con.execute("DELETE FROM entries WHERE id = ?", (last,))
        prev = con.execute("SELECT hash FROM entries WHERE id = ?", (last - 1,)).fetchone()[0]
        con.execute("UPDATE meta SET value = ? WHERE key = 'head_id'", (str(last - 1),))
        con.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (prev,))
    signed = json.loads((out / "bundle.sig.json").read_text())
    signed["signatures"] = [s for s in signed["signatures"] if s["role"] == "operator"]
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    assert verify(out, ledger).exit_code == 6  # awaiting again
    result = invoke(
        "reject",
        out,
        "--ledger",
        ledger,
        "--as",
        "omar",
        "--keys-dir",
        walk["keys"],
        "--reason",
        "linkage risk too close to the threshold",
    )
    assert result.exit_code == 0, result.output
    result = verify(out, ledger, walk["trusted"])
    assert result.exit_code == 6 and "rejected by 'omar'" in result.output
    shown = json.loads(invoke("budget", "show", ledger, "--json").output)[0]["entries"][0]
    assert shown["decision"] == "rejected" and shown["epsilon"] > 0  # the budget stays spent
