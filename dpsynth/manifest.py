"""The release's internal manifest: what was run, what it cost, what the gate found, with which versions.

``manifest.json`` stays inside the organisation (``classification: internal``); the public
statement is built from it by :mod:`dpsynth.disclosure`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import uuid
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pandas as pd

from dpsynth.disclosure import INTERNAL_NOTICE, row_count_source
from dpsynth.privacy.cost import PrivacyCost, event_to_dict
from dpsynth.privacy.ledger import AnyLedger
from dpsynth.privacy.unit import RECORD, PrivacyUnit
from dpsynth.schema import Schema
from dpsynth.synthesizers.base import Synthesizer

if TYPE_CHECKING:  # release imports this module
    from dpsynth.release import ReleaseRequest


def package_versions() -> dict[str, str]:
    names = ["dpsynth", "numpy", "pandas", "scikit-learn", "mbi", "dp-accounting", "opacus", "torch"]
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def build_manifest(
    request: ReleaseRequest,
    schema: Schema,
    synthesizer: Synthesizer,
    planned: PrivacyCost,
    entry,
    budget,
    audit: dict,
    report,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    n_rows: int,
    ledger: AnyLedger,
    unit: PrivacyUnit = RECORD,
) -> dict[str, Any]:
    """The internal manifest; ``privacy.neighbouring`` and ``privacy.unit`` state the unit (record or person, K)."""
    realised = synthesizer.privacy_cost_
    return {
        "format": "dpsynth-release/1",
        "classification": "internal",
        "notice": INTERNAL_NOTICE,
        "release_id": uuid.uuid4().hex,
        "decision": audit["decision"],
        "reasons": [failure.message for failure in report.failures()],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset_id": request.dataset_id,
        "generator": request.generator,
        "parameters": jsonable_params(synthesizer.get_params()),
        "privacy": {
            "epsilon": planned.epsilon,
            "delta": planned.delta,
            "accountant": planned.accountant,
            "event": event_to_dict(planned.event),
            "neighbouring": unit.neighbouring_relation,
            "unit": unit.to_dict(),
            "realised": realised.to_dict(),
        },
        "budget": {
            "epsilon_cap": budget.epsilon_cap,
            "delta_cap": budget.delta_cap,
            "spent_epsilon": budget.spent_epsilon,
            "remaining_epsilon": budget.remaining_epsilon,
            "naive_sum_epsilon": budget.naive_sum_epsilon,
            "accountant": budget.accountant,
        },
        "ledger": {
            "path": ledger.location,
            "entry_id": entry.id,
            "entry_hash": entry.hash,
            "head_hash": ledger.head_hash(),
        },
        "schema": {
            "name": schema.name,
            "source": schema.source,
            "leaked_domain": not schema.is_public,
            "sha256": hashlib.sha256(json.dumps(schema.to_dict(), sort_keys=True).encode()).hexdigest(),
        },
        "domain_report": synthesizer.domain_report_.to_dict(),
        "rows": {
            "train": len(train),
            "holdout": len(holdout),
            "synthetic": n_rows,
            "row_count": row_count_source(request),
        },
        "seed": request.seed,
        "noise_source": synthesizer.noise_source_,
        "audit": {
            "tier": audit.get("tier"),
            "decision": audit["decision"],
            "results": [
                {
                    k: r.get(k)
                    for k in ("name", "family", "value", "ci_low", "ci_high", "threshold", "direction", "passed")
                }
                for r in audit["results"]
            ],
        },
        "versions": package_versions(),
        "files": {},
    }


def jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    """Generator parameters as JSON values (anything else by its repr), for the manifest and the ledger."""
    return json.loads(json.dumps(params, default=lambda v: repr(v)))
