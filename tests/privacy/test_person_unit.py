"""Person-level privacy (issue 12): the unit, the trim to K, accounting at sensitivity K, the ledger's one-unit rule.

The tests that matter recompute the cost from the noise the fit actually drew
(spying on the noise source: every discrete Gaussian's sigma and every noisy
max's Gumbel scale), with sensitivity K, and compare it with what the fit
states. A sigma or a selection that forgot the factor K fails them.
"""

from __future__ import annotations

import json
import math

import dp_accounting as dpa
import numpy as np
import pandas as pd
import pytest

from dpsynth.engines.pandas_engine import encode_frame
from dpsynth.errors import LedgerError, UsageError
from dpsynth.privacy.accountant import epsilon_for, zcdp_epsilon
from dpsynth.privacy.cost import PrivacyCost, event_from_dict, event_to_dict
from dpsynth.privacy.events import DiscreteGaussianDpEvent, DiscreteGaussianVectorDpEvent, pld_accountant
from dpsynth.privacy.ledger import Ledger, init_ledger
from dpsynth.privacy.noise import NoiseSource
from dpsynth.privacy.unit import PrivacyUnit, bound_contributions, person_coins, resolve_unit, unit_codes
from dpsynth.schema import Column, Schema
from dpsynth.synthesizers.aim import AIM, ALPHA, zcdp_budget
from dpsynth.synthesizers.mst import MST, mst_event, mst_parameters

K = 8
DELTA = 1e-6
SCHEMA = Schema(
    columns=(
        Column("group", "categorical", categories=("a", "b", "c")),
        Column("value", "numeric", lower=0, upper=100, bins=5),
        Column("flag", "categorical", categories=("no", "yes")),
    ),
    name="toy",
)


def person_table(n_persons: int = 150, heavy_rows: int = K, seed: int = 0):
    """Persons with 1-4 rows each, and one person (the first) with ``heavy_rows`` rows; codes with person codes."""
    rng = np.random.default_rng(seed)
    rows_per = np.r_[heavy_rows, rng.integers(1, 5, n_persons - 1)]
    ids = np.repeat([f"person-{i:04d}" for i in range(n_persons)], rows_per)
    n = len(ids)
    group = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    frame = pd.DataFrame(
        {
            "group": group,
            "value": np.round(rng.uniform(0, 100, n), 3),
            "flag": np.where((group == "a") ^ (rng.random(n) < 0.1), "yes", "no"),
        }
    )
    table = encode_frame(frame, SCHEMA, "toy").with_units(unit_codes(ids, "pid"))
    return table, ids


class Spy:
    """Every discrete Gaussian (sigma, number of cells) and every Gumbel noisy max (scale) a fit draws."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gaussians: list[tuple[float, int]] = []
        self.gumbel_scales: list[float] = []
        gaussian, gumbel = NoiseSource.discrete_gaussian, NoiseSource.noisy_max_gumbel

        def spy_gaussian(source, counts, sigma):
            self.gaussians.append((float(sigma), len(counts)))
            return gaussian(source, counts, sigma)

        def spy_gumbel(source, scores, scale):
            self.gumbel_scales.append(float(scale))
            return gumbel(source, scores, scale)

        monkeypatch.setattr(NoiseSource, "discrete_gaussian", spy_gaussian)
        monkeypatch.setattr(NoiseSource, "noisy_max_gumbel", spy_gumbel)


def rdp_epsilon(rho: float, delta: float = DELTA) -> float:
    """rho-zCDP to (epsilon, delta) by dp-accounting's RDP accountant, directly (not through dpsynth)."""
    return float(dpa.rdp.RdpAccountant().compose(dpa.ZCDpEvent(rho)).get_epsilon(delta))


# -- the unit ----------------------------------------------------------------------------------------------------


def test_unit_states_its_neighbouring_relation_and_refuses_bad_bounds() -> None:
    assert PrivacyUnit().neighbouring_relation == "add or remove one record"
    assert PrivacyUnit("pid", 8).neighbouring_relation == "add or remove one person with up to 8 rows"
    assert PrivacyUnit.from_dict(PrivacyUnit("pid", 8).to_dict()) == PrivacyUnit("pid", 8)
    with pytest.raises(UsageError, match="whole number >= 1"):
        PrivacyUnit("pid", 0)
    with pytest.raises(UsageError, match="needs --privacy-unit"):
        PrivacyUnit(None, 3)
    with pytest.raises(UsageError, match="needs --max-rows-per-unit"):
        resolve_unit("pid", None, None, None)
    with pytest.raises(UsageError, match="differs from the schema"):
        resolve_unit("pid", 2, "other", None)
    assert resolve_unit(None, None, "pid", 4) == PrivacyUnit("pid", 4)


def test_unit_codes_rank_sorted_identifiers_and_refuse_blanks() -> None:
    assert unit_codes(["b", "a", " c", "a"], "pid").tolist() == [1, 0, 2, 0]
    with pytest.raises(Exception, match="null or blank in 1 row"):
        unit_codes(["b", "", "a"], "pid")


def test_bound_keeps_at_most_k_rows_per_person_chosen_at_random() -> None:
    units = np.repeat(np.arange(5), [1, 3, 8, 20, 2])
    keep, trimmed = bound_contributions(units, 4, np.random.default_rng(0))
    assert np.bincount(units[keep]).tolist() == [1, 3, 4, 4, 2] and trimmed == 2
    other, _ = bound_contributions(units, 4, np.random.default_rng(1))
    assert not np.array_equal(keep, other)  # a random subset, not the first K rows
    firsts = [
        np.flatnonzero(bound_contributions(units, 4, np.random.default_rng(s))[0] & (units == 3)) for s in range(200)
    ]
    hits = np.bincount(np.concatenate(firsts) - np.flatnonzero(units == 3)[0], minlength=20)
    assert hits.min() > 10  # every one of the person's 20 rows is kept sometimes (about 40 times in 200)


def test_person_split_puts_every_person_on_one_side() -> None:
    units = np.repeat(np.arange(300), np.random.default_rng(0).integers(1, 6, 300))
    coins = person_coins(units, 0.3, np.random.default_rng(1))
    for person in range(300):
        assert len(set(coins[units == person])) == 1
    assert 0.2 < coins[np.r_[0, np.flatnonzero(np.diff(units)) + 1]].mean() < 0.4


# -- accounting ------------------------------------------------------------------------------------------------


def test_vector_event_is_priced_by_its_zcdp_bound_and_never_by_pld() -> None:
    event = DiscreteGaussianVectorDpEvent(40.0, 8.0)
    assert not pld_accountant().supports(event)
    assert epsilon_for(event, DELTA) == pytest.approx(rdp_epsilon(64 / (2 * 40.0**2)), rel=1e-9)
    # sensitivity 8 at sigma 40 is sensitivity 1 at sigma 5 (as zCDP)
    assert epsilon_for(event, DELTA, accountant="rdp") == pytest.approx(
        epsilon_for(DiscreteGaussianDpEvent(5.0), DELTA, accountant="rdp"), rel=1e-9
    )
    assert event_from_dict(event_to_dict(event)) == event


def test_row_level_mst_noise_is_too_small_for_a_person_with_k_rows(monkeypatch) -> None:
    """The difference that matters: row-level sigma, re-accounted at sensitivity K, costs far more than the target."""
    table, _ = person_table()
    spy = Spy(monkeypatch)
    MST(epsilon=1.0, delta=DELTA, random_state=1, iters=50).fit(encode_frame(table.frame(), SCHEMA, "toy"), SCHEMA)
    d = len(SCHEMA)
    (sigma1, n1), (sigma2, n2) = spy.gaussians
    # the row-level fit's noise, priced for a person with K rows: each marginal's count vector moves by L2 <= K,
    # each selection's quality by <= K
    rho = (
        d * K**2 / (2 * sigma1**2)
        + (d - 1) * K**2 / (2 * sigma2**2)
        + sum((2 * K / s) ** 2 / 8 for s in spy.gumbel_scales)
    )
    person_epsilon = rdp_epsilon(rho)
    assert person_epsilon > 10, person_epsilon  # about K^2 times the rho: far above the stated epsilon 1
    person_event = dpa.ComposedDpEvent(
        [
            dpa.SelfComposedDpEvent(DiscreteGaussianVectorDpEvent(sigma1, float(K)), d),
            dpa.SelfComposedDpEvent(DiscreteGaussianVectorDpEvent(sigma2, float(K)), d - 1),
            *[dpa.ZCDpEvent((2 * K / s) ** 2 / 8) for s in spy.gumbel_scales],
        ]
    )
    assert epsilon_for(person_event, DELTA) == pytest.approx(person_epsilon, rel=1e-6)  # the accountant agrees


def test_person_level_mst_states_the_epsilon_an_independent_computation_gives(monkeypatch) -> None:
    table, _ = person_table()
    spy = Spy(monkeypatch)
    model = MST(epsilon=1.0, delta=DELTA, random_state=1, iters=50, max_rows_per_unit=K).fit(table, SCHEMA)
    d = len(SCHEMA)
    assert [n for _, n in spy.gaussians] == [sum(SCHEMA[c].domain_size for c in SCHEMA.names), spy.gaussians[1][1]]
    assert len(spy.gumbel_scales) == d - 1
    # rho from the noise actually drawn: each one-way / two-way marginal a query of L2 sensitivity K;
    # each selection an exponential mechanism whose Gumbel scale is 2 K / epsilon_selection
    (sigma1, _), (sigma2, _) = spy.gaussians
    rho = d * K**2 / (2 * sigma1**2) + (d - 1) * K**2 / (2 * sigma2**2)
    rho += sum((2 * K / s) ** 2 / 8 for s in spy.gumbel_scales)
    stated = model.privacy_cost_.epsilon
    assert stated == pytest.approx(rdp_epsilon(rho), rel=1e-6)
    assert stated <= 1.0 + 1e-9 and stated > 0.99  # the target, spent at sensitivity K
    assert stated < zcdp_epsilon(rho, DELTA)  # and within the closed-form zCDP bound (Bun & Steinke)
    # the noise is K times the row-level noise at the same target (same scale)
    row = MST(epsilon=1.0, delta=DELTA).planned_cost(1000, SCHEMA).details["noise_scale"]
    assert sigma1 == pytest.approx(mst_parameters(row, d, K)[0], rel=1e-9)
    assert sigma1 == pytest.approx(K * mst_parameters(row, d)[0], rel=1e-9)
    assert model.privacy_cost_.epsilon == pytest.approx(epsilon_for(mst_event(row, d, K), DELTA), rel=1e-4)


def test_person_level_mst_trims_each_person_to_k_rows_before_counting() -> None:
    table, _ = person_table(heavy_rows=40)
    per_person = np.bincount(table.units)
    model = MST(epsilon=1.0, delta=DELTA, random_state=1, iters=50, max_rows_per_unit=K).fit(table, SCHEMA)
    assert model.n_train_rows_ == int(np.minimum(per_person, K).sum())
    assert model._persons_trimmed == int((per_person > K).sum()) == 1
    # record-level fit on the same rows is byte-identical to a fit without person codes
    plain = encode_frame(table.frame(), SCHEMA, "toy")
    a = MST(epsilon=1.0, delta=DELTA, random_state=2, iters=50).fit(plain, SCHEMA).sample(50)
    b = MST(epsilon=1.0, delta=DELTA, random_state=2, iters=50).fit(encode_frame(table.frame(), SCHEMA, "t"), SCHEMA)
    pd.testing.assert_frame_equal(a, b.sample(50))


def test_person_level_aim_draws_noise_at_sensitivity_k(monkeypatch) -> None:
    table, _ = person_table()
    spy = Spy(monkeypatch)
    model = AIM(
        epsilon=1.0, delta=DELTA, random_state=1, max_iters=30, max_seconds=None, rounds=8, max_rows_per_unit=K
    ).fit(table, SCHEMA)
    cells = {c.name: c.domain_size for c in SCHEMA}
    # one-way: one call with every cell; then one call per round, each a marginal of L2 sensitivity K
    rho = sum(K**2 / (2 * s**2) for s, _ in spy.gaussians[:1]) * len(SCHEMA)
    rho += sum(K**2 / (2 * s**2) for s, _ in spy.gaussians[1:])
    max_weight = 4.0  # the default workload (all pairs of 3 columns): a pair weighs 2 + 1 + 1
    rho += sum((2 * K * max_weight / s) ** 2 / 8 for s in spy.gumbel_scales)
    assert spy.gaussians[0][1] == sum(cells.values())
    assert rdp_epsilon(rho) == pytest.approx(model.privacy_cost_.epsilon, rel=1e-6)
    assert model.privacy_cost_.epsilon <= 1.0 + 1e-9
    row_sigma = math.sqrt(8 / (2 * ALPHA * zcdp_budget(1.0, DELTA)))  # T = rounds = 8
    assert spy.gaussians[0][0] == pytest.approx(K * row_sigma, rel=1e-9)


# -- the ledger -----------------------------------------------------------------------------------------------


def _cost(unit: PrivacyUnit | None) -> PrivacyCost:
    details = {} if unit is None else {"privacy_unit": unit.to_dict()}
    return PrivacyCost.of("mst", DiscreteGaussianDpEvent(20.0), DELTA, **details)


def test_ledger_refuses_a_mix_of_units_on_one_dataset(tmp_path) -> None:
    path = tmp_path / "ledger.sqlite"
    init_ledger(path, "rows", 10.0, 1e-5)
    ledger = Ledger(path)
    ledger.add_dataset("persons", 10.0, 1e-5)
    ledger.reserve("rows", _cost(None))
    with pytest.raises(LedgerError, match="add or remove one record.*add or remove one person with up to 8 rows"):
        ledger.reserve("rows", _cost(PrivacyUnit("pid", 8)))
    ledger.reserve("persons", _cost(PrivacyUnit("pid", 8)))
    ledger.reserve("persons", _cost(PrivacyUnit("pid", 3)))  # the same identifier: every spend trims to its own K
    with pytest.raises(LedgerError, match="identifier column 'other'"):
        ledger.reserve("persons", _cost(PrivacyUnit("other", 8)))
    with pytest.raises(LedgerError, match="same --privacy-unit"):
        ledger.reserve("persons", _cost(None))
    import sqlite3

    stored = sqlite3.connect(path).execute("SELECT dataset_id, details_json FROM entries WHERE kind = 'spend'")
    units = [(ds, json.loads(details).get("privacy_unit")) for ds, details in stored]
    assert units == [
        ("rows", None),
        ("persons", PrivacyUnit("pid", 8).to_dict()),
        ("persons", PrivacyUnit("pid", 3).to_dict()),
    ]
