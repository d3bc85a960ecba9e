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

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import psycopg

from ..._exceptions import JournalError, JournalUnavailable
from .._journal import ForeignEvents, Journal, _Request
from .._tx import Tx
from ._connection import (
    IDLE_IN_TX,
    Conn,
    connect,
    first_line,
    is_disconnect,
    translate,
    use_schema,
)
from ._schema import ensure_schema, lock_key
from ._url import PgTarget
from ._writer import PgTx, Seqs, Unsent, WriteConn

__all__ = ["PostgresJournal"]

T = TypeVar("T")
log = logging.getLogger("runwright")

#: Seconds between the watcher's looks when no notification came.
_SAFETY_POLL = 1.0
#: Seconds the watcher waits for a notification before checking whether to stop.
_NOTIFY_WAIT = 0.05


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
        self._maintainer: psycopg.Connection[Any] | None = None
        self._maintainer_lock = threading.Lock()
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
        writer = connect(target, reconnect_timeout)
        try:
            ensure_schema(writer, target.schema, target.display, migrate=migrate)
            use_schema(writer, target)
        except psycopg.Error as exc:
            writer.close()
            raise translate(exc, target.display) from None
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
        conn = connect(self.target, self.reconnect_timeout, lambda: self._closed)
        try:
            use_schema(conn, self.target)
        except psycopg.Error as exc:
            conn.close()
            raise translate(exc, self.path) from None
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
        except Unsent as unsent:
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
            if is_disconnect(exc, conn):
                self._writer = None
                lost = JournalUnavailable(
                    self.path, f"the connection was lost during a write: {first_line(exc)}"
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
            error = translate(exc, self.path) if isinstance(exc, psycopg.Error) else exc
            for request in batch:
                request.result, request.error = None, error
        finally:
            self._writing_since = None

    def _transact(self, conn: psycopg.Connection[Any], batch: Sequence[_Request]) -> None:
        writer = WriteConn(conn)
        writer.execute("BEGIN")
        writer.execute(f"SELECT pg_advisory_xact_lock({self._lock_key})")
        seqs = Seqs(writer.execute("SELECT coalesce(max(seq), 0) FROM events"))
        lo, hi = self._run_requests(
            writer,
            batch,
            lambda: PgTx(writer, seqs),
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
                request.error = translate(request.error, self.path)

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
                    last, foreign, _ = self._look(Conn(conn), last)
                    next_look = time.monotonic() + _SAFETY_POLL
                    self._report(call_soon, foreign)
                    delay = 0.05
                    since = self._writing_since
                    if since is not None and time.monotonic() - since > IDLE_IN_TX:
                        self._end_stalled_writer(conn)
                except (psycopg.Error, JournalError) as exc:
                    log.warning(
                        "%s: the watcher lost its connection: %s", self.path, first_line(exc)
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
        ``IDLE_IN_TX`` seconds: its process is paused or hung inside a write."""
        key = self._lock_key & 0xFFFF_FFFF_FFFF_FFFF
        try:
            ended = conn.execute(
                _END_STALLED_WRITER, (key >> 32, key & 0xFFFF_FFFF, IDLE_IN_TX)
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
        with self._own_lock:
            newest, foreign = self._sift(rows)
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
                            return fn(Conn(conn, pipeline))
                        finally:
                            if not conn.broken:
                                conn.execute("COMMIT")
                except psycopg.Error as exc:
                    if is_disconnect(exc, self._reader) and attempt == 1:
                        continue  # reads are safe to repeat
                    if is_disconnect(exc, self._reader):
                        raise JournalUnavailable(self.path, str(exc)) from None
                    raise translate(exc, self.path) from None
            raise AssertionError("unreachable")

    # -- maintenance --------------------------------------------------------------

    #: A prune batch takes no lock a run's write needs: it can be long (bigger
    #: batches delete more per scan of the candidates).
    maintenance_seconds = 1.0

    async def maintain(self, fn: Callable[[Tx], T]) -> T:
        """Run *fn* on a connection of its own, in a transaction that takes neither the
        write lock nor any row a run's driver writes: runs being written never wait
        for it."""
        if self._closed:
            raise JournalError(f"{self.path}: the journal is closed")
        return await anyio.to_thread.run_sync(self._maintain_sync, fn)

    def _maintain_sync(self, fn: Callable[[Tx], T]) -> T:
        with self._maintainer_lock:
            try:
                self._maintainer = conn = self._connection(self._maintainer)
                with conn.transaction():
                    tx = Tx(Conn(conn))
                    result = fn(tx)
                    if tx.events:
                        raise AssertionError("a maintenance write must append no events")
                    return result
            except psycopg.Error as exc:
                if is_disconnect(exc, self._maintainer):
                    raise JournalUnavailable(self.path, str(exc)) from None
                raise translate(exc, self.path) from None

    def _close_sync(self) -> None:
        with self._maintainer_lock:
            if self._maintainer is not None:
                self._maintainer.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
        if self._writer is not None:
            self._writer.close()


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
