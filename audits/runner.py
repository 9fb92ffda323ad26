"""Run the attacks of a tier, judge them against the policy and decide PASS/FAIL.

Tiers:

- ``quick``: distance (DCR share, NNDR, exact copies), membership (distance
  attack, DOMIAS) and re-identification (linkage, singling out, attribute
  inference).
- ``thorough``: ``quick`` plus the shadow-model attack and the canary
  epsilon audit; both refit the generator, so they need ``generator``
  (each refit costs a generator fit: timings in benchmarks/README.md,
  ``benchmarks/audit_speed.py``).

Every interval is computed at the policy's per-test level
(:meth:`Policy.test_confidence`: Bonferroni over the tier's tests by
default), so the report's intervals hold simultaneously at its confidence.

A ``max_seconds`` budget skips attacks predicted not to fit (prediction from
the all-pairs count of their nearest-neighbour searches times the throughput
measured so far, which absorbs the index's speed-up); skipped attacks are
reported with status ``not_run`` and, if required, fail the release. An
attack that has started runs to completion.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from audits.canary import canary_audit
from audits.data import AuditData
from audits.distance import dcr_membership_attack, dcr_share, exact_copy_rate, nndr
from audits.errors import AuditInputError
from audits.linkage import attribute_inference_attack, linkage_attack
from audits.membership import domias_attack
from audits.policy import TESTS, TIERS, Policy
from audits.results import AuditReport, AuditResult
from audits.shadow import shadow_model_attack
from audits.singling_out import singling_out_attack
from audits.spec import TableSpec


class GeneratorFactory(Protocol):
    """Any callable that fits a generator on ``df`` and returns ``n_rows`` synthetic rows, seeded."""

    def __call__(self, df: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame: ...


ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AttackEvent:
    """What ``run(on_test=...)`` hears about each attack: once as it starts, once as it ends.

    ``index`` counts from 0 over the ``total`` attacks of the tier. At
    ``end``, ``status`` is ``ok``, ``error`` (the attack raised; its results
    are error placeholders that fail the gate) or ``not_run`` (skipped by
    ``max_seconds``), ``seconds`` its wall time and ``error`` the exception's
    class name (never its message, which may quote data).
    """

    name: str
    index: int
    total: int
    phase: str  # "start" or "end"
    status: str | None = None
    seconds: float = 0.0
    error: str | None = None


AttackCallback = Callable[[AttackEvent], None]

_DEFAULT_SECONDS_PER_PAIR = 1.2e-8  # exact NN on Adult-like tables, 2 cores; refined while running


@dataclass
class _Attack:
    name: str  # the attack; it produces the results listed in ``produces``
    produces: tuple[str, ...]
    fn: Callable[[], list[AuditResult]]
    pairs: Callable[[], float]  # NN distance evaluations it will need (for the budget)


def _tpr_result(auc: AuditResult) -> AuditResult:
    """Split the TPR at 1% FPR of a membership attack into its own gated result."""
    d = auc.details
    lo, hi = d["tpr_at_fpr_0.01_ci"]
    return AuditResult(
        name=f"{auc.name}_tpr_1pct_fpr",
        family="membership",
        value=d["tpr_at_fpr_0.01"],
        ci_low=lo,
        ci_high=hi,
        direction="max",
        baseline=0.01,
        p_value=d["tpr_at_fpr_0.01_p_value"],
        details={
            "from": auc.name,
            "fpr": 0.01,
            "n_members": d["n_members"],
            "n_nonmembers": d["n_nonmembers"],
            "n_permutations": d["n_permutations"],
        },
    )


def run(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    spec: TableSpec | Mapping[str, Any] | None = None,
    policy: Policy | str | Path | None = None,
    tier: str | None = None,
    generator: GeneratorFactory | None = None,
    claimed_epsilon: float | None = None,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: ProgressCallback | bool | None = None,
    claimed_delta: float = 0.0,
    on_test: AttackCallback | None = None,
    units: Mapping[str, Any] | None = None,
) -> AuditReport:
    """Audit ``synthetic`` against ``train`` (members) and ``holdout`` (non-members).

    Parameters
    ----------
    spec:
        A :class:`TableSpec`, dpsynth's schema dict, or ``None`` to infer one from train + holdout.
    policy:
        A :class:`Policy`, a path to a TOML policy, or ``None`` for the default policy.
    tier:
        ``"quick"`` or ``"thorough"``; ``None`` runs the tier the policy requires. Running a lower
        tier than the policy requires reports the missing tests as not run, so the decision is FAIL.
    generator:
        ``fit_sample(df, n_rows, seed) -> DataFrame``, required by the thorough tier.
    claimed_epsilon, claimed_delta:
        The generator's privacy claim; the canary audit fails the release if its empirical lower
        bound exceeds ``claimed_epsilon``.
    max_seconds:
        Time budget; attacks predicted not to fit are reported as not run.
    progress:
        ``True`` for a rich progress bar, or a callback ``(attack_name, done, total)``.
    on_test:
        A callback given an :class:`AttackEvent` as each attack starts and ends (timings, failures),
        e.g. for a step log; it must not raise.
    units:
        Person-level audit: ``{"train": codes, "holdout": codes}``, one person code per row (a split by
        person). Membership and re-identification targets are then persons, scored by their most
        exposed row (:func:`audits.data.per_person`); ``None`` audits rows.
    """
    start = time.perf_counter()
    if on_test is not None and not callable(on_test):
        raise AuditInputError("on_test must be None or a callable taking an AttackEvent")
    policy, tier = _resolve_policy(policy, tier, generator, claimed_epsilon)
    spec = _resolve_spec(spec, policy, train, holdout)
    p = dict(policy.params)
    level = policy.test_confidence(tier)  # every interval at this level: simultaneous at policy.confidence
    data = AuditData(
        train,
        holdout,
        synthetic,
        spec,
        seed=seed,
        max_targets=p["max_targets"],
        max_queries=p["max_queries"],
        confidence=level,
        n_bootstrap=p["n_bootstrap"],
        units=None if units is None else dict(units),
    )
    attacks = _plan(data, policy, tier, generator, claimed_epsilon, claimed_delta)
    results = _execute(attacks, start, max_seconds, progress, on_test)
    judged = _judge(results, policy, tier, claimed_epsilon, level)
    return AuditReport(
        decision=policy.decide(judged),
        tier=tier,
        results=judged,
        seed=seed,
        seconds=time.perf_counter() - start,
        sizes=data.sizes(),
        policy=policy.to_dict(),
        claimed_epsilon=claimed_epsilon,
        confidence=policy.confidence,
        test_confidence=level,
    )


def _resolve_policy(
    policy: Policy | str | Path | None,
    tier: str | None,
    generator: GeneratorFactory | None,
    claimed_epsilon: float | None,
) -> tuple[Policy, str]:
    """The policy object and the tier to run; refuses a thorough tier without a generator."""
    if not isinstance(policy, Policy):
        policy = Policy.default() if policy is None else Policy.load(policy)
    tier = tier or policy.tier
    if tier not in TIERS:
        raise AuditInputError(f"tier must be one of {list(TIERS)}, got {tier!r}")
    if tier == "thorough" and generator is None:
        raise AuditInputError(
            "the 'thorough' tier refits the generator (shadow models, canaries): pass "
            "generator=fit_sample(df, n_rows, seed) -> DataFrame, or use tier='quick'"
        )
    if generator is not None and not callable(generator):
        raise AuditInputError("generator must be callable as generator(df, n_rows, seed)")
    if claimed_epsilon is not None and not claimed_epsilon >= 0:
        raise AuditInputError(f"claimed_epsilon must be >= 0, got {claimed_epsilon}")
    return policy, tier


def _resolve_spec(
    spec: TableSpec | Mapping[str, Any] | None, policy: Policy, train: pd.DataFrame, holdout: pd.DataFrame
) -> TableSpec:
    """The table spec with the policy's attacker roles; inferred from train + holdout when not given."""
    if isinstance(spec, Mapping):
        spec = TableSpec.from_schema_dict(spec)
    if spec is not None and (policy.quasi_identifiers or policy.secret):
        return spec.with_roles(policy.quasi_identifiers or None, policy.secret)
    if spec is None:
        return TableSpec.infer(
            pd.concat([train, holdout], ignore_index=True),
            quasi_identifiers=policy.quasi_identifiers,
            secret=policy.secret,
        )
    return spec


def _execute(
    attacks: list[_Attack],
    start: float,
    max_seconds: float | None,
    progress: ProgressCallback | bool | None,
    on_test: AttackCallback | None = None,
) -> list[AuditResult]:
    """Run the attacks in order; one predicted to overrun the time budget, or that raises, is a placeholder."""
    results: list[AuditResult] = []
    seconds_per_pair = _DEFAULT_SECONDS_PER_PAIR
    report_progress, close_progress = _progress(progress, len(attacks))
    tell = on_test or (lambda event: None)
    try:
        for i, attack in enumerate(attacks):
            report_progress(attack.name, i, len(attacks))
            tell(AttackEvent(attack.name, i, len(attacks), "start"))
            elapsed = time.perf_counter() - start
            predicted = attack.pairs() * seconds_per_pair
            if max_seconds is not None and elapsed + predicted > max_seconds:
                why = (
                    f"not run: time budget of {max_seconds:.0f} s ({elapsed:.1f} s used, ~{predicted:.1f} s predicted)"
                )
                results += [_placeholder(n, "not_run", why) for n in attack.produces]
                tell(AttackEvent(attack.name, i, len(attacks), "end", "not_run"))
                continue
            t0 = time.perf_counter()
            try:
                produced = attack.fn()
            except Exception as exc:  # an attack that breaks must fail the gate, not crash the release
                why = f"error: {type(exc).__name__}: {exc}"
                results += [_placeholder(n, "error", why, traceback.format_exc(limit=3)) for n in attack.produces]
                tell(
                    AttackEvent(
                        attack.name, i, len(attacks), "end", "error", time.perf_counter() - t0, type(exc).__name__
                    )
                )
                continue
            took = time.perf_counter() - t0
            tell(AttackEvent(attack.name, i, len(attacks), "end", "ok", took))
            for r in produced:
                r.seconds = r.seconds or took
            results += produced
            knn_pairs = attack.pairs()
            if knn_pairs > 1e7 and took > 0:
                seconds_per_pair = max(seconds_per_pair * 0.25, min(seconds_per_pair * 4, took / knn_pairs))
        report_progress("done", len(attacks), len(attacks))
    finally:
        close_progress()
    return results


def _judge(
    results: list[AuditResult], policy: Policy, tier: str, claimed_epsilon: float | None, level: float
) -> list[AuditResult]:
    """Every result judged by the policy, in the documented order; required tests this tier skips say why."""
    ran = {r.name for r in results}
    for name in policy.required_tests():
        if name not in ran:
            results.append(
                _placeholder(
                    name, "not_run", f"not run: the policy requires tier {policy.tier!r}, the audit ran tier {tier!r}"
                )
            )
    order = {name: i for i, name in enumerate(TESTS)}
    results.sort(key=lambda r: order.get(r.name, len(order)))  # stable, documented order
    return [policy.judge_result(r, claimed_epsilon, level=level) for r in results]


def _placeholder(name: str, status: str, message: str, trace: str | None = None) -> AuditResult:
    info = TESTS[name]
    details = {"traceback": trace} if trace else {}
    return AuditResult(
        name=name,
        family=info.family,
        value=None,
        direction=info.direction,
        status=status,
        message=message,
        details=details,
    )


def _plan(
    data: AuditData,
    policy: Policy,
    tier: str,
    generator: GeneratorFactory | None,
    claimed_epsilon: float | None,
    claimed_delta: float,
) -> list[_Attack]:
    wanted = set(policy.tests_for_tier(tier))
    p = policy.params
    n_t, n_h, n_s = data.size("train"), data.size("holdout"), data.size("synthetic")
    n_q, n_tg, n_b = data.size("synthetic_q"), data.size("members"), data.size("holdout_ref")
    n_link = min(p["linkage_targets"], n_t, n_h)
    n_inf = min(p["inference_targets"], n_t, n_h)
    plan = [
        _Attack("exact_copy_rate", ("exact_copy_rate",), lambda: [exact_copy_rate(data)], lambda: 0.0),
        _Attack("dcr_share", ("dcr_share",), lambda: [dcr_share(data)], lambda: n_q * (n_t + n_h) + n_b * n_t),
        _Attack("nndr_ratio", ("nndr_ratio",), lambda: [nndr(data)], lambda: 0.0),
        _Attack(
            "mia_distance",
            ("mia_distance", "mia_distance_tpr_1pct_fpr"),
            lambda: _with_tpr(dcr_membership_attack(data)),
            lambda: 2.0 * n_tg * n_s,
        ),
        _Attack(
            "mia_domias",
            ("mia_domias", "mia_domias_tpr_1pct_fpr"),
            lambda: _with_tpr(domias_attack(data)),
            lambda: min(n_h // 2, n_tg) * (2.0 * n_s + n_h),
        ),
        _Attack(
            "attribute_inference_risk",
            ("attribute_inference_risk",),
            lambda: [
                attribute_inference_attack(
                    data, n_attacks=p["inference_targets"], max_secrets=p["inference_max_secrets"]
                )
            ],
            lambda: 2.0 * n_inf * n_s * min(p["inference_max_secrets"], len(data.spec.names)) * 0.5,
        ),
        _Attack(
            "linkage_risk",
            ("linkage_risk",),
            lambda: [linkage_attack(data, n_attacks=p["linkage_targets"])],
            lambda: 4.0 * n_link * n_s,
        ),
        _Attack(
            "singling_out_risk",
            ("singling_out_risk",),
            lambda: [singling_out_attack(data, n_attacks=p["singling_out_predicates"])],
            lambda: 0.0,
        ),
    ]
    if tier == "thorough" and generator is not None:
        plan += [
            _Attack(
                "mia_shadow",
                ("mia_shadow",),
                lambda: [
                    shadow_model_attack(
                        data,
                        generator,
                        n_targets=p["shadow_targets"],
                        n_runs=p["shadow_runs"],
                        reference_rows=p["shadow_reference_rows"],
                    )
                ],
                lambda: 0.0,
            ),
            _Attack(
                "epsilon_lower_bound",
                ("epsilon_lower_bound",),
                lambda: [
                    canary_audit(
                        data,
                        generator,
                        n_canaries=p["canaries"],
                        reference_rows=p["canary_reference_rows"],
                        claimed_epsilon=claimed_epsilon,
                        delta=claimed_delta,
                    )
                ],
                lambda: 0.0,
            ),
        ]
    # An attack runs if any result it produces is wanted; unwanted by-products are dropped.
    kept = []
    for a in plan:
        if any(n in wanted for n in a.produces):
            fn = a.fn
            kept.append(
                _Attack(
                    a.name,
                    tuple(n for n in a.produces if n in wanted),
                    (lambda fn=fn: [r for r in fn() if r.name in wanted]),
                    a.pairs,
                )
            )
    return kept


def _with_tpr(auc: AuditResult) -> list[AuditResult]:
    return [auc, _tpr_result(auc)]


def _progress(
    progress: ProgressCallback | bool | None, total: int
) -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    if progress is None or progress is False:
        return (lambda name, done, total_: None), (lambda: None)
    if progress is True:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("audit", total=total)

        def update(name: str, done: int, total_: int) -> None:
            bar.update(task, completed=done, description=f"audit: {name}")

        return update, bar.stop
    if not callable(progress):
        raise AuditInputError("progress must be True, None or a callable (attack_name, done, total)")
    return progress, (lambda: None)
