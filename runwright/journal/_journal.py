"""What every journal backend shares: the group-commit writer, the watcher's
bookkeeping, and the way threads hand results back to the event loop.

Theory of operation
-------------------
Every write is a plain function ``fn(tx) -> T`` handed to :meth:`Journal.write`.
A single writer thread collects the functions that arrive while the previous
transaction commits, and runs all of them in one transaction: one thread hop
and one commit per batch, not per caller. Each function runs inside its own
SAVEPOINT, so one that raises is rolled back alone and its caller gets the
exception; the others commit.

Every backend serializes its write transactions and commits them in ``seq``
order (SQLite has one writer by design; PostgreSQL takes a transaction-level
advisory lock), so a reader that has seen ``seq`` N has seen everything
before it. That is what lets the watcher, and every run actor's cursor, read
"everything after N" and never miss an event that committed late.

The watcher thread notices other processes' commits (SQLite polls
``data_version``; PostgreSQL waits for a NOTIFY, with a slow safety poll) and
reads the new events' ``(seq, run_id, kind)``. Events inside the writer's own
seq ranges are this process's and are not reported.

Reads run on a separate connection in a worker thread, one hop per query
function, and see one snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus

from .._exceptions import JournalError
from ._events import Event
from ._queries import events_of, run_row
from ._rows import RunRow
from ._tx import Connection, Tx

__all__ = ["ForeignEvents", "Journal"]

T = TypeVar("T")
log = logging.getLogger("runwright")

#: ``(seq, run_id, kind)`` of events other processes committed, in seq order.
ForeignEvents = list[tuple[int, str, str]]


class _Request:
    """One write: *fn*, and *done*, what its caller waits on (an asyncio future or a
    trio event, whichever the loop is: anyio's portable Event costs several times
    more per write)."""

    __slots__ = ("abandoned", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Tx], Any], done: Any) -> None:
        self.fn = fn
        self.done = done
        self.result: Any = None
        self.error: BaseException | None = None
        #: Its caller stopped waiting (cancelled): not made unless its transaction had begun.
        self.abandoned = False


class Journal:
    """A runwright journal. Backends subclass it (see ``open_journal``).

    Open with the backend's ``open``; run :meth:`serve` in a task group for
    as long as writes are made; :meth:`close` at the end.
    """

    #: Which backend this is: "sqlite" or "postgresql".
    backend = ""

    def __init__(self, path: str) -> None:
        #: How the journal is named in messages: a file path, or a URL without its password.
        self.path = path
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = False
        self._watchers: list[Callable[[ForeignEvents], object]] = []
        self._own_lock = threading.Lock()
        self._own_ranges: list[tuple[int, int]] = []
        #: A seq the watcher must read again from (set when a write known as ours failed).
        self._rewind: int | None = None
        self._foreign: deque[ForeignEvents] = deque()
        self._foreign_ready: anyio.Event | None = None
        self.batches = 0
        self.writes = 0
        #: Why the last write failed, until a write succeeds again (a full disk, a
        #: read-only file, a lost server): runwright's own writes wait and retry.
        self.fault: JournalError | None = None
        self._healed = anyio.Event()
        self._join_by: float | None = None
        self._stopping = anyio.Event()
        #: The writer thread runs; whoever ends last, it or :meth:`close`, closes the
        #: connections (a writer stuck past shutdown closes them when it gets out).
        self._writer_running = False
        self._close_on_exit = False
        #: How a write's completion is made and signalled on this event loop.
        self._new_done: Callable[[], Any] | None = None
        self._set_done: Callable[[Any], object] = _set_future

    # -- what a backend provides ----------------------------------------------------

    def _commit(self, batch: Sequence[_Request]) -> None:
        """Run *batch* in one transaction and set each request's result or error."""
        raise NotImplementedError

    def _watch_loop(
        self,
        call_soon: Callable[[Callable[[], object]], object],
        stop: threading.Event,
        started: threading.Event,
    ) -> None:
        """The watcher thread: report other processes' events with :meth:`_report`
        until *stop* is set; set *started* once its starting point is taken."""
        raise NotImplementedError

    def _read_sync(self, fn: Callable[[Any], T]) -> T:
        raise NotImplementedError

    def _close_sync(self) -> None:
        raise NotImplementedError

    # -- writing ----------------------------------------------------------------

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run *fn* inside the next group-committed transaction; return what it returned.

        Cancelled while it waits for the writer (a lock another process holds, a
        server that is away), the write is not made, unless its transaction had
        already begun running it: then it commits, or not, with that transaction.
        """
        if self._closed:
            raise JournalError(f"{self.path}: the journal is closed")
        if self._new_done is None:
            self._new_done, self._set_done = _completions()
        done = self._new_done()
        request = _Request(fn, done)
        self._queue.put(request)
        try:
            if self._new_done is _new_trio_event:
                await done.wait()
            else:
                await done
        except BaseException:
            request.abandoned = True
            raise
        error = request.error
        if error is not None:
            if isinstance(error, JournalError):
                self._note_fault(error)
            raise error
        if self.fault is not None:
            self._note_fault(None)
        return request.result  # type: ignore[no-any-return]

    def _note_fault(self, error: JournalError | None) -> None:
        """Log when writes start failing, and when they succeed again (not every retry)."""
        if error is not None and self.fault is None:
            log.warning("runwright: journal writes fail; runs wait and retry them: %s", error)
            self._healed = anyio.Event()
        elif error is None and self.fault is not None:
            log.warning("runwright: %s: journal writes succeed again", self.path)
            self._healed.set()
        self.fault = error

    async def backoff(self, delay: float) -> None:
        """Wait *delay* seconds before retrying a write that failed, or less: until a
        write succeeds again (then every write that waits retries at once)."""
        if self.fault is None:
            await anyio.sleep(delay)
            return
        with anyio.move_on_after(delay):
            await self._healed.wait()

    #: How long one maintenance transaction (a prune batch) should take: short where
    #: it holds up the writes of runs (SQLite: it shares their transactions).
    maintenance_seconds = 0.02

    async def maintain(self, fn: Callable[[Tx], T]) -> T:
        """Run *fn*, a write that appends no events and touches only rows no run's
        driver writes (ended runs), in a transaction of its own where the backend can
        keep it off the writes of runs; here, in the next group-committed one."""
        return await self.write(fn)

    def watch(self, callback: Callable[[ForeignEvents], object]) -> None:
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
        self._writer_running = True
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
                await self._stopping.wait()
                # The writes submitted before the stop commit, unless the writer is
                # stuck in one past the time given (see _join).
                assert self._join_by is not None
                with anyio.move_on_after(max(0.0, self._join_by - time.monotonic())):
                    await finished.wait()
                tg.cancel_scope.cancel()
        finally:
            self._closed = True
            self._queue.put(None)
            stop_watching.set()
            with anyio.CancelScope(shield=True):
                by = self._join_by if self._join_by is not None else time.monotonic() + 1.0
                await _join(threads, self.path, by)

    def stop_writing(self, within: float = 1.0) -> None:
        """Let :meth:`serve` return once every write already submitted has committed, or
        *within* seconds, whichever is first (see :func:`_join`)."""
        self._join_by = time.monotonic() + within
        self._stopping.set()
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
                self.batches += 1
                self.writes += len(batch)
                _wake_writes(call_soon, self._set_done, [request.done for request in batch])
            # Hold nothing of this batch (its stream chunks may be large) while waiting.
            del first, batch
            more = None
        _wake(call_soon, [finished.set])
        self._writer_running = False
        if self._close_on_exit:
            try:
                self._close_sync()
            except Exception:
                log.exception("runwright: %s: closing the journal failed", self.path)

    def _run_requests(
        self,
        conn: Connection,
        batch: Sequence[_Request],
        make_tx: Callable[[], Tx],
        *,
        savepoints: bool = True,
        abort_on: tuple[type[BaseException], ...] = (),
    ) -> tuple[int, int]:
        """Run every request of *batch* in the open transaction, each in a SAVEPOINT;
        return the lowest and highest seq they appended (0, 0 if none).

        An exception a request raises is its own (its savepoint is rolled back),
        except those of *abort_on*, which end the whole batch; without savepoints
        every exception ends it."""
        lo, hi = 0, 0
        for request in batch:
            if request.abandoned:
                continue
            tx = make_tx()
            if savepoints:
                conn.execute("SAVEPOINT w")
            try:
                request.result = request.fn(tx)
            except Exception as exc:
                if not savepoints or isinstance(exc, abort_on):
                    raise
                conn.execute("ROLLBACK TO w")
                request.error = exc
            if savepoints:
                conn.execute("RELEASE w")
            if tx.events:
                lo = lo or tx.events[0].seq
                hi = max(hi, tx.events[-1].seq)
        return lo, hi

    def _mark_own(self, lo: int, hi: int) -> None:
        """Remember seqs *lo*..*hi* as this process's (call under ``_own_lock``, at commit)."""
        if hi and self._watchers:
            self._own_ranges.append((lo, hi))

    # -- watching -----------------------------------------------------------------

    def _look(self, conn: Connection, last: int) -> tuple[int, ForeignEvents, bool]:
        """Read events after *last*: the new *last*, other processes' events among them,
        and whether there were any events of other processes at all."""
        with self._own_lock:
            (newest,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            newest = int(newest)
            if _covered(self._own_ranges, last + 1, newest):
                # Only this process wrote since: nothing to read.
                self._own_ranges = [(lo, hi) for lo, hi in self._own_ranges if hi > newest]
                return newest, [], False
            rows = conn.execute(
                "SELECT seq, run_id, kind FROM events WHERE seq > ? ORDER BY seq", (last,)
            ).fetchall()
            if not rows:
                return last, [], False
            last, foreign = self._sift(rows)
        return last, foreign, True

    def _sift(self, rows: list[Any]) -> tuple[int, ForeignEvents]:
        """The newest seq of *rows* (``seq, run_id, kind``, in order) and those of other
        processes; this process's ranges up to it are forgotten. Call under ``_own_lock``."""
        newest = int(rows[-1][0])
        own = self._own_ranges
        foreign = [
            (int(seq), str(run_id), str(kind))
            for seq, run_id, kind in rows
            if not any(lo <= seq <= hi for lo, hi in own)
        ]
        self._own_ranges = [(lo, hi) for lo, hi in own if hi > newest]
        return newest, foreign

    def _report(
        self, call_soon: Callable[[Callable[[], object]], object], foreign: ForeignEvents
    ) -> None:
        if foreign:
            _wake(call_soon, [lambda: self._post_foreign(foreign)])

    def _post_foreign(self, events: ForeignEvents) -> None:
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

    # -- reading ----------------------------------------------------------------

    async def read(self, fn: Callable[[Any], T]) -> T:
        """Run *fn* with the reader connection (one snapshot) in a worker thread."""
        return await anyio.to_thread.run_sync(self._read_sync, fn)

    async def events(self, run_id: str, after: int = 0) -> list[Event]:
        return await self.read(lambda c: events_of(c, run_id, after))

    async def run(self, run_id: str) -> RunRow | None:
        return await self.read(lambda c: run_row(c, run_id))

    async def close(self) -> None:
        self._closed = True
        self._close_on_exit = True
        if self._writer_running:
            return  # it closes them as it ends (closing both ways is harmless)
        await anyio.to_thread.run_sync(self._close_sync)


async def _join(threads: list[threading.Thread], path: str, deadline: float) -> None:
    """Wait for *threads* until *deadline* (``time.monotonic()``).

    A thread stuck in a database call (a server gone silent, a lock held by
    another process) is left to finish on its own, as a daemon, and named:
    shutdown must end, and its transaction commits whole or not at all.
    """
    for thread in threads:
        await anyio.to_thread.run_sync(thread.join, max(0.0, deadline - time.monotonic()))
    for thread in threads:
        if thread.is_alive():
            log.warning(
                "runwright: %s: %s is still inside a database call; left to it", path, thread.name
            )


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


def _completions() -> tuple[Callable[[], Any], Callable[[Any], object]]:
    """How to make a write's completion, and to signal it, on the running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _new_trio_event, _set_trio_event
    return loop.create_future, _set_future


def _new_trio_event() -> Any:
    import trio  # no asyncio loop runs this thread: anyio is on trio

    return trio.Event()


def _set_trio_event(event: Any) -> None:
    event.set()


def _set_future(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled: its caller stopped waiting
        future.set_result(None)


def _wake_writes(
    call_soon: Callable[[Callable[[], object]], object],
    set_done: Callable[[Any], object],
    dones: list[Any],
) -> None:
    def run_all() -> None:
        for done in dones:
            set_done(done)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left waiting
        call_soon(run_all)


def _wake(
    call_soon: Callable[[Callable[[], object]], object], callbacks: list[Callable[[], object]]
) -> None:
    def run_all() -> None:
        for callback in callbacks:
            callback()

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left waiting
        call_soon(run_all)
