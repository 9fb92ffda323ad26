"""One benchmark run in a process of its own: ``python -m dpsynth.benchmarking.worker SPEC.json``.

The orchestrator (:mod:`dpsynth.benchmarking.grid`) has already reserved the
run's planned cost on the ledger when it starts this process. The worker
reads the training and holdout rows the orchestrator split once (pickles in
its private 0700 work directory), fits the generator on the training rows
only, checks that the realised privacy event is within the plan, samples,
and scores the synthetic table against the holdout: utility
(:mod:`~dpsynth.benchmarking.metrics`), the schema's consistency rules and
the audit tier's attack families with their intervals. It writes one JSON
result (atomically) and exits 0; any exception exits non-zero with the
traceback on stderr, which the orchestrator turns into an ``error`` row.

A fresh process per run keeps peak memory (``ru_maxrss``) that run's own and
lets the orchestrator enforce a time limit by killing it.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

#: Test-only fault injection: ``crash@GENERATOR`` or ``hang@GENERATOR`` (optionally ``@EPSILON``) makes the
#: matching runs exit with an error or sleep past their timeout. Used by tests/test_benchmark.py; never set it.
TEST_FAULT_ENV = "DPSYNTH_TEST_BENCHMARK_FAULT"


def _inject_test_fault(spec: dict[str, Any]) -> None:
    fault = os.environ.get(TEST_FAULT_ENV, "")
    if not fault:
        return
    kind, _, where = fault.partition("@")
    generator, _, epsilon = where.partition("@")
    if generator != spec["generator"] or (epsilon and float(epsilon) != float(spec["epsilon"])):
        return
    if kind == "crash":
        raise RuntimeError(f"injected test fault: {spec['generator']} crashed ({TEST_FAULT_ENV})")
    if kind == "hang":
        time.sleep(3600)


def _audit(spec: dict[str, Any], train, holdout, synthetic, schema, claimed_epsilon: float) -> dict[str, Any]:
    import audits
    from dpsynth.release import generator_factory

    policy = audits.Policy.load(spec["policy"]) if spec.get("policy") else audits.Policy.default()
    factory = None
    if spec["tier"] == "thorough":
        factory = generator_factory(
            spec["generator"], spec["params"], schema, spec["epsilon"], spec["delta"], spec["accept_private_schema"]
        )
    report = audits.run(
        train,
        holdout,
        synthetic,
        audits.TableSpec.from_schema_dict(schema.to_dict()),
        policy=policy,
        tier=spec["tier"],
        generator=factory,
        claimed_epsilon=claimed_epsilon,
        seed=spec["seed"],
    ).to_dict()
    keys = ("name", "family", "value", "ci_low", "ci_high", "threshold", "direction", "passed", "status")
    return {
        "decision": report["decision"],
        "tier": report.get("tier"),
        "results": [{k: r.get(k) for k in keys} for r in report["results"]],
    }


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit, sample, score and audit one run; returns the result row's measured part."""
    import pandas as pd

    from dpsynth.privacy.cost import PrivacyCost
    from dpsynth.schema import Schema
    from dpsynth.synthesizers import make_synthesizer
    from dpsynth.synthesizers.base import check_within_plan

    schema = Schema.from_dict(spec["schema"])
    train: pd.DataFrame = pd.read_pickle(spec["train"])  # our own 0700 work directory
    holdout: pd.DataFrame = pd.read_pickle(spec["holdout"])
    model = make_synthesizer(
        spec["generator"], epsilon=spec["epsilon"], delta=spec["delta"], random_state=spec["seed"], **spec["params"]
    )
    if hasattr(model, "progress"):
        model.progress = False
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(train, schema, accept_private_schema=spec["accept_private_schema"])
    fit_seconds, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    planned = PrivacyCost.from_dict(spec["planned"])
    check_within_plan(model.privacy_cost_, planned, spec["delta_cap"], what=f"{spec['generator']} fit")
    n_rows = spec["rows"] if spec.get("rows") else model.n_rows_estimate_
    wall = time.perf_counter()
    synthetic = model.sample(n_rows)
    sample_seconds = time.perf_counter() - wall
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    scores = score_synthetic(spec, train, holdout, synthetic, schema, model.privacy_cost_.epsilon)
    scores["cost"].update(
        fit_seconds=fit_seconds, fit_cpu_seconds=fit_cpu, sample_seconds=sample_seconds, peak_rss_mb=peak_mb
    )
    return {"epsilon_realised": model.privacy_cost_.epsilon, "accountant": model.privacy_cost_.accountant, **scores}


def score_synthetic(
    spec: dict[str, Any],
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema,
    claimed_epsilon: float,
) -> dict[str, Any]:
    """Utility against the holdout, the schema's consistency rules and the audit tier, for any synthetic table."""
    from dpsynth.benchmarking.consistency import violation_rates
    from dpsynth.benchmarking.metrics import utility_scores

    wall = time.perf_counter()
    utility = utility_scores(holdout, synthetic, schema, spec.get("target"), seed=spec["seed"])
    consistency = violation_rates(synthetic, schema.rules)
    audit = _audit(spec, train, holdout, synthetic, schema, claimed_epsilon) if spec["tier"] else None
    return {
        "n_synthetic": len(synthetic),
        "utility": utility,
        "consistency": consistency,
        "audit": audit,
        "cost": {"score_seconds": time.perf_counter() - wall},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dpsynth.benchmarking.worker SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    _inject_test_fault(spec)  # before the heavy imports, so a test's injected fault costs little time
    from dpsynth._files import atomic_write_json

    result = run(spec)
    atomic_write_json(Path(spec["result"]), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
