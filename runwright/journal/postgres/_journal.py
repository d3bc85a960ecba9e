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

Statements whose answers nobody needs yet (``BEGIN``, the lock, inserts,
savepoints) are held and travel, as one message, with the next statement
whose answer is needed (a claim's row count); the driver's check is asked
for lazily, so it travels with the claim. A sequential step's write is two
round trips: the lock, the check and the step's conditional UPDATE, then
the inserts with ``NOTIFY`` and ``COMMIT`` (see :class:`_WriteConn`).
Because an error in such a message surfaces at the next answer, not at the
statement that caused it, a batch with a failing statement is rolled back
whole and its requests are run again one per transaction, so that the
error reaches only its own caller.

A transaction that appended an event another process may be waiting for
(``AWAITED_KINDS``: a new run, a hook payload, a cancel, a child's or a
run's end, stream chunks) sends ``pg_notify`` on the schema's channel, with
a token naming this journal, alongside its COMMIT; what a run's driver writes
about its own steps and timers wakes nobody. The watcher connection LISTENs
on that channel. A notification from another journal makes it read the
events after the last it saw, in one query that does not wait for this
process's writer: the writer records its seqs as its own before it commits
(and takes them back, making the watcher read again, if the commit fails).
A safety poll reads every ``_SAFETY_POLL`` seconds, since notifications are
lost while a connection is down.

Time that decides ownership is the server's ``clock_timestamp()``, through
the ``rw_now()`` function the schema defines, never a host's clock.

A lost connection is ridden out: the writer fails the batch in flight with
:class:`JournalUnavailable` (its callers retry), and reconnects before the
next batch, retrying for up to ``reconnect_timeout`` seconds before failing
the requests that wait. Readers reconnect and retry once; the watcher
reconnects and looks at once. A session idle inside a transaction for
``_IDLE_IN_TX`` seconds (a host paused mid-write) is ended by the server, so
it cannot hold the advisory lock for the whole fleet. The server does not
count a session stopped in the middle of a pipeline (stream chunks go in
one) as idle, though: it is active, waiting for the rest. So a process
whose own write has waited that long looks, from its watcher, for the
session holding the lock, and ends it if it has been waiting for its client
(not working) that long.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import anyio
import psycopg
import psycopg.conninfo

from ..._exceptions import JournalError, JournalUnavailable
from .._events import AWAITED_KINDS
from .._journal import ForeignEvents, Journal, _Request
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


class _Conn:
    """A psycopg connection that speaks the contract's SQL (``?`` placeholders), for
    reads (in a pipeline, when one is given)."""

    def __init__(
        self, conn: psycopg.Connection[Any], pipeline: psycopg.Pipeline | None = None
    ) -> None:
        self.raw = conn
        self._pipeline = pipeline

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        cursor = self.raw.execute(_pg(sql), parameters or None, binary=True)
        if self._pipeline is None:
            return cursor
        return _Result(cursor, self._pipeline)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(_pg(sql), parameters)


_INSERT_EVENTS = "INSERT INTO events (seq, run_id, kind, cid, attempt, name, payload, at) VALUES "


@functools.lru_cache(maxsize=1024)
def _pieces(sql: str) -> tuple[str, ...]:
    """*sql* split at its ``?`` placeholders."""
    return tuple(sql.split("?"))


def _bind(sql: str, parameters: Sequence[Any]) -> str:
    """*sql* with its ``?`` placeholders replaced by SQL literals of *parameters*."""
    pieces = _pieces(sql)
    if len(pieces) != len(parameters) + 1:
        raise ValueError(f"{len(pieces) - 1} placeholders, {len(parameters)} values: {sql!r}")
    out = [pieces[0]]
    for value, piece in zip(parameters, pieces[1:], strict=True):
        out.append(_literal(value))
        out.append(piece)
    return "".join(out)


def _literal(value: Any) -> str:
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


class _Answer:
    """What one statement of a write transaction answered, once it was sent."""

    __slots__ = ("_batch", "_rowcount", "_rows", "_sent")

    def __init__(self, batch: _WriteConn) -> None:
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


class _WriteConn:
    """The writer's connection: statements go out in batches, one round trip each.

    A statement is bound on the client (:func:`_literal`) and held until an
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
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self._cursor = conn.cursor()
        self._held: list[tuple[str, _Answer]] = []
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
        if self._events:
            rows = ",".join("(" + ",".join(map(_literal, row)) + ")" for row in self._events)
            self._events = []
            self._hold(_INSERT_EVENTS + rows, None)

    def _hold(self, sql: str, parameters: Sequence[Any] | None) -> _Answer:
        text = _bind(sql, parameters) if parameters else sql
        answer = _Answer(self)
        self._held.append((text, answer))
        return answer

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Answer:
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
            cur.executemany(_pg(sql), parameters)
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
                raise _Unsent(_first_line(exc)) from None
            raise
        self._delivered = True
        for index, (_, answer) in enumerate(held):
            if index:
                cursor.nextset()
            rows = cursor.fetchall() if cursor.description is not None else []
            answer._set(cursor.rowcount, rows)


class _Unsent(Exception):
    """The connection was lost before any statement of the transaction was delivered
    (and the message that failed held no COMMIT): nothing of it can have committed."""


class _Seqs:
    """Event numbers for one write transaction: after the newest committed one (read
    under the write lock, its answer collected only when the first event needs it)."""

    def __init__(self, newest: _Answer) -> None:
        self._newest: _Answer | None = newest
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
    deferred_answers = True

    def __init__(self, conn: _WriteConn, seqs: _Seqs) -> None:
        super().__init__(conn)
        self._writer = conn
        self._seqs = seqs

    def _insert_event(self, values: tuple[Any, ...]) -> int:
        seq = self._seqs.next()
        self._writer.add_event((seq, *values))
        return seq


def _is_disconnect(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    """Whether *exc* left the connection unusable: lost, or ended by the server (which
    may say why first, e.g. the idle-in-transaction timeout, an InternalError)."""
    if not isinstance(exc, psycopg.Error):
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
        #: When the writer's open transaction began (time.monotonic()); None between them.
        self._writing_since: float | None = None

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

    def _commit(self, batch: Sequence[_Request], *, again: bool = False) -> None:
        try:
            self._writer = conn = self._connection(self._writer)
        except JournalError as exc:
            for request in batch:
                request.error = exc
            return
        self._writing_since = time.monotonic()
        try:
            self._transact(conn, batch)
        except _Unsent as unsent:
            # The connection was found dead before any of this transaction
            # reached the server: nothing of it committed, so it is run again,
            # once, on a new connection.
            self._writer = None
            if again:
                lost = JournalUnavailable(self.path, f"the connection was lost: {unsent}")
                for request in batch:
                    request.result, request.error = None, lost
                return
            for request in batch:
                request.result, request.error = None, None
            self._commit(batch, again=True)
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
        finally:
            self._writing_since = None

    def _transact(self, conn: psycopg.Connection[Any], batch: Sequence[_Request]) -> None:
        writer = _WriteConn(conn)
        writer.execute("BEGIN")
        writer.execute(f"SELECT pg_advisory_xact_lock({self._lock_key})")
        seqs = _Seqs(writer.execute("SELECT coalesce(max(seq), 0) FROM events"))
        lo, hi = self._run_requests(
            writer,
            batch,
            lambda: _PgTx(writer, seqs),
            savepoints=len(batch) > 1,
            abort_on=(psycopg.Error,),
        )
        writer.flush_events()
        if writer.awaited:
            writer.execute("SELECT pg_notify(?, ?)", (self._channel, self._token))
        writer.execute("COMMIT")
        # Known as ours before anyone can see them: the watcher reads without
        # waiting for this writer.
        with self._own_lock:
            self._mark_own(lo, hi)
        try:
            writer.send()
        except BaseException:
            self._disown(lo, hi)
            raise
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
                    since = self._writing_since
                    if since is not None and time.monotonic() - since > _IDLE_IN_TX:
                        self._end_stalled_writer(conn)
                except (psycopg.Error, JournalError) as exc:
                    log.warning(
                        "%s: the watcher lost its connection: %s", self.path, _first_line(exc)
                    )
                    if conn is not None:
                        conn.close()
                    conn = None
                    stop.wait(delay)
                    delay = min(delay * 2, 1.0)
        finally:
            if conn is not None:
                conn.close()

    def _end_stalled_writer(self, conn: psycopg.Connection[Any]) -> None:
        """End the session holding the write lock if it has waited for its client for
        ``_IDLE_IN_TX`` seconds: its process is paused or hung inside a write."""
        key = self._lock_key & 0xFFFF_FFFF_FFFF_FFFF
        try:
            ended = conn.execute(
                _END_STALLED_WRITER, (key >> 32, key & 0xFFFF_FFFF, _IDLE_IN_TX)
            ).fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:
            log.warning("%s: cannot end a stalled writer's session: %s", self.path, exc)
            return
        for pid, name, idle, _ in ended:
            log.warning(
                "%s: ended the session of another writer (server pid %s, %r) that held the "
                "write lock while waiting for its client for %.0fs",
                self.path,
                pid,
                name,
                idle,
            )

    def _disown(self, lo: int, hi: int) -> None:
        """A write known as ours did not commit: its seqs may go to another writer's
        events, which the watcher must then read (again)."""
        if not hi:
            return
        with self._own_lock:
            if (lo, hi) in self._own_ranges:
                self._own_ranges.remove((lo, hi))
            self._rewind = lo - 1 if self._rewind is None else min(self._rewind, lo - 1)

    def _look(self, conn: Any, last: int) -> tuple[int, ForeignEvents, bool]:
        """Read the events after *last* in one query, without holding up the writer:
        this process's are known as its own before they commit."""
        with self._own_lock:
            if self._rewind is not None:
                last, self._rewind = min(last, self._rewind), None
        rows = conn.execute(
            "SELECT seq, run_id, kind FROM events WHERE seq > ? ORDER BY seq", (last,)
        ).fetchall()
        if not rows:
            return last, [], False
        newest = int(rows[-1][0])
        with self._own_lock:
            own = self._own_ranges
            foreign = [
                (int(seq), str(run_id), str(kind))
                for seq, run_id, kind in rows
                if not any(lo <= seq <= hi for lo, hi in own)
            ]
            self._own_ranges = [(lo, hi) for lo, hi in own if hi > newest]
        return newest, foreign, bool(foreign)

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


#: Ends the session that holds the write lock (classid, objid) if the server has
#: waited for its client for more than the given seconds, inside its transaction
#: (``ClientRead``, whether idle or in the middle of a pipeline).
_END_STALLED_WRITER = """
SELECT a.pid, a.application_name, extract(epoch FROM now() - a.state_change),
       pg_terminate_backend(a.pid)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s AND l.objid::bigint = %s
  AND a.xact_start IS NOT NULL AND a.wait_event = 'ClientRead'
  AND a.state_change < now() - make_interval(secs => %s)
"""


def _newest(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    assert row is not None
    return int(row[0])
