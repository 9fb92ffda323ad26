"""dpsynth: differentially private synthetic tables, a budget ledger, privacy attacks and a release gate.

Heavy dependencies (JAX for MST/AIM, torch for the DP-SGD generators) load
only when their generator is used: import generators from
``dpsynth.synthesizers.<name>`` or build them with
``dpsynth.synthesizers.make_synthesizer``.
"""

from dpsynth.errors import (
    BudgetExceeded,
    DataError,
    DpsynthError,
    GateFailed,
    LedgerError,
    PrivacyAccountingError,
    SchemaError,
    UsageError,
)
from dpsynth.schema import Column, Schema, draft_schema

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "Column",
    "DataError",
    "DpsynthError",
    "GateFailed",
    "LedgerError",
    "PrivacyAccountingError",
    "Schema",
    "SchemaError",
    "UsageError",
    "draft_schema",
    "__version__",
]
