"""The PostgreSQL journal: many hosts, one database (``pip install runwright[postgres]``).

Everything that needs psycopg is imported only when a PostgreSQL journal is
opened, so the package imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._exceptions import JournalError
from ._url import PgTarget, hide_password, redact

if TYPE_CHECKING:
    from .._journal import Journal
    from ._connection import Conn

__all__ = [
    "PgTarget",
    "connect_read_only",
    "hide_password",
    "migrate",
    "open_postgres",
    "redact",
    "vacuum",
]


async def open_postgres(
    url: str, *, schema: str | None, migrate: bool, reconnect_timeout: float
) -> Journal:
    target = PgTarget(url, schema)
    try:
        from ._journal import PostgresJournal
    except ImportError as exc:
        raise _needs_psycopg(target, exc) from None
    return await PostgresJournal.open(target, migrate=migrate, reconnect_timeout=reconnect_timeout)


def connect_read_only(url: str, schema: str | None = None) -> Conn:
    """A read-only connection to the journal at *url* (for inspection), speaking the
    shared queries' SQL; its ``raw`` psycopg connection is the caller's to close.

    Raises ValueError for a bad schema name (before connecting), JournalError
    if the server cannot be reached or the schema holds no journal, and
    SchemaVersionError if the journal is newer than this runwright.
    """
    target = PgTarget(url, schema)
    try:
        from ._inspect import open_read_only
    except ImportError as exc:
        raise _needs_psycopg(target, exc) from None
    return open_read_only(target)


def migrate(url: str, schema: str | None = None) -> tuple[int, int]:
    """Create the journal at *url*, or upgrade it to this runwright's schema version;
    return its version before (0: there was none) and after."""
    target = PgTarget(url, schema)
    try:
        from ._inspect import migrate_schema
    except ImportError as exc:
        raise _needs_psycopg(target, exc) from None
    return migrate_schema(target)


def vacuum(url: str, schema: str | None = None) -> tuple[int, int]:
    """VACUUM the journal's tables at *url*; return their size in bytes before and after."""
    target = PgTarget(url, schema)
    try:
        from ._inspect import vacuum_schema
    except ImportError as exc:
        raise _needs_psycopg(target, exc) from None
    return vacuum_schema(target)


def _needs_psycopg(target: PgTarget, exc: ImportError) -> JournalError:
    return JournalError(
        f"{target.display}: a PostgreSQL journal needs psycopg; install runwright[postgres] ({exc})"
    )
