"""Differentially private domain discovery: a schema paid for with budget.

A DP generator needs each column's domain (categories, bounds, bins) before it
looks at the data. When no codebook provides it, :func:`discover_schema` learns
it from the private table with OpenDP mechanisms and returns a schema marked
``"source": "dp"`` together with the :class:`~dpsynth.privacy.cost.PrivacyCost`
that the ledger must record. Fitting accepts such a schema without any flag:
the domain is then covered by the budget instead of leaking outside it.

What is treated as public (never learned from values):

* the column **names** (the CSV header) and which columns to drop;
* each column's **kind** and whether it is ``integer`` or ``nullable``: these
  come from the caller's hints (``numeric``, ``integer``, ``nullable``);
  every other column is categorical. We do not infer a kind by checking
  whether all values parse as numbers: one record holding ``"abc"`` in an
  age column would flip that decision, so it is a function of the values
  like any other. A numeric hint whose column holds text, or nulls in a
  column not hinted nullable, is refused before any budget is spent;
* the **candidate grid** of numeric values (``ranges`` hint or the default
  two-significant-digit grid, :func:`candidate_grid`), the bin count and the
  quantile levels.

Mechanisms (neighbouring relation: add or remove one record; each record
holds one value per column, so every quantile sees OpenDP's
``SymmetricDistance`` ``d_in = 1``):

* **Numeric bounds and bin edges**: OpenDP's ``make_private_quantile``, the
  exponential mechanism over the candidate grid with the rank score of
  Smith (2011), implemented by report-noisy-max with Gumbel noise
  (McKenna & Sheldon 2020). Lower / upper bounds are the 1st / 99th
  percentiles and the interior edges the ``i / bins`` quantiles. Its privacy
  is taken as zCDP (``make_privatequantile(..., zero_concentrated_divergence())``,
  OpenDP's map gives ``rho = (sensitivity / scale)^2 / 8``, the bounded-range
  bound of Cesar & Rogers 2021) and recorded as a ``ZCDpEvent``: many
  quantiles compose far better that way than as pure epsilon.
* **Category sets**: one histogram over the keys ``(column, value)`` of every
  categorical column, with OpenDP's ``make_gaussian_threshold``: a discrete
  Gaussian noisy count of every *observed* key, and only keys whose noisy
  count reaches the threshold are released (Rogers 2023, "A Unifying Privacy
  Analysis Framework for Unknown Domain Algorithms"; CKS 2020 for the
  noise). A value held by few records is released only with probability at
  most ``delta_threshold``; that is why it needs delta. A record has one
  value per column, so adding or removing it changes at most ``k`` keys
  (``k`` categorical columns) by one each: the map's input distance is
  ``(l0 = k, linf = 1)``, whence ``l2 = sqrt(k)``. One joint Gaussian is
  much cheaper than ``k`` separate histograms (the noise grows with
  ``sqrt(k)``, not ``k``): on Adult the threshold falls from about 2,700
  (per-column Laplace) to about 1,400 records. OpenDP's map gives
  approximate zCDP ``(rho, delta_threshold)``; OpenDP's own conversion
  (``make_zCDP_to_approxDP`` then ``make_fix_delta``) turns it into
  (epsilon, delta_conversion), and dpsynth records
  ``EpsilonDeltaDpEvent(epsilon, delta_conversion + delta_threshold)``
  (summing the two deltas is safe whichever way the conversion counts the
  threshold's). Every categorical column gets an ``other`` category
  absorbing the values that were not released.

Budget split (documented in docs/schema.md): epsilon is split between the
numeric and the categorical columns in proportion to their number. The
numeric share is split equally between numeric columns; in a column the two
bounds get half and the interior edges share the other half. The categorical
share goes to the one category histogram. Delta: when both kinds exist, half
converts the quantiles' zCDP to (epsilon, delta) and half goes to the
category histogram, of which half is its threshold's delta and half the
zCDP-to-(epsilon, delta) conversion. The composed cost is recomputed by
dpsynth's accountant (``pld+rdp``), never by adding the parts up.

Noise comes from OpenDP's own CSPRNG (seeded by the OS); discovery cannot be
made reproducible with a seed, by design.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import dp_accounting as dpa
import numpy as np
import pandas as pd

from audits.spec import category_label
from dpsynth.discovery_plan import OTHER_LABEL, CategoricalPlan, CategorySetPlan, DiscoveryPlan, NumericPlan
from dpsynth.errors import DataError, PrivacyAccountingError, UsageError
from dpsynth.params import Interval
from dpsynth.privacy.accountant import compose, epsilon_for
from dpsynth.privacy.cost import PrivacyCost
from dpsynth.privacy.opendp_mechanisms import (
    KEY_SEPARATOR,
    histogram,
    largest_within,
    quantile,
    quantile_scale,
    threshold_for,
    to_approx_dp,
)
from dpsynth.schema import DEFAULT_NA_VALUES, DP, Column, Schema

MECHANISM = "dp-schema-discovery"
BOUND_QUANTILES = (0.01, 0.99)
GRID_DECADES = range(-3, 10)  # default candidates: 2 significant digits from 1e-3 to 9.9e9, both signs
FULL_INTEGER_RANGE = 5000  # integer columns with a hinted range this narrow get every whole number


# -- the plan: everything decided before any value is read ---------------------------------
def candidate_grid(lower: float | None = None, upper: float | None = None, integer: bool = False) -> tuple[float, ...]:
    """Public candidate values for a column's quantiles (never derived from the data).

    Default: 0 and ``±m·10^k`` for every two-significant-digit mantissa
    ``m`` in 1.0..9.9 and ``k`` in -3..9 (so every whole number up to 99 is
    a candidate, then 100, 110, ...). With a public outer ``[lower, upper]``
    the grid is cut to it and the bounds added; an integer column with a
    narrow range (at most 5000 whole numbers) gets every whole number in it.
    """
    if (lower is None) != (upper is None):
        raise UsageError("a public range needs both a lower and an upper end")
    if integer and lower is not None and math.floor(upper) - math.ceil(lower) <= FULL_INTEGER_RANGE:
        return tuple(float(v) for v in range(math.ceil(lower), math.floor(upper) + 1))
    mantissas = np.round(np.arange(10, 100) / 10, 1)
    magnitudes = np.concatenate([m * 10.0**k for k in GRID_DECADES for m in [mantissas]])
    grid = np.concatenate([-magnitudes, [0.0], magnitudes])
    grid = np.array([float(f"{v:.2g}") for v in grid])  # exact decimal values, no 0.30000000000000004
    if integer:
        grid = grid[np.mod(grid, 1) == 0]
    if lower is not None:
        ends = [math.ceil(lower), math.floor(upper)] if integer else [lower, upper]
        grid = np.concatenate([grid[(grid > lower) & (grid < upper)], ends])
    return tuple(float(v) for v in np.unique(grid))


def plan_discovery(
    names: Sequence[str],
    epsilon: float,
    delta: float,
    *,
    numeric: Iterable[str] = (),
    integer: Iterable[str] = (),
    nullable: Iterable[str] = (),
    ranges: Mapping[str, tuple[float, float]] | None = None,
    drop: Iterable[str] = (),
    bins: int = 10,
    edges: str = "quantiles",
    bound_quantiles: tuple[float, float] = BOUND_QUANTILES,
    na_values: Sequence[str] = DEFAULT_NA_VALUES,
    other_label: str = OTHER_LABEL,
) -> DiscoveryPlan:
    """Choose every mechanism and its noise so that the whole discovery is (epsilon, delta)-DP.

    ``names`` are the table's column names (public); ``numeric`` /
    ``integer`` (integer implies numeric) / ``nullable`` / ``ranges`` /
    ``drop`` are public hints naming columns. ``edges`` is ``"quantiles"``
    (interior bin edges at DP quantiles ``i / bins``) or ``"equal-width"``
    (equal bins between the DP bounds: only two quantiles per column).
    """
    _check_budget(epsilon, delta)
    names = [str(n).strip() for n in names]
    if len(set(names)) != len(names):
        raise DataError(f"the table has duplicate column names: {sorted({n for n in names if names.count(n) > 1})}")
    ranges = dict(ranges or {})
    integer, drop, nullable = set(integer), set(drop), set(nullable)
    numeric = set(numeric) | integer
    for option, given in (("--numeric", numeric), ("--nullable", nullable), ("--drop", drop), ("--range", set(ranges))):
        unknown = sorted(given - set(names))
        if unknown:
            raise UsageError(f"{option} names column(s) {unknown} that the table does not have; it has {names}")
    not_numeric = sorted(set(ranges) - numeric)
    if not_numeric:
        raise UsageError(f"--range is given for {not_numeric}, which are not declared --numeric or --integer")
    if not isinstance(bins, int) or not Interval(int, 1, None).accepts(bins):
        raise UsageError(f"--bins must be a whole number >= 1, got {bins!r}")
    if edges not in ("quantiles", "equal-width"):
        raise UsageError(f"edges must be 'quantiles' or 'equal-width', got {edges!r}")
    low_q, high_q = bound_quantiles
    if not 0 <= low_q < high_q <= 1:
        raise UsageError(f"bound quantiles must satisfy 0 <= low < high <= 1, got {bound_quantiles}")
    for name, (lo, hi) in ranges.items():
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise UsageError(f"--range for column {name!r} must be two finite numbers LOW < HIGH, got {lo}:{hi}")
    kept = [n for n in names if n not in drop]
    if not kept:
        raise UsageError("every column is dropped: nothing to discover")
    num_names = [n for n in kept if n in numeric]
    cat_names = [n for n in kept if n not in numeric]

    interior = tuple(i / bins for i in range(1, bins)) if edges == "quantiles" else ()
    alphas = (low_q, high_q, *interior)
    both = bool(num_names) and bool(cat_names)
    eps_num = epsilon * len(num_names) / len(kept)
    eps_cat = epsilon - eps_num
    delta_num = delta / 2 if both else delta
    delta_cat = delta / 2 if both else delta

    numeric_plans: dict[str, NumericPlan] = {}
    if num_names:
        rho_total = largest_within(lambda x: epsilon_for(dpa.ZCDpEvent(x), delta_num), eps_num)
        rho_column = rho_total / len(num_names)
        # the two bounds get half of a column's budget, the interior edges share the other half:
        # a bound that is off clips real values, an interior edge that is off only moves a bin
        shares = (0.25, 0.25, *([0.5 / len(interior)] * len(interior))) if interior else (0.5, 0.5)
        for name in num_names:
            lo_hi = ranges.get(name)
            candidates = candidate_grid(*(lo_hi or (None, None)), integer=name in integer)
            if len(candidates) < 2:
                raise UsageError(f"column {name!r}: its public range holds fewer than two candidate values")
            scales = tuple(quantile_scale(candidates, a, share * rho_column) for a, share in zip(alphas, shares))
            rho = tuple(quantile(candidates, a, sc).map(1) for a, sc in zip(alphas, scales))
            numeric_plans[name] = NumericPlan(
                name=name,
                integer=name in integer,
                nullable=name in nullable,
                candidates=candidates,
                alphas=alphas,
                scales=scales,
                rho=rho,
            )
    categories = _category_set_plan(tuple(cat_names), eps_cat, delta_cat) if cat_names else None
    plans = tuple(numeric_plans.get(n) or CategoricalPlan(name=n, nullable=n in nullable) for n in kept)
    leaves = [e for p in plans for e in p.events()] + (categories.events() if categories else [])
    cost = PrivacyCost.of(
        MECHANISM,
        compose(leaves),
        delta,
        columns=len(kept),
        numeric=len(num_names),
        categorical=len(cat_names),
        quantiles_per_numeric=len(alphas),
        bound_quantiles=list(bound_quantiles),
        edges=edges,
        bins=bins,
        threshold=categories.threshold if categories else None,
        gaussian_scale=categories.scale if categories else None,
    )
    if cost.epsilon > epsilon * (1 + 1e-9):
        raise PrivacyAccountingError(
            f"schema discovery calibrated to epsilon={epsilon} composes to "
            f"{cost.epsilon:.6g}; refusing to spend more than asked"
        )
    return DiscoveryPlan(
        columns=plans,
        categories=categories,
        epsilon=epsilon,
        delta=delta,
        cost=cost,
        na_values=tuple(na_values),
        other_label=other_label,
        edges=edges,
        bins=bins,
        dropped=tuple(n for n in names if n in drop),
    )


# -- running it: the only part that reads values ------------------------------------------
def check_table(df: pd.DataFrame, plan: DiscoveryPlan, source: str = "table") -> None:
    """Refuse, before any budget is spent, a table that does not fit the plan's public hints.

    Text in a column hinted numeric and nulls in a column not hinted
    nullable are user mistakes, reported like :func:`dpsynth.tables.coerce`
    does; nothing here is released.
    """
    if len(df) == 0:
        raise DataError(f"{source} has no data rows")
    columns = {str(c).strip(): c for c in df.columns}
    missing = [n for n in plan.names if n not in columns]
    if missing:
        raise DataError(f"{source} lacks column(s) {missing}; it has {list(columns)}")
    for p in plan.columns:
        values, is_null = _values(df[columns[p.name]], plan.na_values)
        if is_null.any() and not p.nullable:
            raise DataError(
                f"{source}: column {p.name!r} has {int(is_null.sum())} null value(s) but is not "
                f"declared nullable; pass --nullable {p.name} (a public choice) or fill them"
            )
        if isinstance(p, NumericPlan):
            parsed = pd.to_numeric(values, errors="coerce")
            bad = parsed.isna()
            if bad.any():
                raise DataError(
                    f"{source}: column {p.name!r} is declared numeric but holds {int(bad.sum())} non-numeric value(s)"
                )


def run_discovery(
    df: pd.DataFrame, plan: DiscoveryPlan, name: str = "", description: str = "", target: str | None = None
) -> Schema:
    """Run the planned mechanisms on ``df`` and return the ``"source": "dp"`` schema.

    ``df`` holds the raw cells as text (as read with ``dtype=str``). Call
    :func:`check_table` first and reserve ``plan.cost`` in the ledger before
    calling this.
    """
    check_table(df, plan)
    columns = {str(c).strip(): c for c in df.columns}
    released = _released_categories(df, columns, plan)
    out = []
    for p in plan.columns:
        values, _ = _values(df[columns[p.name]], plan.na_values)
        if isinstance(p, NumericPlan):
            data = [float(v) for v in pd.to_numeric(values)]
            found = [float(quantile(p.candidates, a, sc)(data)) for a, sc in zip(p.alphas, p.scales)]
            out.append(_numeric_column(p, found, plan))
        else:
            keys = sorted(released.get(p.name, set()), key=_natural_key)
            categories = [k for k in keys if k != plan.other_label] + [plan.other_label]
            out.append(
                Column(
                    name=p.name,
                    kind="categorical",
                    categories=tuple(categories),
                    other=plan.other_label,
                    nullable=p.nullable,
                )
            )
    text = description or (
        f"Domain discovered with ({plan.cost.epsilon:.4g}, {plan.delta:.3g})-DP "
        f"({plan.cost.accountant}): DP quantiles for numeric bounds and edges, a "
        "Gaussian-thresholded histogram for categories; values held by few records "
        f"are in {plan.other_label!r}."
    )
    return Schema(
        columns=tuple(out),
        name=name,
        source=DP,
        na_values=plan.na_values,
        description=text,
        target=target if target in plan.names else None,
    )


def discover_schema(
    df: pd.DataFrame, epsilon: float, delta: float, name: str = "", **hints
) -> tuple[Schema, PrivacyCost]:
    """Plan and run DP discovery on ``df``; return the schema and what it cost.

    Python entry point without a ledger: the caller must record the cost
    (the CLI reserves it in the ledger before reading values). ``hints`` are
    the keyword arguments of :func:`plan_discovery`.
    """
    plan = plan_discovery(list(df.columns), epsilon, delta, **hints)
    check_table(df, plan)
    return run_discovery(df, plan, name=name), plan.cost


# -- helpers -------------------------------------------------------------------------------
def _check_budget(epsilon: float, delta: float) -> None:
    for label, value in (("--epsilon", epsilon), ("--delta", delta)):
        if not isinstance(value, (int, float)) or not Interval(float, None, None).accepts(value):
            raise UsageError(f"{label} must be a finite number, got {value!r}")
    if not epsilon > 0:
        raise UsageError(f"--epsilon must be > 0, got {epsilon}")
    if not 0 < delta < 1:
        raise UsageError(
            f"--delta must be in (0, 1): the category discovery (a thresholded histogram) needs delta > 0, got {delta}"
        )


def _values(series: pd.Series, na_values: Sequence[str]) -> tuple[pd.Series, pd.Series]:
    """Non-null stripped cell texts, and the null mask (same rule as dpsynth.tables.coerce)."""
    na = set(na_values)
    text = series.map(lambda v: v.strip() if isinstance(v, str) else v)
    is_null = text.isna() | text.map(lambda v: isinstance(v, str) and v in na)
    return text[~is_null].astype(str), is_null


def _category_set_plan(names: tuple[str, ...], epsilon: float, delta: float) -> CategorySetPlan:
    """Least Gaussian noise whose thresholded histogram is (epsilon, delta)-DP by OpenDP's maps.

    Half of ``delta`` is the threshold's, half the zCDP-to-(epsilon, delta)
    conversion's; the noise scale is found by bisection on OpenDP's maps.
    """
    d_in = (len(names), len(names), 1)
    delta_threshold, delta_conversion = delta / 2, delta / 2

    def epsilon_at(inverse_scale: float) -> float:
        scale = 1 / inverse_scale
        meas = histogram(scale, threshold_for(scale, d_in, delta_threshold))
        return float(to_approx_dp(meas, delta_conversion).map(d_in)[0])

    scale = 1 / largest_within(epsilon_at, epsilon, lo_share=1e-3, rel_tol=1e-4)
    threshold = threshold_for(scale, d_in, delta_threshold)
    meas = histogram(scale, threshold)
    rho, delta_map = meas.map(d_in)
    eps_map, delta_fixed = to_approx_dp(meas, delta_conversion).map(d_in)
    return CategorySetPlan(
        columns=names,
        scale=scale,
        threshold=threshold,
        rho=float(rho),
        delta_threshold=float(delta_map),
        epsilon=float(eps_map),
        delta_conversion=float(delta_fixed),
    )


def key_counts(df: pd.DataFrame, plan: DiscoveryPlan) -> dict[str, int]:
    """Exact counts of the ``(column position, value)`` keys of the plan's categorical columns.

    Each record adds one to at most one key per column (nulls add nothing):
    the ``(l0 = k, linf = 1)`` distance the histogram is paid for.
    """
    columns = {str(c).strip(): c for c in df.columns}
    counts: dict[str, int] = {}
    for position, name in enumerate(plan.categories.columns if plan.categories else ()):
        values, _ = _values(df[columns[name]], plan.na_values)
        for label, count in pd.Series([category_label(v) for v in values], dtype=object).value_counts().items():
            counts[f"{position}{KEY_SEPARATOR}{label}"] = int(count)
    return counts


def _released_categories(df: pd.DataFrame, columns: dict[str, str], plan: DiscoveryPlan) -> dict[str, set[str]]:
    """Run the category histogram: exact counts of (column, value) keys, then OpenDP's noise and threshold.

    Each record adds one to at most one key per categorical column (nulls
    add nothing), the ``(l0 = k, linf = 1)`` distance the plan was paid for.
    """
    if plan.categories is None:
        return {}
    noisy = histogram(plan.categories.scale, plan.categories.threshold)(key_counts(df, plan))
    released: dict[str, set[str]] = {}
    for key in noisy:  # the noisy counts themselves are discarded
        position, _, label = key.partition(KEY_SEPARATOR)
        released.setdefault(plan.categories.columns[int(position)], set()).add(label)
    return released


def _numeric_column(p: NumericPlan, found: list[float], plan: DiscoveryPlan) -> Column:
    """Bounds and edges from the released quantiles (post-processing only)."""
    cands = np.asarray(p.candidates)
    lower, upper = found[0], found[1]
    if not lower < upper:  # e.g. a near-constant column: widen to the next candidate(s)
        above = cands[cands > lower]
        if len(above):
            upper = float(above[0])
        else:
            upper, lower = lower, float(cands[cands < lower][-1])
    if plan.edges == "equal-width" or len(found) == 2:
        return _equal_width(p, lower, upper, plan.bins)
    interior = [q for q in found[2:] if lower < q < upper]
    edges = {lower, upper, *interior}
    # a value that several quantiles landed on holds a point mass (capital gain 0, 40 hours):
    # give it a bin of its own by adding the next candidate above it as an edge
    hits = [q for q in found if lower <= q < upper]
    for value in {q for q in hits if hits.count(q) >= 2}:
        step = value + 1 if p.integer else float(cands[cands > value][0])
        if step < upper:
            edges.add(step)
    ordered = tuple(sorted(edges))
    return Column(
        name=p.name, kind="numeric", lower=lower, upper=upper, edges=ordered, integer=p.integer, nullable=p.nullable
    )


def _equal_width(p: NumericPlan, lower: float, upper: float, bins: int) -> Column:
    if p.integer:
        bins = max(1, min(bins, int(math.floor(upper) - math.ceil(lower) + 1)))
    return Column(
        name=p.name, kind="numeric", lower=lower, upper=upper, bins=bins, integer=p.integer, nullable=p.nullable
    )


def _natural_key(label: str) -> tuple:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


__all__ = [
    "CategoricalPlan",
    "CategorySetPlan",
    "DiscoveryPlan",
    "NumericPlan",
    "candidate_grid",
    "check_table",
    "discover_schema",
    "key_counts",
    "plan_discovery",
    "run_discovery",
]
