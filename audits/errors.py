"""Exceptions raised by the audit harness.

``audits`` imports nothing from ``dpsynth`` (it must audit tables made by any
tool), so it has its own small family. Every message says what was wrong,
where, and what to do; callers such as the dpsynth CLI map them to exit codes.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error raised by ``audits``."""


class SpecError(AuditError, ValueError):
    """The table description (schema dict or inferred spec) is invalid or does not fit the data."""


class PolicyError(AuditError, ValueError):
    """The policy file is unreadable, has an unknown key or a value of the wrong type or range."""


class AuditInputError(AuditError, ValueError):
    """The tables or arguments handed to an attack cannot be audited as given."""
