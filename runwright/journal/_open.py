"""Which backend a journal address picks: a ``postgresql://`` URL, else an SQLite path."""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import TYPE_CHECKING

from ._journal import Journal

if TYPE_CHECKING:
    from .sqlite import Synchronous

__all__ = [
    "describe",
    "driver_error_text",
    "driver_errors",
    "is_postgres_url",
    "open_journal",
]

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: str | os.PathLike[str]) -> bool:
    return isinstance(target, str) and target.startswith(_SCHEMES)


def describe(target: str | os.PathLike[str], schema: str | None = None) -> str:
    """How to name *target* in a message: a path as it is, a URL without its password."""
    if is_postgres_url(target):
        from .postgres._url import PgTarget

        try:
            return PgTarget(str(target), schema).display
        except ValueError:
            from .postgres._url import redact

            return redact(str(target))
    return os.fspath(target)


async def open_journal(
    target: str | os.PathLike[str],
    *,
    synchronous: Synchronous = "FULL",
    busy_timeout: float = 5.0,
    schema: str | None = None,
    migrate: bool = True,
    reconnect_timeout: float = 30.0,
) -> Journal:
    """Open the journal at *target*: an SQLite file path or a PostgreSQL URL.

    *synchronous* and *busy_timeout* are SQLite's; *schema*, *migrate* and
    *reconnect_timeout* are PostgreSQL's (see :class:`runwright.Runtime`).
    """
    if is_postgres_url(target):
        from .postgres import open_postgres

        return await open_postgres(
            str(target), schema=schema, migrate=migrate, reconnect_timeout=reconnect_timeout
        )
    if schema is not None:
        raise ValueError("schema= is for a PostgreSQL journal; an SQLite file has no schemas")
    from .sqlite import SqliteJournal

    return await SqliteJournal.open(target, synchronous=synchronous, busy_timeout=busy_timeout)


def driver_errors() -> tuple[type[Exception], ...]:
    """The database drivers' own errors (psycopg's only if it was loaded)."""
    errors: list[type[Exception]] = [sqlite3.Error]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        errors.append(psycopg.Error)
    return tuple(errors)


def driver_error_text(exc: BaseException) -> str:
    """What to show of a driver's error: SQLite's whole message, PostgreSQL's first line."""
    if isinstance(exc, sqlite3.Error):
        return str(exc)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
