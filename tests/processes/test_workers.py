"""Real worker processes sharing one journal: the work is shared, a killed or
paused worker's runs finish elsewhere, and no step is recorded twice.

Every test runs on both journal backends, with the workers on the same event
loop library as the test's client. The workers run on this machine under its
host name, so on either backend a killed worker's runs are taken over at once
by the check for processes of this host that no longer exist;
``test_hosts.py`` covers workers that play distinct hosts of one PostgreSQL
journal, where only the lease can tell.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import runwright as rw

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))  # worker_flows, harness
if str(Path(__file__).parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parents[1]))  # conftest's query_journal
import worker_flows
from harness import (
    Workers,
    assert_each_step_completed_once,
    assert_executions_agree,
    expected,
    ledger,
    results,
    start_runs,
    workers_fixture,  # noqa: F401 (the `workers` fixture)
)

pytestmark = pytest.mark.anyio


async def test_four_workers_share_their_runs(workers: Workers, journal_backend: str):
    # The large load on PostgreSQL is test_hosts.py's (4 hosts); here a smaller
    # one keeps this test's share of the suite's time modest.
    count = 1000 if journal_backend == "sqlite" else 200
    workers.start(4)
    async with rw.Runtime(workers.db, execute=False, synchronous="NORMAL") as client:
        handles = await start_runs(client, count)
        values = await results(handles, timeout=120)
    assert values == expected(count)
    assert_each_step_completed_once(workers.db, [h.id for h in handles])
    executions = assert_executions_agree(workers.db, workers.ledger)
    assert all(len(runs) == 1 for runs in executions.values())
    executed_by = {pid for *_, pid in ledger(workers.ledger)}
    assert executed_by <= {proc.pid for proc in workers.procs}
    assert len(executed_by) >= 2


async def test_a_killed_workers_runs_finish_on_the_others(workers: Workers):
    workers.start(3, step_delay=0.01)
    async with rw.Runtime(workers.db, execute=False, synchronous="NORMAL") as client:
        handles = await start_runs(client, 150)
        # Kill a worker that is running steps (the others may have claimed
        # every run before a given one even looked).
        with anyio.fail_after(30):
            while not ledger(workers.ledger):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        [victim] = [p for p in workers.procs if p.pid == ledger(workers.ledger)[0][3]]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        # Well within the 30 s lease: the others see at once that the runs'
        # owner, a process of this host, is gone.
        values = await results(handles, timeout=20)
    assert values == expected(150)
    assert_each_step_completed_once(workers.db, [h.id for h in handles])
    assert_executions_agree(workers.db, workers.ledger, wasted_by=frozenset({victim.pid}))


async def test_a_paused_worker_past_its_lease_records_nothing_twice(workers: Workers):
    workers.start(3, lease=1.0, step_delay=0.05)
    async with rw.Runtime(workers.db, execute=False, synchronous="NORMAL") as client:
        handles = await start_runs(client, 60)
        # Pause a worker that is running steps (the others may have claimed
        # every run before a given one even looked).
        with anyio.fail_after(30):
            while not ledger(workers.ledger):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        sleeper = ledger(workers.ledger)[0][3]
        os.kill(sleeper, signal.SIGSTOP)
        await anyio.sleep(2.5)  # past its lease: the others take its runs over
        os.kill(sleeper, signal.SIGCONT)
        values = await results(handles, timeout=60)
    assert values == expected(60)
    assert_each_step_completed_once(workers.db, [h.id for h in handles])
    # Paused inside a write, the sleeper held the journal's write lock, and every
    # worker's lease ran out meanwhile: any of them may have lost an execution to
    # another. Still no attempt ran twice, and each recorded outcome's attempt ran.
    assert_executions_agree(
        workers.db, workers.ledger, wasted_by=frozenset(p.pid for p in workers.procs)
    )


def cli(db: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runwright._cli", *args, "--db", os.fspath(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_hook_resumed_from_a_separate_process(workers: Workers):
    workers.start(1)
    async with rw.Runtime(workers.db, execute=False, synchronous="NORMAL") as client:
        handle = await client.start(worker_flows.approval, "o-7")
        with anyio.fail_after(30):
            while True:
                done = await anyio.to_thread.run_sync(
                    cli, workers.db, "hooks", "resume", "approve:o-7", "--data", '{"by": "cli"}'
                )
                if done.returncode == 0:
                    break
                assert "no live hook" in done.stderr, done.stderr
                await anyio.sleep(0.01)
        assert await handle.result(timeout=30) == "approved by cli"
    missing = cli(workers.db, "hooks", "resume", "approve:o-7")
    assert missing.returncode == 1
    assert "no live hook has the token 'approve:o-7'" in missing.stderr
    bad = cli(workers.db, "hooks", "resume", "t", "--data", "{nope")
    assert bad.returncode == 1
    assert "not valid JSON" in bad.stderr
