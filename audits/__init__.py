"""Privacy attacks on synthetic tables and the release gate's decision.

``audits`` imports nothing from ``dpsynth``: it audits any synthetic table,
including one made by another tool. Entry point::

    report = audits.run(train, holdout, synthetic, spec, policy=None, tier="quick")
    report.decision            # "PASS" or "FAIL"
    report.failures()          # failed results, each with a human-readable .message
    report.write_json(path)    # schema: docs/audit-json.md

The individual attacks take an :class:`AuditData` (the prepared triple) and
return an un-judged :class:`AuditResult`; :class:`Policy` judges them.
"""

from audits.canary import canary_audit, epsilon_lower_bound, make_canaries
from audits.data import AuditData
from audits.distance import dcr_membership_attack, dcr_share, exact_copy_rate, nndr
from audits.embedding import MixedEncoder
from audits.errors import AuditError, AuditInputError, PolicyError, SpecError
from audits.linkage import attribute_inference_attack, linkage_attack
from audits.membership import domias_attack
from audits.policy import Policy
from audits.results import AuditReport, AuditResult
from audits.runner import AttackEvent, GeneratorFactory, run
from audits.shadow import shadow_model_attack
from audits.singling_out import singling_out_attack
from audits.spec import ColumnSpec, TableSpec

__all__ = [
    "AttackEvent",
    "AuditData",
    "AuditError",
    "AuditInputError",
    "AuditReport",
    "AuditResult",
    "ColumnSpec",
    "GeneratorFactory",
    "MixedEncoder",
    "Policy",
    "PolicyError",
    "SpecError",
    "TableSpec",
    "attribute_inference_attack",
    "canary_audit",
    "dcr_membership_attack",
    "dcr_share",
    "domias_attack",
    "epsilon_lower_bound",
    "exact_copy_rate",
    "linkage_attack",
    "make_canaries",
    "nndr",
    "run",
    "shadow_model_attack",
    "singling_out_attack",
]
