"""A mechanism's privacy cost as a dp-accounting ``DpEvent``, and its JSON form.

The DpEvent is the source of truth: the ledger stores it, and every epsilon
we print is recomputed from it by an accountant. The JSON form is our own and
is parsed with an explicit allow-list of event types, never through
``dp_event.from_named_tuple`` (which imports whatever module a stored record
names) and never through pickle.

Neighbouring relation: add or remove one record, or one person with up to K rows
(:mod:`dpsynth.privacy.unit`; the person-level events carry K as their sensitivity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dp_accounting as dpa

from dpsynth.errors import PrivacyAccountingError
from dpsynth.params import Interval
from dpsynth.privacy.events import DiscreteGaussianDpEvent, DiscreteGaussianVectorDpEvent, EpsilonDeltaDpEvent

MAX_EVENT_DEPTH = 32  # nesting limit for stored events; real ones are a few levels deep


def _field(raw: dict[str, Any], key: str) -> Any:
    if key not in raw:
        raise PrivacyAccountingError(f"stored privacy event of type {raw.get('type')!r} lacks the field {key!r}")
    return raw[key]


def _positive(value: Any, key: str) -> float:
    if not isinstance(value, (int, float)) or not Interval(float, 0, None).accepts(value):
        raise PrivacyAccountingError(f"stored privacy event: {key!r} must be a finite number >= 0, got {value!r:.80}")
    return float(value)


def _count(value: Any, key: str = "count") -> int:
    if not isinstance(value, int) or not Interval(int, 1, None).accepts(value):
        raise PrivacyAccountingError(f"stored privacy event: {key!r} must be a positive integer, got {value!r}")
    return value


def event_to_dict(event: dpa.DpEvent) -> dict[str, Any]:
    """JSON-ready form of a DpEvent built only from allow-listed types."""
    if isinstance(event, dpa.GaussianDpEvent):
        return {"type": "gaussian", "noise_multiplier": float(event.noise_multiplier)}
    if isinstance(event, dpa.LaplaceDpEvent):
        return {"type": "laplace", "noise_multiplier": float(event.noise_multiplier)}
    if isinstance(event, DiscreteGaussianDpEvent):
        return {"type": "discrete_gaussian", "sigma": float(event.sigma), "sensitivity": int(event.sensitivity)}
    if isinstance(event, DiscreteGaussianVectorDpEvent):
        return {
            "type": "discrete_gaussian_vector",
            "sigma": float(event.sigma),
            "l2_sensitivity": float(event.l2_sensitivity),
        }
    if isinstance(event, EpsilonDeltaDpEvent):
        return {"type": "epsilon_delta", "epsilon": float(event.epsilon), "delta": float(event.delta)}
    if isinstance(event, dpa.ZCDpEvent):
        return {"type": "zcdp", "rho": float(event.rho), "xi": float(event.xi)}
    if isinstance(event, dpa.SelfComposedDpEvent):
        return {"type": "self_composed", "count": int(event.count), "event": event_to_dict(event.event)}
    if isinstance(event, dpa.ComposedDpEvent):
        return {"type": "composed", "events": [event_to_dict(e) for e in event.events]}
    if isinstance(event, dpa.PoissonSampledDpEvent):
        return {
            "type": "poisson_sampled",
            "sampling_probability": float(event.sampling_probability),
            "event": event_to_dict(event.event),
        }
    if isinstance(event, dpa.NoOpDpEvent):
        return {"type": "no_op"}
    if isinstance(event, dpa.NonPrivateDpEvent):
        return {"type": "non_private"}
    raise PrivacyAccountingError(f"privacy event type {type(event).__name__} is not supported by dpsynth's ledger")


def event_from_dict(raw: Any, _depth: int = 0) -> dpa.DpEvent:
    """Inverse of :func:`event_to_dict`; refuses anything outside the allow-list."""
    if _depth > MAX_EVENT_DEPTH:
        raise PrivacyAccountingError(f"stored privacy event is nested deeper than {MAX_EVENT_DEPTH} levels")
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise PrivacyAccountingError(f"stored privacy event must be an object with a 'type', got {raw!r:.80}")
    kind = raw["type"]
    if kind == "gaussian":
        return dpa.GaussianDpEvent(_positive(_field(raw, "noise_multiplier"), "noise_multiplier"))
    if kind == "laplace":
        return dpa.LaplaceDpEvent(_positive(_field(raw, "noise_multiplier"), "noise_multiplier"))
    if kind == "discrete_gaussian":
        return DiscreteGaussianDpEvent(
            _positive(_field(raw, "sigma"), "sigma"), _count(raw.get("sensitivity", 1), "sensitivity")
        )
    if kind == "discrete_gaussian_vector":
        l2 = _positive(_field(raw, "l2_sensitivity"), "l2_sensitivity")
        if l2 <= 0:
            raise PrivacyAccountingError("stored privacy event: 'l2_sensitivity' must be > 0")
        return DiscreteGaussianVectorDpEvent(_positive(_field(raw, "sigma"), "sigma"), l2)
    if kind == "epsilon_delta":
        delta = _positive(_field(raw, "delta"), "delta")
        if delta >= 1:
            raise PrivacyAccountingError(f"stored privacy event: delta {delta} >= 1")
        return EpsilonDeltaDpEvent(_positive(_field(raw, "epsilon"), "epsilon"), delta)
    if kind == "zcdp":
        return dpa.ZCDpEvent(_positive(_field(raw, "rho"), "rho"), _positive(raw.get("xi", 0.0), "xi"))
    if kind == "self_composed":
        return dpa.SelfComposedDpEvent(event_from_dict(_field(raw, "event"), _depth + 1), _count(_field(raw, "count")))
    if kind == "composed":
        if not isinstance(raw.get("events"), list):
            raise PrivacyAccountingError("stored privacy event: 'composed' needs an 'events' list")
        return dpa.ComposedDpEvent([event_from_dict(e, _depth + 1) for e in raw["events"]])
    if kind == "poisson_sampled":
        q = _positive(_field(raw, "sampling_probability"), "sampling_probability")
        if q > 1:
            raise PrivacyAccountingError(f"stored privacy event: sampling_probability {q} > 1")
        return dpa.PoissonSampledDpEvent(q, event_from_dict(_field(raw, "event"), _depth + 1))
    if kind == "no_op":
        return dpa.NoOpDpEvent()
    if kind == "non_private":
        return dpa.NonPrivateDpEvent()
    raise PrivacyAccountingError(f"stored privacy event type {kind!r} is not on dpsynth's allow-list")


@dataclass(frozen=True)
class PrivacyCost:
    """What one fit cost: the DpEvent, and its (epsilon, delta) by the accountant.

    ``epsilon`` is recomputed from ``event`` at ``delta``; ``accountant`` says
    which accountant produced it (``pld`` where it supports every part of the
    event, else ``rdp``). ``details`` holds mechanism parameters (sigmas,
    per-step budgets) for the manifest; it carries no private statistic.
    """

    mechanism: str
    event: dpa.DpEvent
    epsilon: float
    delta: float
    accountant: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, mechanism: str, event: dpa.DpEvent, delta: float, **details: Any) -> PrivacyCost:
        from dpsynth.privacy.accountant import epsilon_for

        epsilon, accountant = epsilon_for(event, delta, with_accountant=True)
        return cls(
            mechanism=mechanism, event=event, epsilon=epsilon, delta=delta, accountant=accountant, details=details
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "accountant": self.accountant,
            "event": event_to_dict(self.event),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PrivacyCost:
        if not isinstance(raw, dict) or not all(k in raw for k in ("mechanism", "event", "epsilon", "delta")):
            raise PrivacyAccountingError(
                f"a stored privacy cost needs 'mechanism', 'event', 'epsilon' and 'delta', got {raw!r:.120}"
            )
        return cls(
            mechanism=str(raw["mechanism"]),
            event=event_from_dict(raw["event"]),
            epsilon=float(raw["epsilon"]),
            delta=float(raw["delta"]),
            accountant=str(raw.get("accountant", "")),
            details=dict(raw.get("details", {})),
        )
