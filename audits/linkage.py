"""Re-identification attacks: linkage and attribute inference (singling out: :mod:`audits.singling_out`).

References
----------
Giomi, Boenisch, Wehmeyer, Tasnádi 2023, "A Unified Framework for Quantifying
Privacy Risk in Synthetic Data" (PoPETs; the anonymeter library), which
operationalises the three criteria of the EU Article 29 Working Party's
Opinion 05/2014 on anonymisation techniques: singling out, linkability and
inference. Each attack is run against *train* targets (records the generator
saw) and *control* targets (holdout records it never saw); the reported risk
is ``(r_train - r_control) / (1 - r_control)`` with anonymeter's Wilson-based
error propagation (:func:`audits.stats.normalised_risk`). Train targets and
control targets are always equal in number, and for singling out the train
set a predicate is checked against is subsampled to the holdout's size, so an
honest generator scores 0 in expectation.

Attacker knowledge: the declared quasi-identifiers (QIs) and secret of the
spec (or of the policy). Without QIs the documented defaults below still run,
so this family is never silently skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from audits.data import AuditData, per_person
from audits.embedding import Encoded, MixedEncoder
from audits.errors import AuditInputError
from audits.results import AuditResult
from audits.spec import category_labels, numeric_values
from audits.stats import Risk, bonferroni_confidence, normalised_risk

NUMERIC_TOLERANCE = 0.05  # attribute inference: a numeric guess within 5% of the column's range is a success


def _risk_details(risk: Risk) -> dict[str, object]:
    return {
        "success_rate_train": risk.attack.successes / risk.attack.n,
        "success_rate_control": risk.control.successes / risk.control.n,
        "successes_train": risk.attack.successes,
        "successes_control": risk.control.successes,
        "n_train_attacks": risk.attack.n,
        "n_control_attacks": risk.control.n,
        "anonymeter_error": risk.anonymeter_error,
    }


def _targets(data: AuditData, n_attacks: int, stream: str) -> tuple[np.ndarray, np.ndarray]:
    """Equal numbers of train and control (holdout) target rows; person-level: every row of as many persons."""
    if data.person_level:
        persons = min(n_attacks, *(len(np.unique(data.groups(p))) for p in ("train", "holdout")))
        return data.person_rows("train", persons, stream + "-train"), data.person_rows("holdout", persons, stream)
    n = min(n_attacks, data.size("train"), data.size("holdout"))
    rng = data.rng(stream)
    return (
        np.sort(rng.choice(data.size("train"), n, replace=False)),
        np.sort(rng.choice(data.size("holdout"), n, replace=False)),
    )


def _successes(
    data: AuditData, success: np.ndarray, train_idx: np.ndarray, control_idx: np.ndarray
) -> tuple[int, int, int, int]:
    """``(train successes, train targets, control successes, control targets)``; a person succeeds if any row does."""
    n_tr = len(train_idx)
    on_train = per_person(success[:n_tr], None if not data.person_level else data.groups("train")[train_idx])
    on_control = per_person(success[n_tr:], None if not data.person_level else data.groups("holdout")[control_idx])
    return int(on_train.sum()), len(on_train), int(on_control.sum()), len(on_control)


def _sub_encoder(data: AuditData, columns: Sequence[str]) -> MixedEncoder:
    return data.encoder.restricted(columns)


def _encoded_targets(data: AuditData, train_idx: np.ndarray, control_idx: np.ndarray) -> Encoded:
    """Train targets then control targets, in the audit's encoding."""
    return Encoded.concat([data.encoded_rows("train", train_idx), data.encoded_rows("holdout", control_idx)])


# ---------------------------------------------------------------------------- linkage
def linkage_attack(
    data: AuditData, quasi_identifiers: Sequence[str] | None = None, n_attacks: int = 2000, n_neighbors: int = 1
) -> AuditResult:
    """Linkability: can the synthetic table link two pieces of information about one person?

    The attacker holds, for each target, the QIs (source A) and the remaining
    columns (source B), e.g. from two different databases. They look up the
    ``n_neighbors`` nearest synthetic rows on A and on B; the link succeeds if
    the two lookups share a synthetic row (anonymeter's ``LinkabilityEvaluator``).
    Without declared QIs, the columns are split into two random halves.
    Ties between equally near synthetic rows are broken by one random order.
    """
    start = time.perf_counter()
    qis = list(quasi_identifiers if quasi_identifiers is not None else data.spec.quasi_identifiers)
    names = data.spec.names
    if len(names) < 2:
        raise AuditInputError("linkage needs at least 2 columns")
    rng = data.rng("linkage")
    if qis:
        cols_a = qis
        cols_b = [c for c in names if c not in qis]
        split = "quasi-identifiers vs other columns"
        if not cols_b:
            raise AuditInputError("linkage: every column is a quasi-identifier, nothing is left to link to")
    else:
        perm = list(rng.permutation(names))
        half = len(perm) // 2
        cols_a, cols_b = sorted(perm[:half], key=names.index), sorted(perm[half:], key=names.index)
        split = "random halves (no quasi-identifiers declared)"
    train_idx, control_idx = _targets(data, n_attacks, "linkage-targets")
    syn_order = rng.permutation(data.size("synthetic"))  # random tie-breaking
    synthetic = data.encoded("synthetic")  # searched in syn_order: each half projected and permuted at once
    k = min(n_neighbors, len(synthetic))
    enc_a, enc_b = _sub_encoder(data, cols_a), _sub_encoder(data, cols_b)
    targets = _encoded_targets(data, train_idx, control_idx)
    _, ia = enc_a.knn(enc_a.project(targets), enc_a.index(enc_a.project(synthetic, syn_order)), k=k)
    _, ib = enc_b.knn(enc_b.project(targets), enc_b.index(enc_b.project(synthetic, syn_order)), k=k)
    linked = (ia[:, :, None] == ib[:, None, :]).any(axis=(1, 2))  # the two lookups share a synthetic row
    risk = normalised_risk(*_successes(data, linked, train_idx, control_idx), data.confidence)
    details = _risk_details(risk)
    details.update({"columns_a": cols_a, "columns_b": cols_b, "split": split, "n_neighbors": k})
    return AuditResult(
        name="linkage_risk",
        family="reidentification",
        value=risk.value,
        ci_low=risk.ci_low,
        ci_high=risk.ci_high,
        direction="max",
        baseline=0.0,
        details=details,
        seconds=time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------- attribute inference
def attribute_inference_attack(
    data: AuditData,
    quasi_identifiers: Sequence[str] | None = None,
    secret: str | None = None,
    n_attacks: int = 2000,
    max_secrets: int = 6,
) -> AuditResult:
    """Attribute inference: guess a target's secret column from its QIs via the nearest synthetic row.

    A categorical guess succeeds when it equals the target's value (missing
    equals missing), a numeric one when it is within 5% of the column's
    range. Which columns are secret, and what the attacker knows:

    - QIs and secret declared: the secret, from the QIs;
    - QIs only: each non-QI column in turn (at most ``max_secrets``, drawn at random), from the QIs;
    - nothing declared: each column in turn (at most ``max_secrets``), from all the other columns.

    The value is the highest risk over the secrets tried (the attacker picks
    the column that leaks most); every secret's risk is in ``details``.

    Reporting the worst of ``k`` secrets is a multiple comparison: with four
    secrets and 300 targets per side, the largest of four noisy zeros
    exceeds 0.1 about a third of the time. Each secret's interval is
    therefore computed at the Bonferroni-corrected confidence
    ``1 - (1 - confidence) / k``, so the ``k`` intervals hold simultaneously
    at ``confidence``, and the result's interval is ``[max_j low_j, max_j
    high_j]``: an interval at ``confidence`` for the risk of the most exposed
    secret (if every ``R_j`` is in its interval, ``max_j R_j`` is in this
    one). Its lower limit exceeds 0 only if some secret's own corrected
    lower limit does.
    """
    start = time.perf_counter()
    names = data.spec.names
    qis = list(quasi_identifiers if quasi_identifiers is not None else data.spec.quasi_identifiers)
    secret = secret if secret is not None else data.spec.secret
    rng = data.rng("inference")
    if qis and secret:
        plan = [(secret, [q for q in qis if q != secret])]
        mode = "declared secret from quasi-identifiers"
    elif qis:
        candidates = [c for c in names if c not in qis]
        chosen = _pick(candidates, max_secrets, rng)
        plan = [(s, qis) for s in chosen]
        mode = "each non-QI column from the quasi-identifiers"
    else:
        chosen = _pick(names, max_secrets, rng)
        plan = [(s, [c for c in names if c != s]) for s in chosen]
        mode = "each column from all other columns (no quasi-identifiers declared)"
    plan = [(s, aux) for s, aux in plan if aux]
    if not plan:
        raise AuditInputError("attribute inference needs at least one auxiliary column besides the secret")
    train_idx, control_idx = _targets(data, n_attacks, "inference-targets")
    syn_order = rng.permutation(data.size("synthetic"))
    synthetic = data.encoded("synthetic")  # searched in syn_order (projected and permuted at once, per secret)
    targets = _encoded_targets(data, train_idx, control_idx)
    real_targets = {"train": data.rows("train", train_idx), "holdout": data.rows("holdout", control_idx)}
    per_secret: dict[str, dict[str, object]] = {}
    best: tuple[Risk, str] | None = None
    k = len(plan)
    per_confidence = bonferroni_confidence(data.confidence, k)
    lows, highs = [], []
    for secret_col, aux in plan:
        enc = _sub_encoder(data, aux)
        _, nn = enc.knn(enc.project(targets), enc.index(enc.project(synthetic, syn_order)), k=1)
        guesses = data.frames["synthetic"][secret_col].iloc[syn_order[nn[:, 0]]]
        truth = pd.concat([real_targets["train"][secret_col], real_targets["holdout"][secret_col]])
        correct = _correct(guesses, truth, data, secret_col)
        risk = normalised_risk(*_successes(data, np.asarray(correct), train_idx, control_idx), per_confidence)
        per_secret[secret_col] = {
            "risk": risk.value,
            "ci": [risk.ci_low, risk.ci_high],
            "auxiliary": aux,
            **_risk_details(risk),
        }
        lows.append(risk.ci_low)
        highs.append(risk.ci_high)
        if best is None or risk.value > best[0].value:
            best = (risk, secret_col)
    assert best is not None
    risk, worst = best
    return AuditResult(
        name="attribute_inference_risk",
        family="reidentification",
        value=risk.value,
        ci_low=max(lows),
        ci_high=max(highs),
        direction="max",
        baseline=0.0,
        details={
            "mode": mode,
            "worst_secret": worst,
            "per_secret": per_secret,
            **_risk_details(risk),
            "n_secrets": k,
            "correction": "bonferroni",
            "per_secret_confidence": per_confidence,
            "numeric_tolerance_of_range": NUMERIC_TOLERANCE,
        },
        seconds=time.perf_counter() - start,
    )


def _pick(columns: Sequence[str], cap: int, rng: np.random.Generator) -> list[str]:
    if len(columns) <= cap:
        return list(columns)
    chosen = set(rng.choice(len(columns), size=cap, replace=False).tolist())
    return [c for i, c in enumerate(columns) if i in chosen]


def _correct(guesses: pd.Series, truth: pd.Series, data: AuditData, column: str) -> np.ndarray:
    col = data.spec.column(column)
    if col.kind == "numeric":
        g, t = numeric_values(guesses, col), numeric_values(truth, col)
        both_missing = np.isnan(g) & np.isnan(t)
        with np.errstate(invalid="ignore"):
            close = np.abs(g - t) <= NUMERIC_TOLERANCE * col.span
        return both_missing | close
    return category_labels(guesses) == category_labels(truth)
