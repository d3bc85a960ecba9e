"""The PostgreSQL writer's statements: bound on the client, sent in batches.

See :class:`WriteConn`. Values become SQL literals here (:func:`literal`),
never by string formatting elsewhere; ``tests/journal/test_postgres_literals.py``
round-trips any text, bytes and number through the server.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from .._events import AWAITED_KINDS
from .._tx import Tx
from ._connection import first_line, pg_sql

__all__ = ["Answer", "PgTx", "Seqs", "Unsent", "WriteConn", "bind", "literal"]

INSERT_EVENTS = "INSERT INTO events (seq, run_id, kind, cid, attempt, name, payload, at) VALUES "
#: Payloads this large or larger are sent as binary parameters, not literals.
BINARY_FROM = 64 * 1024
_INSERT_EVENT_BINARY = INSERT_EVENTS + "(%s, %s, %s, %s, %s, %s, %b, %s)"


@functools.lru_cache(maxsize=1024)
def _split(sql: str) -> tuple[str, ...]:
    """*sql* split at its ``?`` placeholders."""
    return tuple(sql.split("?"))


def bind(sql: str, parameters: Sequence[Any]) -> str:
    """*sql* with its ``?`` placeholders replaced by SQL literals of *parameters*."""
    pieces = _split(sql)
    if len(pieces) != len(parameters) + 1:
        raise ValueError(f"{len(pieces) - 1} placeholders, {len(parameters)} values: {sql!r}")
    out = [pieces[0]]
    for value, piece in zip(parameters, pieces[1:], strict=True):
        out.append(literal(value))
        out.append(piece)
    return "".join(out)


def literal(value: Any) -> str:
    """A SQL literal for *value*, whatever the server's string settings.

    Text is an escape string (backslashes and quotes doubled), bytes are decoded
    from hex on the server: no value can end its literal early.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            text = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
            return f"'{text}'::float8"
        number = repr(value)
        return f"({number})" if value < 0 else number  # "- -1" must not become "--1"
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("PostgreSQL text cannot hold NUL characters")
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"decode('{bytes(value).hex()}', 'hex')"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


class Answer:
    """What one statement of a write transaction answered, once it was sent."""

    __slots__ = ("_batch", "_rowcount", "_rows", "_sent")

    def __init__(self, batch: WriteConn) -> None:
        self._batch = batch
        self._sent = False
        self._rowcount = -1
        self._rows: list[Any] = []

    def _set(self, rowcount: int, rows: list[Any]) -> None:
        self._sent, self._rowcount, self._rows = True, rowcount, rows

    def _wait(self) -> None:
        if not self._sent:
            self._batch.send()

    @property
    def rowcount(self) -> int:
        self._wait()
        return self._rowcount

    def fetchone(self) -> Any:
        self._wait()
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        self._wait()
        return list(self._rows)

    def __iter__(self) -> Iterator[Any]:
        self._wait()
        return iter(self._rows)


class WriteConn:
    """The writer's connection: statements go out in batches, one round trip each.

    A statement is bound on the client (:func:`literal`) and held until an
    answer is needed (a claim's row count, a check); then everything held goes
    to the server as one message of ``;``-separated statements, and each
    statement's answer is kept for whoever asks. Nothing waits for ``BEGIN``,
    the lock, inserts or savepoints, and binding a statement here costs a small
    fraction of a driver-bound one. Stream chunks, which can be
    large, go through the driver's own (binary) statements, after what is held.

    Events appended since the last statement are held too, and go in as one
    statement (numbered rows need no answer) before anything that could read
    them: a statement naming the events table, a savepoint's end, the commit.
    Events of a request whose savepoint is rolled back are dropped with it.
    An event whose payload is ``BINARY_FROM`` bytes or more goes in like a
    stream chunk, as a binary parameter: as a literal it would be built here
    and parsed there at twice its size (a 50 MB argument: 2.5 s of 2.7 s).
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self._cursor = conn.cursor()
        self._held: list[tuple[str, Answer]] = []
        #: Whether anything of the transaction has reached the server.
        self._delivered = False
        self._events: list[tuple[Any, ...]] = []
        #: Whether an event another process may be waiting for was appended.
        self.awaited = False

    def add_event(self, row: tuple[Any, ...]) -> None:
        self._events.append(row)
        if row[2] in AWAITED_KINDS:
            self.awaited = True

    def flush_events(self) -> None:
        if not self._events:
            return
        events, self._events = self._events, []
        large = [row for row in events if row[6] is not None and len(row[6]) >= BINARY_FROM]
        if large:
            events = [row for row in events if row[6] is None or len(row[6]) < BINARY_FROM]
        if events:
            rows = ",".join("(" + ",".join(map(literal, row)) + ")" for row in events)
            self._hold(INSERT_EVENTS + rows, None)
        if large:
            self.send()
            with self.raw.cursor() as cur:
                cur.executemany(_INSERT_EVENT_BINARY, large)
            self._delivered = True

    def _hold(self, sql: str, parameters: Sequence[Any] | None) -> Answer:
        text = bind(sql, parameters) if parameters else sql
        answer = Answer(self)
        self._held.append((text, answer))
        return answer

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Answer:
        if self._events:
            if sql.startswith("ROLLBACK"):
                self._events = []
            elif "events" in sql or sql.startswith(("RELEASE", "SAVEPOINT", "COMMIT")):
                self.flush_events()
        return self._hold(sql, parameters or None)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        if "events" in sql:
            self.flush_events()
        self.send()
        with self.raw.cursor() as cur:
            cur.executemany(pg_sql(sql), parameters)
        self._delivered = True

    def send(self) -> None:
        """Send what is held, in one message, and keep each statement's answer."""
        if not self._held:
            return
        held, self._held = self._held, []
        cursor = self._cursor
        try:
            cursor.execute(";".join(text for text, _ in held))
        except psycopg.OperationalError as exc:
            if not self._delivered and self.raw.broken and held[-1][0] != "COMMIT":
                raise Unsent(first_line(exc)) from None
            raise
        self._delivered = True
        for index, (_, answer) in enumerate(held):
            if index:
                cursor.nextset()
            rows = cursor.fetchall() if cursor.description is not None else []
            answer._set(cursor.rowcount, rows)


class Unsent(Exception):
    """The connection was lost before any statement of the transaction was delivered
    (and the message that failed held no COMMIT): nothing of it can have committed."""


class Seqs:
    """Event numbers for one write transaction: after the newest committed one (read
    under the write lock, its answer collected only when the first event needs it)."""

    def __init__(self, newest: Answer) -> None:
        self._newest: Answer | None = newest
        self._last = 0

    def next(self) -> int:
        if self._newest is not None:
            row = self._newest.fetchone()
            assert row is not None
            self._last = int(row[0])
            self._newest = None
        self._last += 1
        return self._last


class PgTx(Tx):
    deferred_answers = True

    def __init__(self, conn: WriteConn, seqs: Seqs) -> None:
        super().__init__(conn)
        self._writer = conn
        self._seqs = seqs

    def _insert_event(self, values: tuple[Any, ...]) -> int:
        seq = self._seqs.next()
        self._writer.add_event((seq, *values))
        return seq
