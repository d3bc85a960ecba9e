"""A process that serves one schedule for a while, on a clock shifted by a given
offset so that a tick falls when the test wants it:
``python schedule_worker.py DB OFFSET UNTIL LEDGER BACKEND`` (asyncio or trio).

It logs at DEBUG to stderr (each tick it fires, with the run it got) and appends
"tick pid" to LEDGER for each step it executes.
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
    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - self.now()))


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


async def main(db: str, offset: float, until: float) -> None:
    async with rw.Runtime(db, clock=ShiftedClock(offset), synchronous="NORMAL"):
        await anyio.sleep(max(0.0, until - time.time()))


if __name__ == "__main__":
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(message)s")
    anyio.run(main, sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), backend=sys.argv[5])
