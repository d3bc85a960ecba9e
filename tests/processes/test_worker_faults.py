"""A worker whose journal stops taking writes (a full disk, a lost server) still shuts
down within its grace period on SIGTERM, and what it could not write is redone by
the next worker: every run completes, each step recorded once."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import anyio
import pytest

import runwright as rw

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))  # worker_flows, harness
from conftest import query_journal
from harness import Workers, workers_fixture  # noqa: F401 (the `workers` fixture)
from worker_flows import expected, five

pytestmark = pytest.mark.anyio

GRACE = 10.0  # the worker's default shutdown_grace


async def test_sigterm_stops_a_worker_whose_writes_fail_and_nothing_is_lost(
    workers: Workers, db_path: Path | str
):
    db = os.fspath(db_path)
    async with rw.Runtime(db, execute=False, synchronous="NORMAL") as client:
        handles = [await client.start(five, i) for i in range(6)]
        # The worker writes a few transactions, then its disk is full for good.
        workers.start(1, env={"RW_FAULT_FROM": "12", "RW_FAULT_DB": db})
        with anyio.fail_after(30):
            while "journal writes fail" not in workers.log_of(0):  # noqa: ASYNC110
                await anyio.sleep(0.02)
        proc = workers.procs[0]
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        status = await anyio.to_thread.run_sync(lambda: proc.wait(timeout=GRACE + 5))
        took = time.monotonic() - began
        assert status == 0, workers.log_of(0)
        assert took <= GRACE + 1, took
        done = query_journal(db, "SELECT count(*) FROM runs WHERE status = 'completed'")
        assert done[0][0] < len(handles)  # the fault did stop some of them
        # The disk has room again: the next worker finishes what the first could not write.
        workers.start(1)
        results = [await h.result(timeout=30) for h in handles]
    assert results == [expected(i) for i in range(6)]
    twice = query_journal(
        db,
        "SELECT run_id, cid FROM events WHERE kind = 'step_completed' "
        "GROUP BY run_id, cid HAVING count(*) > 1",
    )
    assert twice == []
