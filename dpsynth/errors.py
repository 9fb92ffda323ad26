"""One exception family for every user-facing failure.

Each error carries the process exit code the CLI uses for it, so the mapping
"what went wrong" -> "what a pipeline sees" lives in one place:

* 0 released (or verified), 1 other error, 2 usage / bad input, 3 refused by
  the gate, 4 over budget, 5 awaiting approval (the gate passed under a policy
  that requires a reviewer's decision: ``dpsynth approve`` / ``reject``),
  6 verification failed (``dpsynth verify``: a file, signature or ledger
  record does not match the signed bundle).

Messages say what was wrong, where (column, row, option) and what to do.
"""

from __future__ import annotations


class DpsynthError(Exception):
    """Base class of all errors dpsynth raises on purpose.

    ``parameter`` names the library parameter at fault, when there is one, so
    a front end can name its own spelling of it (the CLI's ``--option``).
    """

    exit_code: int = 1

    def __init__(self, message: str = "", parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class UsageError(DpsynthError):
    """An option or parameter is out of its allowed range."""

    exit_code = 2


class SchemaError(DpsynthError):
    """The schema file is malformed, or is private-derived and not accepted."""

    exit_code = 2


class DataError(DpsynthError):
    """The input table does not match its schema (missing column, bad type...)."""

    exit_code = 2


class BudgetExceeded(DpsynthError):
    """A spend would take a dataset over its privacy-budget cap."""

    exit_code = 4


class LedgerError(DpsynthError):
    """The ledger is missing, malformed, or fails verification."""

    exit_code = 1


class GateFailed(DpsynthError):
    """The release gate refused the synthetic table."""

    exit_code = 3


EXIT_AWAITING_APPROVAL = 5
"""Exit code of a release that passed the gate and awaits a reviewer's decision (not an error)."""


class VerificationFailed(DpsynthError):
    """A release directory does not match its signed bundle, its signatures or the ledger."""

    exit_code = 6


class PrivacyAccountingError(DpsynthError):
    """A privacy cost could not be computed or calibrated."""

    exit_code = 1
