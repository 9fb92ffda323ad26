"""Person-level audits (issue 12): targets are persons, a person's score is their most exposed row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import audits
from audits import AuditInputError
from audits.data import AuditData, per_person
from audits.distance import dcr_membership_attack
from audits.linkage import linkage_attack
from audits.membership import domias_attack


def panel(n_persons: int, rows: int, seed: int, offset: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """``rows`` rows a person; a person's rows share a person effect, so they resemble each other."""
    rng = np.random.default_rng(seed)
    units = np.repeat(np.arange(n_persons) + offset, rows)
    level = np.repeat(rng.normal(0, 3, n_persons), rows)
    frame = pd.DataFrame(
        {
            "x": np.clip(level + rng.normal(0, 1, len(units)), -10, 10),
            "y": np.clip(level * 0.5 + rng.normal(0, 1, len(units)), -10, 10),
            "c": rng.choice(["a", "b", "c"], len(units)),
        }
    )
    return frame, units


SPEC = {
    "columns": [
        {"name": "x", "kind": "numeric", "lower": -10, "upper": 10},
        {"name": "y", "kind": "numeric", "lower": -10, "upper": 10},
        {"name": "c", "kind": "categorical", "categories": ["a", "b", "c"]},
    ]
}


def test_per_person_takes_each_persons_best_row() -> None:
    assert per_person(np.array([0.1, 0.9, 0.3, 0.2]), np.array([5, 5, 2, 2])).tolist() == [0.9, 0.3]
    assert per_person(np.array([False, True, False]), np.array([1, 1, 4])).tolist() == [True, False]
    values = np.array([0.4, 0.1])
    assert per_person(values, None) is values


def test_person_level_targets_are_whole_persons_and_a_copy_is_caught() -> None:
    train, tu = panel(200, 4, 0)
    holdout, hu = panel(200, 4, 1, offset=1000)
    synthetic = pd.concat([train, panel(200, 4, 2)[0]], ignore_index=True)  # half of it copies every train row
    spec = audits.TableSpec.from_schema_dict(SPEC)
    data = AuditData(train, holdout, synthetic, spec, seed=0, max_targets=100, units={"train": tu, "holdout": hu})
    assert data.person_level
    members = data.groups("members")
    assert len(np.unique(members)) == 100 and len(members) == 400  # 100 persons, all 4 rows each
    result = dcr_membership_attack(data)
    assert result.details["n_members"] == 100 and result.details["target"].startswith("person")
    assert result.value > 0.95  # copied persons sit at distance 0
    domias = domias_attack(data)
    assert domias.details["n_members"] == domias.details["n_nonmembers"]
    linkage = linkage_attack(data, n_attacks=80)
    assert linkage.details["n_train_attacks"] == 80  # persons, not rows


def test_person_level_audit_refuses_a_person_on_both_sides() -> None:
    train, tu = panel(50, 2, 0)
    holdout, hu = panel(50, 2, 1)  # the same person codes 0..49
    with pytest.raises(AuditInputError, match="split by person"):
        AuditData(train, holdout, train, audits.TableSpec.from_schema_dict(SPEC), units={"train": tu, "holdout": hu})


def test_run_with_units_reports_person_counts() -> None:
    train, tu = panel(150, 3, 0)
    holdout, hu = panel(150, 3, 1, offset=500)
    synthetic = panel(150, 3, 3)[0]
    report = audits.run(train, holdout, synthetic, SPEC, tier="quick", seed=1, units={"train": tu, "holdout": hu})
    assert report.sizes["train_persons"] == 150 and report.sizes["holdout_persons"] == 150
    assert report.result("mia_distance").details["n_members"] == 150
