"""Noisy marginals and graphical-model estimation on mbi 2.x, shared by MST and AIM.

Marginal-based synthesizers all follow the same loop (McKenna, Sheldon &
Miklau 2019, "Graphical-model based estimation and inference for differential
privacy", ICML): measure a few low-dimensional marginals of the encoded table
with Gaussian noise, fit a graphical model to the noisy answers with mbi's
mirror descent, then sample records from the model. The privacy cost lies
entirely in :func:`measure` (discrete Gaussian mechanism on exact integer
counts, L2 sensitivity 1 under add/remove-one: a record sits in exactly one
cell of any marginal) and in :func:`exponential_mechanism` (selection); both
draw their noise from a :class:`~dpsynth.privacy.noise.NoiseSource` and
nowhere else. Everything else here is post-processing of their outputs.

The exact counts come from ``codes``: a dict of code arrays, or a *count
source* (an engine's :class:`~dpsynth.engines.EncodedTable`, or
:class:`CompressedCounts` over one) that answers ``counts_many`` itself,
e.g. by ``GROUP BY`` queries; both give the same integers.

Also here:

* :class:`DomainCompression`: MST's "compress_domain" step (McKenna et al.
  2021, Sec. 4). Values whose *noisy* one-way count is below ``3 sigma`` are
  merged into one code. It reads only noisy measurements, so it is free.
* :class:`ModelMarginals`: exact marginals of a fitted model, computed in
  numpy on its junction tree (mbi's eager-JAX inference compiles a program
  per query shape, seconds each on a small CPU).
* :func:`sample_records`: draws records from a fitted model with *our*
  numpy generator. mbi's ``MarkovRandomField.synthetic_data`` draws from the
  global ``np.random`` state and orders conditioning sets by Python set
  iteration (which depends on ``PYTHONHASHSEED``), so it is not reproducible
  from a seed; this is the same stratified ("round") sampler, made
  deterministic.

On a 2-core CPU, XLA compilation, not arithmetic, dominates mbi's cost:
:func:`estimate` therefore compiles only mbi's mirror-descent loop, once per
model structure.

mbi is imported through :mod:`dpsynth.synthesizers._mbi_compat`, the one
module that touches its internals (pinned to the mbi version it was written
for) and that switches JAX to float64 before mbi loads: in float32, mbi's
estimation can stall on large tables (its own warning), and on these sizes
float64 costs no measurable time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import jax
import networkx as nx
import numpy as np
import pandas as pd
from scipy.special import logsumexp

from dpsynth.encoding import TableEncoder
from dpsynth.privacy.noise import NoiseSource

# mbi only through _mbi_compat: it sets float64 JAX before mbi loads and checks the internals used
from dpsynth.synthesizers import _mbi_compat as compat
from dpsynth.synthesizers._mbi_compat import Domain, LinearMeasurement, mbi

Clique = tuple[str, ...]
Codes = dict[str, np.ndarray]


class CountSource(Protocol):
    """Anything that answers exact marginal counts: ``counts_many(cliques)`` -> one array per clique,
    shaped by the clique's domain (an :class:`~dpsynth.engines.EncodedTable`, :class:`CompressedCounts`)."""

    def counts_many(self, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]: ...


CountData = Codes | CountSource

__all__ = [
    "CellWeights",
    "Clique",
    "Codes",
    "CompressedCounts",
    "CountData",
    "CountSource",
    "counts_many",
    "Domain",
    "DomainCompression",
    "LinearMeasurement",
    "counts",
    "encode_table",
    "ModelMarginals",
    "estimate",
    "estimate_total",
    "exponential_mechanism",
    "marginal",
    "measure",
    "project_to_simplex",
    "sample_records",
]


def encode_table(encoder: TableEncoder, df: pd.DataFrame | CountSource) -> tuple[CountData, Domain]:
    """Integer codes of a prepared table (an encoded table as it is) and the mbi ``Domain`` the schema implies."""
    domain = Domain(list(encoder.domain), list(encoder.domain.values()))
    return (encoder.encode(df) if isinstance(df, pd.DataFrame) else df), domain


def counts(codes: CountData, domain: Domain, clique: Sequence[str]) -> np.ndarray:
    """Exact integer counts of ``clique`` as a flat int64 vector, in mbi's (C-order) cell layout."""
    return counts_many(codes, domain, [clique])[0]


def counts_many(codes: CountData, domain: Domain, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """:func:`counts` of every clique; a count source answers them in one call (one pass over the data)."""
    cliques = [tuple(c) for c in cliques]
    shapes = [domain.project(c).shape for c in cliques]
    if isinstance(codes, dict):
        return [
            np.bincount(np.ravel_multi_index(tuple(codes[a] for a in c), shape), minlength=int(np.prod(shape))).astype(
                np.int64
            )
            for c, shape in zip(cliques, shapes)
        ]
    answers = codes.counts_many(cliques)
    for clique, shape, answer in zip(cliques, shapes, answers, strict=True):
        if answer.shape != shape:
            raise ValueError(f"counts over {clique} have shape {answer.shape}, the domain's is {shape}")
    return [np.asarray(a, dtype=np.int64).reshape(-1) for a in answers]


def marginal(codes: CountData, domain: Domain, clique: Sequence[str]) -> np.ndarray:
    """Exact counts of ``clique`` as a flat float vector (for scores and errors, not for noise)."""
    return counts(codes, domain, clique).astype(float)


def measure(
    codes: CountData, domain: Domain, cliques: Sequence[Clique], sigma: float, noise: NoiseSource
) -> list[LinearMeasurement]:
    """Discrete Gaussian mechanism on each marginal: exact counts + N_Z(0, sigma^2) per cell.

    One record changes one cell of a marginal by one, so the L2 sensitivity is
    1 and each marginal is a ``DiscreteGaussianDpEvent(sigma)`` (rho = 1 /
    (2 sigma^2), CKS 2020). All cliques are noised in one batch. The
    measurement's ``stddev`` is ``sigma``, a hair above the discrete
    Gaussian's true standard deviation: a conservative weight for mbi.
    """
    cliques = [tuple(c) for c in cliques]
    exact = counts_many(codes, domain, cliques)
    if not exact:
        return []
    noisy = noise.discrete_gaussian(np.concatenate(exact), sigma)
    bounds = np.cumsum([0] + [x.size for x in exact])
    return [
        LinearMeasurement(noisy[a:b].astype(float), clique, stddev=float(sigma))
        for clique, a, b in zip(cliques, bounds[:-1], bounds[1:])
    ]


def exponential_mechanism(scores: np.ndarray, epsilon: float, sensitivity: float, noise: NoiseSource) -> int:
    """Index drawn with probability proportional to ``exp(epsilon * score / (2 sensitivity))``.

    epsilon-DP, and epsilon-bounded-range, hence ``epsilon^2 / 8``-zCDP
    (Cesar & Rogers 2021, "Bounding, concentrating, and truncating: unifying
    privacy loss composition for data analytics", Lemma 3.2). Sampled as the
    Gumbel noisy max with scale ``2 sensitivity / epsilon`` by the noise
    source (OpenDP's exact ``make_noisy_max`` unless seeded).
    """
    return noise.noisy_max_gumbel(np.asarray(scores, dtype=float), 2.0 * sensitivity / epsilon)


def project_to_simplex(y: np.ndarray, total: float) -> np.ndarray:
    """Euclidean projection of ``y`` onto ``{x >= 0, sum(x) = total}`` (Duchi et al. 2008).

    This is exactly what mbi's estimator converges to for a single one-way
    measurement, without a JAX compilation.
    """
    y = np.asarray(y, dtype=float)
    total = max(float(total), 0.0)
    if total == 0:
        return np.zeros_like(y)
    u = np.sort(y)[::-1]
    cumulative = np.cumsum(u) - total
    k = np.arange(1, y.size + 1)
    rho = np.nonzero(u - cumulative / k > 0)[0][-1]
    return np.maximum(y - cumulative[rho] / (rho + 1), 0.0)


def estimate_total(measurements: list[LinearMeasurement]) -> float:
    """Minimum-variance unbiased estimate of the number of records from noisy counts (mbi's).

    Only plain (uncompressed) measurements count; pass them before
    :meth:`DomainCompression.compress_measurement`.
    """
    return float(compat.minimum_variance_unbiased_total(measurements))


def estimate(
    domain: Domain,
    measurements: list[LinearMeasurement],
    iters: int,
    total: float,
    warm_start: mbi.MarkovRandomField | None = None,
) -> mbi.MarkovRandomField:
    """Graphical model fitted to the noisy measurements by mbi's mirror descent (post-processing).

    ``total`` (the number of records) must itself come from noisy counts
    (:func:`estimate_total`). ``warm_start`` starts from an earlier model's
    potentials (AIM re-fits after every new measurement).

    This runs mbi's own jitted mirror-descent steps (:func:`_mbi_compat.mirror_descent`,
    Armijo line search included) but sets up the initial state in numpy and
    skips the final marginal computation: run eagerly, those two steps compile
    about a hundred tiny XLA programs, which on Adult took 13 s on a 2-core CPU
    against about a second for 1,000 iterations. The initial ``mu`` and
    ``loss`` are placeholders (each step recomputes both from the potentials);
    the returned model's ``marginals`` are those of the last iterate but one,
    so read marginals through :class:`ModelMarginals`, which uses the
    potentials.
    """
    loss_fn = compat.loss_from_measurements(measurements, domain)
    cliques = list(loss_fn.cliques)
    total = float(total)
    potentials, mu = compat.mirror_descent(
        loss_fn,
        potentials=_clique_vector(domain, cliques, _expanded_potentials(warm_start, domain, cliques)),
        mu=_clique_vector(domain, cliques, {}),
        alpha=2.0 / (loss_fn.lipschitz * total),  # mbi's initial step size
        total=total,
        iters=iters,
    )
    return mbi.MarkovRandomField(potentials=potentials, marginals=mu, total=total)


def _expanded_potentials(
    model: mbi.MarkovRandomField | None, domain: Domain, cliques: list[Clique]
) -> dict[Clique, np.ndarray]:
    """``model``'s log-potentials re-expressed over ``cliques`` (which must cover its cliques): same distribution."""
    tables = {clique: np.zeros(domain.project(clique).shape) for clique in cliques}
    if model is not None:
        for factor in model.potentials.tables.values():
            attrs = tuple(factor.domain.attributes)
            host = min((c for c in cliques if set(attrs) <= set(c)), key=domain.size)
            tables[host] = tables[host] + _align(np.asarray(factor.values, dtype=float), attrs, host)
    return tables


def _clique_vector(domain: Domain, cliques: list[Clique], tables: dict[Clique, np.ndarray]) -> mbi.CliqueVector:
    """A CliqueVector of fresh float64 device arrays (zeros where ``tables`` has none)."""
    factors = {}
    for clique in cliques:
        sub = domain.project(clique)
        values = tables.get(clique, np.zeros(sub.shape))
        factors[clique] = mbi.Factor(sub, jax.numpy.asarray(values, dtype=jax.numpy.float64))
    return mbi.CliqueVector(domain, cliques, factors)


@dataclass
class DomainCompression:
    """Merge rarely seen values of each attribute into one code, judged on noisy counts.

    ``mappings[a][i]`` is the compressed code of original code ``i``; only
    attributes that lost at least one value have a mapping. The merged code is
    always the last one.
    """

    original: Domain
    mappings: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_one_way(
        cls, domain: Domain, one_way: list[LinearMeasurement], threshold: float = 3.0
    ) -> DomainCompression:
        """Keep value ``i`` of ``a`` iff its noisy count is at least ``threshold`` sigma (MST, Sec. 4)."""
        mappings = {}
        for m in one_way:
            (attribute,) = m.clique
            keep = np.asarray(m.noisy_measurement) >= threshold * m.stddev
            if keep.all():
                continue
            mapping = np.full(keep.size, int(keep.sum()), dtype=np.int64)
            mapping[keep] = np.arange(int(keep.sum()))
            mappings[attribute] = mapping
        return cls(domain, mappings)

    @property
    def domain(self) -> Domain:
        shape = [
            int(self.mappings[a].max()) + 1 if a in self.mappings else self.original[a]
            for a in self.original.attributes
        ]
        return Domain(self.original.attributes, shape)

    def compress_codes(self, codes: CountData) -> CountData:
        """Codes over the compressed domain; a count source is wrapped (:class:`CompressedCounts`)."""
        if not isinstance(codes, dict):
            return CompressedCounts(codes, self)
        return {a: self.mappings[a][c] if a in self.mappings else c for a, c in codes.items()}

    def compress_counts(self, clique: Clique, table: np.ndarray) -> np.ndarray:
        """Counts over the original domain (axes ``clique``) summed into the compressed cells."""
        for axis, attribute in enumerate(clique):
            mapping = self.mappings.get(attribute)
            if mapping is None:
                continue
            moved = np.moveaxis(table, axis, 0)
            merged = np.zeros((int(mapping.max()) + 1, *moved.shape[1:]), dtype=np.int64)
            np.add.at(merged, mapping, moved)
            table = np.moveaxis(merged, 0, axis)
        return table

    def compress_measurement(self, m: LinearMeasurement) -> LinearMeasurement:
        """The same noisy answer, re-expressed over the compressed domain.

        A merged cell holds the sum of its k noisy cells divided by sqrt(k),
        so every cell keeps noise ``stddev`` (mbi's ``LinearMeasurement.compress``).
        """
        if not any(a in self.mappings for a in m.clique):
            return m
        merged = m.compress(self.mappings, self.original)
        return LinearMeasurement(
            merged.noisy_measurement,
            merged.clique,
            merged.stddev,
            query=CellWeights(tuple(float(w) for w in merged.query.weights)),
        )

    def decompress_codes(self, codes: Codes, rng: np.random.Generator) -> Codes:
        """Original codes; a merged code becomes one of its values, uniformly at random."""
        out = dict(codes)
        for attribute, mapping in self.mappings.items():
            compressed = np.asarray(codes[attribute])
            merged_code = int(mapping.max())
            members = np.flatnonzero(mapping == merged_code)
            kept = np.flatnonzero(mapping != merged_code)  # kept[j] is the original of compressed code j
            original = np.empty(compressed.size, dtype=np.int64)
            is_merged = compressed == merged_code
            original[~is_merged] = kept[compressed[~is_merged]]
            original[is_merged] = members[rng.integers(0, members.size, size=int(is_merged.sum()))]
            out[attribute] = original
        return out


@dataclass
class CompressedCounts:
    """A count source over a :class:`DomainCompression` 's domain: the source's counts, cells merged."""

    source: CountSource
    compression: DomainCompression

    def counts_many(self, cliques: Sequence[Sequence[str]]) -> list[np.ndarray]:
        cliques = [tuple(c) for c in cliques]
        return [self.compression.compress_counts(c, t) for c, t in zip(cliques, self.source.counts_many(cliques))]


@dataclass(frozen=True)
class CellWeights:
    """Query ``datavector * weights``, hashed by value.

    mbi's ``WeightedQuery`` hashes by identity, and queries are static parts
    of the compiled loss, so every fit would recompile it from scratch.
    """

    weights: tuple[float, ...]

    def __call__(self, factor) -> jax.Array:
        return factor.datavector() * jax.numpy.asarray(self.weights)

    def op_norm_sq(self) -> float:
        return max(w * w for w in self.weights)


class ModelMarginals:
    """Any marginal of a fitted mbi model, by exact inference in numpy on its junction tree.

    mbi answers ``model.project(clique)`` for a clique outside its measured
    cliques by variable elimination in eager JAX, which compiles a program for
    every new shape: seconds per query on a small CPU. AIM scores about a
    hundred candidate marginals every round, so this class does the same exact
    computation in numpy: Shafer-Shenoy message passing from the model's
    potentials gives every junction-tree clique's distribution, and a marginal
    spanning several cliques is the product of clique distributions over
    separator distributions on the smallest subtree that covers it (Koller &
    Friedman 2009, Sec. 10.3).
    """

    def __init__(self, model: mbi.MarkovRandomField) -> None:
        domain = self.domain = model.domain
        self.total = float(model.total)
        self.tree, self.elimination_order = compat.make_junction_tree(domain, [tuple(c) for c in model.cliques])
        nodes = list(self.tree.nodes)
        log_potential = {node: np.zeros(domain.project(node).shape) for node in nodes}
        for factor in model.potentials.tables.values():
            attrs = tuple(factor.domain.attributes)
            host = min((n for n in nodes if set(attrs) <= set(n)), key=domain.size)
            log_potential[host] = log_potential[host] + _align(np.asarray(factor.values, dtype=float), attrs, host)
        messages: dict[tuple[Clique, Clique], tuple[Clique, np.ndarray]] = {}

        def incoming(node: Clique, skip: Clique | None = None) -> np.ndarray:
            out = log_potential[node]
            for (sender, receiver), (sep, message) in messages.items():
                if receiver == node and sender != skip:
                    out = out + _align(message, sep, node)
            return out

        for sender, receiver in compat.message_passing_order(self.tree):
            sep = tuple(a for a in sender if a in receiver)
            messages[sender, receiver] = (sep, _logsumexp_to(incoming(sender, skip=receiver), sender, sep))
        self.beliefs: dict[Clique, np.ndarray] = {}  # probabilities, axes in clique order
        for node in nodes:
            log_belief = incoming(node)
            self.beliefs[node] = np.exp(log_belief - logsumexp(log_belief))

    def project(self, attrs: Sequence[str]) -> np.ndarray:
        """Estimated counts over ``attrs``, one axis per attribute in that order."""
        attrs = tuple(attrs)
        hosts = [n for n in self.beliefs if set(attrs) <= set(n)]
        if hosts:
            host = min(hosts, key=lambda n: self.beliefs[n].size)
            return self.total * _sum_to(self.beliefs[host], host, attrs)
        nodes = self._covering_subtree(attrs)
        label = {a: i for i, a in enumerate(self.domain.attributes)}
        operands: list = []
        for node in nodes:
            operands += [self.beliefs[node], [label[a] for a in node]]
        for u, v in self.tree.subgraph(nodes).edges:
            sep = tuple(a for a in u if a in v)
            separator = _sum_to(self.beliefs[u], u, sep)
            operands += [
                np.divide(1.0, separator, out=np.zeros_like(separator), where=separator > 0),
                [label[a] for a in sep],
            ]
        return self.total * np.einsum(*operands, [label[a] for a in attrs], optimize="greedy")

    def _covering_subtree(self, attrs: tuple[str, ...]) -> list[Clique]:
        """Nodes of a subtree (per connected component) whose cliques together contain ``attrs``."""
        chosen: set[Clique] = set()
        for attribute in attrs:
            if any(attribute in node for node in chosen):
                continue
            hosts = [n for n in self.tree.nodes if attribute in n]
            component = nx.node_connected_component(self.tree, hosts[0])
            sources = chosen & component
            if not sources:
                chosen.add(hosts[0])
                continue
            _, paths = nx.multi_source_dijkstra(self.tree, sources, weight=lambda *_: 1)  # edges carry -overlap
            nearest = min((h for h in hosts if h in paths), key=lambda h: len(paths[h]))
            chosen.update(paths[nearest])
        return sorted(chosen)


def _align(values: np.ndarray, attrs: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """``values`` (axes ``attrs``) reshaped to broadcast against an array with axes ``target``."""
    present = [a for a in target if a in attrs]
    values = np.transpose(values, [list(attrs).index(a) for a in present])
    return values.reshape([values.shape[present.index(a)] if a in attrs else 1 for a in target])


def _logsumexp_to(values: np.ndarray, attrs: Sequence[str], keep: Sequence[str]) -> np.ndarray:
    """Log-sum-exp out every axis not in ``keep``; the result's axes follow ``attrs`` order."""
    axes = tuple(i for i, a in enumerate(attrs) if a not in keep)
    return logsumexp(values, axis=axes) if axes else values


def _sum_to(values: np.ndarray, attrs: Sequence[str], keep: Sequence[str]) -> np.ndarray:
    """Sum out every axis not in ``keep``; the result's axes follow ``keep`` order."""
    summed = values.sum(axis=tuple(i for i, a in enumerate(attrs) if a not in keep))
    kept = [a for a in attrs if a in keep]
    return np.transpose(summed, [kept.index(a) for a in keep])


def sample_records(model: mbi.MarkovRandomField, n: int, rng: np.random.Generator) -> Codes:
    """Draw ``n`` records from ``model``, one attribute at a time along its junction tree.

    Each attribute is drawn from its conditional given the already-drawn
    attributes it shares a junction-tree clique with. Within every group of
    rows with the same parent values the draw is stratified (systematic
    sampling over a random order of the group's rows), so the synthetic
    counts match the model's marginals up to rounding: mbi's "round" method.
    """
    marginals = ModelMarginals(model)
    domain, nodes = model.domain, list(marginals.beliefs)
    position = {a: i for i, a in enumerate(domain.attributes)}
    data: Codes = {}
    for attribute in marginals.elimination_order[::-1]:
        neighbours = set().union(*[set(node) for node in nodes if attribute in node])
        parents = sorted(neighbours & data.keys(), key=position.__getitem__)
        joint = marginals.project(tuple(parents) + (attribute,))
        key = (
            np.ravel_multi_index(tuple(data[p] for p in parents), joint.shape[:-1])
            if parents
            else np.zeros(n, dtype=np.int64)
        )
        data[attribute] = _stratified_draw(np.clip(joint.reshape(-1, domain[attribute]), 0.0, None), key, rng)
    return {a: data[a] for a in domain.attributes}


def _stratified_draw(table: np.ndarray, key: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each row, a value drawn from row ``key`` of ``table`` (unnormalised weights), stratified per key."""
    n, width = key.size, table.shape[1]
    mass = table.sum(axis=1, keepdims=True)
    probs = np.divide(table, mass, out=np.full_like(table, 1.0 / width), where=mass > 0)
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0
    order = np.lexsort((rng.random(n), key))  # rows grouped by key, random order inside a group
    sorted_key = key[order]
    group_start = np.searchsorted(sorted_key, sorted_key, side="left")
    group_size = np.bincount(key, minlength=table.shape[0])[sorted_key]
    u = (np.arange(n) - group_start + rng.random(n)) / group_size  # one draw per stratum [i/m, (i+1)/m)
    # Row k's CDF shifted by k is increasing across rows, so one searchsorted serves all groups.
    flat = (cdf + np.arange(table.shape[0])[:, None]).ravel()
    value = np.searchsorted(flat, sorted_key + u, side="right") - sorted_key * width
    out = np.empty(n, dtype=np.int64)
    out[order] = np.clip(value, 0, width - 1)
    return out
