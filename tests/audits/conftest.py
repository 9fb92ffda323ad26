"""Shared fixtures: a small realistic mixed table, generators, and an Adult subsample when available."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audits import TableSpec

ADULT = Path(__file__).resolve().parents[2].parent / "shared/data/adult/adult.csv"


def make_table(n: int, seed: int) -> pd.DataFrame:
    """Mixed table with correlated columns, skewed categoricals and a few missing values."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(40, 12, n), 18, 90).round()
    edu_levels = np.array(["none", "school", "college", "bachelor", "master", "phd"])
    edu_idx = np.clip(np.digitize(0.03 * (age - 40) + rng.normal(0, 1, n), [-1.5, -0.5, 0.3, 1.0, 1.8]), 0, 5)
    sex = rng.choice(["F", "M"], n)
    region = rng.choice([f"r{i}" for i in range(8)], n, p=np.array([30, 20, 15, 12, 10, 7, 4, 2]) / 100)
    married = np.where(
        age < 25,
        rng.choice(["single", "married", "divorced"], n, p=[0.8, 0.18, 0.02]),
        rng.choice(["single", "married", "divorced"], n, p=[0.25, 0.6, 0.15]),
    )
    income = np.exp(9.5 + 0.15 * edu_idx + 0.01 * (age - 18) + 0.2 * (sex == "M") + rng.normal(0, 0.5, n))
    hours = np.clip(rng.normal(38 + 3 * (sex == "M"), 8, n), 1, 99).round()
    label = np.where(np.log(income) + rng.normal(0, 0.3, n) > 10.6, ">50K", "<=50K")
    df = pd.DataFrame(
        {
            "age": age,
            "education": edu_levels[edu_idx],
            "sex": sex,
            "region": region,
            "marital": married,
            "income": income.round(-1),
            "hours": hours,
            "label": label,
        }
    )
    df.loc[rng.random(n) < 0.03, "region"] = np.nan
    df.loc[rng.random(n) < 0.02, "hours"] = np.nan
    return df


def noisy_copy(train: pd.DataFrame, seed: int, scale: float = 0.01) -> pd.DataFrame:
    """A leaky "generator": the training rows, shuffled, numerics jittered by `scale` of their range."""
    rng = np.random.default_rng(seed)
    out = train.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    for c in out.columns:
        if pd.api.types.is_numeric_dtype(out[c]):
            span = float(out[c].max() - out[c].min()) or 1.0
            out[c] = out[c] + rng.normal(0, scale * span, len(out))
    return out


@pytest.fixture(scope="session")
def mixed() -> dict[str, object]:
    """train 3000 / holdout 1000 / an independent fresh sample 3000, and the spec."""
    df = make_table(7000, 1)
    spec = TableSpec.infer(df)
    return {
        "train": df.iloc[:3000].reset_index(drop=True),
        "holdout": df.iloc[3000:4000].reset_index(drop=True),
        "fresh": df.iloc[4000:7000].reset_index(drop=True),
        "spec": spec,
    }


@pytest.fixture(scope="session")
def adult() -> dict[str, object]:
    """Adult subsample: train 4000 / holdout 2000 / independent 4000 (skipped when the CSV is absent)."""
    if not ADULT.exists():
        pytest.skip(f"Adult CSV not found at {ADULT}")
    df = pd.read_csv(ADULT, skipinitialspace=True, na_values=["?"]).drop(columns=["fnlwgt"])
    df = df.sample(n=10000, random_state=0).reset_index(drop=True)
    spec = TableSpec.infer(df, quasi_identifiers=["age", "sex", "race"], secret="income", name="adult")
    return {
        "train": df.iloc[:4000].reset_index(drop=True),
        "holdout": df.iloc[4000:6000].reset_index(drop=True),
        "fresh": df.iloc[6000:10000].reset_index(drop=True),
        "spec": spec,
    }


@pytest.fixture(scope="session")
def leaky_copy():
    """The `noisy_copy` function, as a fixture (test modules do not import conftest)."""
    return noisy_copy


@pytest.fixture(scope="session")
def table_maker():
    """The `make_table` function, as a fixture."""
    return make_table
