"""The PostgreSQL journal: many hosts, one database (``pip install runwright[postgres]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._exceptions import JournalError
from ._url import PgTarget, redact

if TYPE_CHECKING:
    from .._journal import Journal

__all__ = ["PgTarget", "open_postgres", "redact"]


async def open_postgres(
    url: str, *, schema: str | None, migrate: bool, reconnect_timeout: float
) -> Journal:
    target = PgTarget(url, schema)
    try:
        from ._journal import PostgresJournal
    except ImportError as exc:
        raise JournalError(
            f"{target.display}: a PostgreSQL journal needs psycopg; "
            f"install runwright[postgres] ({exc})"
        ) from None
    return await PostgresJournal.open(target, migrate=migrate, reconnect_timeout=reconnect_timeout)
