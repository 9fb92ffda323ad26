"""The report's criteria, assumptions and approval block, and `dpsynth report`'s rules (no browser needed)."""

from __future__ import annotations

import copy

import pytest

from dpsynth.errors import UsageError
from dpsynth.report import build_figures, render_report
from dpsynth.report.browser import find_browser
from dpsynth.report.criteria import DEFAULT_PROFILE, criteria_context
from dpsynth.report.filing import sealed_column_panels, write_release_report
from dpsynth.report.html import _result_rows
from dpsynth.report.signoff import Evidence, approval_context

PROFILE = {
    "name": "hipaa-expert-determination",
    "title": "HIPAA expert determination (45 CFR 164.514(b)(1))",
    "disclaimer": "An aid to the reviewer, not legal advice: the expert signs the determination.",
    "summary": "Very small risk that the information could identify an individual.",
    "assumptions": ["The recipient holds no other extract of this population.", "Dates are shifted."],
    "residual_risk": ["Records of very rare conditions may stay recognisable to their own clinicians."],
    "criteria": [
        {
            "id": "singling-out",
            "title": "Singling out",
            "question": "Can one patient be isolated?",
            "tests": ["singling_out_risk"],
            "rationale": "Predicates isolating one training record.",
            "sources": ["45 CFR 164.514(b)(1)"],
        },
        {
            "id": "membership",
            "title": "Membership",
            "question": "Was this patient in the data?",
            "tests": ["mia_distance", "mia_shadow"],
            "rationale": "Membership attacks.",
            "sources": [],
        },
        {
            "id": "shadow-only",
            "title": "Shadow-model membership",
            "question": "Does a shadow model tell members apart?",
            "tests": ["mia_shadow"],
            "rationale": "Thorough tier only.",
            "sources": [],
        },
    ],
}
OPERATOR_KEY = "ab" * 32
APPROVER_KEY = "cd" * 32


def _result(name, value, passed, threshold=0.1, required=True, low=None, high=None):
    return {
        "name": name,
        "family": "reidentification",
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "threshold": threshold,
        "direction": "max",
        "passed": passed,
        "required": required,
        "status": "ok",
        "message": "" if passed else f"{name} above threshold",
    }


def _audit(decision="PASS", singling=True):
    return {
        "decision": decision,
        "tier": "quick",
        "confidence": 0.95,
        "results": [
            _result("singling_out_risk", 0.0123, singling, low=0.004, high=0.0311),
            _result("mia_distance", 0.51, True, threshold=0.6),
            _result("linkage_risk", 0.02, True),
        ],
    }


def _manifest(decision="PASS", profile=PROFILE, approval=None, with_policy=True):
    manifest = {
        "decision": decision,
        "release_id": "r" * 32,
        "created_at": "2026-12-01T10:00:00+00:00",
        "dataset_id": "toy",
        "generator": "mst",
        "privacy": {"epsilon": 1.0, "delta": 1e-6},
        "budget": {"epsilon_cap": 5.0, "spent_epsilon": 1.0},
        "noise_source": "os-entropy",
        "approval": approval or {"required": True, "status": "awaiting-approval", "operator": "olivia",
                                 "operator_key_id": OPERATOR_KEY},
    }  # fmt: skip
    if with_policy:
        manifest["policy"] = {
            "source": "hipaa.toml",
            "name": "hipaa",
            "profile": profile,
            "release": {},
            "tier": "quick",
        }
    return manifest


def _criteria(manifest, audit):
    return {c["id"]: c for c in criteria_context(manifest, _result_rows(audit), [])["criteria"]}


def test_each_criterion_is_answered_by_its_tests():
    criteria = _criteria(_manifest(), _audit())
    assert criteria["singling-out"]["verdict"] == "PASS"
    assert [r["name"] for r in criteria["singling-out"]["rows"]] == ["singling_out_risk"]
    assert criteria["membership"]["verdict"] == "PASS" and criteria["membership"]["missing"] == ["mia_shadow"]
    assert criteria["shadow-only"]["verdict"] == "NOT ANSWERED"  # a test that did not run answers nothing
    failed = _criteria(_manifest(), _audit(singling=False))
    assert failed["singling-out"]["verdict"] == "FAIL" and failed["membership"]["verdict"] == "PASS"


def test_an_advisory_failure_alone_does_not_pass_a_criterion():
    audit = _audit()
    audit["results"][0] = _result("singling_out_risk", 0.3, False, required=False)
    assert _criteria(_manifest(), audit)["singling-out"]["verdict"] == "ADVISORY ONLY"


def test_old_manifests_and_profile_none_get_the_default_criteria():
    for manifest in (_manifest(with_policy=False), _manifest(profile=None)):
        context = criteria_context(manifest, _result_rows(_audit()), [])
        assert context["is_default"]
        assert [c["id"] for c in context["criteria"]] == ["singling-out", "linkability", "inference", "membership"]
        assert context["assumptions"] == DEFAULT_PROFILE["assumptions"]
    by_id = {c["id"]: c["tests"] for c in DEFAULT_PROFILE["criteria"]}
    assert by_id["singling-out"] == ["singling_out_risk"] and "linkage_risk" in by_id["linkability"]
    assert {"dcr_share", "nndr_ratio"} <= set(by_id["linkability"])
    assert by_id["inference"] == ["attribute_inference_risk"] and "mia_distance" in by_id["membership"]


def test_the_page_shows_the_profile_criteria_with_interval_threshold_and_sources():
    html = render_report(_manifest(), _audit(), build_figures(None, None, {}, _audit()))
    criteria = html.split('<section id="criteria">', 1)[1].split("</section>", 1)[0]
    assert "HIPAA expert determination" in criteria and "not legal advice" in criteria
    assert 'id="criterion-singling-out"' in criteria and 'id="criterion-shadow-only"' in criteria
    assert "[0.004, 0.031]" in criteria and "≤ 0.10" in criteria and "45 CFR 164.514(b)(1)" in criteria
    assert "NOT ANSWERED" in criteria and "Not run in this audit: mia_shadow" in criteria
    assumptions = html.split('<section id="assumptions">', 1)[1].split("</section>", 1)[0]
    assert "Dates are shifted." in assumptions and "very rare conditions" in assumptions


def test_release_facts_are_added_to_the_residual_risk():
    manifest = _manifest()
    manifest["noise_source"] = "fixed-seed (reproducible; not secure)"
    html = render_report(manifest, _audit(), build_figures(None, None, {}, _audit()))
    assumptions = html.split('<section id="assumptions">', 1)[1].split("</section>", 1)[0]
    assert "fixed seed" in assumptions and "very rare conditions" in assumptions


def _evidence(decision: str | None) -> Evidence:
    signatures = [{"role": "operator", "name": "olivia", "key_id": OPERATOR_KEY, "signature": "x"}]
    if decision:
        signatures.append(
            {
                "role": "approver",
                "name": "omar",
                "key_id": APPROVER_KEY,
                "decision": {"decision": decision, "by": "omar", "reason": "fine", "at": "2026-12-02T09:00:00+00:00",
                             "ledger_entry_id": 4, "ledger_entry_hash": "ef" * 32},
                "signature": "y",
            }
        )  # fmt: skip
    index = {
        "release_id": "r" * 32,
        "created_at": "2026-12-01T10:00:00+00:00",
        "status": "awaiting-approval",
        "approval_required": True,
        "operator": {"name": "olivia", "key_id": OPERATOR_KEY},
        "files": [{"name": "report.html"}],
    }
    return Evidence(index=index, signatures={"signatures": signatures}, bundle_sha256="12" * 32, checked_at="now")


def test_approval_block_at_release_time_and_after_the_decision():
    at_release = approval_context(_manifest())
    assert (at_release["status"], at_release["approver"]) == ("awaiting-approval", None)
    assert at_release["operator"]["name"] == "olivia" and at_release["operator"]["key_id"] == OPERATOR_KEY
    assert at_release["operator"]["date"] == "2026-12-01T10:00:00+00:00" and not at_release["sealed"]
    approved = approval_context(_manifest(), _evidence("approved"))
    assert approved["status"] == "approved" and approved["bundle_sha256"] == "12" * 32
    assert approved["approver"] == {
        "name": "omar",
        "key_id": APPROVER_KEY,
        "date": "2026-12-02T09:00:00+00:00",
        "decision": "approved",
        "reason": "fine",
        "ledger_entry_id": 4,
        "ledger_entry_hash": "ef" * 32,
    }
    assert approval_context(_manifest(), _evidence("rejected"))["label"] == "REJECTED"
    assert approval_context(_manifest(), _evidence(None))["status"] == "awaiting-approval"
    assert approval_context(_manifest(decision="FAIL"))["status"] == "withheld"
    not_required = {"required": False, "status": "released", "operator": "olivia", "operator_key_id": OPERATOR_KEY}
    assert approval_context(_manifest(approval=not_required))["status"] == "not-required"
    unsigned = {"required": False, "status": "released", "operator": None, "operator_key_id": None}
    assert approval_context(_manifest(approval=unsigned))["status"] == "unsigned"


def test_the_page_shows_the_approval_block():
    figs = build_figures(None, None, {}, _audit())
    html = render_report(_manifest(), _audit(), figs, _evidence("approved"))
    block = html.split('<section id="approval">', 1)[1].split("</section>", 1)[0]
    for needle in ("APPROVED", "olivia", OPERATOR_KEY, "omar", APPROVER_KEY, "2026-12-02T09:00:00+00:00", "fine"):
        assert needle in block
    assert "Approved by omar on 2026-12-02T09:00:00+00:00" in html.split("</header>", 1)[0]
    page = render_report(_manifest(), _audit(), figs)
    assert "Awaiting approval by a reviewer other than the operator (olivia)" in page.split("</header>", 1)[0]
    awaiting = page.split('<section id="approval">', 1)[1]
    assert "awaiting approval" in awaiting and "omar" not in awaiting


def test_sealed_panels_keep_only_png_alt_and_caption():
    html = (
        '<section id="attacks"><figure><img src="data:image/png;base64,QUJD" alt="roc"></figure></section>'
        '<section id="columns"><figure><img src="data:image/png;base64,iVBORw0KGgo=" alt="age: real vs synthetic">'
        "<figcaption>numeric · TVD 0.04</figcaption></figure>"
        '<figure><img src="javascript:alert(1)" alt="x"><p><strong>rare</strong>: real distribution suppressed.</p>'
        "<figcaption>&lt;script&gt;alert(2)&lt;/script&gt;</figcaption></figure></section>"
    )
    first, second = sealed_column_panels(html)
    assert (first.png_base64, first.alt, first.caption) == (
        "iVBORw0KGgo=",
        "age: real vs synthetic",
        "numeric · TVD 0.04",
    )
    assert second.png_base64 == "" and second.alt == "rare : real distribution suppressed."
    page = render_report(
        _manifest(), _audit(), build_figures(None, None, {}, _audit()).__class__(sealed_columns=[first, second])
    )
    assert "javascript:" not in page and "<script>" not in page and "&lt;script&gt;" in page


def test_report_refuses_to_write_inside_the_sealed_directory(tmp_path):
    release = tmp_path / "rel"
    release.mkdir()
    for out in (release / "report.pdf", release / "sub" / "x.html"):
        with pytest.raises(UsageError, match="inside the release directory"):
            write_release_report(release, out)
    with pytest.raises(UsageError, match="is a directory"):
        write_release_report(release, tmp_path)


def test_a_missing_chromium_is_a_usage_error_naming_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("DPSYNTH_CHROMIUM", raising=False)
    with pytest.raises(UsageError, match="apt-get install chromium") as info:
        find_browser()
    assert info.value.exit_code == 2
    monkeypatch.setenv("DPSYNTH_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(UsageError, match="DPSYNTH_CHROMIUM"):
        find_browser()


def test_profiles_are_not_mutated():
    before = copy.deepcopy(PROFILE)
    criteria_context(_manifest(), _result_rows(_audit()), ["extra"])
    assert PROFILE == before and "extra" not in DEFAULT_PROFILE["residual_risk"]


def test_release_with_pdf_and_no_chromium_refuses_before_any_spend(monkeypatch, tmp_path):
    from dpsynth.privacy.ledger import Ledger, init_ledger
    from dpsynth.release import ReleaseRequest, run_release

    ledger = tmp_path / "ledger.sqlite"
    init_ledger(ledger, "toy", 5.0, 1e-5)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("DPSYNTH_CHROMIUM", raising=False)
    request = ReleaseRequest(
        data=tmp_path / "data.csv",
        schema=tmp_path / "schema.json",
        generator="mst",
        epsilon=1.0,
        delta=1e-6,
        ledger=ledger,
        dataset_id="toy",
        out=tmp_path / "out",
        pdf=True,
    )
    with pytest.raises(UsageError, match="chromium"):
        run_release(request)
    assert Ledger(ledger).summary("toy")[0].entries == [] and not (tmp_path / "out").exists()
