"""Real worker processes sharing one journal: the work is shared, a killed or
paused worker's runs finish elsewhere, and no step is recorded twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import runwright as rw

sys.path.insert(0, str(Path(__file__).parent))
import worker_flows

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent


class Workers:
    def __init__(self, db: Path, ledger: Path, backend: str) -> None:
        self.db, self.ledger, self.backend = db, ledger, backend
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, count: int, *, lease: float = 30.0, step_delay: float = 0.0) -> None:
        env = {
            **os.environ,
            "WORKER_LEDGER": str(self.ledger),
            "WORKER_STEP_DELAY": str(step_delay),
        }
        for _ in range(count):
            log = self.db.with_name(f"worker-{len(self.procs)}.log")
            self.logs.append(log)
            command = [
                sys.executable, "-m", "runwright._cli", "worker", "worker_flows",
                "--db", str(self.db), "--synchronous", "NORMAL", "--lease", str(lease),
                "--backend", self.backend,
            ]  # fmt: skip
            with log.open("wb") as stderr:
                self.procs.append(
                    subprocess.Popen(
                        command, cwd=HERE, env=env, stderr=stderr, start_new_session=True
                    )
                )
        deadline = time.monotonic() + 30
        for log in self.logs[-count:]:
            while "executing runs" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(tmp_path: Path, anyio_backend: str) -> Iterator[Workers]:
    """Worker processes on the same event loop library as the test's client."""
    pool = Workers(tmp_path / "shared.db", tmp_path / "ledger.txt", anyio_backend)
    yield pool
    pool.stop()


def ledger(path: Path) -> list[tuple[str, int, int, int]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        run_id, cid, attempt, pid = line.split()
        rows.append((run_id, int(cid), int(attempt), int(pid)))
    return rows


def assert_each_step_completed_once(db: Path, run_ids: list[str]) -> None:
    with sqlite3.connect(db) as conn:
        completed = Counter(
            (run_id, cid)
            for run_id, cid in conn.execute(
                "SELECT run_id, cid FROM events WHERE kind = 'step_completed'"
            )
        )
        statuses = dict(conn.execute("SELECT run_id, status FROM runs"))
    for run_id in run_ids:
        assert statuses[run_id] == "completed"
        for cid in range(5):
            assert completed[(run_id, cid)] == 1, (run_id, cid, completed[(run_id, cid)])
    assert set(completed.values()) == {1}


async def start_runs(client: rw.Runtime, count: int) -> list[rw.RunHandle[int]]:
    return [await client.start(worker_flows.five, i) for i in range(count)]


async def results(handles: list[rw.RunHandle[int]], timeout: float) -> list[int]:
    with anyio.fail_after(timeout):
        return [await handle.result() for handle in handles]


async def test_four_workers_share_a_thousand_runs(workers: Workers):
    workers.start(4)
    async with rw.Runtime(workers.db, execute=False, synchronous="NORMAL") as client:
        handles = await start_runs(client, 1000)
        values = await results(handles, timeout=120)
    assert values == [worker_flows.expected(i) for i in range(1000)]
    assert_each_step_completed_once(workers.db, [h.id for h in handles])
    executed_by = {pid for *_, pid in ledger(workers.ledger)}
    assert executed_by <= {proc.pid for proc in workers.procs}
    assert len(executed_by) >= 2


async def test_a_killed_workers_runs_finish_on_the_others(workers: Workers):
    workers.start(3, step_delay=0.01)
    async with rw.Runtime(workers.db, execute=False, synchronous="NORMAL") as client:
        handles = await start_runs(client, 150)
        victim = workers.procs[0]
        with anyio.fail_after(30):
            while not any(pid == victim.pid for *_, pid in ledger(workers.ledger)):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        values = await results(handles, timeout=60)
    assert values == [worker_flows.expected(i) for i in range(150)]
    assert_each_step_completed_once(workers.db, [h.id for h in handles])


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
    assert values == [worker_flows.expected(i) for i in range(60)]
    assert_each_step_completed_once(workers.db, [h.id for h in handles])


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runwright._cli", *args, "--db", str(db)],
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
