"""The persistent privacy-budget ledger: caps per dataset, atomic spends, a hash chain.

:mod:`~dpsynth.privacy.ledger.records` holds what a ledger stores and how a
chain is checked, whatever the storage; :mod:`~dpsynth.privacy.ledger.sqlite`
keeps it in one SQLite file (the embedded default). See docs/ledger.md.
"""

from dpsynth.privacy.ledger.records import (
    _COLUMNS,
    FINAL_STATUSES,
    GENESIS_HASH,
    LEDGER_FORMAT,
    LEDGER_VERSION,
    STATUSES,
    DatasetBudget,
    LedgerEntry,
    VerifyResult,
    _entry_hash,
)
from dpsynth.privacy.ledger.sqlite import DEFAULT_TIMEOUT, Ledger, init_ledger

__all__ = ["_COLUMNS", "_entry_hash", "DEFAULT_TIMEOUT", "FINAL_STATUSES", "GENESIS_HASH", "LEDGER_FORMAT", "LEDGER_VERSION", "STATUSES",
           "DatasetBudget", "Ledger", "LedgerEntry", "VerifyResult", "init_ledger"]
