"""Workflows for the multi-process tests; imported by `runwright worker` and by the tests.

Each step execution appends "run_id cid attempt pid" to $WORKER_LEDGER, the
outside record of who executed what.
"""

from __future__ import annotations

import os

import anyio

import runwright as rw


def _record() -> None:
    info = rw.step_info()
    line = f"{info.run_id} {info.step_id.rsplit(':', 1)[1]} {info.attempt} {os.getpid()}\n"
    fd = os.open(os.environ["WORKER_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@rw.step(name="workers.add")
async def add(total: int, i: int) -> int:
    _record()
    delay = float(os.environ.get("WORKER_STEP_DELAY", "0"))
    if delay:
        await anyio.sleep(delay)
    return total + i * i


@rw.workflow(name="workers.five")
async def five(start: int) -> int:
    total = start
    for i in range(5):
        total = await add(total, i)
    return total


def expected(start: int) -> int:
    return start + sum(i * i for i in range(5))


@rw.workflow(name="workers.approval")
async def approval(order_id: str) -> str:
    decision = await rw.hook(token=f"approve:{order_id}")
    return f"approved by {decision['by']}"
