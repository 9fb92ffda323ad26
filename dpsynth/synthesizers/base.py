"""The synthesizer contract, after scikit-learn's estimators.

* The constructor stores parameters only.
* ``fit(df, schema)`` validates its inputs, learns, and returns ``self``;
  learned state ends with ``_`` (``privacy_cost_``, ``domain_report_``...).
* ``sample(n)`` draws a synthetic table with the schema's columns; it is
  post-processing and costs no budget.
* ``privacy_cost_`` is a :class:`~dpsynth.privacy.PrivacyCost`: the whole
  fit's DpEvent, every data-dependent step included.

Each class declares its parameters' constraints in ``_parameter_constraints``
(:mod:`dpsynth.params`, after scikit-learn); :meth:`Synthesizer.parameter_constraints`
merges them along the MRO and :meth:`Synthesizer._validate_parameters` checks
them all in one place, so every error reads ``MST parameter 'iters' must be an
integer >= 1, got 0`` and carries the parameter's name for the CLI. Subclasses
extend ``_validate_parameters`` only for checks across parameters.

Subclasses implement ``_fit(data, rng)`` on a table already checked and
brought into the public domain, and ``_sample(n, rng)``. ``fit`` takes a
pandas frame or an :class:`~dpsynth.engines.EncodedTable` (read by an
engine, :mod:`dpsynth.engines`); generators that read the data only through
marginal counts of its codes (``fits_on_codes``: MST, AIM) get the encoded
table itself, the others the conformed pandas frame. Randomness comes in
three separate streams (:func:`dpsynth.randomness.make_streams`): privacy
noise only from ``self._noise`` (a :class:`~dpsynth.privacy.noise.NoiseSource`),
other fit-time draws from ``_fit``'s ``rng``, and ``_sample``'s ``rng`` -- the
only stream that shapes the published rows -- is never used while fitting.
``_fit`` also sets ``n_rows_estimate_``, a DP estimate of the number of
training rows paid for inside the budget, which ``sample()`` defaults to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from dpsynth.engines.table import EncodedTable
from dpsynth.errors import UsageError
from dpsynth.params import POSITIVE, Constraint, Interval, validate_params
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.randomness import RANDOM_STATE_CONSTRAINTS, RandomState, make_streams
from dpsynth.schema import Schema
from dpsynth.tables import DomainReport, coerce, prepare

PRIVACY_CONSTRAINTS: dict[str, list[Constraint]] = {
    "epsilon": [POSITIVE],
    "delta": [Interval(float, 0, 1, closed="neither")],
}


def check_privacy_parameters(epsilon: float, delta: float, n_rows: int | None = None) -> None:
    """Refuse budgets that make no sense, naming the parameter at fault (``UsageError.parameter``)."""
    validate_params({"epsilon": epsilon, "delta": delta}, PRIVACY_CONSTRAINTS)
    if n_rows is not None and delta >= 1 / n_rows:
        raise UsageError(
            f"delta={delta:g} is not below 1/n = {1 / n_rows:.3g} for a table of {n_rows} rows: such a delta "
            "allows releasing a whole record outright. Use a delta well below 1/n (e.g. 1e-6).",
            parameter="delta",
        )


def check_within_plan(realised: PrivacyCost, planned: PrivacyCost, delta: float, what: str = "fit") -> None:
    """Refuse a fit whose realised privacy event costs more than the planned one, both composed at ``delta``.

    The ledger reserves the planned cost before the data is touched; a
    mechanism that then spends more (a parameter combination its plan did
    not foresee, a bug) must not hand out its model: the guarantee stated
    and charged would be false. ``PrivacyAccountingError`` is raised and the
    fitted state is dropped by the caller. Equal events give equal epsilons;
    the tolerance only absorbs float noise in the accountants' arithmetic.
    """
    from dpsynth.errors import PrivacyAccountingError
    from dpsynth.privacy.accountant import epsilon_for

    spent = float(epsilon_for(realised.event, delta))
    allowed = float(epsilon_for(planned.event, delta))
    if not spent <= allowed * (1 + 1e-9) + 1e-12 or realised.delta > planned.delta * (1 + 1e-9):
        raise PrivacyAccountingError(
            f"{what} realised a privacy cost of epsilon={spent:.6g} (delta={realised.delta:.3g}) at delta={delta:.3g}, "
            f"above the planned epsilon={allowed:.6g} (delta={planned.delta:.3g}) that was reserved; the model is "
            "discarded and nothing is released. This is a bug in the generator or an unsupported parameter "
            "combination: report it."
        )


class Synthesizer(ABC):
    """Base class of every dpsynth generator.

    ``random_state`` and ``secure_noise`` choose the random streams
    (:func:`dpsynth.randomness.make_streams`): with an integer seed and
    ``secure_noise=True`` the synthetic rows are reproducible while the
    privacy noise stays fresh.
    """

    name: ClassVar[str] = "base"
    #: Per-parameter constraints (:mod:`dpsynth.params`), merged along the MRO by
    #: :meth:`parameter_constraints` and checked by :meth:`_validate_parameters`.
    _parameter_constraints: ClassVar[dict[str, list[Constraint]]] = {
        **PRIVACY_CONSTRAINTS,
        "random_state": RANDOM_STATE_CONSTRAINTS,
        "secure_noise": [None, bool],
    }
    #: True when ``_fit`` reads the data only through ``EncodedTable.counts`` (no pandas frame is built).
    fits_on_codes: ClassVar[bool] = False
    #: True when the generator calibrates to a person-level bound (``max_rows_per_unit`` K > 1):
    #: MST and AIM. Others accept person codes only with K = 1 (one row kept per person).
    supports_person_units: ClassVar[bool] = False

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        random_state: RandomState = None,
        secure_noise: bool | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.random_state = random_state
        self.secure_noise = secure_noise

    # -- sklearn plumbing --------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- public API --------------------------------------------------------------------
    def fit(self, df: pd.DataFrame | EncodedTable, schema: Schema, accept_private_schema: bool = False) -> Synthesizer:
        """Learn a DP model of ``df`` (a frame or an engine's encoded table) whose domain comes from ``schema`` only.

        Refuses a schema derived from the private data unless
        ``accept_private_schema`` is true (the domain then leaked, outside
        the budget). Raises ``UsageError`` for an invalid epsilon or delta,
        ``DataError`` for a table that does not match the schema.
        """
        if not isinstance(schema, Schema):
            raise UsageError(f"schema must be a dpsynth Schema, got {type(schema).__name__}: load it with Schema.load")
        schema.require_public(accept_private_schema)
        self._validate_parameters()
        df, n_units = self._bound_units(df)
        data, report = self._training_input(df, schema)
        check_privacy_parameters(self.epsilon, self.delta, n_units if n_units is not None else len(data))
        streams = make_streams(self.random_state, self.secure_noise)
        self.schema_ = schema
        self.domain_report_ = report
        self.schema_leaked_ = not schema.is_public
        self.n_train_rows_ = len(data)  # exact, private: never a default for anything published
        self.n_rows_estimate_: int | None = None
        self._noise = streams.noise
        self._rng = streams.sample  # post-processing only: sample() draws from it, fit never does
        planned = self._planned_cost(len(data), schema)
        self._count_source = df if isinstance(df, EncodedTable) else None  # engine counts, for DP-CTGAN's histograms
        try:
            realised = self._fit(data, streams.fit)
        finally:
            self._count_source = None
        check_within_plan(realised, planned, self.delta, what=f"{type(self).__name__}.fit")
        self.privacy_cost_ = realised
        self.noise_source_ = streams.noise.describe()
        return self

    def _bound_units(self, df: pd.DataFrame | EncodedTable) -> tuple[pd.DataFrame | EncodedTable, int | None]:
        """A table with person codes trimmed to K rows a person before anything is counted; and the person count.

        K is ``max_rows_per_unit`` (1 for generators without it). The rows
        kept are chosen by :func:`dpsynth.privacy.unit.bound_contributions`
        from the independent :func:`dpsynth.randomness.unit_stream`. How many
        persons lost rows is private and kept in ``_persons_trimmed`` only
        (never written). A table without person codes is returned as it is.
        """
        if not isinstance(df, EncodedTable) or df.units is None:
            return df, None
        from dpsynth.privacy.unit import bound_contributions
        from dpsynth.randomness import unit_stream

        k = int(getattr(self, "max_rows_per_unit", 1))
        keep, self._persons_trimmed = bound_contributions(
            df.units, k, unit_stream(self.random_state, self.secure_noise)
        )
        return df.take(keep), int(len(np.unique(df.units)))

    def _training_input(self, df: pd.DataFrame | EncodedTable, schema: Schema) -> tuple[object, DomainReport]:
        """What ``_fit`` reads, conformed to ``schema``: an encoded table (``fits_on_codes``) or a pandas frame."""
        if isinstance(df, EncodedTable):
            if df.schema != schema:
                raise UsageError(f"{df.source} was encoded under another schema than the one passed to fit")
            return (df if self.fits_on_codes else df.frame(conformed=True)), df.report
        if self.fits_on_codes:
            from dpsynth.engines.pandas_engine import encode_frame

            table = encode_frame(coerce(df, schema, source="training table"), schema, "training table")
            return table, table.report
        return prepare(df, schema, source="training table")

    def sample(self, n: int | None = None) -> pd.DataFrame:
        """Draw ``n`` synthetic rows (default: ``n_rows_estimate_``, the DP estimate of the training rows).

        The exact training count is private under add/remove-one DP, so it is
        never the default; pass ``n`` to publish a chosen (public) number.
        """
        if not hasattr(self, "privacy_cost_"):
            raise UsageError(f"{type(self).__name__} is not fitted yet: call fit(df, schema) first")
        if n is None:
            if self.n_rows_estimate_ is None:
                raise UsageError(f"{type(self).__name__} has no DP estimate of the row count: pass n to sample()")
            n = self.n_rows_estimate_
        validate_params({"n": n}, {"n": [Interval(int, 1, None)]}, owner=f"{type(self).__name__}.sample()")
        return self._sample(int(n), self._rng)

    def planned_cost(self, n_rows: int, schema: Schema) -> PrivacyCost:
        """The most that ``fit`` on ``n_rows`` rows of ``schema`` can cost, computed without the data.

        The ledger reserves this before the generator touches the data; ``fit``
        never spends more (its realised ``privacy_cost_`` is at most this).
        """
        self._validate_parameters()
        check_privacy_parameters(self.epsilon, self.delta, n_rows)
        return self._planned_cost(n_rows, schema)

    # -- for subclasses ----------------------------------------------------------------
    def _planned_cost(self, n_rows: int, schema: Schema) -> PrivacyCost:
        """Data-independent upper bound on the cost of fitting ``n_rows`` rows of ``schema``."""
        raise NotImplementedError(f"{type(self).__name__} does not state its cost before fitting")

    @classmethod
    def parameter_constraints(cls) -> dict[str, list[Constraint]]:
        """Every class's ``_parameter_constraints`` along the MRO, a subclass overriding its bases."""
        merged: dict[str, list[Constraint]] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("_parameter_constraints", {}))
        return merged

    def _validate_parameters(self) -> None:
        """Check the declared constraints, then what depends on several parameters.

        Subclasses declare ``_parameter_constraints`` and extend this only for
        cross-parameter checks (calling super() first).
        """
        validate_params(self.get_params(), self.parameter_constraints(), owner=type(self).__name__)
        if self.secure_noise is False and not isinstance(self.random_state, (int, np.integer)):
            raise UsageError(
                f"{type(self).__name__} parameter 'secure_noise'=False needs an integer random_state "
                "to seed the noise from",
                parameter="secure_noise",
            )

    @abstractmethod
    def _fit(self, data: pd.DataFrame, rng: np.random.Generator) -> PrivacyCost:
        """Fit on a table already coerced and conformed to ``self.schema_``; return the cost.

        ``data`` is an :class:`~dpsynth.engines.EncodedTable` when the class
        ``fits_on_codes``, else a pandas frame.

        Privacy noise must come from ``self._noise``; ``rng`` is for other
        draws that are not published (e.g. DP-SGD's Poisson sampling).
        """

    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Draw ``n`` rows with the schema's columns and types."""
