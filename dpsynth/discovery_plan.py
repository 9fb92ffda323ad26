"""The plan of a DP schema discovery: every mechanism, its noise and its cost, fixed before any value is read.

:func:`dpsynth.discovery.plan_discovery` builds these frozen values from the
CSV header and the public options alone; :func:`dpsynth.discovery.run_discovery`
executes them. Keeping them apart makes the privacy argument checkable: the
plan (and so the ledger's reservation) cannot depend on the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dp_accounting as dpa

from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.events import EpsilonDeltaDpEvent
from dpsynth.schema import DEFAULT_NA_VALUES

OTHER_LABEL = "(other)"  # the category that absorbs values the discovery did not release


@dataclass(frozen=True)
class NumericPlan:
    """DP quantiles of one numeric column: levels, candidate grid and Gumbel scale."""

    name: str
    integer: bool
    nullable: bool
    candidates: tuple[float, ...]
    alphas: tuple[float, ...]  # the first two are the bounds, the rest interior edges
    scales: tuple[float, ...]  # Gumbel scale of each quantile
    rho: tuple[float, ...]  # OpenDP's zCDP map of each quantile, d_in = 1

    def events(self) -> list[dpa.DpEvent]:
        return [dpa.ZCDpEvent(r) for r in self.rho]


@dataclass(frozen=True)
class CategoricalPlan:
    """One categorical column; its values are found by the plan's :class:`CategorySetPlan`."""

    name: str
    nullable: bool

    def events(self) -> list[dpa.DpEvent]:
        return []  # paid for once, jointly, by CategorySetPlan


@dataclass(frozen=True)
class CategorySetPlan:
    """A Gaussian-thresholded histogram over the ``(column, value)`` keys of every categorical column."""

    columns: tuple[str, ...]
    scale: float
    threshold: int
    rho: float  # OpenDP's map: approximate zCDP (rho, delta_threshold) at d_in = (k, k, 1)
    delta_threshold: float
    epsilon: float  # OpenDP's conversion to (epsilon, delta_conversion)
    delta_conversion: float

    @property
    def d_in(self) -> tuple[int, int, int]:
        k = len(self.columns)
        return (k, k, 1)  # (l0, l2 bound, linf); OpenDP tightens l2 to sqrt(l0) * linf

    def events(self) -> list[dpa.DpEvent]:
        return [EpsilonDeltaDpEvent(self.epsilon, self.delta_conversion + self.delta_threshold)]


@dataclass(frozen=True)
class DiscoveryPlan:
    """Mechanisms for every column and their composed :class:`PrivacyCost`.

    Built from the header and the hints alone (:func:`plan_discovery`), so the
    cost can be reserved in the ledger before any value is read.
    """

    columns: tuple[NumericPlan | CategoricalPlan, ...]
    categories: CategorySetPlan | None
    epsilon: float
    delta: float
    cost: PrivacyCost
    na_values: tuple[str, ...] = DEFAULT_NA_VALUES
    other_label: str = OTHER_LABEL
    edges: str = "quantiles"
    bins: int = 10
    dropped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]
