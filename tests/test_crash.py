"""Crash safety: SIGKILL a real worker process mid-run, restart it, and audit the run.

Each test runs ``tests/crash_worker.py`` (a 50-step workflow with a durable
sleep after step 25) in a subprocess, kills it with SIGKILL at a chosen point
(inside a step, right after a step's commit, during the sleep), restarts a
worker on the same journal, and then checks three records against each
other: the ledger the steps append to (every execution that really happened),
the journal's stored rows (read outside any runtime), and the result the
worker printed.

Every test runs on both journal backends. On PostgreSQL the restarted worker
takes the run over at once for the same reason as on SQLite: the dead
worker's lease names a process of this host that no longer exists. A worker
killed there may leave a COMMIT in flight that the server applies a moment
later, so the journal is read only once the server has ended the dead
worker's sessions.

The failure model being proved: a completed step is never executed again, the
interrupted step runs again as the next attempt, no event is lost or
duplicated (what was journaled before a kill is a prefix of the final
journal), the timer fires once and not before its wake time, and the run
returns the right value.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import runwright as rw

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
from conftest import query_journal, wait_for_sessions_to_end

WORKER = Path(__file__).with_name("crash_worker.py")
STEPS = 50
SLEEP_AFTER = 25
SLEEP_CID = SLEEP_AFTER + 1
MODULUS = 1_000_003
DEADLINE = 20.0
"""Seconds any one wait for a worker may take before the test fails."""


def totals() -> list[int]:
    """The running total after each step, as the worker's steps compute it."""
    out, total = [], 0
    for i in range(STEPS):
        total = (total * 31 + i * i + 7) % MODULUS
        out.append(total)
    return out


def cid_of(step: int) -> int:
    """Steps 0..25 get cids 0..25, the sleep gets 26, steps 26..49 get 27..50."""
    return step if step <= SLEEP_AFTER else step + 1


# -- workers ---------------------------------------------------------------------


@dataclasses.dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    db: Path | str
    #: The PostgreSQL ``application_name`` of the worker's sessions (None on SQLite).
    session: str | None

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()[-4000:]}"

    def records(self) -> list[dict[str, Any]]:
        text = self.stdout.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def kill(self) -> float:
        """SIGKILL the worker, reap it, and return the time of the kill."""
        at = time.time()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=DEADLINE)
        assert self.proc.returncode == -signal.SIGKILL, self.output()
        if self.session is not None:
            wait_for_sessions_to_end(self.db, self.session)
        return at

    def finish(self) -> dict[str, Any]:
        """Wait for the worker to exit cleanly; return its last printed record."""
        try:
            self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker did not finish within {DEADLINE}s\n{self.output()}")
        assert self.proc.returncode == 0, self.output()
        return self.records()[-1]


def wait_for(worker: Worker, what: str, predicate: Callable[[], bool]) -> None:
    """Poll *predicate* every half millisecond until it holds; fail if the worker dies first."""
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if worker.proc.poll() is not None:
            pytest.fail(
                f"worker exited ({worker.proc.returncode}) before {what}\n{worker.output()}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {DEADLINE}s waiting for {what}\n{worker.output()}")
        time.sleep(0.0005)


def with_session_name(db: Path | str, name: str) -> tuple[Path | str, str | None]:
    """*db* for a worker, and the name its PostgreSQL sessions go by (None on SQLite)."""
    if isinstance(db, Path):
        return db, None
    return f"{db}&application_name={name}", name


# -- reading the ledger and the journal ------------------------------------------


def read_ledger(path: Path) -> dict[int, list[int]]:
    """Step index -> the attempts that executed it, in the order they ran."""
    runs: dict[int, list[int]] = {}
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        step, attempt = line.split()
        runs.setdefault(int(step), []).append(int(attempt))
    return runs


class JournalReader:
    """Reads a worker's journal (an SQLite file or a PostgreSQL schema) from outside."""

    def __init__(self, db: Path | str) -> None:
        self.db = db
        self._seen = False

    def exists(self) -> bool:
        """Whether a worker has created the journal's tables yet."""
        if not self._seen:
            self._seen = self._tables_exist()
        return self._seen

    def _tables_exist(self) -> bool:
        if isinstance(self.db, Path):
            # Never open the file before a worker has: that would create it.
            if not self.db.with_name(self.db.name + "-shm").exists():
                return False
            try:
                query_journal(self.db, "SELECT 1 FROM events LIMIT 1")
            except sqlite3.OperationalError:  # the schema is being created
                return False
            return True
        return query_journal(self.db, "SELECT to_regclass('events') IS NOT NULL") == [(True,)]

    def has_event(self, kind: str, cid: int) -> bool:
        return self.exists() and bool(
            query_journal(
                self.db, "SELECT 1 FROM events WHERE kind = ? AND cid = ? LIMIT 1", (kind, cid)
            )
        )

    def snapshot(self, killed_at: float) -> Snapshot:
        assert self.exists(), "the journal was never created"
        db = self.db
        events = query_journal(
            db, "SELECT seq, run_id, kind, cid, attempt, name, payload, at FROM events ORDER BY seq"
        )
        steps = query_journal(db, "SELECT cid, name, status, attempt FROM steps")
        waits = query_journal(db, "SELECT cid, wake_at, status FROM waits")
        runs = query_journal(
            db,
            "SELECT run_id, status, (SELECT payload FROM events AS e WHERE e.run_id = "
            "runs.run_id AND e.kind = 'run_completed') FROM runs",  # the outcome, stored once
        )
        return Snapshot(killed_at, events, steps, waits, runs)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The journal as a dead worker left it (or as the last worker finished it)."""

    killed_at: float
    events: list[tuple[Any, ...]]
    steps: list[tuple[Any, ...]]
    waits: list[tuple[Any, ...]]
    runs: list[tuple[Any, ...]]

    def step_of_cid(self) -> dict[int, int]:
        """Cid -> step index, decoded from the ``step_scheduled`` arguments."""
        codec = rw.DefaultCodec()
        mapping = {}
        for _, _, kind, cid, _, _, payload, _ in self.events:
            if kind == "step_scheduled":
                args, _kwargs = codec.decode(payload)
                mapping[cid] = args[0]
        return mapping

    def steps_with(self, *statuses: str) -> dict[int, int]:
        """Step index -> attempt, for steps whose row is in one of *statuses*."""
        step_of = self.step_of_cid()
        return {
            step_of[cid]: attempt for cid, _, status, attempt in self.steps if status in statuses
        }

    @property
    def completed(self) -> dict[int, int]:
        return self.steps_with("completed")

    @property
    def interrupted(self) -> dict[int, int]:
        """Steps that had been claimed (an attempt was running) but not completed."""
        return self.steps_with("scheduled", "running", "retrying")

    @property
    def run_status(self) -> str:
        assert len(self.runs) == 1, self.runs
        return str(self.runs[0][1])


# -- the audit -------------------------------------------------------------------


def audit(
    reader: JournalReader,
    ledger_path: Path,
    run_id: str,
    result: dict[str, Any],
    kills: list[Snapshot],
    held: list[int],
) -> None:
    """Check the finished run against the ledger, the journal, and the journal at each kill."""
    expected = totals()
    final = reader.snapshot(time.time())
    ledger = read_ledger(ledger_path)

    # The run returned the right value, and the journal agrees.
    assert result == {"result": expected[-1]}
    assert final.runs[0][0] == run_id
    assert final.run_status == "completed"
    assert rw.DefaultCodec().decode(final.runs[0][2]) == expected[-1]

    # Nothing journaled before a kill was lost or rewritten.
    for snapshot in kills:
        assert final.events[: len(snapshot.events)] == snapshot.events

    # The journal: every fact once, each step's result the right one.
    step_of = final.step_of_cid()
    assert step_of == {cid_of(i): i for i in range(STEPS)}
    by_kind: dict[str, list[tuple[Any, ...]]] = {}
    for event in final.events:
        assert event[1] == run_id
        by_kind.setdefault(event[2], []).append(event)
    # A step's first attempt, claimed as it was scheduled, is told by the
    # step_scheduled event's attempt; later attempts have a step_started each.
    starts = sorted(
        by_kind.get("step_started", []) + [e for e in by_kind["step_scheduled"] if e[4]]
    )  # in journal order (seq first)
    assert sorted(set(by_kind) - {"step_started"}) == sorted(
        [
            "run_created",
            "step_scheduled",
            "step_completed",
            "wait_created",
            "wait_completed",
            "run_completed",
        ]
    )
    assert len(by_kind["run_created"]) == len(by_kind["run_completed"]) == 1
    assert sorted(e[3] for e in by_kind["step_scheduled"]) == sorted(step_of)
    assert sorted(e[3] for e in by_kind["step_completed"]) == sorted(step_of)
    codec = rw.DefaultCodec()
    completed_attempt = {}
    for _, _, _, cid, attempt, name, payload, _ in by_kind["step_completed"]:
        assert name == "crash.step"
        assert codec.decode(payload) == expected[step_of[cid]]
        completed_attempt[step_of[cid]] = attempt
    started: dict[int, list[int]] = {}
    for event in starts:
        started.setdefault(step_of[event[3]], []).append(event[4])
    assert all(status == "completed" for _, _, status, _ in final.steps)
    assert final.completed == completed_attempt

    # The timer fired once, not before its wake time.
    [(wait_cid, wake_at, wait_status)] = final.waits
    assert (wait_cid, wait_status) == (SLEEP_CID, "fired")
    assert [e[3] for e in by_kind["wait_created"]] == [SLEEP_CID]
    [fired] = by_kind["wait_completed"]
    assert fired[3] == SLEEP_CID
    assert fired[7] >= wake_at, "the sleep fired before its wake time"
    for snapshot in kills:
        for cid, snapshot_wake_at, _ in snapshot.waits:
            assert (cid, snapshot_wake_at) == (SLEEP_CID, wake_at), "a restart moved the wake time"
    first_after_sleep = min(e[7] for e in starts if step_of[e[3]] == 26)
    assert first_after_sleep >= wake_at, "step 26 started before the sleep's wake time"

    # Each kill interrupted at most one step (the workflow is sequential); the
    # final attempt of a step is 1 + the number of kills that interrupted it.
    interruptions: dict[int, int] = {}
    for snapshot in kills:
        assert len(snapshot.interrupted) <= 1, snapshot.interrupted
        for step, attempt in snapshot.interrupted.items():
            interruptions[step] = interruptions.get(step, 0) + 1
            assert attempt == interruptions[step]
    for step in held:
        assert step in interruptions

    for i in range(STEPS):
        final_attempt = 1 + interruptions.get(i, 0)
        assert completed_attempt[i] == final_attempt, f"step {i}"
        assert started[i] == list(range(1, final_attempt + 1)), f"step {i}"
        attempts = ledger.get(i, [])
        # Every step ran, the last execution was the attempt that completed,
        # and no attempt executed twice. An earlier attempt may be missing: a
        # kill can land after an attempt was claimed but before its body ran.
        assert attempts, f"step {i} never ran"
        assert attempts[-1] == final_attempt, f"step {i}: ledger {attempts}"
        assert attempts == sorted(set(attempts)), f"step {i}: ledger {attempts}"
        if i not in interruptions:
            # Completed before a kill, or started after the last one: exactly once.
            assert attempts == [1], f"step {i} ran {len(attempts)} times: {attempts}"
    for step in held:
        # Killed while inside it: it ran again, as the next attempt, and only once more.
        assert interruptions[step] == 1
        assert ledger[step] == [1, 2], f"step {step}: ledger {ledger[step]}"
    for snapshot in kills:
        for step, attempt in snapshot.completed.items():
            assert completed_attempt[step] == attempt
            assert ledger[step][-1] == attempt


# -- the harness -----------------------------------------------------------------


@dataclasses.dataclass
class Crash:
    """Workers on one database and ledger, and the journal as each kill left it."""

    tmp_path: Path
    reader: JournalReader
    workers: list[Worker] = dataclasses.field(default_factory=list)
    kills: list[Snapshot] = dataclasses.field(default_factory=list)
    held: list[int] = dataclasses.field(default_factory=list)
    #: Tells this test's workers' sessions apart from any other on the server.
    token: str = dataclasses.field(default_factory=lambda: secrets.token_hex(4))

    @property
    def ledger(self) -> Path:
        return self.tmp_path / "ledger"

    def spawn(self, mode: str, arg: str, *, backend: str, **env: str) -> Worker:
        n = len(self.workers)
        stdout = self.tmp_path / f"worker{n}.out"
        stderr = self.tmp_path / f"worker{n}.err"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CRASH_")}
        environ.update(env, CRASH_BACKEND=backend)
        db, session = with_session_name(self.reader.db, f"rw-crash-{self.token}-{n}")
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), os.fspath(db), str(self.ledger), mode, arg],
                cwd=self.tmp_path,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        worker = Worker(proc, stdout, stderr, self.reader.db, session)
        self.workers.append(worker)
        return worker

    def start(self, backend: str, sleep_seconds: float, **env: str) -> Worker:
        return self.spawn("start", str(sleep_seconds), backend=backend, **env)

    def resume(self, run_id: str, backend: str, **env: str) -> Worker:
        return self.spawn("resume", run_id, backend=backend, **env)

    def run_id(self, worker: Worker) -> str:
        """The run id the starting worker printed; the journal must hold that run."""
        records = worker.records()
        assert records, f"the worker never printed its run id\n{worker.output()}"
        run_id = str(records[0]["run_id"])
        assert [row[0] for row in self.kills[-1].runs] == [run_id]
        return run_id

    def kill_at(self, worker: Worker, where: str, step: int | None = None) -> Snapshot:
        """Let *worker* reach the kill point, SIGKILL it, check where it died, keep the journal."""
        reader = self.reader
        if where == "inside":
            assert step is not None
            wait_for(worker, f"step {step} to start", lambda: step in read_ledger(self.ledger))
            snapshot = reader.snapshot(worker.kill())
            assert read_ledger(self.ledger)[step] == [1]
            assert snapshot.interrupted == {step: 1}
            assert set(snapshot.completed) == set(range(step))
            self.held.append(step)
        elif where == "commit":
            assert step is not None
            cid = cid_of(step)
            wait_for(
                worker,
                f"step {step}'s step_completed",
                lambda: reader.has_event("step_completed", cid),
            )
            snapshot = reader.snapshot(worker.kill())
            assert step in snapshot.completed
            # Completing step N also claims step N+1 (one write); the kill lands
            # just after, before or while N+1 runs: the audit holds either way.
            assert all(i > step for i in snapshot.interrupted), snapshot.interrupted
        else:
            assert where == "sleep"
            wait_for(
                worker,
                "the durable sleep to be created",
                lambda: reader.has_event("wait_created", SLEEP_CID),
            )
            snapshot = reader.snapshot(worker.kill())
            [(_, wake_at, status)] = snapshot.waits
            assert status == "pending", "killed too late: the sleep had already fired"
            assert snapshot.killed_at < wake_at
            assert set(snapshot.completed) == set(range(SLEEP_AFTER + 1))
            assert snapshot.interrupted == {}
        assert snapshot.run_status == "running", "killed too late: the run had already ended"
        self.kills.append(snapshot)
        return snapshot

    def audit(self, run_id: str, result: dict[str, Any]) -> None:
        audit(self.reader, self.ledger, run_id, result, self.kills, self.held)


@pytest.fixture
def crash(tmp_path: Path, db_path: Path | str) -> Iterator[Crash]:
    harness = Crash(tmp_path, JournalReader(db_path))
    try:
        yield harness
    finally:
        for worker in harness.workers:
            if worker.proc.poll() is None:
                os.kill(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait()


# -- the tests -------------------------------------------------------------------

# Real seconds: the workers run on the system clock. The long sleep leaves
# time to kill the worker inside it and to restart one before it is due.
SHORT_SLEEP = 0.05
LONG_SLEEP = 2.0


@pytest.mark.parametrize(
    ("where", "step", "backend"),
    [
        pytest.param("inside", 10, "asyncio", id="inside-step-10-asyncio"),
        pytest.param("inside", 40, "trio", id="inside-step-40-trio"),
        pytest.param("commit", 20, "trio", id="after-commit-20-trio"),
        pytest.param("commit", 45, "asyncio", id="after-commit-45-asyncio"),
        pytest.param("sleep", None, "trio", id="during-sleep-trio"),
    ],
)
def test_sigkill_then_restart(crash: Crash, where: str, step: int | None, backend: str) -> None:
    env, sleep_seconds = {}, SHORT_SLEEP
    if where == "inside":
        env["CRASH_HOLD_STEP"] = str(step)
    elif where == "commit":
        # Slow steps a little, so that even a slow poll of the journal kills
        # long before the run ends (in practice the kill lands at once).
        env["CRASH_STEP_DELAY"] = "0.02"
    else:
        sleep_seconds = LONG_SLEEP
    worker = crash.start(backend, sleep_seconds, **env)
    crash.kill_at(worker, where, step)
    run_id = crash.run_id(worker)
    result = crash.resume(run_id, backend).finish()
    crash.audit(run_id, result)


def test_sigkill_twice(crash: Crash) -> None:
    worker = crash.start("asyncio", SHORT_SLEEP, CRASH_HOLD_STEP="5")
    crash.kill_at(worker, "inside", 5)
    run_id = crash.run_id(worker)
    worker = crash.resume(run_id, "trio", CRASH_HOLD_STEP="30")
    crash.kill_at(worker, "inside", 30)
    result = crash.resume(run_id, "asyncio").finish()
    crash.audit(run_id, result)
