"""Workflows for the multi-process tests; imported by `runwright worker` and by the tests.

Each step execution appends "run_id cid attempt pid" to $WORKER_LEDGER, the
outside record of who executed what. With $WORKER_STOP_IN_WRITE naming a
file, the worker stops itself (SIGSTOP) inside its first write that completes
a step once that file exists: in the middle of a transaction, holding the
journal's write lock, as a host paused by its hypervisor or a debugger would.
With $RW_FAULT_FROM=N, every journal write transaction from the N-th on fails
(see ``tests/faults.py``), as on a disk that has filled up.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import anyio

import runwright as rw
from runwright.journal._tx import Tx

if os.environ.get("RW_FAULT_FROM"):
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from faults import install_from_environment

    install_from_environment()


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


def _stop_inside_a_completion(trigger: str) -> None:
    complete_step = Tx.complete_step
    stopped = False

    def complete_then_stop(tx: Tx, *args: Any, **kwargs: Any) -> Any:
        nonlocal stopped
        # The step's conditional UPDATE has its answer: the transaction holds the lock.
        event = complete_step(tx, *args, **kwargs)
        if not stopped and os.path.exists(trigger):
            stopped = True
            # Sent to this thread, the stop takes it at once (sent to the process,
            # it may reach another thread first, and this one commit meanwhile).
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        return event

    Tx.complete_step = complete_then_stop  # type: ignore[method-assign]


if os.environ.get("WORKER_STOP_IN_WRITE"):
    _stop_inside_a_completion(os.environ["WORKER_STOP_IN_WRITE"])
