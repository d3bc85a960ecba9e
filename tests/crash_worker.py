"""A worker process for the crash tests (``tests/test_crash.py``); not a test module.

Usage::

    python tests/crash_worker.py DB LEDGER start SLEEP_SECONDS
    python tests/crash_worker.py DB LEDGER resume RUN_ID

DB is a journal file or a PostgreSQL URL. ``start`` opens a runtime on DB,
starts the 50-step workflow ``crash.fifty`` with key ``"crash"``, prints
``{"run_id": ...}`` and then ``{"result": ...}`` as JSON lines. ``resume``
opens a runtime on DB (which resumes every unfinished run on open), waits for
RUN_ID and prints ``{"result": ...}``.

Every execution of a step appends ``"{i} {attempt}\\n"`` to LEDGER and fsyncs it
before doing anything else, so the ledger is the record of what really ran,
whatever happens to the process afterwards. The environment steers the test:

``CRASH_BACKEND``
    ``asyncio`` (default) or ``trio``.
``CRASH_HOLD_STEP=i``
    step *i* blocks forever after writing its ledger line, so that the test
    can kill the process inside it.
``CRASH_STEP_DELAY=s``
    every step sleeps *s* seconds after writing its ledger line, so that the
    run cannot end before a test that polls the journal has killed it.
"""

from __future__ import annotations

import json
import os
import sys

import anyio
import anyio.to_thread

import runwright as rw

STEPS = 50
SLEEP_AFTER = 25
MODULUS = 1_000_003

_ledger_path = ""


def _append_to_ledger(line: str) -> None:
    fd = os.open(_ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@rw.step(name="crash.step", retries=3, backoff=0)
async def crash_step(i: int, total: int) -> int:
    """One step: record the execution, optionally hold or dawdle, return the next total."""
    attempt = rw.step_info().attempt
    await anyio.to_thread.run_sync(_append_to_ledger, f"{i} {attempt}\n")
    if os.environ.get("CRASH_HOLD_STEP") == str(i):
        await anyio.sleep_forever()
    delay = float(os.environ.get("CRASH_STEP_DELAY", "0"))
    if delay:
        await anyio.sleep(delay)
    return (total * 31 + i * i + 7) % MODULUS


@rw.workflow(name="crash.fifty")
async def fifty(sleep_seconds: float) -> int:
    """50 sequential steps, each fed the previous total, with a durable sleep after step 25."""
    total = 0
    for i in range(STEPS):
        total = await crash_step(i, total)
        if i == SLEEP_AFTER:
            await rw.sleep(sleep_seconds)
    return total


def _emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _start(db: str, sleep_seconds: float) -> None:
    async with rw.Runtime(db, synchronous="FULL") as runtime:
        handle = await runtime.start(fifty, sleep_seconds, key="crash")
        _emit({"run_id": handle.id})
        _emit({"result": await handle.result(timeout=60)})


async def _resume(db: str, run_id: str) -> None:
    async with rw.Runtime(db, synchronous="FULL") as runtime:
        _emit({"result": await runtime.get_run(run_id).result(timeout=60)})


def main(argv: list[str]) -> None:
    global _ledger_path
    if len(argv) != 4 or argv[2] not in ("start", "resume"):
        sys.exit(f"usage: {sys.argv[0]} DB LEDGER (start SLEEP_SECONDS | resume RUN_ID)")
    db, _ledger_path, mode, arg = argv
    backend = os.environ.get("CRASH_BACKEND", "asyncio")
    if mode == "start":
        anyio.run(_start, db, float(arg), backend=backend)
    else:
        anyio.run(_resume, db, arg, backend=backend)


if __name__ == "__main__":
    main(sys.argv[1:])
