"""A process that serves one schedule on a clock the test moves:
``python schedule_worker.py DB OFFSET_FILE STOP_FILE LEDGER BACKEND`` (asyncio or trio).

Its clock is the system's shifted by the seconds in OFFSET_FILE, read at every
look, so the test can bring a tick near once every process serves the schedule.
It prints "serving" to stderr once its runtime is open, logs at DEBUG to stderr
(each tick it fires, with the run it got), appends "tick pid" to LEDGER for each
step it executes, and stops once STOP_FILE exists.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time

import anyio

import runwright as rw

NAME = "processes.every_minute"


class ShiftedClock:
    """The system clock plus the seconds in a file, which the test may change."""

    def __init__(self, offset_file: str) -> None:
        self.offset_file = offset_file

    def now(self) -> float:
        with open(self.offset_file) as f:
            return time.time() + float(f.read())

    async def sleep_until(self, deadline: float) -> None:
        # In short naps: the offset may move the deadline nearer meanwhile.
        while (left := deadline - self.now()) > 0:  # noqa: ASYNC110 (the file may move it)
            await anyio.sleep(min(left, 0.05))


@rw.step
async def record(tick: dt.datetime) -> None:
    line = f"{tick.isoformat()} {os.getpid()}\n"
    fd = os.open(sys.argv[4], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@rw.schedule("* * * * *", name=NAME)
@rw.workflow(name=NAME)
async def every_minute(tick: dt.datetime) -> None:
    await record(tick)


async def main(db: str, offset_file: str, stop_file: str) -> None:
    async with rw.Runtime(db, clock=ShiftedClock(offset_file), synchronous="NORMAL"):
        print("serving", file=sys.stderr, flush=True)
        stop = anyio.Path(stop_file)
        while not await stop.exists():  # noqa: ASYNC110 (the test's signal is a file)
            await anyio.sleep(0.05)


if __name__ == "__main__":
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], backend=sys.argv[5])
