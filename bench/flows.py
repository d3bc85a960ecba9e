"""Workflows for bench/processes.py; imported by `runwright worker` and by the bench."""

from __future__ import annotations

import sys
import time

import anyio

import runwright as rw

#: The clock every process stamps with: CLOCK_MONOTONIC is one clock for the whole
#: machine on Linux; elsewhere the wall clock.
clock = time.monotonic if sys.platform.startswith("linux") else time.time


@rw.step(name="bench.add")
async def add(total: int, i: int) -> int:
    return total + i


@rw.workflow(name="bench.five")
async def five(start: int) -> int:
    total = start
    for i in range(5):
        total = await add(total, i)
    return total


@rw.step(name="bench.stamp")
async def stamp() -> float:
    return clock()


@rw.workflow(name="bench.stamped")
async def stamped() -> float:
    return await stamp()


@rw.workflow(name="bench.listener")
async def listener(token: str, count: int) -> list[float]:
    """Stamp the time each payload reached the workflow, for *count* payloads."""
    stamps = []
    async for _payload in rw.hook(token=token):
        stamps.append(await stamp())
        if len(stamps) == count:
            break
    return stamps


@rw.step(name="bench.ticks")
async def ticks(count: int, gap: float) -> int:
    """Write *count* chunks to stream ``ticks``, *gap* seconds apart; each carries its
    index and the time it was written."""
    async with rw.writable("ticks") as out:
        for i in range(count):
            await out.write(f"{i} {clock()!r}")
            await anyio.sleep(gap)
        await out.close()
    return count


@rw.workflow(name="bench.ticker")
async def ticker(count: int, gap: float) -> int:
    return await ticks(count, gap)


@rw.workflow(name="bench.twenty")
async def twenty(start: int) -> int:
    """Twenty sequential steps: the run bench/replay.py records and replays."""
    total = start
    for i in range(20):
        total = await add(total, i)
    return total
