"""The SQLite journal: one group-commit writer, one reader, conditional writes.

Theory of operation
-------------------
Every write is a plain function ``fn(tx) -> T`` handed to :meth:`Journal.write`.
A single writer task collects the functions that arrive while the previous
transaction commits, and runs all of them in one ``BEGIN IMMEDIATE``
transaction in a worker thread: one thread hop and one fsync per batch, not
per caller. Each function runs inside its own SAVEPOINT, so one that raises
is rolled back alone and its caller gets the exception; the others commit.

:class:`Tx` holds the only SQL that changes state. Each method appends the
event and changes the materialized row in the same transaction. Claims are
conditional UPDATEs whose ``WHERE status IN (...)`` comes from the lifecycle
tables in :mod:`._states`; a method returns False when it matched nothing,
which is how losing a race looks.

Reads run on a second connection (WAL lets it read while the writer writes),
also in a worker thread, one hop per query function.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

import anyio
import attrs
from anyio.abc import TaskStatus

from .._exceptions import DatabaseLocked, JournalError, NotARunwrightDatabase, StreamClosed
from ._events import RESOLUTION_KINDS, Event, Kind
from ._schema import check_file, ensure_schema
from ._states import RUN_TRANSITIONS, STEP_TRANSITIONS, WAIT_TRANSITIONS, sources

__all__ = [
    "ChunkRow",
    "Journal",
    "RunRow",
    "StepRow",
    "StoredChunk",
    "StreamRow",
    "Synchronous",
    "Tx",
    "WaitRow",
]

T = TypeVar("T")
log = logging.getLogger("runwright")
Synchronous = Literal["FULL", "NORMAL", "EXTRA", "OFF"]


@attrs.frozen
class RunRow:
    run_id: str
    workflow: str
    key: str | None
    status: str
    args: bytes
    outcome: bytes | None
    error_type: str | None
    error_message: str | None
    owner: str | None
    lease_expires_at: float | None
    created_at: float
    updated_at: float
    finished_at: float | None


@attrs.frozen
class StepRow:
    run_id: str
    cid: int
    name: str
    status: str
    attempt: int
    retry_at: float | None


@attrs.frozen
class WaitRow:
    run_id: str
    cid: int
    wake_at: float
    status: str


def _in(states: Iterable[str]) -> str:
    return "(" + ",".join(f"'{s}'" for s in states) + ")"


_RUN_FINISH_FROM = {
    target: _in(sources(RUN_TRANSITIONS, target)) for target in ("completed", "failed", "cancelled")
}
_STEP_START_FROM = _in(sources(STEP_TRANSITIONS, "running"))
_ENDED_RUN = ("completed", "failed", "cancelled")
_WAIT_FIRE_FROM = _in(sources(WAIT_TRANSITIONS, "fired"))
_WAIT_CANCEL_FROM = _in(sources(WAIT_TRANSITIONS, "cancelled"))
_RUN_COLUMNS = (
    "run_id, workflow, key, status, args, outcome, error_type, error_message, owner, "
    "lease_expires_at, created_at, updated_at, finished_at"
)


class Tx:
    """One caller's share of a write transaction. Only the writer thread uses it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.events: list[Event] = []

    def append(
        self,
        run_id: str,
        kind: str,
        at: float,
        *,
        cid: int | None = None,
        attempt: int | None = None,
        name: str | None = None,
        payload: bytes | None = None,
    ) -> Event:
        cur = self._conn.execute(
            "INSERT INTO events (run_id, kind, cid, attempt, name, payload, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, kind, cid, attempt, name, payload, at),
        )
        seq = cur.lastrowid
        assert seq is not None
        event = Event(seq, run_id, kind, cid, attempt, name, payload, at)
        self.events.append(event)
        return event

    # -- runs -------------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        workflow: str,
        args: bytes,
        at: float,
        *,
        key: str | None,
        owner: str | None,
        lease_expires_at: float | None,
    ) -> str | None:
        """Create a run (RUNNING if it has an owner, else PENDING).

        Returns None when it was created, or the id of the run that already
        holds *key*.
        """
        if key is not None:
            row = self._conn.execute("SELECT run_id FROM runs WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return str(row[0])
        status = "running" if owner is not None else "pending"
        self._conn.execute(
            "INSERT INTO runs (run_id, workflow, key, status, args, owner, lease_expires_at, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, workflow, key, status, args, owner, lease_expires_at, at, at),
        )
        self.append(run_id, Kind.RUN_CREATED, at, name=workflow, payload=args)
        return None

    def start_child(
        self,
        parent_run_id: str,
        cid: int,
        child_run_id: str,
        workflow: str,
        args: bytes,
        at: float,
        *,
        owner: str | None,
        lease_expires_at: float | None,
    ) -> None:
        """Create a child run and record it at position *cid* of its parent."""
        self.create_run(
            child_run_id, workflow, args, at, key=None, owner=owner,
            lease_expires_at=lease_expires_at,
        )  # fmt: skip
        self._conn.execute(
            "UPDATE runs SET parent_run_id = ?, parent_cid = ? WHERE run_id = ?",
            (parent_run_id, cid, child_run_id),
        )
        self.append(
            parent_run_id, Kind.CHILD_STARTED, at, cid=cid, name=workflow,
            payload=child_run_id.encode(),
        )  # fmt: skip

    def claim_run(
        self, run_id: str, owner: str, lease_expires_at: float, now: float, *, steal_from: str = ""
    ) -> bool:
        """Take ownership of a live run nobody holds (or *steal_from*'s, known dead)."""
        cur = self._conn.execute(
            "UPDATE runs SET owner = ?, lease_expires_at = ?, "
            "status = CASE status WHEN 'pending' THEN 'running' ELSE status END "
            "WHERE run_id = ? AND status IN ('pending', 'running') "
            "AND (owner IS NULL OR owner = ? OR owner = ? OR lease_expires_at < ?)",
            (owner, lease_expires_at, run_id, owner, steal_from, now),
        )
        return cur.rowcount == 1

    def owns(self, run_id: str, owner: str) -> bool:
        """Whether *owner* drives *run_id* (a live run whose lease it holds)."""
        row = self._conn.execute(
            "SELECT 1 FROM runs WHERE run_id = ? AND owner = ? AND status = 'running'",
            (run_id, owner),
        ).fetchone()
        return row is not None

    def any_command(self, run_id: str, cids: Sequence[int]) -> bool:
        """Whether a step or wait already exists at any of *cids* (someone else wrote it)."""
        if not cids:
            return False
        marks = ",".join("?" * len(cids))
        row = self._conn.execute(
            f"SELECT 1 FROM steps WHERE run_id = ? AND cid IN ({marks}) "
            f"UNION ALL SELECT 1 FROM waits WHERE run_id = ? AND cid IN ({marks}) "
            f"UNION ALL SELECT 1 FROM events WHERE run_id = ? AND kind = 'hook_created' "
            f"AND cid IN ({marks}) LIMIT 1",
            (run_id, *cids, run_id, *cids, run_id, *cids),
        ).fetchone()
        return row is not None

    def latest_resolution(self, run_id: str) -> int:
        """The seq of the run's newest step or wait outcome (0 if none)."""
        row = self._conn.execute(
            "SELECT seq FROM events WHERE run_id = ? AND kind IN "
            f"{_in(sorted(RESOLUTION_KINDS))} ORDER BY seq DESC LIMIT 1",
            (run_id,),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def renew_leases(self, owner: str, lease_expires_at: float) -> set[str]:
        """Extend every lease *owner* holds; return the runs it still owns."""
        self._conn.execute(
            "UPDATE runs SET lease_expires_at = ? WHERE owner = ? AND status = 'running'",
            (lease_expires_at, owner),
        )
        rows = self._conn.execute(
            "SELECT run_id FROM runs WHERE owner = ? AND status = 'running'", (owner,)
        )
        return {str(row[0]) for row in rows}

    def release_run(self, run_id: str, owner: str) -> bool:
        cur = self._conn.execute(
            "UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE run_id = ? AND owner = ?",
            (run_id, owner),
        )
        return cur.rowcount == 1

    def release_runs(self, owner: str) -> int:
        cur = self._conn.execute(
            "UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE owner = ?", (owner,)
        )
        return cur.rowcount

    def finish_run(
        self,
        run_id: str,
        status: Literal["completed", "failed", "cancelled"],
        at: float,
        *,
        outcome: bytes | None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        cur = self._conn.execute(
            "UPDATE runs SET status = ?, outcome = ?, error_type = ?, error_message = ?, "
            "owner = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ? "
            f"WHERE run_id = ? AND status IN {_RUN_FINISH_FROM[status]}",
            (status, outcome, error_type, error_message, at, at, run_id),
        )
        if cur.rowcount != 1:
            return False
        kind = {
            "completed": Kind.RUN_COMPLETED,
            "failed": Kind.RUN_FAILED,
            "cancelled": Kind.RUN_CANCELLED,
        }[status]
        self.append(run_id, kind, at, payload=outcome)
        self._conn.execute(
            f"UPDATE waits SET status = 'cancelled' WHERE run_id = ? AND status IN "
            f"{_WAIT_CANCEL_FROM}",
            (run_id,),
        )
        self._conn.execute("DELETE FROM hooks WHERE run_id = ?", (run_id,))
        parent = self._conn.execute(
            "SELECT parent_run_id, parent_cid FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if parent is not None and parent[0] is not None:
            # The parent learns through its own journal, in the same transaction.
            self.append(
                str(parent[0]), Kind.CHILD_COMPLETED, at, cid=int(parent[1]), name=status,
                payload=outcome,
            )  # fmt: skip
        self.clear_problem(run_id)
        return True

    def request_cancel(self, run_id: str, at: float) -> str:
        """Ask a run to cancel: "requested" (its driver will), "finished" (a run nobody
        started ends now), "already" (asked before), "ended" or "unknown"."""
        row = self._conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return "unknown"
        if row[0] in ("completed", "failed", "cancelled"):
            return "ended"
        if row[0] == "pending":
            self.finish_run(run_id, "cancelled", at, outcome=None)
            return "finished"
        asked = self._conn.execute(
            "SELECT 1 FROM events WHERE run_id = ? AND kind = ? LIMIT 1",
            (run_id, Kind.CANCEL_REQUESTED),
        ).fetchone()
        if asked is not None:
            return "already"
        self.append(run_id, Kind.CANCEL_REQUESTED, at)
        children = self._conn.execute(
            "SELECT run_id FROM runs WHERE parent_run_id = ? AND status IN ('pending', 'running')",
            (run_id,),
        ).fetchall()
        for (child,) in children:
            self.request_cancel(str(child), at)
        return "requested"

    def set_problem(self, run_id: str, kind: str, message: str, at: float) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO run_problems (run_id, kind, message, at) VALUES (?, ?, ?, ?)",
            (run_id, kind, message, at),
        )

    def clear_problem(self, run_id: str) -> None:
        self._conn.execute("DELETE FROM run_problems WHERE run_id = ?", (run_id,))

    # -- steps ------------------------------------------------------------------

    def schedule_step(
        self, run_id: str, cid: int, name: str, args: bytes, at: float, *, start: bool
    ) -> None:
        """Record a step the workflow asked for; with *start*, claim its first attempt too."""
        self._conn.execute(
            "INSERT INTO steps (run_id, cid, name, status, attempt) VALUES (?, ?, ?, ?, ?)",
            (run_id, cid, name, "running" if start else "scheduled", 1 if start else 0),
        )
        self.append(run_id, Kind.STEP_SCHEDULED, at, cid=cid, name=name, payload=args)
        if start:
            self.append(run_id, Kind.STEP_STARTED, at, cid=cid, attempt=1, name=name)

    def start_attempt(self, run_id: str, cid: int, name: str, attempt: int, at: float) -> bool:
        """Claim *attempt* of a step: wins only if the step is still at ``attempt - 1``."""
        cur = self._conn.execute(
            "UPDATE steps SET status = 'running', attempt = ?, retry_at = NULL "
            f"WHERE run_id = ? AND cid = ? AND attempt = ? AND status IN {_STEP_START_FROM}",
            (attempt, run_id, cid, attempt - 1),
        )
        if cur.rowcount != 1:
            return False
        self.append(run_id, Kind.STEP_STARTED, at, cid=cid, attempt=attempt, name=name)
        return True

    def _end_attempt(
        self,
        run_id: str,
        cid: int,
        attempt: int,
        status: str,
        retry_at: float | None = None,
    ) -> bool:
        cur = self._conn.execute(
            "UPDATE steps SET status = ?, retry_at = ? "
            "WHERE run_id = ? AND cid = ? AND attempt = ? AND status = 'running'",
            (status, retry_at, run_id, cid, attempt),
        )
        return cur.rowcount == 1

    def complete_step(
        self, run_id: str, cid: int, name: str, attempt: int, result: bytes, at: float
    ) -> Event | None:
        if not self._end_attempt(run_id, cid, attempt, "completed"):
            return None
        return self.append(
            run_id, Kind.STEP_COMPLETED, at, cid=cid, attempt=attempt, name=name, payload=result
        )

    def fail_step(
        self, run_id: str, cid: int, name: str, attempt: int, error: bytes, at: float
    ) -> Event | None:
        if not self._end_attempt(run_id, cid, attempt, "failed"):
            return None
        return self.append(
            run_id, Kind.STEP_FAILED, at, cid=cid, attempt=attempt, name=name, payload=error
        )

    def retry_step(
        self,
        run_id: str,
        cid: int,
        name: str,
        attempt: int,
        error: bytes,
        retry_at: float,
        at: float,
    ) -> bool:
        if not self._end_attempt(run_id, cid, attempt, "retrying", retry_at):
            return False
        self.append(
            run_id, Kind.STEP_RETRYING, at, cid=cid, attempt=attempt, name=name, payload=error
        )
        return True

    # -- hooks ------------------------------------------------------------------

    def create_hook(self, run_id: str, cid: int, token: str, payload: bytes, at: float) -> bool:
        """Record a hook; False (and a hook_conflict event) if a live hook holds *token*."""
        self.append(run_id, Kind.HOOK_CREATED, at, cid=cid, name=token, payload=payload)
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO hooks (token, run_id, cid) VALUES (?, ?, ?)",
            (token, run_id, cid),
        )
        if cur.rowcount == 1:
            return True
        self.append(run_id, Kind.HOOK_CONFLICT, at, cid=cid, name=token)
        return False

    def dispose_hook(self, run_id: str, cid: int, at: float) -> bool:
        cur = self._conn.execute("DELETE FROM hooks WHERE run_id = ? AND cid = ?", (run_id, cid))
        if cur.rowcount != 1:
            return False
        self.append(run_id, Kind.HOOK_DISPOSED, at, cid=cid)
        return True

    def resume_hook(self, token: str, payload: bytes, at: float) -> Event | None:
        """Deliver *payload* to the live hook holding *token*; None if there is none."""
        row = self._conn.execute(
            "SELECT run_id, cid FROM hooks WHERE token = ?", (token,)
        ).fetchone()
        if row is None:
            return None
        run_id, cid = str(row[0]), int(row[1])
        return self.append(run_id, Kind.HOOK_RECEIVED, at, cid=cid, name=token, payload=payload)

    # -- waits ------------------------------------------------------------------

    def create_wait(self, run_id: str, cid: int, wake_at: float, payload: bytes, at: float) -> None:
        self._conn.execute(
            "INSERT INTO waits (run_id, cid, wake_at, status) VALUES (?, ?, ?, 'pending')",
            (run_id, cid, wake_at),
        )
        self.append(run_id, Kind.WAIT_CREATED, at, cid=cid, name="sleep", payload=payload)

    def fire_wait(self, run_id: str, cid: int, at: float) -> Event | None:
        cur = self._conn.execute(
            f"UPDATE waits SET status = 'fired' WHERE run_id = ? AND cid = ? "
            f"AND status IN {_WAIT_FIRE_FROM}",
            (run_id, cid),
        )
        if cur.rowcount != 1:
            return None
        return self.append(run_id, Kind.WAIT_COMPLETED, at, cid=cid, name="sleep")

    # -- streams ------------------------------------------------------------------

    def append_chunks(
        self,
        run_id: str,
        name: str,
        chunks: Sequence[ChunkRow],
        at: float,
        *,
        close: bool = False,
    ) -> int:
        """Append *chunks* to a run's stream (closing it after them with *close*).

        Returns the index the first chunk got. Raises :class:`StreamClosed`,
        writing nothing, if there are chunks and the stream was closed or the
        run has ended (closing a closed stream is harmless).
        """
        status = self._conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,))
        row = status.fetchone()
        if row is None:
            raise StreamClosed(run_id, name, "belongs to no run")
        stream = self._conn.execute(
            "SELECT chunks, closed_at FROM streams WHERE run_id = ? AND name = ?", (run_id, name)
        ).fetchone()
        if not chunks:  # only a close: harmless on a closed stream or an ended run
            if close and row[0] not in _ENDED_RUN:
                self.close_stream(run_id, name, at)
            return 0 if stream is None else int(stream[0])
        if row[0] in _ENDED_RUN:
            raise StreamClosed(run_id, name, f"belongs to a run that {row[0]}")
        if stream is None:
            first = 0
            self._conn.execute(
                "INSERT INTO streams (run_id, name, chunks, bytes, created_at, updated_at) "
                "VALUES (?, ?, 0, 0, ?, ?)",
                (run_id, name, at, at),
            )
        elif stream[1] is not None:
            raise StreamClosed(run_id, name, "was closed")
        else:
            first = int(stream[0])
        self._conn.executemany(
            "INSERT INTO stream_chunks (run_id, name, idx, format, size, writer, attempt, "
            "at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (run_id, name, first + i, c.format, c.size, c.writer, c.attempt, at, c.data)
                for i, c in enumerate(chunks)
            ],
        )
        last = first + len(chunks) - 1
        self._conn.execute(
            "UPDATE streams SET chunks = ?, bytes = bytes + ?, updated_at = ? "
            "WHERE run_id = ? AND name = ?",
            (last + 1, sum(c.size for c in chunks), at, run_id, name),
        )
        self.append(run_id, Kind.STREAM_APPENDED, at, name=name, payload=f"{first}-{last}".encode())
        if close:
            self._close_stream(run_id, name, at)
        return first

    def close_stream(self, run_id: str, name: str, at: float) -> bool:
        """Close a run's stream; False if it was closed already (closing twice is harmless)."""
        self._conn.execute(
            "INSERT OR IGNORE INTO streams (run_id, name, chunks, bytes, created_at, updated_at) "
            "VALUES (?, ?, 0, 0, ?, ?)",
            (run_id, name, at, at),
        )
        return self._close_stream(run_id, name, at)

    def _close_stream(self, run_id: str, name: str, at: float) -> bool:
        cur = self._conn.execute(
            "UPDATE streams SET closed_at = ?, updated_at = ? "
            "WHERE run_id = ? AND name = ? AND closed_at IS NULL",
            (at, at, run_id, name),
        )
        if cur.rowcount != 1:
            return False
        self.append(run_id, Kind.STREAM_CLOSED, at, name=name)
        return True


@attrs.frozen
class ChunkRow:
    """One chunk as stored: ``format`` says how ``data`` is encoded (see runwright.streams)."""

    format: int
    size: int
    writer: str | None
    attempt: int | None
    data: bytes


@attrs.frozen
class StoredChunk:
    index: int
    format: int
    size: int
    writer: str | None
    attempt: int | None
    at: float
    data: bytes


@attrs.frozen
class StreamRow:
    run_id: str
    name: str
    chunks: int
    bytes: int
    closed_at: float | None
    created_at: float
    updated_at: float


@attrs.define
class _Request:
    fn: Callable[[Tx], Any]
    done: anyio.Event = attrs.field(factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


#: Seconds between ``data_version`` polls while the database changes, and at most when idle.
_WATCH_BUSY = 0.001
_WATCH_IDLE = 0.004
#: Seconds the poll stays at ``_WATCH_BUSY`` after another process's last change.
_WATCH_HOLD = 0.05


def _covered(ranges: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """Whether every seq from *lo* to *hi* lies in one of *ranges*."""
    for start, end in sorted(ranges):
        if lo > hi:
            break
        if start <= lo <= end:
            lo = end + 1
    return lo > hi


def _call_soon_threadsafe() -> Callable[[Callable[[], object]], object]:
    """How a thread schedules a callback on the running event loop (asyncio or trio).

    anyio's own from-thread calls block the calling thread until the loop runs
    them; the writer only needs to post a wake-up, which costs a third of a
    worker-thread round trip.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio  # no asyncio loop runs this thread: anyio is on trio

        return trio.lowlevel.current_trio_token().run_sync_soon
    return loop.call_soon_threadsafe


def _wake(
    call_soon: Callable[[Callable[[], object]], object], callbacks: list[Callable[[], object]]
) -> None:
    def run_all() -> None:
        for callback in callbacks:
            callback()

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left waiting
        call_soon(run_all)


def _connect(path: str, busy_timeout: float, synchronous: Synchronous) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(f"{path}: could not switch the journal to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _translate(exc, path, busy_timeout) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _translate(exc: sqlite3.Error, path: str, busy_timeout: float) -> JournalError:
    message = str(exc)
    if "locked" in message or "busy" in message:
        return DatabaseLocked(path, busy_timeout)
    if "not a database" in message or "malformed" in message:
        return NotARunwrightDatabase(path, message)
    return JournalError(f"{path}: {message}")


class Journal:
    """A runwright journal in one SQLite file.

    Open with :meth:`open`; run :meth:`serve` in a task group for as long as
    writes are made; :meth:`close` at the end.
    """

    def __init__(
        self,
        path: str,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        busy_timeout: float,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._writer = writer
        self._reader = reader
        self._reader_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = False
        self._watchers: list[Callable[[list[tuple[int, str, str]]], object]] = []
        self._own_lock = threading.Lock()
        self._own_ranges: list[tuple[int, int]] = []
        self._foreign: deque[list[tuple[int, str, str]]] = deque()
        self._foreign_ready: anyio.Event | None = None
        self.batches = 0
        self.writes = 0

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
    ) -> Journal:
        return await anyio.to_thread.run_sync(
            cls._open_sync, os.fspath(path), synchronous, busy_timeout
        )

    @classmethod
    def _open_sync(cls, path: str, synchronous: Synchronous, busy_timeout: float) -> Journal:
        if synchronous not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(
                f"synchronous must be 'FULL', 'NORMAL', 'EXTRA' or 'OFF', not {synchronous!r}"
            )
        check_file(path)
        # Switching a new file to WAL needs a lock SQLite does not wait for:
        # processes opening one new journal together retry until busy_timeout.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                return cls._open_once(path, synchronous, busy_timeout)
            except DatabaseLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    @classmethod
    def _open_once(cls, path: str, synchronous: Synchronous, busy_timeout: float) -> Journal:
        writer = _connect(path, busy_timeout, synchronous)
        try:
            ensure_schema(writer, path)
            # The writer waits for other processes' write locks itself (see _begin).
            writer.execute("PRAGMA busy_timeout = 0")
            reader = _connect(path, busy_timeout, synchronous)
        except sqlite3.Error as exc:
            writer.close()
            raise _translate(exc, path, busy_timeout) from exc
        except BaseException:
            writer.close()
            raise
        return cls(path, writer, reader, busy_timeout)

    # -- writing ----------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run *fn* inside the next group-committed transaction; return what it returned."""
        if self._closed:
            raise JournalError(f"{self.path}: the journal is closed")
        request = _Request(fn)
        self._queue.put(request)
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[no-any-return]

    def watch(self, callback: Callable[[list[tuple[int, str, str]]], object]) -> None:
        """Call *callback* on the event loop with other processes' new events.

        Each call gets ``(seq, run_id, kind)`` tuples, in seq order. Register
        before :meth:`serve`.
        """
        self._watchers.append(callback)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the writer (and watcher) threads until :meth:`stop_writing`."""
        call_soon = _call_soon_threadsafe()
        finished = anyio.Event()
        threads = [
            threading.Thread(
                target=self._writer_loop,
                args=(call_soon, finished),
                name="runwright-writer",
                daemon=True,
            )
        ]
        stop_watching = threading.Event()
        watching = threading.Event()
        if self._watchers:
            threads.append(
                threading.Thread(
                    target=self._watch_loop,
                    args=(call_soon, stop_watching, watching),
                    name="runwright-watcher",
                    daemon=True,
                )
            )
        else:
            watching.set()
        self._foreign_ready = anyio.Event()
        for thread in threads:
            thread.start()
        # Whatever another process commits from now on is noticed: the watcher
        # has taken its starting point.
        await anyio.to_thread.run_sync(watching.wait)
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                if self._watchers:
                    tg.start_soon(self._dispatch_foreign)
                await finished.wait()
                tg.cancel_scope.cancel()
        finally:
            self._closed = True
            self._queue.put(None)
            stop_watching.set()
            with anyio.CancelScope(shield=True):
                for thread in threads:
                    await anyio.to_thread.run_sync(thread.join)

    def _post_foreign(self, events: list[tuple[int, str, str]]) -> None:
        self._foreign.append(events)
        assert self._foreign_ready is not None
        self._foreign_ready.set()

    async def _dispatch_foreign(self) -> None:
        """Hand other processes' events to the watchers, from a task (they start tasks)."""
        while True:
            assert self._foreign_ready is not None
            await self._foreign_ready.wait()
            self._foreign_ready = anyio.Event()
            while self._foreign:
                events = self._foreign.popleft()
                for watcher in self._watchers:
                    watcher(events)

    def _watch_loop(
        self,
        call_soon: Callable[[Callable[[], object]], object],
        stop: threading.Event,
        started: threading.Event,
    ) -> None:
        """The watcher thread: notice other processes' commits and read their events.

        ``PRAGMA data_version`` changes whenever another connection commits;
        polling it costs a few microseconds. The poll runs every millisecond
        while other processes write, and for ``_WATCH_HOLD`` after they last
        did (a stream's next chunk, a reply to a hook, usually follows soon),
        then backs off to ``_WATCH_IDLE`` (this process's own commits do not
        speed it up). Events
        inside the writer's own seq ranges are this process's and are not
        reported.
        """
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        except sqlite3.Error:
            started.set()
            log.exception("%s: the watcher could not start", self.path)
            return
        try:
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            finally:
                started.set()
            delay = _WATCH_BUSY
            hold_until = 0.0
            while not stop.wait(delay):
                current = conn.execute("PRAGMA data_version").fetchone()[0]
                if current == version:
                    if time.monotonic() >= hold_until:
                        delay = min(delay * 2, _WATCH_IDLE)
                    continue
                version = current
                with self._own_lock:
                    (newest,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
                    if _covered(self._own_ranges, last + 1, newest):
                        # Only this process wrote since: nothing to read, and no
                        # reason to look sooner than when idle.
                        last = newest
                        self._own_ranges = [(lo, hi) for lo, hi in self._own_ranges if hi > last]
                        delay = min(delay * 2, _WATCH_IDLE)
                        continue
                    delay = _WATCH_BUSY
                    hold_until = time.monotonic() + _WATCH_HOLD
                    rows = conn.execute(
                        "SELECT seq, run_id, kind FROM events WHERE seq > ? ORDER BY seq", (last,)
                    ).fetchall()
                    if not rows:
                        continue
                    last = rows[-1][0]
                    own = self._own_ranges
                    foreign = [
                        (int(seq), str(run_id), str(kind))
                        for seq, run_id, kind in rows
                        if not any(lo <= seq <= hi for lo, hi in own)
                    ]
                    self._own_ranges = [(lo, hi) for lo, hi in own if hi > last]
                if foreign:
                    _wake(call_soon, [functools.partial(self._post_foreign, foreign)])
        except sqlite3.Error:
            log.exception(
                "%s: the watcher stopped; other processes' changes go unnoticed", self.path
            )
        finally:
            conn.close()

    def stop_writing(self) -> None:
        """Let :meth:`serve` return once every write already submitted has committed."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)

    def _writer_loop(
        self, call_soon: Callable[[Callable[[], object]], object], finished: anyio.Event
    ) -> None:
        """The writer thread: take every queued request, commit them as one batch, wake them."""
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[_Request] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                else:
                    batch.append(more)
            if batch:
                self._commit(batch)
                _wake(call_soon, [request.done.set for request in batch])
            # Hold nothing of this batch (its stream chunks may be large) while waiting.
            del first, batch
            more = None
        _wake(call_soon, [finished.set])

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting up to busy_timeout for another process's write lock.

        SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries; when
        several processes commit often, those sleeps dominate. This one
        retries after 50 us, doubling to at most 1 ms.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.00005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" not in message and "busy" not in message:
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.001)

    def _commit(self, batch: Sequence[_Request]) -> None:
        conn = self._writer
        try:
            self._begin(conn)
        except sqlite3.Error as exc:
            error = _translate(exc, self.path, self.busy_timeout)
            for request in batch:
                request.error = error
            return
        try:
            lo, hi = 0, 0
            for request in batch:
                tx = Tx(conn)
                conn.execute("SAVEPOINT w")
                try:
                    request.result = request.fn(tx)
                except Exception as exc:
                    conn.execute("ROLLBACK TO w")
                    request.error = exc
                conn.execute("RELEASE w")
                if tx.events:
                    lo = lo or tx.events[0].seq
                    hi = max(hi, tx.events[-1].seq)
            # The watcher must not see these events before they are known as ours.
            with self._own_lock:
                conn.execute("COMMIT")
                if hi and self._watchers:
                    self._own_ranges.append((lo, hi))
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = _translate(exc, self.path, self.busy_timeout)
            for request in batch:
                request.result = None
                request.error = error
        self.batches += 1
        self.writes += len(batch)

    # -- reading ----------------------------------------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run *fn* with the reader connection in a worker thread."""
        return await anyio.to_thread.run_sync(self._read_sync, fn)

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # One read transaction: everything *fn* reads comes from one snapshot.
        with self._reader_lock:
            conn = self._reader
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _translate(exc, self.path, self.busy_timeout) from exc

    async def events(self, run_id: str, after: int = 0) -> list[Event]:
        return await self.read(lambda c: events_of(c, run_id, after))

    async def run(self, run_id: str) -> RunRow | None:
        return await self.read(lambda c: run_row(c, run_id))

    async def close(self) -> None:
        self._closed = True
        await anyio.to_thread.run_sync(self._close_sync)

    def _close_sync(self) -> None:
        with self._reader_lock:
            self._reader.close()
        self._writer.close()


# -- queries: plain functions of a connection, usable from any thread -----------


def events_of(conn: sqlite3.Connection, run_id: str, after: int = 0) -> list[Event]:
    rows = conn.execute(
        "SELECT seq, run_id, kind, cid, attempt, name, payload, at FROM events "
        "WHERE run_id = ? AND seq > ? ORDER BY seq",
        (run_id, after),
    ).fetchall()
    return [Event(*row) for row in rows]


def run_row(conn: sqlite3.Connection, run_id: str) -> RunRow | None:
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else RunRow(*row)


def list_runs(
    conn: sqlite3.Connection,
    *,
    status: str | None = None,
    workflow: str | None = None,
    limit: int = 100,
) -> list[RunRow]:
    where, params = [], []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if workflow is not None:
        where.append("workflow = ?")
        params.append(workflow)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, run_id LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [RunRow(*row) for row in rows]


def steps_of(conn: sqlite3.Connection, run_id: str) -> list[StepRow]:
    rows = conn.execute(
        "SELECT run_id, cid, name, status, attempt, retry_at FROM steps WHERE run_id = ? "
        "ORDER BY cid",
        (run_id,),
    ).fetchall()
    return [StepRow(*row) for row in rows]


def waits_of(conn: sqlite3.Connection, run_id: str) -> list[WaitRow]:
    rows = conn.execute(
        "SELECT run_id, cid, wake_at, status FROM waits WHERE run_id = ? ORDER BY cid", (run_id,)
    ).fetchall()
    return [WaitRow(*row) for row in rows]


def due_waits(conn: sqlite3.Connection, now: float, limit: int = 1000) -> list[WaitRow]:
    rows = conn.execute(
        "SELECT run_id, cid, wake_at, status FROM waits WHERE status = 'pending' AND wake_at <= ? "
        "ORDER BY wake_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [WaitRow(*row) for row in rows]


def next_wake(conn: sqlite3.Connection) -> float | None:
    row = conn.execute("SELECT min(wake_at) FROM waits WHERE status = 'pending'").fetchone()
    return None if row[0] is None else float(row[0])


def claimable_runs(
    conn: sqlite3.Connection, owner: str, now: float, limit: int
) -> list[tuple[str, str | None, float | None]]:
    """Unfinished runs nobody holds a live lease on (or *owner* holds), oldest first."""
    return [
        (str(r[0]), r[1], r[2])
        for r in conn.execute(
            "SELECT run_id, owner, lease_expires_at FROM runs "
            "WHERE status IN ('pending', 'running') "
            "AND (owner IS NULL OR owner = ? OR lease_expires_at < ?) "
            "ORDER BY created_at LIMIT ?",
            (owner, now, limit),
        )
    ]


def owners(conn: sqlite3.Connection) -> list[str]:
    """Every process that holds a run's lease."""
    return [
        str(r[0]) for r in conn.execute("SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL")
    ]


def live_runs(conn: sqlite3.Connection) -> list[tuple[str, str | None, float | None]]:
    """Every run that is not finished: (run_id, owner, lease_expires_at)."""
    return [
        (str(r[0]), r[1], r[2])
        for r in conn.execute(
            "SELECT run_id, owner, lease_expires_at FROM runs "
            "WHERE status IN ('pending', 'running') ORDER BY created_at"
        )
    ]


def problem_of(conn: sqlite3.Connection, run_id: str) -> tuple[str, str, float] | None:
    row = conn.execute(
        "SELECT kind, message, at FROM run_problems WHERE run_id = ?", (run_id,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), float(row[2]))


def chunks_from(
    conn: sqlite3.Connection, run_id: str, name: str, start: int, max_bytes: int
) -> list[StoredChunk]:
    """A stream's chunks from *start* on, in order: about *max_bytes* decoded, one at least."""
    rows = conn.execute(
        "SELECT idx, format, size, writer, attempt, at, data FROM stream_chunks "
        "WHERE run_id = ? AND name = ? AND idx >= ? ORDER BY idx",
        (run_id, name, start),
    )
    chunks: list[StoredChunk] = []
    total = 0
    for row in rows:
        chunks.append(StoredChunk(*row))
        total += max(row[2], len(row[6]))  # what it will take decoded
        if total >= max_bytes:
            break
    return chunks


def stream_row(conn: sqlite3.Connection, run_id: str, name: str) -> StreamRow | None:
    row = conn.execute(
        "SELECT run_id, name, chunks, bytes, closed_at, created_at, updated_at FROM streams "
        "WHERE run_id = ? AND name = ?",
        (run_id, name),
    ).fetchone()
    return None if row is None else StreamRow(*row)


def streams_of(conn: sqlite3.Connection, run_id: str) -> list[StreamRow]:
    rows = conn.execute(
        "SELECT run_id, name, chunks, bytes, closed_at, created_at, updated_at FROM streams "
        "WHERE run_id = ? ORDER BY created_at, name",
        (run_id,),
    )
    return [StreamRow(*row) for row in rows]


def run_status(conn: sqlite3.Connection, run_id: str) -> str | None:
    row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else str(row[0])
