"""docs/compliance.md, run through the CLI: the walk-through's own commands, read out of the doc.

The bash block under "## The walk-through" is parsed (continuation lines
joined; a trailing ``# exit N`` comment is the exit code a command must give,
else 0) and run in a fresh directory: ``dpsynth`` commands in process through
typer's runner (``> FILE`` writes their stdout), ``export`` into the
environment, the setup lines (venv, pip, activate) skipped, anything else
(``mkdir``, ``cp``, ``sed``) through bash. Two changes keep it fast and
deterministic, and only these: ``dpsynth demo-data randhie demo`` writes a
2,000-row sample of the demo table with the same schema; the release that
spends gets ``--seed 7 --param iters=200``; and the profile is read from a
copy of the shipped file with ``[params] shadow_runs = 4`` appended (the
policy's minimum, against the profile's 16): the thorough tier that
hipaa-expert-determination requires refits the generator once per shadow run
and once for the canaries, and each MST fit of a new tree compiles its model
(seconds each), so 17 refits take minutes. Every other setting, and the
profile's name, rules and [profile] table, are the shipped file's. The released directory and its ledger are then
copied for each refusal test, which tampers with one thing and expects
``dpsynth verify`` to fail (exit 6) naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpsynth import profiles
from dpsynth.cli import app
from dpsynth.demo import demo_schema, demo_table
from dpsynth.evidence.bundle import canonical
from dpsynth.evidence.keys import load_identity
from dpsynth.profiles import load_policy

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "compliance.md"
SETUP = ("python3 -m venv", "source ")
PROFILE = "hipaa-expert-determination"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def doc_commands(text: str) -> list[tuple[str, int]]:
    """The walk-through's commands with their expected exit codes, in order."""
    section = text.split("## The walk-through", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands, pending = [], ""
    for line in block.splitlines():
        pending += line
        if pending.rstrip().endswith("\\"):
            pending = pending.rstrip()[:-1] + " "
            continue
        command, pending = pending, ""
        code = re.search(r"#\s*exit (\d+)", command)
        command = command.split(" #", 1)[0].strip() if not command.lstrip().startswith("#") else ""
        if command:
            commands.append((command, int(code.group(1)) if code else 0))
    return commands


def run_doc_command(command: str, root: Path) -> tuple[str, object]:
    """Run one walk-through command in ``root``; return its kind and its result (exit_code, output)."""
    if command.startswith(SETUP):
        return "setup", None
    if command.startswith("export "):
        name, value = command.removeprefix("export ").split("=", 1)
        os.environ[name] = value.replace("$PWD", str(root))
        return "export", None
    if not command.startswith("dpsynth "):
        done = subprocess.run(["bash", "-c", command], cwd=root, capture_output=True, text=True)
        done.exit_code, done.output = done.returncode, done.stdout + done.stderr
        return "shell", done
    args = shlex.split(command)[1:]
    target = None
    if ">" in args:
        target = root / args[args.index(">") + 1]
        args = args[: args.index(">")]
    if args[:2] == ["demo-data", "randhie"]:  # the same table and schema, 2,000 rows (see the module docstring)
        out = root / args[2]
        out.mkdir()
        demo_table("randhie").sample(2000, random_state=1).to_csv(out / "randhie.csv", index=False)
        demo_schema("randhie").save(out / "randhie.schema.json")
        return "demo-data", None
    if args[0] == "release" and "--generator" in args:  # the spending release: seeded, fewer MST iterations
        args += ["--seed", "7", "--param", "iters=200"]
    result = invoke(*args)
    if target is not None:
        target.write_text(result.stdout)
    return args[0], result


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> dict:
    """The doc's walk-through, run step by step; each step's result kept for the assertions."""
    root = tmp_path_factory.mktemp("walk")
    cwd, keys_env = Path.cwd(), os.environ.get("DPSYNTH_KEYS")
    steps: list[tuple[str, int, str, object]] = []
    profile = root / "profiles" / f"{PROFILE}.toml"
    profile.parent.mkdir()
    profile.write_text(profiles.profile_path(PROFILE).read_text() + "\n[params]\nshadow_runs = 4\n")
    shipped_path = profiles.profile_path
    os.chdir(root)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(profiles, "profile_path", lambda name: profile if name == PROFILE else shipped_path(name))
            for command, expected in doc_commands(DOC.read_text()):
                kind, result = run_doc_command(command, root)
                steps.append((command, expected, kind, result))
    finally:
        os.chdir(cwd)
        if keys_env is None:
            os.environ.pop("DPSYNTH_KEYS", None)
        else:
            os.environ["DPSYNTH_KEYS"] = keys_env
    demo = root / "demo"
    return {
        "root": root,
        "profile_sha256": hashlib.sha256(profile.read_bytes()).hexdigest(),
        "steps": steps,
        "keys": root / "keys",
        "trusted": root / "trusted",
        "ledger": demo / "ledger.sqlite",
        "out": demo / "release",
        "data": demo / "randhie.csv",
        "schema": demo / "randhie.schema.json",
    }


def step(walk: dict, kind: str, *words: str, n: int = 0):
    """The ``n``-th step of ``kind`` whose command contains every word."""
    found = [r for c, _, k, r in walk["steps"] if k == kind and all(w in c for w in words)]
    return found[n]


def copy(walk: dict, tmp_path: Path) -> tuple[Path, Path]:
    out, ledger = tmp_path / "release", tmp_path / "ledger.sqlite"
    shutil.copytree(walk["out"], out)
    shutil.copy(walk["ledger"], ledger)
    return out, ledger


def verify(out: Path, ledger: Path | None, trusted: Path | None = None):
    args = ["verify", out] + (["--ledger", ledger] if ledger else []) + (["--trusted-keys", trusted] if trusted else [])
    return invoke(*args)


def squash(text: str) -> str:
    return " ".join(text.split())


def test_walkthrough(walk):
    """Every command of the doc gives the exit code the doc says, and says what the doc says."""
    for command, expected, _kind, result in walk["steps"]:
        if result is not None:
            assert result.exit_code == expected, f"{command}\n{result.output}"
    kinds = [kind for _, _, kind, _ in walk["steps"]]
    assert kinds.count("release") == 3 and kinds.count("verify") == 3 and kinds.count("approve") == 2
    # the profile is shown, then its ceilings refuse two requests before any spend
    assert "hipaa-expert-determination" in step(walk, "policy", "list").output
    assert "not legal advice" in step(walk, "policy", "show").output
    over_epsilon = squash(step(walk, "release", "--epsilon 3").output)
    assert "release.max_epsilon = 2 of profile 'hipaa-expert-determination'" in over_epsilon
    over_delta = squash(step(walk, "release", "--delta 1e-5").output)
    assert "times the table's 2000 rows is 0.02, over release.max_delta_n = 0.01" in over_delta
    assert not (walk["root"] / "demo" / "too-much").exists()
    # the release: thorough tier, awaiting approval, the profile recorded
    assert "AWAITING APPROVAL" in step(walk, "release", "--generator").output
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
    privacy, manifest = (json.loads((out / name).read_text()) for name in ("privacy.json", "manifest.json"))
    assert privacy["status"] == "awaiting-approval" and privacy["profile"] == "hipaa-expert-determination"
    assert manifest["approval"]["status"] == "awaiting-approval"
    shipped = load_policy(PROFILE)
    assert manifest["policy"]["name"] == PROFILE and manifest["policy"]["tier"] == "thorough"
    assert manifest["policy"]["profile"] == shipped.profile and manifest["policy"]["sha256"] == walk["profile_sha256"]
    assert manifest["policy"]["release"] == dict(shipped.policy.release)
    assert manifest["policy"]["release"]["max_epsilon"] == 2.0
    assert {"mia_shadow", "epsilon_lower_bound"} <= {r["name"] for r in manifest["audit"]["results"]}
    assert "awaiting-approval" in step(walk, "budget", "show", n=1).output
    assert "not approved yet" in step(walk, "verify", "demo/release").output
    assert "self-approval refused" in step(walk, "approve", "--as operator").output
    assert "approved" in step(walk, "budget", "show", n=2).output
    # one spend only: the two refused requests reserved nothing
    [entry] = json.loads(invoke("budget", "show", walk["ledger"], "--json").output)[0]["entries"]
    assert (entry["status"], entry["decision"]) == ("awaiting-approval", "approved")
    verified = step(walk, "verify", "demo/release", "--trusted-keys")
    assert "VERIFIED" in verified.output and "approver officer" in verified.output
    tampered = step(walk, "verify", "demo/tampered")
    assert "synthetic.csv: sha256 does not match the bundle" in tampered.output


def test_the_doc_parser_reads_continuations_and_exit_codes():
    text = "## The walk-through\n```bash\nexport A=1\n# a comment\ndpsynth x \\\n  --y 2   # exit 5: why\n```\n"
    assert [(" ".join(c.split()), code) for c, code in doc_commands(text)] == [
        ("export A=1", 0),
        ("dpsynth x --y 2", 5),
    ]


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
    officer = load_identity("officer", walk["keys"])
    signed = json.loads((out / "bundle.sig.json").read_text())
    operator = next(s for s in signed["signatures"] if s["role"] == "operator")
    operator["signature"] = officer.sign((out / "bundle.json").read_bytes())
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    result = verify(out, ledger)
    assert result.exit_code == 6 and "operator signature by 'operator': invalid for bundle.json" in result.output
    # the whole signer swapped: a valid signature, but not by the key the bundle names (nor the trusted one)
    operator.update(key_id=officer.key_id, public_key=officer.public_hex)
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    result = verify(out, ledger, walk["trusted"])
    assert result.exit_code == 6
    assert "the bundle names operator 'operator'" in result.output and "the trusted key of 'operator'" in result.output


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
    assert result.exit_code == 6 and "the trusted key of 'officer' is" in result.output


def test_a_tampered_release_cannot_be_approved(tmp_path, walk):
    out, ledger = copy(walk, tmp_path)
    signed = json.loads((out / "bundle.sig.json").read_text())
    signed["signatures"] = [s for s in signed["signatures"] if s["role"] == "operator"]
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    with open(out / "synthetic.csv", "a") as handle:
        handle.write("\n")
    result = invoke("approve", out, "--ledger", ledger, "--as", "officer", "--keys-dir", walk["keys"])
    assert result.exit_code == 6 and "cannot be reviewed" in result.output and "synthetic.csv" in result.output


def test_an_edited_bundle_fails_verification(walk, tmp_path):
    out, ledger = copy(walk, tmp_path)
    index = json.loads((out / "bundle.json").read_text())
    index["approval_required"] = False
    (out / "bundle.json").write_bytes(canonical(index))
    result = verify(out, ledger)
    assert result.exit_code == 6 and "operator signature by 'operator': invalid for bundle.json" in result.output


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
    assert invoke("budget", "init", other, "--dataset", "randhie", "--epsilon", "3", "--delta", "1e-5").exit_code == 0
    result = verify(out, other)
    assert result.exit_code == 6 and "this release was not spent from this ledger" in result.output


def test_the_same_key_under_another_name_cannot_approve(walk, tmp_path):
    out, ledger = copy(walk, tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    for suffix in (".key", ".pub"):
        shutil.copy(walk["keys"] / f"operator{suffix}", keys / f"operator2{suffix}")
    (keys / "operator2.key").chmod(0o600)
    # a fresh awaiting copy: drop the officer's signature so the release looks undecided to the tool
    signed = json.loads((out / "bundle.sig.json").read_text())
    signed["signatures"] = [s for s in signed["signatures"] if s["role"] == "operator"]
    (out / "bundle.sig.json").write_text(json.dumps(signed))
    result = invoke("approve", out, "--ledger", ledger, "--as", "operator2", "--keys-dir", keys)
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
        walk["data"],
        "--schema",
        walk["schema"],
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--ledger",
        ledger,
        "--dataset",
        "randhie",
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
    assert "Awaiting approval" in html and "operator" in html


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
        "officer",
        "--keys-dir",
        walk["keys"],
        "--reason",
        "linkage risk too close to the threshold",
    )
    assert result.exit_code == 0, result.output
    result = verify(out, ledger, walk["trusted"])
    assert result.exit_code == 6 and "rejected by 'officer'" in result.output
    shown = json.loads(invoke("budget", "show", ledger, "--json").output)[0]["entries"][0]
    assert shown["decision"] == "rejected" and shown["epsilon"] > 0  # the budget stays spent
