"""PostgreSQL connections: opening one (retrying while the server is away), the
contract's ``?`` SQL on a psycopg connection, and what a lost one looks like."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
import psycopg.conninfo

from ..._exceptions import JournalError, JournalUnavailable
from ._url import PgTarget, hide_password

__all__ = [
    "IDLE_IN_TX",
    "Conn",
    "Result",
    "connect",
    "first_line",
    "is_disconnect",
    "pg_sql",
    "translate",
    "use_schema",
]

#: Seconds a session may sit idle inside a transaction before the server ends it.
IDLE_IN_TX = 10


@functools.lru_cache(maxsize=1024)
def pg_sql(sql: str) -> str:
    """The contract's ``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("?", "%s")


class Result:
    """A cursor in pipeline mode: asking for its row count first collects the answer."""

    def __init__(self, cursor: psycopg.Cursor[Any], pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        if self._cursor.pgresult is None:
            self._pipeline.sync()
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)


class Conn:
    """A psycopg connection that speaks the contract's SQL (``?`` placeholders), for
    reads (in a pipeline, when one is given)."""

    def __init__(
        self, conn: psycopg.Connection[Any], pipeline: psycopg.Pipeline | None = None
    ) -> None:
        self.raw = conn
        self._pipeline = pipeline

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        cursor = self.raw.execute(pg_sql(sql), parameters or None, binary=True)
        if self._pipeline is None:
            return cursor
        return Result(cursor, self._pipeline)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(pg_sql(sql), parameters)


def is_disconnect(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    """Whether *exc* left the connection unusable: lost, or ended by the server (which
    may say why first, e.g. the idle-in-transaction timeout, an InternalError)."""
    if not isinstance(exc, psycopg.Error):
        return False
    return conn is None or conn.closed or conn.broken


def connect(
    target: PgTarget, reconnect_timeout: float, give_up: Callable[[], bool] = lambda: False
) -> psycopg.Connection[Any]:
    """Connect, retrying for up to *reconnect_timeout* seconds while the server is away
    (or until *give_up* says so: the journal is closing).

    Errors are raised outside the driver's exception handlers, with the password
    hidden: a driver's message may quote the URL, and a chained exception would
    carry it along.
    """
    deadline = time.monotonic() + reconnect_timeout
    delay = 0.05
    problem = ""
    try:
        options = str(psycopg.conninfo.conninfo_to_dict(target.conninfo).get("options") or "")
    except psycopg.Error as exc:
        problem = hide_password(first_line(exc), target.conninfo)
    if problem:
        raise JournalError(f"{target.display}: not a usable URL: {problem}")
    options += f" -c idle_in_transaction_session_timeout={IDLE_IN_TX * 1000}"
    while True:
        unavailable = False
        try:
            return psycopg.connect(
                target.conninfo,
                autocommit=True,
                connect_timeout=max(1, min(10, int(reconnect_timeout) or 1)),
                options=options,
                # A host or server that vanishes from the network is noticed in ~25 s.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        except psycopg.OperationalError as exc:
            unavailable = True
            problem = hide_password(first_line(exc), target.conninfo)
        except psycopg.Error as exc:
            problem = hide_password(first_line(exc), target.conninfo)
        if not unavailable:
            raise JournalError(f"{target.display}: cannot connect: {problem}")
        if give_up():
            raise JournalUnavailable(target.display, f"closing; cannot connect: {problem}")
        if time.monotonic() + delay >= deadline:
            raise JournalUnavailable(
                target.display, f"cannot connect for {reconnect_timeout:g}s: {problem}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def use_schema(conn: psycopg.Connection[Any], target: PgTarget) -> None:
    conn.execute(f'SET search_path TO "{target.schema}"')


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: psycopg.Error, display: str) -> JournalError:
    return JournalError(f"{display}: {first_line(exc)}")
