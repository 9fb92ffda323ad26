"""One ledger API over two storages: a file path opens SQLite, a ``postgresql://`` URL opens PostgreSQL.

Everything that accepts a ledger (``dpsynth release --ledger``, ``dpsynth
budget init/show/verify``) goes through :func:`open_ledger` or
:func:`init_ledger`, so a path and a URL work alike. The PostgreSQL module
(and psycopg) is imported only when a URL is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

from dpsynth.privacy.ledger.records import DEFAULT_TIMEOUT
from dpsynth.privacy.ledger.sqlite import Ledger
from dpsynth.privacy.ledger.sqlite import init_ledger as _init_sqlite

if TYPE_CHECKING:
    from dpsynth.privacy.ledger.postgres import PostgresLedger

AnyLedger = Union[Ledger, "PostgresLedger"]
Location = Union[str, "os.PathLike[str]"]


def is_url(location: Location) -> bool:
    """Whether ``location`` is a PostgreSQL URL (``postgresql://`` or ``postgres://``) rather than a path."""
    text = os.fspath(location)
    return "://" in text and text.split("://", 1)[0].lower() in ("postgresql", "postgres")


def open_ledger(location: Location, timeout: float = DEFAULT_TIMEOUT) -> AnyLedger:
    """The existing ledger at ``location``: a SQLite file, or a PostgreSQL schema named by URL."""
    if is_url(location):
        from dpsynth.privacy.ledger.postgres import PostgresLedger

        return PostgresLedger(os.fspath(location), timeout=timeout)
    return Ledger(Path(location), timeout=timeout)


def init_ledger(
    location: Location,
    dataset_id: str,
    epsilon_cap: float,
    delta_cap: float,
    timeout: float = DEFAULT_TIMEOUT,
    roles_prefix: str | None = None,
) -> AnyLedger:
    """``dpsynth budget init``: create the ledger with this dataset, or add the dataset to an existing one.

    For a URL, an absent schema is installed first with the roles
    ``<roles_prefix>_admin/_operator/_approver`` (default prefix ``dpsynth``),
    and only the admin role may add a dataset. ``roles_prefix`` has no
    meaning for a SQLite file (file permissions are its only access control).
    """
    if is_url(location):
        from dpsynth.privacy.ledger.postgres import DEFAULT_ROLES_PREFIX, init_postgres_ledger

        return init_postgres_ledger(
            os.fspath(location),
            dataset_id,
            epsilon_cap,
            delta_cap,
            roles_prefix=roles_prefix or DEFAULT_ROLES_PREFIX,
            timeout=timeout,
        )
    if roles_prefix is not None:
        from dpsynth.errors import UsageError

        raise UsageError(
            f"roles prefix applies to a PostgreSQL ledger (postgresql:// URL) only, not to a ledger file {location}",
            parameter="roles_prefix",
        )
    return _init_sqlite(location, dataset_id, epsilon_cap, delta_cap, timeout=timeout)
