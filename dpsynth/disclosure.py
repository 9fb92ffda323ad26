"""What a release discloses: the public ``privacy.json``, and the notice every internal file carries.

``synthetic.csv`` and ``privacy.json`` are the only files meant to leave the
data owner. :func:`public_privacy_statement` builds the latter from public
inputs and DP outputs only (a test compares it across source tables that
differ in rows); ``INTERNAL_NOTICE`` goes into manifest.json and audit.json,
whose figures are computed from the private rows without noise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dpsynth.release import ReleaseRequest
    from dpsynth.schema import Schema
    from dpsynth.synthesizers.base import Synthesizer

INTERNAL_NOTICE = (
    "INTERNAL: holds statistics of the private data computed without noise (row counts, domain "
    "report, audit figures). Do not publish; synthetic.csv and privacy.json are the public files."
)
NEIGHBOURING = "add or remove one record"


def row_count_source(request: ReleaseRequest) -> str:
    """Where the synthetic row count came from: a public ``--rows``, or the generator's DP estimate."""
    return "public (--rows)" if request.rows is not None else "dp-estimate"


def public_privacy_statement(
    request: ReleaseRequest, schema: Schema, synthesizer: Synthesizer, manifest: dict[str, Any]
) -> dict[str, Any]:
    """``privacy.json``: what may leave the data owner with synthetic.csv.

    Only public inputs (the request, the schema, the generator's constructor
    parameters, versions) and DP outputs may appear here, never a number
    computed from the private rows without noise: the stated epsilon and
    delta are the request's targets, which the reserved and realised costs
    are calibrated to stay within (an accountant's exact figure can depend
    on the row count, e.g. DP-SGD's sampling rate); the seed is not
    repeated (``noise_source`` says whether one was fixed).
    """
    parameters = {k: v for k, v in manifest["parameters"].items() if k != "random_state"}
    unit = manifest["privacy"].get("unit") or {}
    neighbouring = manifest["privacy"].get("neighbouring", NEIGHBOURING)
    return {
        "format": "dpsynth-privacy/1",
        "classification": "public",
        "release_id": manifest["release_id"],
        "created_at": manifest["created_at"],
        "dataset_id": request.dataset_id,
        "generator": request.generator,
        "parameters": parameters,
        "epsilon": float(request.epsilon),
        "delta": float(request.delta),
        "guarantee": (
            f"({request.epsilon:g}, {request.delta:g})-differential privacy of the whole fit, "
            f"{neighbouring} of the source table; epsilon and delta are upper bounds"
        ),
        "accountant": manifest["privacy"]["accountant"],
        "neighbouring": neighbouring,
        # the unit and its public bound K; the identifier column's values never appear in any file
        "privacy_unit": {"unit": unit.get("unit", "record"), "max_rows": unit.get("max_rows", 1)},
        "noise_source": manifest["noise_source"],
        "row_count": {"rows": manifest["rows"]["synthetic"], "source": row_count_source(request)},
        # the policy profile the release was gated under (dpsynth.profiles), None for another policy
        "profile": (manifest.get("policy") or {}).get("name"),
        "schema": {"name": schema.name, "source": schema.source, "sha256": manifest["schema"]["sha256"]},
        "synthetic_sha256": None,  # filled in when synthetic.csv is written
        "dpsynth_version": manifest["versions"].get("dpsynth"),
    }
