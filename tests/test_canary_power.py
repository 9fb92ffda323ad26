"""The canary audit's power against real MST bugs (issue 7, item 8), on a UCI Adult subsample.

The generator is built exactly as ``dpsynth release`` builds it for the
thorough tier (:func:`dpsynth.release.generator_factory`), at epsilon = 1;
the mutations (tests/mst_mutations.py) change the noise actually drawn while
the accountant still reports epsilon = 1:

- honest MST gives no evidence (lower bound about 0);
- MST whose noise is a hundredth of the calibrated scale is refused: the lower
  bound exceeds the claimed epsilon. The canary design before this test
  (random outlier records, scored by the distance to the nearest synthetic
  row) gave 0 here, because MST keeps two-way marginals, not records.

What the audit misses (noise scaled by 0.1, the two-way marginals measured
without noise) is measured by benchmarks/canary_power.py and stated in
docs/canary-audit.md. Each test is one MST fit (1,000 mirror-descent
iterations) on 500 reference rows plus the included canaries.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

import audits
from dpsynth.release import generator_factory
from dpsynth.schema import Schema
from tests.mst_mutations import MUTATIONS, mutated

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adult(adult_csv: Path) -> dict[str, object]:
    schema = Schema.load(REPO / "benchmarks" / "adult.schema.json")
    table = pd.read_csv(adult_csv, skipinitialspace=True, na_values=["?"]).drop(columns=["fnlwgt"])
    table = table.sample(n=3000, random_state=0).reset_index(drop=True)
    return {
        "schema": schema,
        "spec": audits.TableSpec.from_schema_dict(schema.to_dict()),
        "train": table.iloc[:1000].reset_index(drop=True),
        "holdout": table.iloc[1000:].reset_index(drop=True),
    }


def _audit(adult: dict, mutation: str, seed: int = 0) -> audits.AuditResult:
    fit_sample = generator_factory("mst", {"iters": 1000}, adult["schema"], 1.0, 1e-6, False)
    data = audits.AuditData(adult["train"], adult["holdout"], adult["holdout"], adult["spec"], seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return audits.canary_audit(
            data,
            mutated(fit_sample, MUTATIONS[mutation]),
            n_canaries=400,
            reference_rows=500,
            claimed_epsilon=1.0,
            delta=1e-6,
        )


def test_honest_mst_at_epsilon_1_gives_no_evidence(adult):
    r = _audit(adult, "honest")
    assert r.details["guesses"] == 100
    assert r.value < 0.5, r.details


def test_mst_with_a_hundredth_of_its_noise_is_refused(adult):
    r = _audit(adult, "noise_x0.01")
    assert r.value > 1.0, r.details
    assert r.details["correct"] >= 85, r.details
    judged = audits.Policy.default().judge_result(r, claimed_epsilon=1.0)
    assert judged.passed is False and "DP implementation appears broken" in judged.message
