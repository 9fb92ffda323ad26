"""PrivacyCost and the allow-listed JSON form of DpEvents (what the ledger stores).

The JSON form is the ledger's only way back from disk to a DpEvent, so it
must round-trip every event type we emit exactly, and refuse everything else
(unknown types, dp-accounting's own module-naming form, negative or
non-numeric parameters, a non-integer count) with PrivacyAccountingError.
"""

from __future__ import annotations

import json
import math
import sys

import dp_accounting as dpa
import pytest

from dpsynth.errors import DpsynthError, PrivacyAccountingError
from dpsynth.privacy.accountant import epsilon_for
from dpsynth.privacy.cost import PrivacyCost, event_from_dict, event_to_dict

EVERY_TYPE = {
    "gaussian": dpa.GaussianDpEvent(1.7),
    "laplace": dpa.LaplaceDpEvent(0.5),
    "zcdp": dpa.ZCDpEvent(0.125, 0.01),
    "self_composed": dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(3.0), 14),
    "composed": dpa.ComposedDpEvent([dpa.GaussianDpEvent(2.0), dpa.ZCDpEvent(0.01), dpa.LaplaceDpEvent(4.0)]),
    "poisson_sampled": dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1.1)),
    "no_op": dpa.NoOpDpEvent(),
    "non_private": dpa.NonPrivateDpEvent(),
}


@pytest.mark.parametrize("kind", sorted(EVERY_TYPE))
def test_every_allow_listed_type_round_trips_through_json(kind: str) -> None:
    event = EVERY_TYPE[kind]
    raw = event_to_dict(event)
    assert raw["type"] == kind
    assert event_from_dict(json.loads(json.dumps(raw, allow_nan=False))) == event


def test_nested_event_as_emitted_by_dp_sgd_round_trips() -> None:
    step = dpa.PoissonSampledDpEvent(0.004, dpa.GaussianDpEvent(1.05))
    event = dpa.ComposedDpEvent(
        [
            dpa.SelfComposedDpEvent(step, 2500),
            dpa.SelfComposedDpEvent(dpa.ComposedDpEvent([dpa.LaplaceDpEvent(10.0), dpa.ZCDpEvent(0.02)]), 3),
        ]
    )
    assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event


def test_privacy_cost_round_trip_keeps_event_numbers_and_details() -> None:
    event = dpa.ComposedDpEvent([dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(8.0), 5), dpa.ZCDpEvent(0.01)])
    cost = PrivacyCost.of("mst", event, 1e-6, sigmas=[8.0] * 5, rounds=5)
    assert cost.accountant == "rdp"  # a zCDP part routes the whole event to RDP
    assert cost.epsilon == pytest.approx(epsilon_for(event, 1e-6, accountant="rdp"), rel=1e-12)
    back = PrivacyCost.from_dict(json.loads(json.dumps(cost.to_dict())))
    assert back == cost


def test_privacy_cost_of_uses_pld_for_gaussian_events() -> None:
    cost = PrivacyCost.of("gaussian", dpa.GaussianDpEvent(4.0), 1e-6)
    assert cost.accountant == "pld"
    assert 0 < cost.epsilon < 1.5


BAD_EVENTS = [
    pytest.param({"type": "os.system", "command": "true"}, id="unknown-type"),
    pytest.param({"type": "GaussianDpEvent", "noise_multiplier": 1.0}, id="class-name-not-our-type"),
    pytest.param(
        {"module_name": "dp_accounting.dp_event", "class_name": "GaussianDpEvent", "noise_multiplier": 1.0},
        id="dp-accounting-named-tuple-form",
    ),
    pytest.param({"type": "gaussian", "noise_multiplier": -1.0}, id="negative-noise"),
    pytest.param({"type": "laplace", "noise_multiplier": -0.1}, id="negative-laplace"),
    pytest.param({"type": "zcdp", "rho": -0.5}, id="negative-rho"),
    pytest.param({"type": "zcdp", "rho": 0.1, "xi": -1}, id="negative-xi"),
    pytest.param({"type": "gaussian", "noise_multiplier": float("nan")}, id="nan"),
    pytest.param({"type": "gaussian", "noise_multiplier": float("inf")}, id="inf"),
    pytest.param({"type": "gaussian", "noise_multiplier": "1.0"}, id="number-as-string"),
    pytest.param({"type": "gaussian", "noise_multiplier": True}, id="bool-as-number"),
    pytest.param({"type": "gaussian", "noise_multiplier": [1.0]}, id="list-as-number"),
    pytest.param({"type": "gaussian"}, id="missing-field"),
    pytest.param(
        {
            "type": "poisson_sampled",
            "sampling_probability": 1.5,
            "event": {"type": "gaussian", "noise_multiplier": 1.0},
        },
        id="probability-above-one",
    ),
    pytest.param({"type": "poisson_sampled", "sampling_probability": 0.1}, id="sampled-without-event"),
    pytest.param({"type": "self_composed", "count": 2.0, "event": {"type": "no_op"}}, id="count-float"),
    pytest.param({"type": "self_composed", "count": "3", "event": {"type": "no_op"}}, id="count-string"),
    pytest.param({"type": "self_composed", "count": 0, "event": {"type": "no_op"}}, id="count-zero"),
    pytest.param({"type": "self_composed", "count": -2, "event": {"type": "no_op"}}, id="count-negative"),
    pytest.param({"type": "self_composed", "count": True, "event": {"type": "no_op"}}, id="count-bool"),
    pytest.param({"type": "composed", "events": {"type": "no_op"}}, id="composed-not-list"),
    pytest.param({"type": "composed", "events": [{"type": "no_op"}, {"type": "pickle"}]}, id="bad-inner-event"),
    pytest.param(["gaussian", 1.0], id="not-an-object"),
    pytest.param({"type": 3}, id="type-not-string"),
]


@pytest.mark.parametrize("raw", BAD_EVENTS)
def test_event_from_dict_refuses_anything_outside_the_allow_list(raw: object) -> None:
    with pytest.raises(PrivacyAccountingError):
        event_from_dict(raw)


def test_refusal_never_imports_the_module_a_record_names() -> None:
    canary = "dpsynth_cost_canary_module"
    raw = {"module_name": canary, "class_name": "Anything", "type": canary}
    with pytest.raises(PrivacyAccountingError):
        event_from_dict(raw)
    assert canary not in sys.modules


def test_deeply_nested_event_is_refused_not_recursed_into() -> None:
    raw: dict = {"type": "no_op"}
    for _ in range(500):
        raw = {"type": "self_composed", "count": 1, "event": raw}
    with pytest.raises(PrivacyAccountingError, match="nested"):
        event_from_dict(raw)


def test_event_to_dict_refuses_types_the_ledger_cannot_store() -> None:
    for event in (dpa.UnsupportedDpEvent(), dpa.RandomizedResponseDpEvent(0.5, 3)):
        with pytest.raises(PrivacyAccountingError, match="not supported"):
            event_to_dict(event)


def test_zero_noise_is_stored_and_counts_as_non_private() -> None:
    event = event_from_dict({"type": "gaussian", "noise_multiplier": 0})
    assert math.isinf(epsilon_for(event, 1e-6))


@pytest.mark.parametrize(
    "raw",
    [
        {"event": {"type": "no_op"}, "epsilon": 0.0, "delta": 0.0},
        {"mechanism": "x", "epsilon": 1.0, "delta": 1e-6},
        {"mechanism": "x", "event": {"type": "evil"}, "epsilon": 1.0, "delta": 1e-6},
        "not a dict",
    ],
)
def test_privacy_cost_from_dict_refuses_incomplete_or_foreign_records(raw: object) -> None:
    with pytest.raises(PrivacyAccountingError):
        PrivacyCost.from_dict(raw)  # type: ignore[arg-type]


def test_errors_belong_to_the_dpsynth_family() -> None:
    assert issubclass(PrivacyAccountingError, DpsynthError)
    assert PrivacyAccountingError.exit_code == 1
