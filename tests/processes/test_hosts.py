"""Many hosts on one PostgreSQL journal: real worker processes, each playing a host
of its own (``--host-id``), share the runs one client starts.

Ownership between hosts is decided by leases alone, judged by the server's
clock: no host can tell whether a process of another host is alive. A host
that is killed, or paused past its lease (even inside a write, holding the
journal's write lock), loses its runs to the others; a server restart is
ridden out. In every case each run completes and every fact of it is
journaled once.

Each test's client runs on one event loop (named per test) while its worker
processes alternate between asyncio and trio: each load exercises both loop
libraries once instead of twice.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

import runwright as rw

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))  # worker_flows, harness
if str(Path(__file__).parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parents[1]))  # conftest
import worker_flows
from conftest import PG_URL, query_journal
from harness import (
    Workers,
    assert_each_step_completed_once,
    assert_executions_agree,
    assert_journaled_once,
    expected,
    ledger,
    results,
    start_runs,
)

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_only("many hosts share one server")]

HOSTS = ["host-0", "host-1", "host-2", "host-3"]
LOOPS = ["asyncio", "trio", "asyncio", "trio"]


@pytest.fixture
def pool(db_path: Path | str, tmp_path: Path) -> Iterator[Workers]:
    workers = Workers(db_path, tmp_path, "asyncio")
    yield workers
    workers.stop()


def owned_by(db: Path | str, host: str) -> set[str]:
    """The live runs whose lease names a process of *host*."""
    rows = query_journal(
        db, "SELECT run_id FROM runs WHERE status = 'running' AND owner LIKE ?", (f"{host}:%",)
    )
    return {str(run_id) for (run_id,) in rows}


def claimed_at(db: Path | str) -> dict[tuple[str, int, int], float]:
    """(run_id, cid, attempt) -> when its claim was journaled (the claimer's clock)."""
    rows = query_journal(
        db,
        "SELECT run_id, cid, attempt, at FROM events WHERE kind = 'step_started' "
        "OR (kind = 'step_scheduled' AND attempt IS NOT NULL)",  # a claim made with the step
    )
    return {(str(r), int(c), int(a)): float(at) for r, c, a, at in rows}


async def wait_until(what: str, predicate: Callable[[], object], timeout: float) -> None:
    """Poll *predicate* (in a thread: it may read the journal) until it holds."""
    deadline = time.monotonic() + timeout
    while not await anyio.to_thread.run_sync(predicate):
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting until {what}"
        await anyio.sleep(0.02)


# -- (a) sharing -----------------------------------------------------------------

#: 4 hosts x 1,000 runs: about 40 s on a 2-core machine that also runs the
#: server, the client and the four workers (about 10 s per 1,000 runs).
RUNS = 4000


@pytest.mark.timeout(240)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_four_hosts_share_the_runs(pool: Workers):
    pool.start(4, host_ids=HOSTS, backends=LOOPS)
    async with rw.Runtime(pool.db, execute=False) as client:
        handles = await start_runs(client, RUNS)
        values = await results(handles, timeout=200)
    assert values == expected(RUNS)
    run_ids = [h.id for h in handles]
    assert_each_step_completed_once(pool.db, run_ids)
    assert_journaled_once(pool.db, run_ids)
    # No host lost a lease: every step ran exactly once, as its first attempt.
    executions = assert_executions_agree(pool.db, pool.ledger)
    assert len(executions) == 5 * RUNS
    host_of = pool.host_of_pid()
    assert all(len(runs) == 1 and runs[0][0] == 1 for runs in executions.values())
    by_host = Counter(host_of[pid] for *_, pid in ledger(pool.ledger))
    assert set(by_host) == set(HOSTS), by_host
    assert pool.finish() == [0, 0, 0, 0]


# -- (b) a host dies -------------------------------------------------------------

LEASE = 3.0


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_killed_hosts_runs_finish_on_the_others_within_the_lease(pool: Workers):
    runs = 200
    # Steps of 0.3 s: a run lasts longer than the time to kill a host that drives it.
    pool.start(4, host_ids=HOSTS, backends=LOOPS, lease=LEASE, step_delay=0.3)
    async with rw.Runtime(pool.db, execute=False) as client:
        handles = await start_runs(client, runs)
        await wait_until("steps run", lambda: ledger(pool.ledger), timeout=30)
        victim = next(i for i, p in enumerate(pool.procs) if p.pid == ledger(pool.ledger)[0][3])
        os.kill(pool.procs[victim].pid, signal.SIGKILL)
        killed_at = time.time()
        pool.procs[victim].wait()
        # Whatever its last transaction did is settled before its runs are read.
        await anyio.to_thread.run_sync(pool.wait_for_sessions_to_end, victim)
        orphans = await anyio.to_thread.run_sync(owned_by, pool.db, HOSTS[victim])
        assert orphans, "the killed host drove no run"
        values = await results(handles, timeout=60)
    assert values == expected(runs)
    run_ids = [h.id for h in handles]
    assert_each_step_completed_once(pool.db, run_ids)
    assert_journaled_once(pool.db, run_ids)
    # Only the dead host's executions may have been lost (its step in flight ran again).
    assert_executions_agree(pool.db, pool.ledger, wasted_by=frozenset({pool.procs[victim].pid}))

    # Each of its runs moved on as soon as its lease ran out: the lease ends at most
    # LEASE after the kill, the others look every LEASE / 3; the rest is slack for
    # a loaded machine.
    rows = query_journal(
        pool.db, "SELECT run_id, min(at) FROM events WHERE at > ? GROUP BY run_id", (killed_at,)
    )
    resumed = {str(run_id): float(at) - killed_at for run_id, at in rows}
    late = {
        run_id: resumed.get(run_id) for run_id in orphans if resumed.get(run_id, 99) > LEASE + 4
    }
    assert not late, f"runs of the killed host that waited too long: {late}"
    host_of = pool.host_of_pid()
    continued = {
        run_id
        for run_id, _, _, pid in ledger(pool.ledger)
        if run_id in orphans and host_of[pid] != HOSTS[victim]
    }
    assert continued, "no run of the killed host ran steps on another host"
    statuses = pool.finish()
    assert statuses[victim] == -signal.SIGKILL
    assert [s for i, s in enumerate(statuses) if i != victim] == [0, 0, 0]


# -- (c) a host pauses -------------------------------------------------------------


#: The sleeper's sessions that hold a transaction-level advisory lock (the write lock).
HOLDS_THE_LOCK = "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_host_paused_inside_a_write_past_its_lease_lets_go_when_it_wakes(
    pool: Workers,
):
    count = 200
    lease = 2.0
    trigger = pool.logs_dir / "stop-host-0"
    # Steps of 1 s: a run lasts longer than the time to bring up the other hosts.
    pool.start(
        1,
        host_ids=HOSTS[:1],
        lease=lease,
        step_delay=1.0,
        env={"WORKER_STOP_IN_WRITE": str(trigger)},
    )
    sleeper = pool.procs[0]
    async with rw.Runtime(pool.db, execute=False) as client:
        # host-0 alone claims as many runs as it has room for; the others get the rest.
        handles = await start_runs(client, count)
        await wait_until("host-0 claims runs", lambda: owned_by(pool.db, HOSTS[0]), timeout=30)
        await anyio.to_thread.run_sync(
            functools.partial(
                pool.start, 3, host_ids=HOSTS[1:], backends=LOOPS[1:], lease=lease, step_delay=1.0
            )
        )
        try:
            # host-0 stops itself (SIGSTOP) inside its next write that completes a
            # step: mid-transaction, holding the journal's write lock, so every host
            # waits until that session is ended (after waiting for its client 10 s).
            trigger.touch()
            await wait_until("host-0 stops", lambda: pool.is_stopped(0), timeout=30)
            stopped_at = time.time()
            assert pool.sessions(0, HOLDS_THE_LOCK) == 1
            held = await anyio.to_thread.run_sync(owned_by, pool.db, HOSTS[0])
            assert held, "host-0 stopped driving no run"
            # The session holding the lock is ended...
            await anyio.to_thread.run_sync(pool.wait_for_sessions_to_end, 0, HOLDS_THE_LOCK)
            # ...and the other hosts take over every run host-0 held (its lease ran out).
            await wait_until(
                "host-0's runs are taken", lambda: not owned_by(pool.db, HOSTS[0]), timeout=30
            )
            assert pool.is_stopped(0)
        finally:
            os.kill(sleeper.pid, signal.SIGCONT)
        values = await results(handles, timeout=60)
        # host-0 lives on: it reconnected and lets go of what it no longer drives.
        await wait_until("host-0 lets go", lambda: "letting go" in pool.log_of(0), timeout=10)
    assert values == expected(count)
    run_ids = [h.id for h in handles]
    assert_each_step_completed_once(pool.db, run_ids)
    assert_journaled_once(pool.db, run_ids)
    # Every host's leases ran out while host-0 held the lock, so any host may have
    # lost an execution to another; still no attempt ran twice.
    executions = assert_executions_agree(
        pool.db, pool.ledger, wasted_by=frozenset(p.pid for p in pool.procs)
    )
    host_of = pool.host_of_pid()
    taken = {
        run_id
        for (run_id, _), tries in executions.items()
        if run_id in held and any(host_of[pid] != HOSTS[0] for _, pid in tries)
    }
    assert taken, "no run of host-0 ran steps on another host"
    # Once awake, host-0 claimed no step of the runs it had lost: each of its
    # executions there is an attempt claimed before it stopped.
    claims = claimed_at(pool.db)
    for (run_id, cid), tries in executions.items():
        for attempt, pid in tries:
            if run_id in held and pid == sleeper.pid:
                assert claims[(run_id, cid, attempt)] < stopped_at, (run_id, cid, attempt)
    log = pool.log_of(0)
    assert "the connection was lost" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert pool.finish() == [0, 0, 0, 0]


# -- (d) the server restarts -------------------------------------------------------

CLUSTER = ("15", "main")
"""The local PostgreSQL cluster the test database lives in (``pg_ctlcluster`` names)."""


class LocalServer:
    """Stops and starts the local PostgreSQL server with ``pg_ctlcluster``."""

    def __init__(self) -> None:
        url = urllib.parse.urlsplit(PG_URL)
        if url.hostname not in ("127.0.0.1", "localhost", "::1") or (url.port or 5432) != 5432:
            pytest.skip(f"the test database {url.hostname}:{url.port} is not the local server")
        if shutil.which("pg_ctlcluster") is None:
            pytest.skip("pg_ctlcluster is not installed: cannot restart the server")
        status = self._ctl("status")
        if status.returncode != 0:
            pytest.skip(f"cannot control cluster {' '.join(CLUSTER)}: {status.stderr.strip()}")

    @staticmethod
    def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pg_ctlcluster", *CLUSTER, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def running(self) -> bool:
        return self._ctl("status").returncode == 0

    def stop(self) -> None:
        done = self._ctl("stop", "-m", "fast")
        if done.returncode != 0:
            pytest.skip(f"not permitted to stop the server: {done.stderr.strip()}")

    def start(self) -> None:
        done = self._ctl("start")
        assert done.returncode == 0 or self.running(), done.stderr

    def ensure_running(self) -> None:
        if not self.running():
            self.start()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_server_restarts_mid_load(pool: Workers):
    runs = 300
    down = 3.0
    server = LocalServer()
    pool.start(4, host_ids=HOSTS, backends=LOOPS, lease=LEASE, step_delay=0.1)
    async with (
        rw.Runtime(pool.db, execute=False) as client,
        rw.Runtime(pool.db, execute=False, reconnect_timeout=1.0) as impatient,
    ):
        handles = await start_runs(client, runs)
        await wait_until("steps run", lambda: len(ledger(pool.ledger)) >= 100, timeout=30)
        try:
            await anyio.to_thread.run_sync(server.stop)
            stopped_at = time.monotonic()

            # A runtime that may wait only a second fails with a clear error.
            with pytest.raises(rw.JournalUnavailable) as failed:
                await impatient.start(worker_flows.five, runs + 1)
            assert time.monotonic() - stopped_at < down
            assert "cannot connect" in str(failed.value), str(failed.value)
            # No driver error in sight, not even chained to it.
            error: BaseException | None = failed.value
            while error is not None:
                assert not type(error).__module__.startswith("psycopg"), repr(error)
                error = error.__cause__ or (
                    None if error.__suppress_context__ else error.__context__
                )

            # One with the default reconnect_timeout waits for the server.
            late: list[rw.RunHandle[int]] = []

            async def start_late() -> None:
                late.append(await client.start(worker_flows.five, runs))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(start_late)
                    await anyio.sleep(down - (time.monotonic() - stopped_at))
                    if not await anyio.to_thread.run_sync(server.running):
                        assert not late, "start() returned while the server was down"
                    await anyio.to_thread.run_sync(server.start)
        finally:
            # Up again before anything else: the runtimes' exits write too.
            await anyio.to_thread.run_sync(server.ensure_running)
        handles += late
        values = await results(handles, timeout=60)
    assert values == expected(runs + 1)
    run_ids = [h.id for h in handles]
    assert_each_step_completed_once(pool.db, run_ids)
    assert_journaled_once(pool.db, run_ids)
    # Leases ran out while the server was down, so a host may have lost an
    # execution to another; still no attempt ran twice, and each outcome's did run.
    assert_executions_agree(pool.db, pool.ledger, wasted_by=frozenset(p.pid for p in pool.procs))
    # The workers rode it out.
    assert pool.finish() == [0, 0, 0, 0], [pool.log_of(i)[-2000:] for i in range(4)]
