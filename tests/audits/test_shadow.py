"""Shadow-model (groundhog) attack on a tiny table with cheap generator factories."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from audits import AuditData, shadow_model_attack


def _resample_with_noise(df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """Leaky: resamples its own input (every row once while n_rows allows), numerics jittered slightly."""
    rng = np.random.default_rng(seed)
    out = df.sample(n=n_rows, replace=n_rows > len(df), random_state=seed).reset_index(drop=True)
    for c in out.columns:
        if pd.api.types.is_numeric_dtype(out[c]):
            out[c] = out[c] + rng.normal(0, 0.002 * (float(out[c].max() - out[c].min()) or 1.0), n_rows)
    return out


def test_shadow_attack_detects_a_leaky_generator_quickly(table_maker):
    df = table_maker(1200, 7)
    train, holdout = df.iloc[:400].reset_index(drop=True), df.iloc[400:1000].reset_index(drop=True)
    release = _resample_with_noise(train, 400, 1)
    data = AuditData(train, holdout, release, seed=0, n_bootstrap=50)
    start = time.perf_counter()
    r = shadow_model_attack(data, _resample_with_noise, n_targets=6, n_runs=8, reference_rows=150)
    assert time.perf_counter() - start < 15
    assert r.family == "membership" and r.name == "mia_shadow"
    assert r.value >= 0.9, r.details
    assert r.details["shadow_accuracy_mean"] > 0.75


def test_shadow_attack_finds_nothing_when_the_generator_ignores_its_input(table_maker):
    df = table_maker(1200, 8)
    train, holdout = df.iloc[:400].reset_index(drop=True), df.iloc[400:1000].reset_index(drop=True)
    population = df.iloc[1000:].reset_index(drop=True)

    def ignores_input(_df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
        return population.sample(n=n_rows, replace=True, random_state=seed).reset_index(drop=True)

    data = AuditData(train, holdout, ignores_input(train, 400, 99), seed=0, n_bootstrap=50)
    r = shadow_model_attack(data, ignores_input, n_targets=6, n_runs=8, reference_rows=150)
    assert r.details["shadow_accuracy_mean"] < 0.75
    assert r.ci_low < 0.5 + 1e-9 or r.value < 0.8
