"""The PostgreSQL journal: many hosts, one database, the same contract as SQLite.

Theory of operation
-------------------
One writer connection per process group-commits every write of the process,
as on SQLite. Each write transaction starts by taking one transaction-level
advisory lock for the schema, which makes the journal's transactions serial
across hosts and makes ``seq`` order commit order: a reader that has seen
``seq`` N can never later meet an event below N. The contract's
read-then-write methods (a key's run, a step's row) are then as safe as
under SQLite's write lock. Holding the lock, the writer reads the newest
``seq`` once and numbers the batch's events itself, so inserting an event
needs no answer from the server.

A transaction runs in psycopg's pipeline mode: statements whose results
nobody needs yet (``BEGIN``, the lock, inserts) are sent without waiting,
and travel with the next statement whose answer is needed (a claim's row
count, a check). A sequential step's write is three round trips: the lock
and the driver's check, the step's conditional UPDATE, then the inserts
with ``NOTIFY`` (on the schema's channel, naming this journal) and
``COMMIT``. Because an error in a pipeline surfaces at the next answer,
not at the statement that caused it, a batch with a failing statement is
rolled back whole and its requests are run again one per transaction, so
that the error reaches only its own caller.

The watcher connection LISTENs on that channel. A notification from another
journal makes it read the new events' ``(seq, run_id, kind)`` (the same look
as SQLite's watcher); a safety poll does the same every ``_SAFETY_POLL``
seconds, since notifications are lost while a connection is down.

Time that decides ownership is the server's ``clock_timestamp()``, through
the ``rw_now()`` function the schema defines, never a host's clock.

A lost connection is ridden out: the writer fails the batch in flight with
:class:`JournalUnavailable` (its callers retry), and reconnects before the
next batch, retrying for up to ``reconnect_timeout`` seconds before failing
the requests that wait. Readers reconnect and retry once; the watcher
reconnects and looks at once. A session idle inside a transaction for
``_IDLE_IN_TX`` seconds (a host paused mid-write) is ended by the server, so
it cannot hold the advisory lock for the whole fleet.
"""

from __future__ import annotations

import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import anyio
import psycopg
import psycopg.conninfo

from ..._exceptions import JournalError, JournalUnavailable
from .._journal import Journal, _Request
from .._tx import Tx
from ._schema import ensure_schema, lock_key
from ._url import PgTarget, hide_password

__all__ = ["PostgresJournal"]

T = TypeVar("T")
log = logging.getLogger("runwright")

#: Seconds between the watcher's looks when no notification came.
_SAFETY_POLL = 1.0
#: Seconds the watcher waits for a notification before checking whether to stop.
_NOTIFY_WAIT = 0.05
#: Seconds a session may sit idle inside a transaction before the server ends it.
_IDLE_IN_TX = 10


@functools.lru_cache(maxsize=1024)
def _pg(sql: str) -> str:
    """The contract's ``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("?", "%s")


class _Result:
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


_INSERT_EVENTS = (
    "INSERT INTO events (seq, run_id, kind, cid, attempt, name, payload, at) "
    "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::integer[], "
    "%s::integer[], %s::text[], %s::bytea[], %s::double precision[])"
)


class _Conn:
    """A psycopg connection that speaks the contract's SQL (``?`` placeholders).

    In a write transaction it holds the events appended since its last
    statement and inserts them in one statement (numbered rows need no
    answer) before anything that could read them: a statement naming the
    events table, a savepoint's end, the commit. Events of a request whose
    savepoint is rolled back are dropped with it.
    """

    def __init__(
        self, conn: psycopg.Connection[Any], pipeline: psycopg.Pipeline | None = None
    ) -> None:
        self.raw = conn
        self._pipeline = pipeline
        self._events: list[tuple[Any, ...]] = []

    def add_event(self, row: tuple[Any, ...]) -> None:
        self._events.append(row)

    def flush(self) -> None:
        if self._events:
            columns = [list(column) for column in zip(*self._events, strict=True)]
            self._events = []
            self.raw.execute(_INSERT_EVENTS, columns, binary=True)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        if self._events:
            if sql.startswith("ROLLBACK"):
                self._events = []
            elif "events" in sql or sql.startswith(("RELEASE", "SAVEPOINT")):
                self.flush()
        cursor = self.raw.execute(_pg(sql), parameters or None, binary=True)
        if self._pipeline is None:
            return cursor
        return _Result(cursor, self._pipeline)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        if "events" in sql:
            self.flush()
        with self.raw.cursor() as cur:
            cur.executemany(_pg(sql), parameters)


class _Seqs:
    """Event numbers for one write transaction: after the newest committed one (read
    under the write lock, its answer collected only when the first event needs it)."""

    def __init__(self, newest: psycopg.Cursor[Any]) -> None:
        self._newest: psycopg.Cursor[Any] | None = newest
        self._last = 0

    def next(self) -> int:
        if self._newest is not None:
            row = self._newest.fetchone()
            assert row is not None
            self._last = int(row[0])
            self._newest = None
        self._last += 1
        return self._last


class _PgTx(Tx):
    def __init__(self, conn: _Conn, seqs: _Seqs) -> None:
        super().__init__(conn)
        self._adapter = conn
        self._seqs = seqs

    def _insert_event(self, values: tuple[Any, ...]) -> int:
        seq = self._seqs.next()
        self._adapter.add_event((seq, *values))
        return seq


def _is_disconnect(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return conn is None or conn.closed or conn.broken


class PostgresJournal(Journal):
    """A runwright journal in a schema of a PostgreSQL database."""

    backend = "postgresql"

    def __init__(
        self, target: PgTarget, writer: psycopg.Connection[Any], reconnect_timeout: float
    ) -> None:
        super().__init__(target.display)
        self.target = target
        self.reconnect_timeout = reconnect_timeout
        self._token = secrets.token_hex(8)
        self._channel = f"runwright_{target.schema}"
        self._lock_key = lock_key(target.schema, "write")
        self._writer: psycopg.Connection[Any] | None = writer
        self._reader: psycopg.Connection[Any] | None = None
        self._reader_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PostgresJournal {self.path}>"

    # -- connecting ---------------------------------------------------------------

    @classmethod
    async def open(
        cls, target: PgTarget, *, migrate: bool = True, reconnect_timeout: float = 30.0
    ) -> PostgresJournal:
        return await anyio.to_thread.run_sync(cls._open_sync, target, migrate, reconnect_timeout)

    @classmethod
    def _open_sync(
        cls, target: PgTarget, migrate: bool, reconnect_timeout: float
    ) -> PostgresJournal:
        writer = _connect(target, reconnect_timeout)
        try:
            ensure_schema(writer, target.schema, target.display, migrate=migrate)
            _use_schema(writer, target)
        except psycopg.Error as exc:
            writer.close()
            raise _translate(exc, target.display) from None
        except BaseException:
            writer.close()
            raise
        return cls(target, writer, reconnect_timeout)

    def _connection(self, current: psycopg.Connection[Any] | None) -> psycopg.Connection[Any]:
        """*current* if it is usable, else a new connection (retrying up to reconnect_timeout)."""
        if current is not None and not current.closed and not current.broken:
            return current
        if current is not None:
            current.close()
        conn = _connect(self.target, self.reconnect_timeout)
        try:
            _use_schema(conn, self.target)
        except psycopg.Error as exc:
            conn.close()
            raise _translate(exc, self.path) from None
        return conn

    # -- writing ------------------------------------------------------------------

    def _commit(self, batch: Sequence[_Request]) -> None:
        try:
            self._writer = conn = self._connection(self._writer)
        except JournalError as exc:
            for request in batch:
                request.error = exc
            return
        try:
            self._transact(conn, batch)
        except Exception as exc:
            if _is_disconnect(exc, conn):
                self._writer = None
                lost = JournalUnavailable(
                    self.path, f"the connection was lost during a write: {_first_line(exc)}"
                )
                for request in batch:
                    request.result, request.error = None, lost
                return
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                self._writer = None
            if len(batch) > 1 and isinstance(exc, psycopg.Error):
                # Which request caused it is not known: each again, alone.
                for request in batch:
                    request.result, request.error = None, None
                    self._commit([request])
                return
            error = _translate(exc, self.path) if isinstance(exc, psycopg.Error) else exc
            for request in batch:
                request.result, request.error = None, error

    def _transact(self, conn: psycopg.Connection[Any], batch: Sequence[_Request]) -> None:
        with conn.pipeline() as pipeline:
            adapter = _Conn(conn, pipeline)
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            seqs = _Seqs(conn.execute("SELECT coalesce(max(seq), 0) FROM events"))
            lo, hi = self._run_requests(
                adapter,
                batch,
                lambda: _PgTx(adapter, seqs),
                savepoints=len(batch) > 1,
                abort_on=(psycopg.Error,),
            )
            adapter.flush()
            if hi:
                conn.execute("SELECT pg_notify(%s, %s)", (self._channel, self._token))
            conn.execute("COMMIT")
            # The watcher must not see these events before they are known as ours.
            with self._own_lock:
                pipeline.sync()
                self._mark_own(lo, hi)
        for request in batch:
            if isinstance(request.error, psycopg.Error):
                request.error = _translate(request.error, self.path)

    # -- watching -----------------------------------------------------------------

    def _watch_loop(
        self,
        call_soon: Callable[[Callable[[], object]], object],
        stop: threading.Event,
        started: threading.Event,
    ) -> None:
        conn: psycopg.Connection[Any] | None = None
        last = 0
        try:
            try:
                conn = self._listen()
                last = _newest(conn)
            except (psycopg.Error, JournalError):
                log.exception("%s: the watcher could not start; it will retry", self.path)
                conn = None
            finally:
                started.set()
            next_look = time.monotonic() + _SAFETY_POLL
            delay = 0.05
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = self._listen()
                        next_look = 0.0  # notifications were lost while disconnected
                    others = False
                    for notify in conn.notifies(timeout=_NOTIFY_WAIT, stop_after=1):
                        if notify.payload != self._token:
                            others = True
                    if not others and time.monotonic() < next_look:
                        continue
                    # Drain what else arrived, then read it all in one look.
                    for _ in conn.notifies(timeout=0, stop_after=1000):
                        pass
                    last, foreign, _ = self._look(_Conn(conn), last)
                    next_look = time.monotonic() + _SAFETY_POLL
                    self._report(call_soon, foreign)
                    delay = 0.05
                except (psycopg.Error, JournalError) as exc:
                    log.warning("%s: the watcher lost its connection: %s", self.path, exc)
                    if conn is not None:
                        conn.close()
                    conn = None
                    stop.wait(delay)
                    delay = min(delay * 2, 1.0)
        finally:
            if conn is not None:
                conn.close()

    def _listen(self) -> psycopg.Connection[Any]:
        conn = self._connection(None)
        conn.execute(f"LISTEN {self._channel}")
        return conn

    # -- reading ------------------------------------------------------------------

    def _read_sync(self, fn: Callable[[Any], T]) -> T:
        with self._reader_lock:
            for attempt in (1, 2):
                try:
                    self._reader = conn = self._connection(self._reader)
                    with conn.pipeline() as pipeline:
                        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                        try:
                            return fn(_Conn(conn, pipeline))
                        finally:
                            if not conn.broken:
                                conn.execute("COMMIT")
                except psycopg.Error as exc:
                    if _is_disconnect(exc, self._reader) and attempt == 1:
                        continue  # reads are safe to repeat
                    if _is_disconnect(exc, self._reader):
                        raise JournalUnavailable(self.path, str(exc)) from None
                    raise _translate(exc, self.path) from None
            raise AssertionError("unreachable")

    def _close_sync(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
        if self._writer is not None:
            self._writer.close()


def _connect(target: PgTarget, reconnect_timeout: float) -> psycopg.Connection[Any]:
    """Connect, retrying for up to *reconnect_timeout* seconds while the server is away.

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
        problem = hide_password(_first_line(exc), target.conninfo)
    if problem:
        raise JournalError(f"{target.display}: not a usable URL: {problem}")
    options += f" -c idle_in_transaction_session_timeout={_IDLE_IN_TX * 1000}"
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
            problem = hide_password(_first_line(exc), target.conninfo)
        except psycopg.Error as exc:
            problem = hide_password(_first_line(exc), target.conninfo)
        if not unavailable:
            raise JournalError(f"{target.display}: cannot connect: {problem}")
        if time.monotonic() + delay >= deadline:
            raise JournalUnavailable(
                target.display, f"cannot connect for {reconnect_timeout:g}s: {problem}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _use_schema(conn: psycopg.Connection[Any], target: PgTarget) -> None:
    conn.execute(f'SET search_path TO "{target.schema}"')


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _translate(exc: psycopg.Error, display: str) -> JournalError:
    return JournalError(f"{display}: {_first_line(exc)}")


def _newest(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    assert row is not None
    return int(row[0])
