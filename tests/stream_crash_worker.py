"""A worker process for the stream crash tests (``tests/test_stream_crash.py``); not a test module.

Usage::

    python tests/stream_crash_worker.py DB start CHUNKS
    python tests/stream_crash_worker.py DB resume RUN_ID

DB is a journal file or a PostgreSQL URL. ``start`` opens a runtime on DB
and starts ``stream_crash.flow``, whose one step writes CHUNKS chunks
``"{attempt}:{i}"`` to the run's default stream and returns CHUNKS; it prints
``{"run_id": ...}`` and then ``{"result": ...}`` as JSON lines. ``resume``
opens a runtime on DB (which resumes every unfinished run on open), reads the
run's stream while the run goes on, and once the run has ended reads it again
from the start; it prints ``{"result": ..., "live": [...], "after": [...]}``,
each chunk as ``[index, attempt, data]``.

The environment steers the test:

``STREAM_CRASH_BACKEND``
    ``asyncio`` (default) or ``trio``.
``STREAM_CRASH_KILL_AT_COMPLETE=1``
    ``Tx.complete_step`` SIGKILLs the process. It runs in the journal's
    writer thread, inside the transaction that would journal the step's
    ``step_completed``: after the step's streams were flushed, before its
    outcome commits.
``STREAM_CRASH_DELAY=s``
    the step sleeps *s* seconds after each chunk (and flushes every third),
    so that the test can kill the process while it writes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import anyio

import runwright as rw
from runwright.journal._tx import Tx


@rw.step(name="stream_crash.write", retries=0)
async def write_chunks(chunks: int) -> int:
    """Write the chunks, tagged with this attempt; an interrupted attempt is retried anyway.

    The step does not flush at its end (no ``async with``): the runtime must,
    before it journals the step's outcome.
    """
    attempt = rw.step_info().attempt
    delay = float(os.environ.get("STREAM_CRASH_DELAY", "0"))
    out = rw.writable()
    for i in range(chunks):
        await out.write(f"{attempt}:{i}")
        if delay:
            if i % 3 == 2:
                await out.flush()
            await anyio.sleep(delay)
    return chunks


@rw.workflow(name="stream_crash.flow")
async def flow(chunks: int) -> int:
    return await write_chunks(chunks)


def _die_in_complete_step(*args: Any, **kwargs: Any) -> Any:
    os.write(2, b"stream_crash_worker: SIGKILL in Tx.complete_step\n")
    os.kill(os.getpid(), signal.SIGKILL)


def _emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _start(db: str, chunks: int) -> None:
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        run = await runtime.start(flow, chunks)
        _emit({"run_id": run.id})
        _emit({"result": await run.result(timeout=60)})


async def _resume(db: str, run_id: str) -> None:
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        run = runtime.get_run(run_id)
        live: list[list[Any]] = []

        async def follow() -> None:
            async for chunk in run.stream():
                live.append([chunk.index, chunk.attempt, chunk.data])

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            result = await run.result(timeout=60)
        after = [[chunk.index, chunk.attempt, chunk.data] async for chunk in run.stream()]
        _emit({"result": result, "live": live, "after": after})


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[1] not in ("start", "resume"):
        sys.exit(f"usage: {sys.argv[0]} DB (start CHUNKS | resume RUN_ID)")
    db, mode, arg = argv
    if os.environ.get("STREAM_CRASH_KILL_AT_COMPLETE") == "1":
        Tx.complete_step = _die_in_complete_step  # type: ignore[method-assign]
    backend = os.environ.get("STREAM_CRASH_BACKEND", "asyncio")
    if mode == "start":
        anyio.run(_start, db, int(arg), backend=backend)
    else:
        anyio.run(_resume, db, arg, backend=backend)


if __name__ == "__main__":
    main(sys.argv[1:])
