"""A PostgreSQL journal opened outside a runtime: read-only to inspect it, or to migrate it.

The command line reads a journal while runtimes write it. Its connection is
a session whose every transaction is read-only
(``default_transaction_read_only``), with ``search_path`` set to the
journal's schema, behind the adapter that speaks the shared queries' SQL
(``Conn``). It is refused unless the schema holds a journal of a version
this runwright reads, so a typo in a schema name is an error, not an empty
journal.

The schema name was validated when the URL was parsed (``PgTarget``), before
anything is sent. A driver's error can quote the connection string (libpq
names a token it cannot parse), so every message made here has the URL's
password hidden.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ..._exceptions import JournalError, SchemaVersionError
from . import hide_password
from ._connection import Conn
from ._schema import SCHEMA_VERSION, ensure_schema, schema_version
from ._url import PgTarget

__all__ = ["CONNECT_TIMEOUT", "migrate_schema", "open_read_only", "vacuum_schema"]

#: Seconds to wait for the server before calling it unreachable.
CONNECT_TIMEOUT = 10


def open_read_only(target: PgTarget) -> Conn:
    """A read-only connection to the journal at *target*, its search_path set."""
    conn = _connect(target)
    try:
        conn.execute("SET default_transaction_read_only = on")
        version = schema_version(conn, target.schema)
        if version is None:
            raise JournalError(
                f"{target.display} holds no runwright journal; "
                "create it with `runwright db migrate`"
            )
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{target.display} has journal schema version {version}, newer than this "
                f"runwright understands ({SCHEMA_VERSION}); upgrade runwright"
            )
        conn.execute(f'SET search_path TO "{target.schema}"')
    except psycopg.Error as exc:
        conn.close()
        raise _translate(exc, target) from None
    except BaseException:
        conn.close()
        raise
    return Conn(conn)


def migrate_schema(target: PgTarget) -> tuple[int, int]:
    """Create or upgrade the journal at *target*, as a runtime that opens it does; return
    the version it had (0: none) and the one it has now."""
    conn = _connect(target)
    try:
        before = ensure_schema(conn, target.schema, target.display, migrate=True)
        after = schema_version(conn, target.schema)
    except psycopg.Error as exc:
        raise _translate(exc, target) from None
    finally:
        conn.close()
    return before, after or 0


def vacuum_schema(target: PgTarget) -> tuple[int, int]:
    """VACUUM every table of the journal at *target* (space freed by pruning is reused,
    and what sits at a table's end goes back to the system); return the tables' total
    size in bytes before and after."""
    conn = _connect(target)
    try:
        if schema_version(conn, target.schema) is None:
            raise JournalError(f"{target.display} holds no runwright journal")
        tables = [
            str(row[0])
            for row in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
                (target.schema,),
            ).fetchall()
        ]
        sizes = (
            "SELECT coalesce(sum(pg_total_relation_size(t::regclass)), 0) "
            "FROM unnest(%s::text[]) AS t"
        )
        before = int(conn.execute(sizes, (tables,)).fetchone()[0])  # type: ignore[index]
        for table in tables:
            conn.execute(f"VACUUM (ANALYZE) {table}")  # names the server itself quoted
        after = int(conn.execute(sizes, (tables,)).fetchone()[0])  # type: ignore[index]
    except psycopg.Error as exc:
        raise _translate(exc, target) from None
    finally:
        conn.close()
    return before, after


def _connect(target: PgTarget) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(target.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        detail = _first_line(exc, target)
    # Raised here, not in the handler: the driver's error (which may quote the
    # connection string) must not travel along as the context of this one.
    raise JournalError(f"{target.display}: cannot connect: {detail}")


def _translate(exc: psycopg.Error, target: PgTarget) -> JournalError:
    return JournalError(f"{target.display}: {_first_line(exc, target)}")


def _first_line(exc: BaseException, target: PgTarget) -> str:
    text = hide_password(str(exc).strip(), target.conninfo)
    return text.splitlines()[0] if text else type(exc).__name__
