"""One process's streams: writers that batch into the journal, readers fed from memory.

Theory of operation
-------------------
A stream is ``(run_id, name)``. ``write()`` encodes the chunk at the call
site (so a value the codec refuses fails there, with nothing written) and
puts it on the stream's pending list. If no drain task is running for the
stream, one is started: it takes everything pending and hands it to the
journal as one write, and repeats while more arrived meanwhile. The journal
group-commits those writes with everyone else's, so under load many chunks
of many streams share one transaction and one fsync. The chunk index is
assigned inside the transaction, so it is gap-free and in commit order even
when two processes write one stream.

Once a batch is durable its chunks go into the stream's ring, a bounded
window of recent chunks in memory, and the readers waiting on the run are
woken. A reader takes its next chunk from the ring when it is there, and
reads the journal otherwise: when it connects late, falls behind the ring,
or the writer is another process. Readers pull, so a slow reader costs no
memory; a writer more than ``MAX_PENDING_BYTES`` ahead of the journal waits
in ``write()``.

Readers of a run wait on one event per run. It is set when a batch of the
run commits here, when its run ends here, and when another process's
``stream_appended``, ``stream_closed`` or run-end events are noticed by the
journal's watcher (which polls every millisecond while the database changes
and backs off to a few when idle).

A step attempt keeps the set of streams it wrote to; the runtime flushes
them before it journals the step's outcome, so ``step_completed`` is never
durable before the chunks the step wrote.
"""

from __future__ import annotations

import contextvars
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from .._exceptions import (
    ChunkTooLarge,
    EncodeError,
    JournalError,
    RunNotFound,
    StreamClosed,
    StreamInterrupted,
)
from ..journal._codec import Codec
from ..journal._events import STREAM_KINDS, Kind
from ..journal._journal import Journal
from ..journal._queries import chunks_from, run_status, stream_row, streams_of
from ..journal._rows import ChunkRow, StoredChunk, StreamRow
from ..journal._stream_tx import append_chunks
from ..journal._tx import Tx
from ._chunks import (
    BYTES,
    COMPRESS_FROM,
    MAX_CHUNK_BYTES,
    TEXT,
    VALUE,
    Chunk,
    StreamInfo,
    decode_stored,
    pack,
)

__all__ = [
    "MAX_PENDING_BYTES",
    "RING_BYTES",
    "AttemptStreams",
    "StreamHub",
    "StreamReader",
    "current_attempt",
]

log = logging.getLogger("runwright")

#: Bytes written but not yet durable, per stream, beyond which write() waits.
MAX_PENDING_BYTES = 16 * 1024 * 1024
#: What a pending chunk costs in memory beyond its bytes, as counted against that bound.
CHUNK_OVERHEAD = 256
#: At most this many bytes, and chunks, of one stream go into one transaction.
BATCH_BYTES = 4 * 1024 * 1024
BATCH_CHUNKS = 4096
#: Bytes of recent durable chunks kept in memory per stream for readers.
RING_BYTES = 4 * 1024 * 1024
#: Bytes a reader fetches from the journal at a time.
READ_BYTES = 1024 * 1024
#: A write yields to other tasks once this many writes (or 16 KiB units) went without.
_YIELD_EVERY = 64
#: Bytes to compress in a batch from which compression runs in a worker thread.
PACK_ASIDE_BYTES = 64 * 1024
#: Seconds a waiting reader sleeps at most before it looks at the journal anyway.
SAFETY_POLL = 1.0

_ENDED = ("completed", "failed", "cancelled")
_END_KINDS = frozenset({Kind.RUN_COMPLETED, Kind.RUN_FAILED, Kind.RUN_CANCELLED})


@attrs.define(eq=False)
class _Pending:
    fmt: int
    data: bytes
    writer: str | None
    attempt: int | None
    value: Any


@attrs.define(eq=False)
class _Stream:
    run_id: str
    name: str
    users: int = 0
    pending: list[_Pending] = attrs.Factory(list)
    #: Bytes pending or being written.
    unsettled: int = 0
    draining: bool = False
    enqueued: int = 0
    durable: int = 0
    #: One past the highest index this process committed to the stream.
    high: int = 0
    #: Writes (and 16 KiB units written) since a write last yielded.
    since_yield: int = 0
    close_requested: bool = False
    closed: bool = False
    error: BaseException | None = None
    settled: anyio.Event = attrs.Factory(anyio.Event)
    ring: dict[int, Chunk] = attrs.Factory(dict)
    ring_order: deque[tuple[int, int]] = attrs.Factory(deque)
    ring_bytes: int = 0

    def remember(self, chunk: Chunk, size: int) -> None:
        self.ring[chunk.index] = chunk
        self.ring_order.append((chunk.index, size))
        self.ring_bytes += size
        while self.ring_bytes > RING_BYTES and len(self.ring_order) > 1:
            index, old = self.ring_order.popleft()
            self.ring_bytes -= old
            self.ring.pop(index, None)

    def wake_settled(self) -> None:
        woken, self.settled = self.settled, anyio.Event()
        woken.set()


@attrs.define(eq=False)
class _Signal:
    """What readers of one run wait on, and how many hold it."""

    event: anyio.Event = attrs.Factory(anyio.Event)
    holders: int = 0


@attrs.define(eq=False)
class AttemptStreams:
    """The streams one step attempt wrote to; flushed before the step's outcome is journaled."""

    hub: StreamHub
    writer: str
    attempt: int
    touched: dict[tuple[str, str], _Stream] = attrs.Factory(dict)

    async def settle(self) -> None:
        """Flush every stream written to; raise the first error a write met."""
        touched, self.touched = self.touched, {}
        try:
            for stream in touched.values():
                await self.hub.flush_stream(stream)
        finally:
            for stream in touched.values():
                self.hub.release(stream)


current_attempt: contextvars.ContextVar[AttemptStreams | None] = contextvars.ContextVar(
    "runwright_attempt_streams", default=None
)


class StreamHub:
    def __init__(
        self,
        journal: Journal,
        codec: Codec,
        clock_now: Callable[[], float],
        spawn: Callable[..., None],
    ) -> None:
        self.journal = journal
        self.codec = codec
        self._now = clock_now
        self._spawn = spawn
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._signals: dict[str, _Signal] = {}
        #: The runtime is closing (see :meth:`shut`).
        self.closing = False
        #: Counts what happened to any stream other than this process's appends
        #: (another process appended or closed, a run ended): a reader that saw
        #: the same count at its last journal read knows only this process's ring
        #: can hold anything newer.
        self.news = 0

    # -- bookkeeping --------------------------------------------------------------

    def acquire(self, run_id: str, name: str) -> _Stream:
        key = (run_id, name)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream(run_id, name)
        stream.users += 1
        return stream

    def release(self, stream: _Stream) -> None:
        stream.users -= 1
        self._maybe_forget(stream)

    def _maybe_forget(self, stream: _Stream) -> None:
        key = (stream.run_id, stream.name)
        if stream.users <= 0 and not stream.draining and self._streams.get(key) is stream:
            del self._streams[key]

    def hold(self, run_id: str) -> _Signal:
        """The signal set the next time something happens to *run_id*'s streams.

        Take it before looking (so that nothing happening meanwhile is
        missed) and :meth:`drop` it after, whether you waited or not.
        """
        signal = self._signals.get(run_id)
        if signal is None:
            signal = self._signals[run_id] = _Signal()
        signal.holders += 1
        return signal

    def drop(self, run_id: str, signal: _Signal) -> None:
        signal.holders -= 1
        if signal.holders == 0 and self._signals.get(run_id) is signal:
            del self._signals[run_id]

    def shut(self) -> None:
        """The runtime is closing: readers stop waiting and raise StreamInterrupted (once
        they have handed out what they hold), so that no reader holds up the shutdown."""
        self.closing = True
        for run_id in list(self._signals):
            self.wake(run_id)

    def wake(self, run_id: str) -> None:
        signal = self._signals.pop(run_id, None)
        if signal is not None:
            signal.event.set()

    def _news(self, run_id: str) -> None:
        self.news += 1
        self.wake(run_id)

    def run_ended(self, run_id: str) -> None:
        self._news(run_id)

    def on_foreign_events(self, events: list[tuple[int, str, str]]) -> None:
        """Other processes appended to streams or ended runs: wake those runs' readers."""
        for _seq, run_id, kind in events:
            if kind in STREAM_KINDS or kind in _END_KINDS:
                self._news(run_id)

    # -- writing ------------------------------------------------------------------

    def encode(self, name: str, data: object) -> tuple[int, bytes, Any]:
        """How *data* is stored, and what readers in this process will be given."""
        value: Any
        if type(data) is str:
            fmt, raw, value = TEXT, data.encode("utf-8", "surrogatepass"), data
        elif isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            fmt, value = BYTES, raw
        else:
            try:
                raw = self.codec.encode(data)
            except EncodeError as exc:
                raise exc.at(step=f"stream {name!r}", argument="chunk") from None
            # Readers here see what readers elsewhere will: decode(encode(value)).
            fmt, value = VALUE, self.codec.decode(raw)
        if len(raw) > MAX_CHUNK_BYTES:
            raise ChunkTooLarge(name, len(raw), MAX_CHUNK_BYTES)
        return fmt, raw, value

    async def write(self, attempt: AttemptStreams, run_id: str, name: str, data: object) -> None:
        # A cancelled step stops at its next write. Writes yield to other tasks
        # only now and then, so that a burst reaches the drain in few batches
        # while a step that writes in a tight loop still lets readers run.
        await anyio.lowlevel.checkpoint_if_cancelled()
        fmt, raw, value = self.encode(name, data)
        stream = self._touch(attempt, run_id, name)
        self._check_writable(stream)
        stream.since_yield += 1 + len(raw) // 16384
        if stream.since_yield >= _YIELD_EVERY:
            stream.since_yield = 0
            await anyio.lowlevel.cancel_shielded_checkpoint()
            self._check_writable(stream)
        while stream.unsettled >= MAX_PENDING_BYTES:
            await stream.settled.wait()
            self._check_writable(stream)
        stream.pending.append(_Pending(fmt, raw, attempt.writer, attempt.attempt, value))
        stream.unsettled += len(raw) + CHUNK_OVERHEAD
        stream.enqueued += 1
        self._start_drain(stream)

    async def flush(self, attempt: AttemptStreams, run_id: str, name: str) -> None:
        await self.flush_stream(self._touch(attempt, run_id, name))

    async def close(self, attempt: AttemptStreams, run_id: str, name: str) -> None:
        stream = self._touch(attempt, run_id, name)
        if stream.closed:
            return
        stream.close_requested = True
        self._start_drain(stream)
        await self.flush_stream(stream)

    async def flush_stream(self, stream: _Stream) -> None:
        """Return once every chunk written so far (and a requested close) is durable."""
        target = stream.enqueued
        while stream.error is None and (
            stream.durable < target or (stream.close_requested and not stream.closed)
        ):
            await stream.settled.wait()
        if stream.error is not None:
            raise stream.error

    def _touch(self, attempt: AttemptStreams, run_id: str, name: str) -> _Stream:
        key = (run_id, name)
        stream = attempt.touched.get(key)
        if stream is None:
            stream = attempt.touched[key] = self.acquire(run_id, name)
        return stream

    @staticmethod
    def _check_writable(stream: _Stream) -> None:
        if stream.error is not None:
            raise stream.error
        if stream.close_requested:
            raise StreamClosed(stream.run_id, stream.name, "was closed")

    def _start_drain(self, stream: _Stream) -> None:
        if not stream.draining:
            stream.draining = True
            self._spawn(self._drain, stream)

    async def _drain(self, stream: _Stream) -> None:
        """Write the stream's pending chunks in batches until none are left."""
        try:
            while stream.error is None and (
                stream.pending or (stream.close_requested and not stream.closed)
            ):
                cut = _batch_end(stream.pending)
                batch, stream.pending = stream.pending[:cut], stream.pending[cut:]
                close = stream.close_requested and not stream.pending
                at = self._now()
                try:
                    if _compressible_bytes(batch) >= PACK_ASIDE_BYTES:
                        # Compress in a worker thread, in parallel with the writer
                        # thread committing other batches, rather than inside it.
                        rows = await anyio.to_thread.run_sync(_pack_all, batch)
                    else:
                        rows = None
                    first = await self.journal.write(
                        _append(stream.run_id, stream.name, batch, rows, close, at)
                    )
                except Exception as exc:
                    stream.error = exc
                    stream.pending.clear()
                    stream.unsettled = 0
                    break
                for offset, item in enumerate(batch):
                    chunk = Chunk(first + offset, item.value, item.writer, item.attempt)
                    stream.remember(chunk, len(item.data))
                stream.high = max(stream.high, first + len(batch))
                stream.durable += len(batch)
                stream.unsettled -= sum(len(item.data) + CHUNK_OVERHEAD for item in batch)
                stream.closed = stream.closed or close
                stream.wake_settled()
                self.wake(stream.run_id)
        finally:
            stream.draining = False
            unfinished = (
                stream.pending
                or stream.durable < stream.enqueued
                or (stream.close_requested and not stream.closed)
            )
            if stream.error is None and unfinished:
                # Cancelled: the runtime is stopping. Whoever flushes learns it.
                stream.error = JournalError(
                    f"{self.journal.path}: the runtime stopped before stream {stream.name!r} "
                    f"of run {stream.run_id} was flushed"
                )
            stream.wake_settled()
            self._maybe_forget(stream)

    # -- reading ------------------------------------------------------------------

    def reader(self, run_id: str, name: str, start: int) -> StreamReader:
        return StreamReader(self, run_id, name, start)

    async def end_reason(self, run_id: str, name: str) -> str:
        """Why a stream has ended: "closed" by its writer, or its run's end ("completed",
        "failed", "cancelled"); "open" if it has not."""

        def read(conn: Any) -> tuple[str | None, StreamRow | None]:
            return run_status(conn, run_id), stream_row(conn, run_id, name)

        status, row = await self.journal.read(read)
        if row is not None and row.closed_at is not None:
            return "closed"
        return status if status in _ENDED else "open"

    async def info(self, run_id: str, name: str) -> StreamInfo:
        def read(conn: Any) -> tuple[str | None, StreamRow | None]:
            return run_status(conn, run_id), stream_row(conn, run_id, name)

        status, row = await self.journal.read(read)
        if status is None:
            raise RunNotFound(run_id)
        if row is None:
            return StreamInfo(run_id, name, 0, 0, status in _ENDED)
        return StreamInfo.of(row, status)

    async def all_of(self, run_id: str) -> list[StreamInfo]:
        def read(conn: Any) -> tuple[str | None, list[StreamRow]]:
            return run_status(conn, run_id), streams_of(conn, run_id)

        status, rows = await self.journal.read(read)
        if status is None:
            raise RunNotFound(run_id)
        return [StreamInfo.of(row, status) for row in rows]


def _batch_end(pending: list[_Pending]) -> int:
    """How many pending chunks go into one write: all, up to BATCH_BYTES and BATCH_CHUNKS."""
    if len(pending) <= BATCH_CHUNKS and sum(len(item.data) for item in pending) <= BATCH_BYTES:
        return len(pending)
    total = 0
    for count, item in enumerate(pending[:BATCH_CHUNKS]):
        total += len(item.data)
        if total > BATCH_BYTES:
            return max(count, 1)
    return min(len(pending), BATCH_CHUNKS)


def _compressible_bytes(batch: list[_Pending]) -> int:
    return sum(
        len(item.data) for item in batch if item.fmt != VALUE and len(item.data) >= COMPRESS_FROM
    )


def _pack_all(batch: list[_Pending]) -> list[ChunkRow]:
    return [pack(item.fmt, item.data, item.writer, item.attempt) for item in batch]


def _append(
    run_id: str,
    name: str,
    batch: list[_Pending],
    rows: list[ChunkRow] | None,
    close: bool,
    at: float,
) -> Callable[[Tx], int]:
    def append(tx: Tx) -> int:
        packed = _pack_all(batch) if rows is None else rows
        return append_chunks(tx, run_id, name, packed, at, close=close)

    return append


@attrs.define(eq=False)
class _Look:
    """What one journal read found for a reader."""

    status: str | None
    chunks: list[Chunk]
    count: int
    closed: bool


class StreamReader:
    """Chunks of one stream, in order, from ``start``; ends when the stream closes or the run ends.

    An async iterator. It holds nothing between reads but its position, so
    abandoning it is safe; ``position`` is the index of the next chunk.
    """

    def __init__(self, hub: StreamHub, run_id: str, name: str, start: int) -> None:
        if not isinstance(start, int) or isinstance(start, bool):
            raise TypeError(f"start must be an int chunk index, got {start!r}")
        self._hub = hub
        self.run_id = run_id
        self.name = name
        self._start = start
        self.position = start if start >= 0 else -1
        self._ready: deque[Chunk] = deque()
        self._ended = False
        self._seen_stream: _Stream | None = None
        self._seen_news = -1

    def __repr__(self) -> str:
        return f"<StreamReader {self.run_id}/{self.name} at {self.position}>"

    def __aiter__(self) -> StreamReader:
        return self

    async def __anext__(self) -> Chunk:
        while not self._ready:
            if self._ended:
                raise StopAsyncIteration
            if self._hub.closing:
                raise StreamInterrupted(self.run_id, self.name, self.position)
            try:
                await self._fill()
            except JournalError:
                if self._hub.closing:
                    raise StreamInterrupted(self.run_id, self.name, self.position) from None
                raise
        chunk = self._ready.popleft()
        self.position = chunk.index + 1
        return chunk

    async def aclose(self) -> None:
        self._ended = True
        self._ready.clear()

    async def _fill(self) -> None:
        signal = self._hub.hold(self.run_id)
        try:
            await self._fill_or_wait(signal)
        finally:
            self._hub.drop(self.run_id, signal)

    async def _fill_or_wait(self, signal: _Signal) -> None:
        hub = self._hub
        if self.position < 0:
            look = await self._look(0, count_only=True)
            self.position = max(0, look.count + self._start)
        if self._from_memory():
            return
        stream = hub._streams.get((self.run_id, self.name))
        if (
            stream is not None
            and stream is self._seen_stream
            and hub.news == self._seen_news
            and self.position >= stream.high
            and not stream.closed
        ):
            # Caught up with this process's writes, and nothing happened elsewhere
            # since the last journal read: the journal has nothing newer either.
            await self._wait(signal)
            return
        self._seen_stream, self._seen_news = stream, hub.news
        look = await self._look(self.position)
        if look.status is None:
            raise RunNotFound(self.run_id)
        if look.chunks:
            self._ready.extend(look.chunks)
            return
        if look.status in _ENDED or (look.closed and self.position >= look.count):
            self._ended = True
            return
        await self._wait(signal)

    async def _wait(self, signal: _Signal) -> None:
        with anyio.move_on_after(SAFETY_POLL) as timer:
            await signal.event.wait()
        if timer.cancelled_caught:
            self._seen_stream = None  # look at the journal whatever happened

    def _from_memory(self) -> bool:
        stream = self._hub._streams.get((self.run_id, self.name))
        if stream is None:
            return False
        index = self.position
        chunk = stream.ring.get(index)
        while chunk is not None:
            self._ready.append(chunk)
            index += 1
            chunk = stream.ring.get(index)
        return bool(self._ready)

    async def _look(self, start: int, *, count_only: bool = False) -> _Look:
        run_id, name, codec = self.run_id, self.name, self._hub.codec

        def read(conn: Any) -> _Look:
            status = run_status(conn, run_id)
            row = stream_row(conn, run_id, name)
            count = 0 if row is None else row.chunks
            closed = row is not None and row.closed_at is not None
            stored: list[StoredChunk] = []
            if not count_only and start < count:
                stored = chunks_from(conn, run_id, name, start, READ_BYTES)
            return _Look(status, [decode_stored(s, codec) for s in stored], count, closed)

        return await self._hub.journal.read(read)
