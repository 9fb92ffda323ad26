"""Runner behaviour (tiers, budget, progress, errors) and the stable JSON schema."""

from __future__ import annotations

import json

import pytest

import audits
from audits import AuditInputError, AuditReport
from audits.policy import TESTS
from audits.results import FAMILIES, SCHEMA_VERSION

RESULT_KEYS = {
    "name",
    "family",
    "value",
    "ci_low",
    "ci_high",
    "threshold",
    "passed",
    "direction",
    "details",
    "baseline",
    "status",
    "required",
    "judged_value",
    "message",
    "seconds",
    "judge",
    "significant",
    "p_value",
}


@pytest.fixture(scope="module")
def small(table_maker):
    df = table_maker(1500, 11)
    return (
        df.iloc[:600].reset_index(drop=True),
        df.iloc[600:900].reset_index(drop=True),
        df.iloc[900:].reset_index(drop=True),
    )


@pytest.fixture(scope="module")
def quick_report(small):
    train, holdout, synthetic = small
    return audits.run(train, holdout, synthetic, None, seed=0)


def test_json_schema_is_stable(quick_report, tmp_path):
    d = quick_report.to_dict()
    assert {
        "schema_version",
        "decision",
        "tier",
        "seed",
        "seconds",
        "confidence",
        "test_confidence",
        "claimed_epsilon",
        "sizes",
        "policy",
        "results",
    } <= set(d)
    assert d["test_confidence"] == pytest.approx(0.995) and d["policy"]["correction"] == "bonferroni"
    assert d["schema_version"] == SCHEMA_VERSION and d["decision"] in ("PASS", "FAIL") and d["tier"] == "quick"
    names = [r["name"] for r in d["results"]]
    assert names == [n for n in TESTS if TESTS[n].tier == "quick"]
    for r in d["results"]:
        assert set(r) == RESULT_KEYS
        assert r["family"] in FAMILIES and r["direction"] in ("max", "min") and r["status"] == "ok"
        assert isinstance(r["passed"], bool) and isinstance(r["value"], float)
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
        assert r["judge"] == "significant" and isinstance(r["significant"], bool)
        has_test = r["name"].startswith("mia_")
        assert (r["p_value"] is not None) == has_test and (not has_test or 0 < r["p_value"] <= 1)
    dcr = next(r for r in d["results"] if r["name"] == "dcr_share")["details"]["dcr_histogram"]
    assert len(dcr["edges"]) == len(dcr["synthetic_to_train"]) + 1 == len(dcr["holdout_to_train"]) + 1
    roc = next(r for r in d["results"] if r["name"] == "mia_distance")["details"]["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) and roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    # Strict JSON (no NaN), atomic write, round trip.
    path = quick_report.write_json(tmp_path / "out" / "audit.json")
    loaded = json.loads(path.read_text())
    assert loaded == json.loads(json.dumps(d, allow_nan=False))
    assert [p.name for p in path.parent.iterdir()] == ["audit.json"]
    assert AuditReport.from_dict(loaded).to_dict() == d


def test_no_raw_records_in_the_report(quick_report, small):
    text = quick_report.to_json()
    train = small[0]
    assert not any(str(v) in text for v in train["income"].head(20))


def test_thorough_without_generator_is_refused(small):
    with pytest.raises(AuditInputError, match="generator"):
        audits.run(*small, None, tier="thorough")


def test_budget_reports_attacks_as_not_run_and_fails(small):
    report = audits.run(*small, None, max_seconds=0.0)
    assert report.decision == "FAIL"
    assert all(r.status == "not_run" for r in report.results)
    assert "time budget" in report.failures()[0].message


def test_lower_tier_than_the_policy_requires_fails(small):
    report = audits.run(*small, None, tier="quick", policy=audits.Policy.from_dict({"tier": "thorough"}))
    assert report.decision == "FAIL"
    missing = {r.name for r in report.failures()}
    assert missing == {"mia_shadow", "epsilon_lower_bound"}
    assert "requires tier 'thorough'" in report.result("mia_shadow").message


def test_progress_callback_and_schema_dict_spec(small):
    train, holdout, synthetic = small
    schema = {
        "name": "t",
        "source": "public",
        "quasi_identifiers": ["age", "sex"],
        "unknown_key": 1,
        "columns": [
            {"name": "age", "kind": "numeric", "lower": 18, "upper": 90, "bins": 10, "integer": True},
            {"name": "sex", "kind": "categorical", "categories": ["F", "M"]},
            {"name": "label", "kind": "categorical", "categories": ["<=50K", ">50K"]},
        ],
    }
    seen = []
    report = audits.run(train, holdout, synthetic, schema, progress=lambda n, done, total: seen.append((n, done)))
    assert seen[0] == ("exact_copy_rate", 0) and seen[-1][0] == "done"
    assert report.result("linkage_risk").details["columns_a"] == ["age", "sex"]


def test_disabled_test_is_not_run_and_failed_attack_fails_the_gate(small, monkeypatch):
    policy = audits.Policy.from_dict({"tests": {"singling_out_risk": {"enabled": False}}})
    report = audits.run(*small, None, policy=policy)
    assert "singling_out_risk" not in [r.name for r in report.results]

    import audits.runner as runner

    def broken(data, **kw):
        raise ValueError("boom")

    monkeypatch.setattr(runner, "linkage_attack", broken)
    report = audits.run(*small, None)
    r = report.result("linkage_risk")
    assert r.status == "error" and r.passed is False and "boom" in r.message
    assert report.decision == "FAIL"


def test_failures_have_messages(small, leaky_copy):
    train, holdout, _ = small
    report = audits.run(train, holdout, leaky_copy(train, 0), None)
    msgs = report.failure_messages()
    assert any(m.startswith("mia_distance = ") and "exceeds threshold 0.60" in m for m in msgs)
