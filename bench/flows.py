"""Workflows for bench/processes.py; imported by `runwright worker` and by the bench."""

from __future__ import annotations

import time

import runwright as rw


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
    return time.time()


@rw.workflow(name="bench.stamped")
async def stamped() -> float:
    return await stamp()


@rw.workflow(name="bench.listener")
async def listener(token: str, count: int) -> list[float]:
    """Stamp the wall-clock time each payload reached the workflow, for *count* payloads."""
    stamps = []
    async for _payload in rw.hook(token=token):
        stamps.append(await stamp())
        if len(stamps) == count:
            break
    return stamps
