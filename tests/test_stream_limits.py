"""Streams at their limits: 100 MiB through a slow reader, a writer ahead of the journal,
and the largest chunk.

Memory is measured with ``tracemalloc``: every Python allocation in every
thread, so chunks waiting to be written, being packed in the writer thread,
kept in the ring and read back all count. Each stream is larger than the
bound, so a hub that kept every chunk, or a reader that buffered the whole
stream, fails the check; ``test_the_memory_check_sees_chunks_kept_in_memory``
shows that it does.
"""

from __future__ import annotations

import hashlib
import random
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import runwright as rw
from runwright.journal._tx import Tx
from runwright.streams import _hub
from runwright.streams._hub import MAX_PENDING_BYTES, RING_BYTES

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
#: Peak traced memory allowed while a stream goes through. By design the hub holds up to
#: MAX_PENDING_BYTES not yet durable and RING_BYTES of recent chunks. On top come copies
#: that live for a while: the batch committed last is kept by the journal's writer thread
#: until its next write, and a batch's packed rows count at the full capacity of
#: zstandard's output buffers (a 64 KiB chunk that compresses to 100 bytes counts as
#: 64 KiB), for the batch in flight and the one before. Measured: about 50 MiB for the
#: 100 MiB stream below, 31 MiB once the writer thread lets go of its last batch.
BOUND = 4 * MAX_PENDING_BYTES
SIZE = 64 * 1024

progress: list[int] = []
gates: dict[str, anyio.Event] = {}


def chunk_of(i: int, size: int) -> bytes:
    """Chunk *i*: random bytes on even *i* (stored as they are), a repeated pattern on odd
    *i* (stored compressed), so that both storage paths carry the stream."""
    if i % 2 == 0:
        return random.Random(i).randbytes(size)
    return f"{i:>16}".encode() * (size // 16)


async def write_chunks(chunks: int, size: int) -> str:
    """Write the chunks, made one at a time, then close; return the SHA-256 of them all."""
    digest = hashlib.sha256()
    out = rw.writable()
    for i in range(chunks):
        data = chunk_of(i, size)
        digest.update(data)
        await out.write(data)
        progress.append(i)
    await out.close()
    return digest.hexdigest()


@rw.step(name="tests.limits.write_many")
async def write_many(chunks: int, size: int) -> str:
    return await write_chunks(chunks, size)


@rw.workflow(name="tests.limits.many")
async def many(chunks: int, size: int) -> str:
    return await write_many(chunks, size)


@rw.step(name="tests.limits.write_zeros")
async def write_zeros(chunks: int, size: int) -> None:
    out = rw.writable()
    for _ in range(chunks):
        await out.write(bytes(size))


@rw.workflow(name="tests.limits.zeros")
async def zeros(chunks: int, size: int) -> None:
    await write_zeros(chunks, size)


@rw.step(name="tests.limits.write_when_let")
async def write_when_let(gate: str, chunks: int, size: int) -> str:
    progress.append(-1)  # started
    await gates[gate].wait()
    return await write_chunks(chunks, size)


@rw.workflow(name="tests.limits.gated")
async def gated(gate: str, chunks: int, size: int) -> str:
    return await write_when_let(gate, chunks, size)


@rw.step(name="tests.limits.write_at_the_limit", retries=0)
async def write_at_the_limit() -> list[tuple[str, int, int, str]]:
    out = rw.writable()
    limit = rw.MAX_CHUNK_BYTES
    refused = []
    await out.write(b"\x01" * limit)
    await out.write("é" * (limit // 2))  # two bytes each in UTF-8: exactly the limit
    for data in (b"\x02" * (limit + 1), "é" * (limit // 2) + "a"):
        try:
            await out.write(data)
        except rw.ChunkTooLarge as exc:
            refused.append((exc.name, exc.size, exc.limit, str(exc)))
    # The limit is on the encoded chunk: a value the codec compresses well may be larger.
    await out.write({"text": "abc" * (limit // 2)})
    return refused


@rw.workflow(name="tests.limits.at_the_limit")
async def at_the_limit() -> list[tuple[str, int, int, str]]:
    return await write_at_the_limit()


@pytest.fixture(autouse=True)
def _reset() -> None:
    progress.clear()


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def runtime(db_path: Path) -> rw.Runtime:
    return rw.Runtime(db_path, synchronous="NORMAL")


def peak() -> int:
    return tracemalloc.get_traced_memory()[1]


async def wait_until(what: str, predicate: Callable[[], bool]) -> None:
    """Poll *predicate* every millisecond; fail after 10 seconds, saying *what* never happened."""
    try:
        with anyio.fail_after(10):
            while not predicate():  # noqa: ASYNC110 (another task makes it true)
                await anyio.sleep(0.001)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


# -- a big stream, a slow reader -------------------------------------------------------


async def stream_through(db_path: Path, chunks: int, size: int) -> int:
    """Stream *chunks* chunks of *size* bytes to a slow reader in the same process, check
    that it got every byte in order, and return the peak traced memory meanwhile."""
    # Once the writer is this far ahead, what the reader needs next has left the ring.
    ahead = min(chunks, (MAX_PENDING_BYTES + RING_BYTES) // size + 64)
    results: dict[str, Any] = {}
    async with runtime(db_path) as rt:
        tracemalloc.reset_peak()
        run = await rt.start(many, chunks, size)

        async def read() -> None:
            digest = hashlib.sha256()
            count = total = 0
            async for chunk in run.stream():
                assert chunk.index == count
                digest.update(chunk.data)
                count += 1
                total += len(chunk.data)
                if count == 1:
                    await wait_until("the writer to get ahead", lambda: len(progress) >= ahead)
                elif count % 2 == 0:
                    await anyio.sleep(0.001)
            results["read"] = (digest.hexdigest(), count, total)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            results["written"] = await run.result()
        used = peak()
    assert results["read"] == (results["written"], chunks, chunks * size)
    return used


async def test_a_100_mib_stream_reaches_a_slow_reader_in_bounded_memory(
    db_path: Path, traced: None
) -> None:
    chunks = 1600
    assert chunks * SIZE == 100 * MiB
    used = await stream_through(db_path, chunks, SIZE)
    assert used < BOUND, f"peak {used / MiB:.1f} MiB for a {chunks * SIZE / MiB:.0f} MiB stream"


async def test_the_memory_check_sees_chunks_kept_in_memory(
    db_path: Path, traced: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub that kept every chunk (here: a ring without a bound) fails the check above."""
    monkeypatch.setattr(_hub, "RING_BYTES", 1 << 40)
    chunks = BOUND // SIZE + 64
    used = await stream_through(db_path, chunks, SIZE)
    assert used > chunks * SIZE > BOUND


async def test_a_reader_of_a_compressible_stream_reads_it_in_bounded_batches(
    db_path: Path, traced: None
) -> None:
    chunks = 1600
    async with runtime(db_path) as rt:
        run = await rt.start(zeros, chunks, SIZE)
        await run.result()
        tracemalloc.reset_peak()
        count = 0
        async for chunk in run.stream():  # from the journal: the run has ended
            assert chunk.data == bytes(SIZE)
            count += 1
        used = peak()
    assert count == chunks
    assert used < BOUND, f"peak {used / MiB:.1f} MiB reading a {chunks * SIZE / MiB} MiB stream"


# -- a writer ahead of the journal, a reader that does not read -------------------------


async def test_a_writer_ahead_of_the_journal_waits_and_an_idle_reader_costs_nothing(
    db_path: Path, traced: None
) -> None:
    size = 1 * MiB
    chunks = 96
    holding, release = threading.Event(), threading.Event()

    def hold(tx: Tx) -> None:
        """Occupy the journal's writer thread: nothing becomes durable until released."""
        holding.set()
        release.wait(10)

    gates["ahead"] = anyio.Event()
    async with runtime(db_path) as rt:
        run = await rt.start(gated, "ahead", chunks, size)
        idle = run.stream()  # a reader that never reads
        await wait_until("the step to start", lambda: progress == [-1])
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(rt.journal.write, hold)
                await wait_until("the writer thread to be held", holding.is_set)
                tracemalloc.reset_peak()
                gates["ahead"].set()
                # write() returns while less than MAX_PENDING_BYTES wait to be durable...
                allowed = MAX_PENDING_BYTES // size
                await wait_until("the writes to stop", lambda: len(progress) == 1 + allowed)
                for _ in range(100):
                    await anyio.lowlevel.checkpoint()
                # ...and then waits, however long the journal takes.
                assert len(progress) == 1 + allowed
                assert (await run.stream_info()).chunks == 0
                release.set()
            digest = await run.result()
        finally:
            release.set()
        used = peak()
        assert len(progress) == 1 + chunks
        assert used < BOUND, f"peak {used / MiB:.1f} MiB for a {chunks * size / MiB} MiB stream"
        read = hashlib.sha256()
        async for chunk in idle:  # the idle reader still gets everything, from the journal
            read.update(chunk.data)
        assert read.hexdigest() == digest


# -- the largest chunk -----------------------------------------------------------------


async def test_a_chunk_of_exactly_the_limit_is_accepted_and_one_byte_more_refused(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    limit = rw.MAX_CHUNK_BYTES
    async with make_runtime() as runtime:
        run = await runtime.start(at_the_limit)
        refused = await run.result()
        chunks = [chunk async for chunk in run.stream()]
        info = await run.stream_info()
    assert len(refused) == 2
    for name, size, limit_of_error, message in refused:
        assert (name, size, limit_of_error) == ("default", limit + 1, limit)
        assert f"a chunk of {limit + 1} bytes" in message
        assert f"at most {limit} bytes (rw.MAX_CHUNK_BYTES)" in message
    assert [c.index for c in chunks] == [0, 1, 2]
    assert chunks[0].data == b"\x01" * limit
    assert chunks[1].data == "é" * (limit // 2)
    assert chunks[2].data == {"text": "abc" * (limit // 2)}
    assert info.chunks == 3
