"""A run of a workflow that no live worker has registered is visibly stuck (its
summary names the problem) and the first worker that registers it takes it at
once, without waiting for a lease."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

import runwright as rw

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))  # late_flows, harness
from harness import Workers, workers_fixture  # noqa: F401 (the `workers` fixture)
from late_flows import greet

pytestmark = pytest.mark.anyio


async def test_a_run_no_worker_knows_is_stuck_until_one_that_does_starts(
    workers: Workers, db_path: Path | str
):
    # The lease is long: taking the run over must not wait for it.
    workers.start(1, lease=60.0)  # imports worker_flows only
    async with rw.Runtime(os.fspath(db_path), execute=False, synchronous="NORMAL") as client:
        handle = await client.start(greet, "ada")
        with anyio.fail_after(20):
            while (summary := await handle.summary()).problem is None:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        assert summary.status is rw.RunStatus.RUNNING
        assert summary.problem.kind == "unknown_workflow"
        assert "late.greet" in summary.problem.message
        assert [s.id for s in await client.list_runs(stuck=True)] == [handle.id]
        # Within 20 s, well inside the 60 s lease.
        workers.start(1, lease=60.0, modules=("worker_flows", "late_flows"))
        assert await handle.result(timeout=20) == "HELLO ADA"
        assert (await handle.summary()).problem is None
        assert await client.list_runs(stuck=True) == []
