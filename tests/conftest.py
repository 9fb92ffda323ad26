"""Shared fixtures: the real tables beside the repository, and a small mixed-type table with its public schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpsynth.schema import Column, Schema

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

EDUCATION = ("Preschool", "HS-grad", "Some-college", "Bachelors", "Masters", "Doctorate")
COUNTRIES = ("United-States", "Mexico", "Philippines", "Other")


@pytest.fixture(scope="session")
def _os_user_keys(tmp_path_factory) -> Path:
    """A key directory holding a key for the OS user, whom `dpsynth release` signs as by default."""
    import getpass

    from dpsynth.evidence.keys import new_key

    directory = tmp_path_factory.mktemp("keys")
    new_key(getpass.getuser(), directory)
    return directory


@pytest.fixture(autouse=True)
def _dpsynth_keys(_os_user_keys: Path, monkeypatch) -> None:
    """Every test runs with $DPSYNTH_KEYS at that directory, never the developer's own ~/.config keys."""
    monkeypatch.setenv("DPSYNTH_KEYS", str(_os_user_keys))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The directory of real tables (``/work/shared/data``); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data directory not found: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def adult_csv(shared_data: Path) -> Path:
    """UCI Adult (30,162 rows, label ``income``; drop ``fnlwgt`` before fitting); skips when absent."""
    path = shared_data / "adult" / "adult.csv"
    if not path.is_file():
        pytest.skip(f"Adult data not found: {path}")
    return path


def make_mixed_schema() -> Schema:
    """A public schema with every column feature: integer / continuous / explicit-edge numerics,
    nullable columns, an ``other`` category, quasi-identifiers and a target."""
    return Schema(
        name="toy-census",
        source="public",
        na_values=("", "NA", "N"),
        quasi_identifiers=("age", "sex", "country"),
        target="income",
        columns=(
            Column("age", "numeric", lower=17, upper=90, bins=8, integer=True),
            Column("children", "numeric", lower=0, upper=5, bins=10, integer=True),  # one bin per whole number
            Column("hours", "numeric", lower=1, upper=99, bins=10, integer=True, nullable=True),
            Column("capital_gain", "numeric", lower=0, upper=99999, edges=(0, 1, 5000, 20000, 99999), integer=True),
            Column("score", "numeric", lower=0.0, upper=1.0, bins=5, nullable=True),
            Column("sex", "categorical", categories=("Female", "Male")),
            Column("education", "categorical", categories=EDUCATION, nullable=True),
            Column("country", "categorical", categories=COUNTRIES, other="Other"),
            Column("income", "categorical", categories=("<=50K", ">50K")),
        ),
    )


def make_mixed_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """``n`` in-domain rows for :func:`make_mixed_schema`, with nulls in the nullable columns."""
    rng = np.random.default_rng(seed)
    hours = rng.integers(1, 100, n).astype(float)
    hours[rng.random(n) < 0.1] = np.nan
    score = rng.random(n)
    score[rng.random(n) < 0.1] = np.nan
    education = rng.choice(np.asarray(EDUCATION, dtype=object), n)
    education[rng.random(n) < 0.1] = np.nan
    gain = np.where(rng.random(n) < 0.8, 0, rng.integers(1, 100000, n)).astype(float)
    return pd.DataFrame(
        {
            "age": rng.integers(17, 91, n).astype(float),
            "children": rng.integers(0, 6, n).astype(float),
            "hours": hours,
            "capital_gain": gain,
            "score": score,
            "sex": rng.choice(["Female", "Male"], n).astype(object),
            "education": education,
            "country": rng.choice(np.asarray(COUNTRIES, dtype=object), n, p=[0.7, 0.1, 0.1, 0.1]),
            "income": rng.choice(["<=50K", ">50K"], n, p=[0.75, 0.25]).astype(object),
        }
    )


@pytest.fixture
def mixed_schema() -> Schema:
    return make_mixed_schema()


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    return make_mixed_frame()
