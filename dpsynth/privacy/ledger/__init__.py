"""The persistent privacy-budget ledger: caps per dataset, atomic spends, a hash chain.

:mod:`~dpsynth.privacy.ledger.records` holds what a ledger stores and how a
chain is checked, whatever the storage; :mod:`~dpsynth.privacy.ledger.sqlite`
keeps it in one SQLite file (the embedded default) and
:mod:`~dpsynth.privacy.ledger.postgres` in a PostgreSQL schema shared by
several machines, with roles the database enforces.
:func:`~dpsynth.privacy.ledger.location.open_ledger` picks the storage from
the location (path or ``postgresql://`` URL). See docs/ledger.md.
"""

from dpsynth.privacy.ledger.location import AnyLedger, init_ledger, is_url, open_ledger
from dpsynth.privacy.ledger.records import (
    _COLUMNS,
    DECISIONS,
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
from dpsynth.privacy.ledger.sqlite import DEFAULT_TIMEOUT, Ledger

__all__ = [
    "_COLUMNS",
    "_entry_hash",
    "DECISIONS",
    "DEFAULT_TIMEOUT",
    "FINAL_STATUSES",
    "GENESIS_HASH",
    "LEDGER_FORMAT",
    "LEDGER_VERSION",
    "STATUSES",
    "AnyLedger",
    "DatasetBudget",
    "Ledger",
    "LedgerEntry",
    "VerifyResult",
    "init_ledger",
    "is_url",
    "open_ledger",
]
