"""Policy profiles: shipped gate policies a reviewer recognises, and the release rules they set.

A profile is an ordinary gate policy (audits' TOML, merged over
``audits/default_policy.toml``) shipped in ``dpsynth/data/profiles/NAME.toml``
and named on the command line (``--policy hipaa-expert-determination``);
anything that is not a shipped name is read as a path. Two tables are
dpsynth's, which ``audits.Policy`` keeps as given without reading them:

``[release]``
    what the release step enforces before any budget is reserved:
    ``approval_required`` (a reviewer decides, exit 5), ``max_epsilon`` (the
    per-release epsilon ceiling), ``max_delta_n`` (a ceiling on delta times
    the source table's row count) and ``required_tier`` (the lowest audit
    tier the release may run). A request over a ceiling is refused with a
    ``UsageError`` naming the key and the profile (exit 2), nothing spent.
``[profile]``
    what the profile means, in words, for the reviewer and the report: name,
    title, disclaimer, summary, assumptions, residual risk, and criteria,
    each mapped to the audit tests (``audits.policy.TESTS``) that provide
    its evidence, with rationale and sources.

A profile is an aid to the reviewer, not legal advice; every shipped profile
says so in its disclaimer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import audits
from audits.errors import PolicyError
from audits.policy import TESTS, TIERS
from dpsynth.errors import UsageError

PROFILE_DIR = "data/profiles"
_PROFILE_TEXT = ("name", "title", "disclaimer", "summary")
_PROFILE_LISTS = ("assumptions", "residual_risk")
_CRITERION_TEXT = ("id", "title", "question", "rationale")
_CRITERION_LISTS = ("tests", "sources")


def profile_names() -> list[str]:
    """Names of the shipped profiles, sorted."""
    folder = resources.files("dpsynth").joinpath(PROFILE_DIR)
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def profile_path(name: str) -> Path:
    """The shipped file of profile ``name``; ``UsageError`` listing the profiles when there is none."""
    if name not in profile_names():
        raise UsageError(f"no shipped policy profile {name!r}; shipped profiles: {', '.join(profile_names())}")
    return Path(str(resources.files("dpsynth").joinpath(PROFILE_DIR, f"{name}.toml")))


@dataclass(frozen=True)
class LoadedPolicy:
    """A gate policy with what dpsynth reads from it: release rules, profile table, where it came from."""

    policy: audits.Policy
    rules: ReleaseRules
    profile: dict[str, Any] | None
    name: str | None  # the [profile] name, None for a policy without one
    path: Path | None  # None: the built-in default policy
    sha256: str | None

    @property
    def label(self) -> str:
        """How messages name the policy: ``profile 'NAME'`` or the file."""
        if self.name is not None:
            return f"profile {self.name!r}"
        return f"policy {self.path}" if self.path is not None else "the default policy"

    def record(self, tier: str) -> dict[str, Any]:
        """``manifest.json``'s ``policy``: source, profile name and table, release rules, tier run."""
        return {
            "source": str(self.path) if self.path is not None else "<default>",
            "sha256": self.sha256,
            "name": self.name,
            "profile": self.profile,
            "release": dict(self.policy.release),
            "tier": tier,
        }


def load_policy(policy: str | Path | None) -> LoadedPolicy:
    """Resolve ``--policy``: a shipped profile name, else a TOML path, else (None) the default policy.

    Every problem is a ``UsageError`` (exit 2) naming the file and key: an
    unknown name that is not a file lists the shipped profiles.
    """
    if policy is None:
        parsed, path = audits.Policy.default(), None
    else:
        text = str(policy)
        path = profile_path(text) if text in profile_names() else Path(text)
        if path.suffix != ".toml" and not path.exists() and "/" not in text:
            raise UsageError(
                f"--policy {text!r} is neither a shipped profile nor a policy file; shipped profiles: "
                f"{', '.join(profile_names())} (`dpsynth policy list`)",
                parameter="policy",
            )
        try:
            parsed = audits.Policy.load(path)
        except PolicyError as exc:
            raise UsageError(str(exc), parameter="policy") from None
    rules = release_rules(parsed.release, parsed.source)
    table = parse_profile(parsed.profile, parsed)
    if rules.required_tier is not None and TIERS.index(parsed.tier) < TIERS.index(rules.required_tier):
        raise UsageError(
            f"{parsed.source}: 'release.required_tier' is {rules.required_tier!r} but the policy's tier is "
            f"{parsed.tier!r}: set tier = {rules.required_tier!r} so that a release runs it by default"
        )
    if table is not None and table["name"] in profile_names() and not _is_shipped(path, table["name"]):
        raise UsageError(
            f"{parsed.source}: 'profile.name' is {table['name']!r}, the name of a shipped profile, but this file is "
            f"not it: a changed copy must say so in its name (e.g. {table['name'] + '-custom'!r})"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    return LoadedPolicy(
        parsed, rules, table, table["name"] if table else None, path.resolve() if path else None, digest
    )


def _is_shipped(path: Path | None, name: str) -> bool:
    """Whether ``path`` holds exactly the shipped profile ``name`` (by name or by a path to the same bytes)."""
    return path is not None and path.read_bytes() == profile_path(name).read_bytes()


# -- [release] -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReleaseRules:
    """The validated ``[release]`` table; every field optional (None / False: no rule)."""

    approval_required: bool = False
    max_epsilon: float | None = None
    max_delta_n: float | None = None
    required_tier: str | None = None

    def check_request(self, epsilon: float, tier: str, label: str) -> None:
        """Refuse (``UsageError``) an epsilon over the ceiling or a tier below the required one."""
        if self.max_epsilon is not None and epsilon > self.max_epsilon:
            raise UsageError(
                f"--epsilon {epsilon:g} is over the per-release ceiling release.max_epsilon = {self.max_epsilon:g} "
                f"of {label}: release with a smaller epsilon, or under another policy",
                parameter="epsilon",
            )
        if self.required_tier is not None and TIERS.index(tier) < TIERS.index(self.required_tier):
            raise UsageError(
                f"--tier {tier} is below release.required_tier = {self.required_tier!r} of {label}: "
                f"run the {self.required_tier} audit (leave --tier out, or pass --tier {self.required_tier})",
                parameter="tier",
            )

    def check_delta(self, delta: float, n_rows: int, label: str) -> None:
        """Refuse (``UsageError``) a delta whose product with the source table's row count is over the ceiling.

        A mechanism that publishes each record whole with probability delta is
        (0, delta)-DP and publishes delta * n records on average, so what a
        delta permits depends on n and the ceiling is relative to it. The source table's count is used
        (not the training rows'): the guarantee is stated for the source table,
        and its count is the larger, so the rule is the stricter.
        """
        if self.max_delta_n is not None and delta * n_rows > self.max_delta_n:
            raise UsageError(
                f"--delta {delta:g} times the table's {n_rows} rows is {delta * n_rows:.3g}, over "
                f"release.max_delta_n = {self.max_delta_n:g} of {label}: use --delta at most "
                f"{self.max_delta_n / n_rows:.2g}",
                parameter="delta",
            )


def _positive(value: Any, key: str, source: str, upper: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (upper is not None and value > upper):
        bound = f" and at most {upper:g}" if upper is not None else ""
        raise UsageError(f"{source}: 'release.{key}' must be a number above 0{bound}, got {value!r}")
    return float(value)


def release_rules(release: Mapping[str, Any], source: str = "<policy>") -> ReleaseRules:
    """Validate a policy's ``[release]`` table; ``UsageError`` naming any unknown key or bad value."""
    allowed = ("approval_required", "max_epsilon", "max_delta_n", "required_tier")
    for key in release:
        if key not in allowed:
            raise UsageError(f"{source}: unknown key 'release.{key}'; allowed: {sorted(allowed)}")
    approval = release.get("approval_required", False)
    if not isinstance(approval, bool):
        raise UsageError(f"{source}: 'release.approval_required' must be true or false, got {approval!r}")
    tier = release.get("required_tier")
    if tier is not None and tier not in TIERS:
        raise UsageError(f"{source}: 'release.required_tier' must be one of {list(TIERS)}, got {tier!r}")
    return ReleaseRules(
        approval_required=approval,
        max_epsilon=_positive(release["max_epsilon"], "max_epsilon", source) if "max_epsilon" in release else None,
        max_delta_n=_positive(release["max_delta_n"], "max_delta_n", source, 1.0) if "max_delta_n" in release else None,
        required_tier=tier,
    )


# -- [profile] -------------------------------------------------------------------------------------
def _text(table: Mapping[str, Any], key: str, where: str, source: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{source}: '{where}.{key}' must be a non-empty string, got {value!r}")
    return value


def _texts(table: Mapping[str, Any], key: str, where: str, source: str) -> list[str]:
    value = table.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise UsageError(f"{source}: '{where}.{key}' must be a non-empty list of non-empty strings, got {value!r}")
    return list(value)


def _only(table: Mapping[str, Any], allowed: tuple[str, ...], where: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            raise UsageError(f"{source}: unknown key '{where}.{key}'; allowed: {sorted(allowed)}")


def parse_profile(raw: Any, policy: audits.Policy) -> dict[str, Any] | None:
    """Validate a policy's ``[profile]`` table (None: the policy has none); ``UsageError`` naming the key.

    Each criterion's tests must be known (``audits.policy.TESTS``), enabled,
    and run by the policy's tier: a criterion must not cite evidence the
    profile's own audit never produces.
    """
    if raw is None or raw == {}:
        return None
    source = policy.source
    if not isinstance(raw, Mapping):
        raise UsageError(f"{source}: 'profile' must be a table, got {raw!r}")
    _only(raw, (*_PROFILE_TEXT, *_PROFILE_LISTS, "criteria"), "profile", source)
    out: dict[str, Any] = {key: _text(raw, key, "profile", source) for key in _PROFILE_TEXT}
    out.update({key: _texts(raw, key, "profile", source) for key in _PROFILE_LISTS})
    criteria = raw.get("criteria")
    if not isinstance(criteria, list) or not criteria:
        raise UsageError(f"{source}: 'profile.criteria' must be a non-empty array of tables ([[profile.criteria]])")
    run = set(policy.tests_for_tier(policy.tier))
    out["criteria"] = []
    for i, criterion in enumerate(criteria):
        where = f"profile.criteria[{i}]"
        if not isinstance(criterion, Mapping):
            raise UsageError(f"{source}: '{where}' must be a table, got {criterion!r}")
        _only(criterion, (*_CRITERION_TEXT, *_CRITERION_LISTS), where, source)
        parsed = {key: _text(criterion, key, where, source) for key in _CRITERION_TEXT}
        parsed.update({key: _texts(criterion, key, where, source) for key in _CRITERION_LISTS})
        for test in parsed["tests"]:
            if test not in TESTS:
                raise UsageError(f"{source}: '{where}.tests' names {test!r}, not a test; known: {sorted(TESTS)}")
            if test not in run:
                raise UsageError(
                    f"{source}: '{where}.tests' names {test!r}, which the policy's {policy.tier} tier does not run "
                    "(disabled, or a thorough-tier test)"
                )
        out["criteria"].append(parsed)
    return out


__all__ = ["LoadedPolicy", "ReleaseRules", "load_policy", "parse_profile", "profile_names", "release_rules"]
