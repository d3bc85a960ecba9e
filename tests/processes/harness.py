"""What the multi-process tests share: ``runwright worker`` processes on one journal,
the ledger the worker flows write, and checks of what the journal stored.

Not a test module; the tests import it (with worker_flows) from this directory.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import worker_flows
from conftest import query_journal

import runwright as rw

HERE = Path(__file__).parent


class Workers:
    """``runwright worker worker_flows`` processes on one journal, each logging its
    stderr to a file in *logs*.

    On PostgreSQL each worker's sessions carry an ``application_name`` of their
    own (:meth:`session`), so a test can see them in ``pg_stat_activity``.
    """

    def __init__(self, db: Path | str, logs: Path, backend: str) -> None:
        self.db, self.logs_dir, self.backend = db, logs, backend
        self.ledger = logs / "ledger.txt"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.hosts: list[str | None] = []
        self._token = secrets.token_hex(4)

    def start(
        self,
        count: int,
        *,
        lease: float = 30.0,
        step_delay: float = 0.0,
        host_ids: list[str] | None = None,
        backends: list[str] | None = None,
        env: dict[str, str] | None = None,
        modules: tuple[str, ...] = ("worker_flows",),
    ) -> None:
        """Start *count* workers and wait until each executes runs. With *host_ids*,
        worker i plays host ``host_ids[i]``; with *backends*, it runs on event loop
        ``backends[i]`` (default: the one the pool was made with); *env* adds to
        their environment; *modules* are the modules they import."""
        env = {
            **os.environ,
            "WORKER_LEDGER": str(self.ledger),
            "WORKER_STEP_DELAY": str(step_delay),
            **(env or {}),
        }
        for i in range(count):
            n = len(self.procs)
            log = self.logs_dir / f"worker-{n}.log"
            db = os.fspath(self.db)
            if isinstance(self.db, str):
                db += f"&application_name={self.session(n)}"
            command = [
                sys.executable, "-m", "runwright._cli", "worker", *modules,
                "--db", db, "--synchronous", "NORMAL", "--lease", str(lease),
                "--backend", self.backend if backends is None else backends[i],
            ]  # fmt: skip
            host = None if host_ids is None else host_ids[i]
            if host is not None:
                command += ["--host-id", host]
            with log.open("wb") as stderr:
                proc = subprocess.Popen(
                    command, cwd=HERE, env=env, stderr=stderr, start_new_session=True
                )
            self.procs.append(proc)
            self.logs.append(log)
            self.hosts.append(host)
        deadline = time.monotonic() + 30
        for log in self.logs[-count:]:
            while "executing runs" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.01)

    def session(self, n: int) -> str:
        """The ``application_name`` of worker *n*'s PostgreSQL sessions."""
        return f"rw-{self._token}-worker-{n}"

    def log_of(self, n: int) -> str:
        return self.logs[n].read_text()

    def sessions(self, n: int, condition: str = "true") -> int:
        """How many of worker *n*'s PostgreSQL sessions meet *condition* (SQL on
        ``pg_stat_activity``)."""
        [(count,)] = query_journal(
            self.db,
            f"SELECT count(*) FROM pg_stat_activity WHERE application_name = ? AND {condition}",
            (self.session(n),),
        )
        return int(count)

    def wait_for_sessions_to_end(self, n: int, condition: str = "true") -> None:
        """Wait until the server has ended worker *n*'s sessions that meet *condition*."""
        deadline = time.monotonic() + 30
        while self.sessions(n, condition):
            assert time.monotonic() < deadline, f"worker {n}'s sessions live on"
            time.sleep(0.01)

    def is_stopped(self, n: int) -> bool:
        """Whether worker *n* is stopped (SIGSTOP), from its state in /proc."""
        stat = Path(f"/proc/{self.procs[n].pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] == "T"

    def finish(self) -> list[int | None]:
        """SIGTERM every worker still running; their exit statuses (None: it had to be
        killed), in start order."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        statuses: list[int | None] = []
        for proc in self.procs:
            try:
                statuses.append(proc.wait(timeout=20))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                statuses.append(None)
        return statuses

    def host_of_pid(self) -> dict[int, str | None]:
        return {proc.pid: host for proc, host in zip(self.procs, self.hosts, strict=True)}

    def stop(self) -> None:
        """Stop every worker that still runs (SIGTERM: a graceful shutdown)."""
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


def ledger(path: Path) -> list[tuple[str, int, int, int]]:
    """(run_id, cid, attempt, pid) of every step execution, in the order they began."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        run_id, cid, attempt, pid = line.split()
        rows.append((run_id, int(cid), int(attempt), int(pid)))
    return rows


def completed_attempts(db: Path | str) -> dict[tuple[str, int], int]:
    """(run_id, cid) -> the attempt whose step_completed the journal holds; fails if
    any step has more than one."""
    rows = query_journal(
        db, "SELECT run_id, cid, attempt FROM events WHERE kind = 'step_completed'"
    )
    counts = Counter((str(run_id), int(cid)) for run_id, cid, _ in rows)
    twice = {key: n for key, n in counts.items() if n > 1}
    assert not twice, f"steps recorded as completed more than once: {twice}"
    return {(str(run_id), int(cid)): int(attempt) for run_id, cid, attempt in rows}


def assert_journaled_once(db: Path | str, run_ids: list[str]) -> None:
    """Each run's events hold every fact of its life once: created, each of its five
    steps scheduled and completed, completed; nothing lost, nothing twice."""
    rows = query_journal(
        db,
        "SELECT run_id, kind, cid FROM events WHERE kind IN "
        "('run_created', 'step_scheduled', 'step_completed', 'run_completed')",
    )
    facts: defaultdict[str, Counter[tuple[str, int | None]]] = defaultdict(Counter)
    for run_id, kind, cid in rows:
        facts[str(run_id)][(str(kind), None if cid is None else int(cid))] += 1
    whole = Counter(
        [("run_created", None), ("run_completed", None)]
        + [(kind, cid) for kind in ("step_scheduled", "step_completed") for cid in range(5)]
    )
    for run_id in run_ids:
        assert facts[run_id] == whole, (run_id, facts[run_id])
    [(events, distinct)] = query_journal(db, "SELECT count(*), count(DISTINCT seq) FROM events")
    assert events == distinct


def assert_each_step_completed_once(db: Path | str, run_ids: list[str]) -> None:
    """Every run completed, and the journal holds one step_completed per (run, cid)."""
    completed = completed_attempts(db)
    statuses = dict(query_journal(db, "SELECT run_id, status FROM runs"))
    for run_id in run_ids:
        assert statuses[run_id] == "completed", run_id
        for cid in range(5):
            assert (run_id, cid) in completed, (run_id, cid)


def assert_executions_agree(
    db: Path | str, path: Path, *, wasted_by: frozenset[int] = frozenset()
) -> dict[tuple[str, int], list[tuple[int, int]]]:
    """The ledger agrees with the journal: no attempt of a step executed twice, the
    attempt the journal completed was executed, and every other execution (a lost
    attempt) was by one of the *wasted_by* processes. Returns (run_id, cid) -> its
    executions as (attempt, pid)."""
    completed = completed_attempts(db)
    executions: defaultdict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for run_id, cid, attempt, pid in ledger(path):
        executions[(run_id, cid)].append((attempt, pid))
    assert set(executions) == set(completed)
    for key, runs in executions.items():
        attempts = [attempt for attempt, _ in runs]
        assert len(attempts) == len(set(attempts)), f"{key}: an attempt ran twice: {runs}"
        assert completed[key] in attempts, f"{key}: attempt {completed[key]} never ran: {runs}"
        lost = [pid for attempt, pid in runs if attempt != completed[key]]
        assert set(lost) <= wasted_by, f"{key}: executions by live processes were lost: {runs}"
    return dict(executions)


async def start_runs(client: rw.Runtime, count: int) -> list[rw.RunHandle[int]]:
    """Start runs ``five(0)`` ... ``five(count - 1)`` at once (the client's writes share
    transactions); their handles, in that order."""
    handles: list[rw.RunHandle[int] | None] = [None] * count

    async def start(i: int) -> None:
        handles[i] = await client.start(worker_flows.five, i)

    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(start, i)
    return [handle for handle in handles if handle is not None]


async def results(handles: list[rw.RunHandle[int]], timeout: float) -> list[int]:
    with anyio.fail_after(timeout):
        return [await handle.result() for handle in handles]


def expected(count: int) -> list[int]:
    return [worker_flows.expected(i) for i in range(count)]


@pytest.fixture(name="workers")
def workers_fixture(db_path: Path | str, tmp_path: Path, anyio_backend: str) -> Iterator[Workers]:
    """Worker processes on the test's journal and on the same event loop library as
    the test's client (test modules import this fixture)."""
    pool = Workers(db_path, tmp_path, anyio_backend)
    yield pool
    pool.stop()
