"""Noisy marginals and graphical-model estimation on mbi 2.x, shared by MST and AIM.

Marginal-based synthesizers all follow the same loop (McKenna, Sheldon &
Miklau 2019, "Graphical-model based estimation and inference for differential
privacy", ICML): measure a few low-dimensional marginals of the encoded table
with Gaussian noise, fit a graphical model to the noisy answers with mbi's
mirror descent, then sample records from the model. The privacy cost lies
entirely in :func:`measure` (Gaussian mechanism, L2 sensitivity 1 under
add/remove-one: a record sits in exactly one cell of any marginal) and in
:func:`exponential_mechanism` (selection); everything else here is
post-processing of their outputs.

Also here:

* :class:`DomainCompression`: MST's "compress_domain" step (McKenna et al.
  2021, Sec. 4). Values whose *noisy* one-way count is below ``3 sigma`` are
  merged into one code. It reads only noisy measurements, so it is free.
* :func:`sample_records`: draws records from a fitted model with *our*
  numpy generator. mbi's ``MarkovRandomField.synthetic_data`` draws from the
  global ``np.random`` state and orders conditioning sets by Python set
  iteration (which depends on ``PYTHONHASHSEED``), so it is not reproducible
  from a seed; this is the same stratified ("round") sampler, made
  deterministic.

JAX is switched to float64 before mbi is imported: in float32, mbi's
estimation can stall on large tables (its own warning), and on these sizes
float64 costs no measurable time. This is a process-wide JAX setting; no other
dpsynth component uses JAX.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import jax

jax.config.update("jax_enable_x64", True)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # mbi warns at import about JAX settings it cannot see yet
    import mbi
    from mbi import Domain, LinearMeasurement, estimation, junction_tree, marginal_loss, marginal_oracles

import numpy as np
import pandas as pd

from dpsynth.encoding import TableEncoder

Clique = tuple[str, ...]
Codes = dict[str, np.ndarray]

__all__ = ["CellWeights", "Clique", "Codes", "Domain", "DomainCompression", "LinearMeasurement", "encode_table",
           "estimate", "estimate_total", "exponential_mechanism", "marginal", "measure", "model_marginal",
           "project_to_simplex", "sample_records"]


def encode_table(encoder: TableEncoder, df: pd.DataFrame) -> tuple[Codes, Domain]:
    """Integer codes of a prepared table and the mbi ``Domain`` the schema implies."""
    domain = Domain(list(encoder.domain), list(encoder.domain.values()))
    return encoder.encode(df), domain


def marginal(codes: Codes, domain: Domain, clique: Sequence[str]) -> np.ndarray:
    """Exact counts of ``clique`` as a flat vector, in mbi's (C-order) cell layout."""
    clique = tuple(clique)
    shape = domain.project(clique).shape
    index = np.ravel_multi_index(tuple(codes[a] for a in clique), shape)
    return np.bincount(index, minlength=int(np.prod(shape))).astype(float)


def measure(codes: Codes, domain: Domain, cliques: Sequence[Clique], sigma: float,
            rng: np.random.Generator) -> list[LinearMeasurement]:
    """Gaussian mechanism on each marginal: counts + N(0, sigma^2) per cell.

    One record changes one cell of a marginal by one, so the L2 sensitivity is
    1 and each call is a ``GaussianDpEvent(sigma)`` (rho = 1 / (2 sigma^2)).
    """
    out = []
    for clique in cliques:
        x = marginal(codes, domain, clique)
        out.append(LinearMeasurement(x + rng.normal(0.0, sigma, size=x.size), tuple(clique), stddev=float(sigma)))
    return out


def exponential_mechanism(scores: np.ndarray, epsilon: float, sensitivity: float,
                          rng: np.random.Generator) -> int:
    """Index drawn with probability proportional to ``exp(epsilon * score / (2 sensitivity))``.

    epsilon-DP, and epsilon-bounded-range, hence ``epsilon^2 / 8``-zCDP
    (Cesar & Rogers 2021, "Bounding, concentrating, and truncating: unifying
    privacy loss composition for data analytics", Lemma 3.2). Sampled with the
    Gumbel-max trick, which is exact and immune to overflow.
    """
    scores = np.asarray(scores, dtype=float)
    logits = 0.5 * epsilon / sensitivity * (scores - scores.max())
    return int(np.argmax(logits + rng.gumbel(size=logits.size)))


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
    return float(estimation.minimum_variance_unbiased_total(measurements))


def estimate(domain: Domain, measurements: list[LinearMeasurement], iters: int, total: float,
             warm_start: mbi.MarkovRandomField | None = None) -> mbi.MarkovRandomField:
    """Graphical model fitted to the noisy measurements by mbi's mirror descent (post-processing).

    ``total`` (the number of records) must itself come from noisy counts
    (:func:`estimate_total`). ``warm_start`` starts from an earlier model's
    potentials (AIM re-fits after every new measurement).

    This is ``MirrorDescent().estimate`` with its set-up and final message
    passing compiled as one XLA program each: run eagerly, they compile about
    a hundred tiny programs, which on a 2-core CPU took longer than all the
    iterations (13 s against 4 s on Adult).
    """
    loss_fn = marginal_loss.from_linear_measurements(measurements, domain)
    # Host copies: the optimiser donates (frees) its state buffers, and they must not alias the old model's.
    potentials = None if warm_start is None else jax.tree.map(np.asarray, warm_start.potentials)
    state = _initial_state(domain, loss_fn, float(total), potentials)
    for _ in range(math.ceil(iters / estimation.CALLBACK_EVERY)):
        state = _ESTIMATOR._multi_step(state, loss_fn, float(total))
    return _final_model(state, float(total))


_ESTIMATOR = estimation.MirrorDescent()


@functools.partial(jax.jit, static_argnames=("domain",))
def _initial_state(domain: Domain, loss_fn, total, potentials):
    return _ESTIMATOR._init(domain, loss_fn, total, warm_start=potentials)


@jax.jit
def _final_model(state, total) -> mbi.MarkovRandomField:
    return _ESTIMATOR._finalize(state, total)


def model_marginal(model: mbi.MarkovRandomField, clique: Sequence[str]) -> np.ndarray:
    """The model's estimate of a marginal, flat, as numpy float64."""
    return np.asarray(model.project(tuple(clique)).datavector(), dtype=float)


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
    def from_one_way(cls, domain: Domain, one_way: list[LinearMeasurement], threshold: float = 3.0
                     ) -> "DomainCompression":
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
        shape = [int(self.mappings[a].max()) + 1 if a in self.mappings else self.original[a]
                 for a in self.original.attributes]
        return Domain(self.original.attributes, shape)

    def compress_codes(self, codes: Codes) -> Codes:
        return {a: self.mappings[a][c] if a in self.mappings else c for a, c in codes.items()}

    def compress_measurement(self, m: LinearMeasurement) -> LinearMeasurement:
        """The same noisy answer, re-expressed over the compressed domain.

        A merged cell holds the sum of its k noisy cells divided by sqrt(k),
        so every cell keeps noise ``stddev`` (mbi's ``LinearMeasurement.compress``).
        """
        if not any(a in self.mappings for a in m.clique):
            return m
        merged = m.compress(self.mappings, self.original)
        return LinearMeasurement(merged.noisy_measurement, merged.clique, merged.stddev,
                                 query=CellWeights(tuple(float(w) for w in merged.query.weights)))


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


def sample_records(model: mbi.MarkovRandomField, n: int, rng: np.random.Generator) -> Codes:
    """Draw ``n`` records from ``model``, one attribute at a time along its junction tree.

    Each attribute is drawn from its conditional given the already-drawn
    attributes it shares a junction-tree clique with. Within every group of
    rows with the same parent values the draw is stratified (systematic
    sampling over a random order of the group's rows), so the synthetic
    counts match the model's marginals up to rounding: mbi's "round" method.
    """
    domain = model.domain
    jtree, elimination_order = junction_tree.make_junction_tree(domain, [tuple(c) for c in model.cliques])
    nodes = tuple(sorted(tuple(c) for c in jtree.nodes))
    tables = [(tuple(f.domain.attributes), np.asarray(f.values, dtype=float))
              for f in model.marginals.tables.values()]
    if not all(any(set(node) <= set(attrs) for attrs, _ in tables) for node in nodes):
        beliefs = _junction_tree_marginals(model.potentials, float(model.total), nodes)
        tables = [(tuple(f.domain.attributes), np.asarray(f.values, dtype=float)) for f in beliefs.tables.values()]
    position = {a: i for i, a in enumerate(domain.attributes)}
    data: Codes = {}
    for attribute in elimination_order[::-1]:
        neighbours = set().union(*[set(node) for node in nodes if attribute in node])
        parents = sorted(neighbours & data.keys(), key=position.__getitem__)
        joint = _project(tables, tuple(parents) + (attribute,))
        key = (np.ravel_multi_index(tuple(data[p] for p in parents), joint.shape[:-1]) if parents
               else np.zeros(n, dtype=np.int64))
        data[attribute] = _stratified_draw(np.clip(joint.reshape(-1, domain[attribute]), 0.0, None), key, rng)
    return {a: data[a] for a in domain.attributes}


@functools.partial(jax.jit, static_argnames=("nodes",))
def _junction_tree_marginals(potentials, total, nodes):
    return marginal_oracles.message_passing_stable(potentials.expand(list(nodes)), total)


def _project(tables: list[tuple[tuple[str, ...], np.ndarray]], attrs: tuple[str, ...]) -> np.ndarray:
    """Marginal over ``attrs`` (axes in that order) from the smallest table that contains them."""
    source, values = min(((a, v) for a, v in tables if set(attrs) <= set(a)), key=lambda t: t[1].size)
    summed = values.sum(axis=tuple(i for i, a in enumerate(source) if a not in attrs))
    kept = [a for a in source if a in attrs]
    return np.transpose(summed, [kept.index(a) for a in attrs])


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
