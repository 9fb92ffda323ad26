"""The report's answer to a policy profile: one section per criterion, then assumptions and residual risk.

A profile (``manifest["policy"]["profile"]``, written by the policy-profile
loader) names the questions a reviewer must answer, e.g. "can a person be
singled out?", and which audit tests answer each. This module matches each
criterion's tests with the audit's results and says, per criterion, whether
it is answered and passed. A release made without a profile (or before
profiles existed) is judged against :data:`DEFAULT_PROFILE`: the three risks
of the Article 29 Working Party's Opinion 05/2014 on anonymisation
techniques (singling out, linkability, inference) plus membership inference,
with assumptions and residual risk taken from ``docs/threat-model.md``.

A criterion none of whose tests ran is **not answered**, never passed: a
profile that asks for a test the tier did not run must show as a gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_PROFILE: dict[str, Any] = {
    "name": "default",
    "title": "Default criteria: the Article 29 Working Party's three risks, plus membership inference",
    "disclaimer": (
        "An aid to the reviewer, not legal advice: whether the synthetic table is anonymous in law is for the "
        "data controller and their counsel to decide."
    ),
    "summary": (
        "No policy profile was recorded for this release, so the report answers the three criteria of the "
        "Article 29 Working Party's Opinion 05/2014 on anonymisation techniques, and membership inference."
    ),
    "assumptions": [
        "The guarantee is (epsilon, delta)-differential privacy of the fitted generator with respect to the source "
        "table, under add/remove-one-record neighbouring, with the epsilon and delta in the privacy budget section; "
        "every synthetic row is post-processing of the fitted generator.",
        "One row is one person. A person with k rows is protected at about k times epsilon (group privacy).",
        "The adversary holds the synthetic table, knows the generator, its parameters, the schema and the epsilon "
        "and delta, and may know every other record; they do not know the noise and cannot observe the machine "
        "that ran the fit.",
        "The schema's categories and bounds are public knowledge, or were learned with differential privacy and "
        "charged to the ledger.",
        "Every source describing the same people is registered under one dataset id in the ledger, so the ledger "
        "composes every spend on them.",
    ],
    "residual_risk": [
        "The gate's decision (release or withhold) depends on the private rows without noise: at most one bit per "
        "release attempt, not accounted in epsilon.",
        "The audits are empirical attacks. A pass shows that these attacks, at this sample size, did not beat the "
        "holdout baseline by more than the thresholds; it is not a proof, and a stronger attack may do better.",
        "Population-level facts are kept by design: the synthetic table can reveal what holds of a group, and so "
        "of its members.",
        "This report, audit.json and manifest.json show statistics of the private rows that are not "
        "differentially private: they are internal documents. Only synthetic.csv and privacy.json are public.",
    ],
    "criteria": [
        {
            "id": "singling-out",
            "title": "Singling out",
            "question": "Can an attacker isolate one person's record using the synthetic table?",
            "tests": ["singling_out_risk"],
            "rationale": "Predicates built from synthetic rows are checked against the real rows: the risk is how "
            "often one isolates exactly one training record, beyond how often it isolates a holdout record.",
            "sources": [
                "Article 29 Working Party, Opinion 05/2014 on anonymisation techniques (WP216), section 3",
                "Giomi et al. 2023, A Unified Framework for Quantifying Privacy Risk in Synthetic Data (PoPETs)",
            ],
        },
        {
            "id": "linkability",
            "title": "Linkability",
            "question": "Can records about the same person be linked, by quasi-identifiers or by closeness?",
            "tests": ["linkage_risk", "dcr_share", "nndr_ratio", "exact_copy_rate"],
            "rationale": "Linkage on the quasi-identifiers, and the distance tests: a synthetic row much closer to a "
            "training row than to any holdout row, or an exact copy, links to that record.",
            "sources": ["Article 29 Working Party, Opinion 05/2014 on anonymisation techniques (WP216), section 3"],
        },
        {
            "id": "inference",
            "title": "Inference",
            "question": "Can an attribute of a person be deduced, with significant probability, from the others?",
            "tests": ["attribute_inference_risk"],
            "rationale": "An attacker who knows the quasi-identifiers predicts the secret column from the synthetic "
            "table; success on training rows beyond that on holdout rows is the risk.",
            "sources": ["Article 29 Working Party, Opinion 05/2014 on anonymisation techniques (WP216), section 3"],
        },
        {
            "id": "membership",
            "title": "Membership inference",
            "question": "Can an attacker tell whether a person's record was in the training table?",
            "tests": [
                "mia_distance",
                "mia_distance_tpr_1pct_fpr",
                "mia_domias",
                "mia_domias_tpr_1pct_fpr",
                "mia_shadow",
                "epsilon_lower_bound",
            ],
            "rationale": "Membership attacks (distance, DOMIAS, and in the thorough tier a shadow model and a canary "
            "lower bound on epsilon) measure the empirical side of the differential-privacy guarantee.",
            "sources": [
                "Stadler, Oprisanu & Troncoso 2022, Synthetic Data - Anonymisation Groundhog Day (USENIX Security)"
            ],
        },
    ],
}


def profile_of(manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the profile the release is judged against, whether it is the default).

    ``manifest["policy"]`` may be absent (releases before profiles) or carry
    ``profile: None`` (a policy without one): both get :data:`DEFAULT_PROFILE`.
    """
    policy = manifest.get("policy")
    profile = policy.get("profile") if isinstance(policy, Mapping) else None
    if isinstance(profile, Mapping) and isinstance(profile.get("criteria"), list):
        return dict(profile), False
    return DEFAULT_PROFILE, True


def _verdict(rows: list[Mapping[str, Any]]) -> tuple[str, str]:
    """A criterion's verdict from its tests' result rows (``verdict`` and ``required`` as in the results table)."""
    if not rows:
        return "NOT ANSWERED", "fail"
    required = [r for r in rows if r["required"]]
    if any(r["verdict"] in ("FAIL", "NOT RUN", "ERROR") for r in required):
        return "FAIL", "fail"
    if required and all(r["verdict"] == "PASS" for r in required):
        return "PASS", "pass"
    return "ADVISORY ONLY", "warn"


def criteria_context(
    manifest: Mapping[str, Any], result_rows: list[Mapping[str, Any]], extra_risks: list[str]
) -> dict[str, Any]:
    """The criteria, assumptions and residual-risk sections: plain values for the template.

    ``result_rows`` are the results table's rows (one per audit result);
    ``extra_risks`` are facts of this release (a fixed seed, a leaked domain)
    added to the residual risk whatever the profile says.
    """
    profile, is_default = profile_of(manifest)
    by_name = {str(r["name"]): r for r in result_rows}
    criteria = []
    for index, criterion in enumerate(profile.get("criteria") or []):
        if not isinstance(criterion, Mapping):
            continue
        tests = [str(t) for t in criterion.get("tests") or []]
        rows = [by_name[t] for t in tests if t in by_name]
        verdict, css = _verdict(rows)
        criteria.append(
            {
                "id": str(criterion.get("id") or f"criterion-{index + 1}"),
                "title": str(criterion.get("title") or criterion.get("id") or f"Criterion {index + 1}"),
                "question": str(criterion.get("question") or ""),
                "rationale": str(criterion.get("rationale") or ""),
                "sources": [str(s) for s in criterion.get("sources") or []],
                "tests": tests,
                "rows": rows,
                "missing": [t for t in tests if t not in by_name],
                "verdict": verdict,
                "css": css,
            }
        )
    policy = manifest.get("policy") if isinstance(manifest.get("policy"), Mapping) else {}
    return {
        "name": str(profile.get("name") or ""),
        "title": str(profile.get("title") or profile.get("name") or ""),
        "disclaimer": str(profile.get("disclaimer") or DEFAULT_PROFILE["disclaimer"]),
        "summary": str(profile.get("summary") or ""),
        "is_default": is_default,
        "policy_name": policy.get("name"),
        "policy_source": policy.get("source"),
        "criteria": criteria,
        "assumptions": _unit_assumptions(
            [str(a) for a in profile.get("assumptions") or DEFAULT_PROFILE["assumptions"]], manifest
        ),
        "residual_risk": [str(r) for r in profile.get("residual_risk") or DEFAULT_PROFILE["residual_risk"]]
        + list(extra_risks),
    }


ROW_UNIT_ASSUMPTION = "One row is one person"  # how the default and the shipped profiles begin that assumption


def _unit_assumptions(assumptions: list[str], manifest: Mapping[str, Any]) -> list[str]:
    """The assumptions with the release's unit of privacy: a person-level release replaces the one-row-one-person
    sentence and states its neighbouring relation (``privacy.unit`` in the manifest, dpsynth.privacy.unit)."""
    privacy = manifest.get("privacy") if isinstance(manifest.get("privacy"), Mapping) else {}
    unit = privacy.get("unit") if isinstance(privacy.get("unit"), Mapping) else {}
    if unit.get("unit") != "person":
        return assumptions
    k = unit.get("max_rows")
    person = (
        f"The unit of privacy is a person with up to {k} rows, named by an identifier column that is never modelled "
        f"or released; a person's rows beyond {k} were dropped at random before fitting, and the holdout was drawn "
        "by person."
    )
    out = [person if a.startswith(ROW_UNIT_ASSUMPTION) else a for a in assumptions]
    out = [
        a.replace("add/remove-one-record neighbouring", f"add/remove-one-person (up to {k} rows) neighbouring")
        for a in out
    ]
    return out if person in out else out + [person]


def release_risks(manifest: Mapping[str, Any]) -> list[str]:
    """Residual risks that are facts of this release, from its manifest."""
    risks = []
    if str(manifest.get("noise_source") or "").startswith("fixed-seed"):
        risks.append(
            "This release's noise came from a fixed seed: anyone who knows the seed and the data can recompute the "
            "noise, so the differential-privacy guarantee holds only while the seed stays secret."
        )
    schema = manifest.get("schema") if isinstance(manifest.get("schema"), Mapping) else {}
    if schema.get("leaked_domain"):
        risks.append(
            "This release's schema domain was read from the private data: its categories and bounds are not covered "
            "by the differential-privacy guarantee and may reveal rare values."
        )
    return risks


__all__ = ["DEFAULT_PROFILE", "criteria_context", "profile_of", "release_risks"]
