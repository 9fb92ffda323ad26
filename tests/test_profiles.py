"""Policy profiles (dpsynth.profiles): the shipped TOMLs, `--policy NAME`, the ceilings enforced before any spend."""

from __future__ import annotations

import copy
import re
import sqlite3
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import audits
from audits.policy import TESTS
from dpsynth.cli import app
from dpsynth.demo import demo_schema, demo_table
from dpsynth.errors import UsageError
from dpsynth.profiles import load_policy, profile_names, profile_path, release_rules

runner = CliRunner()
SHIPPED = ("gdpr-anonymisation", "hipaa-expert-determination", "internal-sharing")
PROFILE_KEYS = {"name", "title", "disclaimer", "summary", "assumptions", "residual_risk", "criteria"}
CRITERION_KEYS = {"id", "title", "question", "tests", "rationale", "sources"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_the_three_profiles_are_shipped_as_package_data():
    assert tuple(profile_names()) == SHIPPED
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "data/profiles/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["dpsynth"]


@pytest.mark.parametrize("name", SHIPPED)
def test_each_profile_loads_and_has_the_reviewer_facing_shape(name):
    loaded = load_policy(name)
    raw = tomllib.loads(profile_path(name).read_text())["profile"]
    assert loaded.name == name == raw["name"]
    assert set(raw) == PROFILE_KEYS and all(set(c) == CRITERION_KEYS for c in raw["criteria"])
    assert loaded.profile == raw  # kept exactly as written: the report renders it
    assert "not legal advice" in raw["disclaimer"] and "aid to the reviewer" in raw["disclaimer"]
    assert "NOT LEGAL ADVICE" in profile_path(name).read_text()  # and the file says so to whoever opens it
    run = set(loaded.policy.tests_for_tier(loaded.policy.tier))
    for criterion in raw["criteria"]:
        assert criterion["tests"] and set(criterion["tests"]) <= set(TESTS) and set(criterion["tests"]) <= run
        assert criterion["sources"] and criterion["rationale"]
    record = loaded.record(loaded.policy.tier)
    assert record["name"] == name and record["profile"] == raw and record["release"] == dict(loaded.policy.release)
    assert len(record["sha256"]) == 64


def test_the_profiles_set_what_the_issue_asks():
    gdpr, hipaa, internal = (load_policy(n) for n in SHIPPED)
    assert [c["id"] for c in gdpr.profile["criteria"]] == ["singling-out", "linkability", "inference"]
    assert "singling_out_risk" in gdpr.profile["criteria"][0]["tests"]
    assert "linkage_risk" in gdpr.profile["criteria"][1]["tests"]
    assert "attribute_inference_risk" in gdpr.profile["criteria"][2]["tests"]
    hipaa_tests = {t for c in hipaa.profile["criteria"] for t in c["tests"]}
    assert {"mia_shadow", "epsilon_lower_bound"} <= hipaa_tests
    for external in (gdpr, hipaa):  # anything leaving the organisation: thorough tier, a reviewer, tight ceilings
        assert external.rules.required_tier == external.policy.tier == "thorough"
        assert external.rules.approval_required and external.rules.max_epsilon <= 3
        assert external.policy.tests["epsilon_lower_bound"].require_claim
    assert not internal.rules.approval_required and internal.policy.tier == "quick"
    assert internal.rules.max_epsilon > max(gdpr.rules.max_epsilon, hipaa.rules.max_epsilon)
    assert "inside the organisation" in internal.profile["title"]
    # every threshold an external profile changes is at least as strict as the default
    default = audits.Policy.default().tests
    for external in (gdpr, hipaa):
        for name, rule in external.policy.tests.items():
            for bound in ("max", "margin"):
                if getattr(default[name], bound) is not None:
                    assert getattr(rule, bound) <= getattr(default[name], bound), (name, bound)
            if default[name].min is not None:
                assert rule.min >= default[name].min, name


def test_a_path_still_works_and_the_default_has_no_profile(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[release]\nmax_epsilon = 0.5\n")
    loaded = load_policy(path)
    assert loaded.name is None and loaded.profile is None and loaded.rules.max_epsilon == 0.5
    assert load_policy(str(path)).rules.max_epsilon == 0.5
    assert load_policy(None).record("quick") == {
        "source": "<default>",
        "sha256": None,
        "name": None,
        "profile": None,
        "release": {},
        "tier": "quick",
    }


def test_an_unknown_profile_name_lists_the_profiles():
    with pytest.raises(UsageError, match="neither a shipped profile nor a policy file") as info:
        load_policy("hipaa")
    assert all(name in str(info.value) for name in SHIPPED)
    with pytest.raises(UsageError, match="cannot read policy file"):
        load_policy("missing.toml")  # a path is a path: the error is the file's


def _profile_raw() -> dict:
    return tomllib.loads(profile_path("hipaa-expert-determination").read_text())


def _with(change) -> dict:
    raw = _profile_raw()
    raw["profile"]["name"] = "my-profile"
    change(raw["profile"])
    return raw


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda p: p.pop("disclaimer"), "'profile.disclaimer' must be a non-empty string"),
        (lambda p: p.update(title=3), "'profile.title' must be a non-empty string"),
        (lambda p: p.update(assumptions="one"), "'profile.assumptions' must be a non-empty list"),
        (lambda p: p.update(residual_risk=[]), "'profile.residual_risk' must be a non-empty list"),
        (lambda p: p.update(colour="red"), "unknown key 'profile.colour'"),
        (lambda p: p.update(criteria=[]), "'profile.criteria' must be a non-empty array"),
        (lambda p: p["criteria"][1].pop("question"), "'profile.criteria[1].question'"),
        (lambda p: p["criteria"][0].update(tests=["mia_magic"]), "'profile.criteria[0].tests' names 'mia_magic'"),
        (lambda p: p["criteria"][2].update(sources=[""]), "'profile.criteria[2].sources' must be a non-empty list"),
        (lambda p: p["criteria"][0].update(weight=2), "unknown key 'profile.criteria[0].weight'"),
    ],
)
def test_a_malformed_profile_table_names_the_key(tmp_path, change, key):
    with pytest.raises(UsageError, match=re.escape(key)):
        load_policy(_write(tmp_path, _with(change)))


def test_a_criterion_citing_a_test_the_tier_does_not_run_is_refused(tmp_path):
    raw = _with(lambda p: None)
    raw["tier"] = "quick"
    raw["release"].pop("required_tier")
    with pytest.raises(UsageError, match=r"'profile.criteria\[3\].tests' names 'mia_shadow', which the policy's quick"):
        load_policy(_write(tmp_path, raw))


def test_a_changed_copy_must_not_use_a_shipped_name(tmp_path):
    raw = _profile_raw()
    raw["release"]["max_epsilon"] = 10.0
    with pytest.raises(UsageError, match="the name of a shipped profile"):
        load_policy(_write(tmp_path, raw))
    copy_of_shipped = tmp_path / "same.toml"  # the shipped file itself, by path: it is the profile
    copy_of_shipped.write_bytes(profile_path("hipaa-expert-determination").read_bytes())
    assert load_policy(copy_of_shipped).name == "hipaa-expert-determination"


@pytest.mark.parametrize(
    ("release", "message"),
    [
        ({"max_epsilon": -1}, "'release.max_epsilon' must be a number above 0"),
        ({"max_epsilon": True}, "'release.max_epsilon' must be a number above 0"),
        ({"max_delta_n": 2.0}, "'release.max_delta_n' must be a number above 0 and at most 1"),
        ({"required_tier": "deep"}, "'release.required_tier' must be one of"),
        ({"approval_required": "yes"}, "'release.approval_required' must be true or false"),
        ({"max_eps": 1}, "unknown key 'release.max_eps'"),
    ],
)
def test_bad_release_keys_are_refused_naming_the_key(release, message):
    with pytest.raises(UsageError, match=message):
        release_rules(release, "p.toml")


def test_a_required_tier_above_the_policys_own_tier_is_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[release]\nrequired_tier = "thorough"\n')
    with pytest.raises(UsageError, match="'release.required_tier' is 'thorough' but the policy's tier is 'quick'"):
        load_policy(path)


def _write(tmp_path: Path, raw: dict) -> Path:
    """Write ``raw`` as TOML (the subset the profiles use: strings, numbers, booleans, lists, tables)."""
    lines: list[str] = []

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        return "[" + ", ".join(value(x) for x in v) + "]"

    def table(prefix: str, body: dict) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict) and not _is_tables(v)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                table(name, v)
            elif _is_tables(v):
                for item in v:
                    lines.append(f"[[{name}]]")
                    lines.extend(f"{ik} = {value(iv)}" for ik, iv in item.items())

    table("", copy.deepcopy(raw))
    path = tmp_path / "policy.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _is_tables(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


# -- the ceilings, through the CLI: exit 2 before any spend -------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ceilings")
    data, schema, ledger = root / "hie.csv", root / "hie.schema.json", root / "ledger.sqlite"
    demo_table("randhie").sample(1000, random_state=2).to_csv(data, index=False)
    demo_schema("randhie").save(schema)
    assert invoke("budget", "init", ledger, "--dataset", "hie", "--epsilon", "5", "--delta", "1e-5").exit_code == 0
    return {"root": root, "data": data, "schema": schema, "ledger": ledger}


def _entries(ledger: Path) -> list[tuple]:
    with sqlite3.connect(ledger) as con:
        return con.execute("SELECT * FROM entries").fetchall()


@pytest.mark.parametrize(
    ("profile", "extra", "message"),
    [
        (
            "hipaa-expert-determination",
            ["--epsilon", "2.5"],
            "--epsilon 2.5 is over the per-release ceiling "
            "release.max_epsilon = 2 of profile 'hipaa-expert-determination'",
        ),
        ("gdpr-anonymisation", ["--epsilon", "1.5"], "release.max_epsilon = 1 of profile 'gdpr-anonymisation'"),
        # 1,000 rows: delta 1e-4 is below 1/n, but delta * n = 0.1 is over the profile's 0.01
        (
            "hipaa-expert-determination",
            ["--delta", "1e-4"],
            "--delta 0.0001 times the table's 1000 rows is 0.1, "
            "over release.max_delta_n = 0.01 of profile 'hipaa-expert-determination': use --delta at most 1e-05",
        ),
        ("internal-sharing", ["--delta", "5e-4"], "over release.max_delta_n = 0.1 of profile 'internal-sharing'"),
        (
            "hipaa-expert-determination",
            ["--tier", "quick"],
            "--tier quick is below release.required_tier = 'thorough' of profile 'hipaa-expert-determination'",
        ),
        ("gdpr-anonymisation", ["--tier", "quick"], "of profile 'gdpr-anonymisation'"),
    ],
)
def test_a_request_over_a_profile_ceiling_exits_2_before_any_spend(small, tmp_path, profile, extra, message):
    before = _entries(small["ledger"])
    options = {"--epsilon": "1", "--delta": "1e-7"}
    rest = []
    for flag, val in zip(extra[::2], extra[1::2]):
        if flag in options:
            options[flag] = val
        else:
            rest += [flag, val]
    result = invoke(
        "release", small["data"], "--schema", small["schema"], "--ledger", small["ledger"], "--dataset", "hie",
        "--out", tmp_path / "r", "--policy", profile, *[x for kv in options.items() for x in kv], *rest,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert _entries(small["ledger"]) == before  # nothing reserved, nothing recorded
    assert not (tmp_path / "r").exists()


def test_an_unknown_profile_on_the_command_line_exits_2_listing_the_profiles(small, tmp_path):
    before = _entries(small["ledger"])
    result = invoke(
        "release", small["data"], "--schema", small["schema"], "--ledger", small["ledger"], "--dataset", "hie",
        "--out", tmp_path / "r", "--epsilon", "1", "--delta", "1e-7", "--policy", "hipaa",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "--policy 'hipaa' is neither a shipped profile nor a policy file" in text
    assert all(name in text for name in SHIPPED) and "Traceback" not in result.output
    assert _entries(small["ledger"]) == before


def test_policy_list_and_show():
    listed = invoke("policy", "list")
    assert listed.exit_code == 0 and all(name in listed.output for name in SHIPPED)
    shown = invoke("policy", "show", "gdpr-anonymisation")
    assert shown.exit_code == 0 and shown.output == profile_path("gdpr-anonymisation").read_text()
    missing = invoke("policy", "show", "gdpr")
    assert missing.exit_code == 2 and "shipped profiles: gdpr-anonymisation" in missing.output


def test_a_release_under_internal_sharing_records_the_profile(tmp_path, mixed_frame, mixed_schema):
    """Quick tier, no approval: released (not awaiting); manifest and privacy.json name the profile."""
    import json

    from dpsynth.release import ReleaseRequest, run_release

    data, schema, ledger = tmp_path / "t.csv", tmp_path / "t.schema.json", tmp_path / "ledger.sqlite"
    mixed_frame.to_csv(data, index=False)
    mixed_schema.save(schema)
    assert invoke("budget", "init", ledger, "--dataset", "t", "--epsilon", "5", "--delta", "1e-5").exit_code == 0
    request = ReleaseRequest(
        data=data,
        schema=schema,
        generator="mst",
        epsilon=1.0,
        delta=1e-6,
        ledger=ledger,
        dataset_id="t",
        out=tmp_path / "r",
        seed=3,
        generator_params={"iters": 200},
        policy="internal-sharing",
    )
    outcome = run_release(request)
    assert outcome.released and outcome.status == "released" and not outcome.awaiting_approval
    policy = outcome.manifest["policy"]
    assert policy["name"] == "internal-sharing" and policy["tier"] == "quick"
    assert policy["profile"] == load_policy("internal-sharing").profile
    assert policy["release"] == {"approval_required": False, "max_epsilon": 5.0, "max_delta_n": 0.1,
                                 "required_tier": "quick"}  # fmt: skip
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["policy"] == policy
    assert json.loads((tmp_path / "r" / "privacy.json").read_text())["profile"] == "internal-sharing"


def test_dpsynth_audit_refuses_a_profile_that_requires_the_thorough_tier(tmp_path, mixed_frame, mixed_schema):
    data, schema = tmp_path / "t.csv", tmp_path / "t.schema.json"
    mixed_frame.to_csv(data, index=False)
    mixed_schema.save(schema)
    args = ["audit", "--train", data, "--holdout", data, "--synthetic", data, "--schema", schema, "--out"]
    result = invoke(*args, tmp_path / "a", "--policy", "gdpr-anonymisation")
    assert result.exit_code == 2 and "requires the thorough audit tier" in " ".join(result.output.split())
    assert not (tmp_path / "a").exists()
