"""Streams across a SIGKILL: what a step wrote survives it, and a new attempt follows it.

Each test runs ``tests/stream_crash_worker.py`` (one step that writes chunks
``"{attempt}:{i}"`` to the run's stream) in a subprocess on a real journal,
SIGKILLs it, reads the journal's stored rows from outside any runtime,
restarts a worker that finishes the run, and checks the journal again, along
with what two readers in the restarted worker saw (one following the run
live, one after its end).

Every test runs on both journal backends (the restarted worker takes the run
over at once there too: the dead worker's lease names a process of this host
that no longer exists). On PostgreSQL the journal is read only once the
server has ended the killed worker's sessions, so that no COMMIT it left in
flight can land after the read.

The properties: chunks that were durable before the kill stay, unchanged, in
place; the interrupted step runs again as attempt 2 and its chunks follow
attempt 1's; indices stay gap-free and duplicate-free; and the one
``step_completed`` is journaled after every chunk of the attempt it completes.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
from conftest import query_journal, wait_for_sessions_to_end

WORKER = Path(__file__).with_name("stream_crash_worker.py")
DEADLINE = 20.0
"""Seconds any one wait for a worker may take before the test fails."""
TEXT = 1
"""``stream_chunks.format`` of a str chunk stored uncompressed (runwright.streams._chunks)."""


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
        return [json.loads(line) for line in self.stdout.read_text().splitlines() if line]

    def wait(self) -> int:
        """Wait for the worker to exit, and for the server to end its sessions."""
        try:
            status = self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not exit within {DEADLINE}s\n{self.output()}")
        if self.session is not None:
            wait_for_sessions_to_end(self.db, self.session)
        return status

    def finish(self) -> dict[str, Any]:
        assert self.wait() == 0, self.output()
        return self.records()[-1]


@dataclasses.dataclass(frozen=True)
class Journal:
    """What the journal holds about the run, read from outside any runtime."""

    run_status: str
    #: (idx, attempt, writer, data) in index order.
    chunks: list[tuple[int, int, str, str]]
    #: (seq, kind, attempt, payload) of the run's events, in order.
    events: list[tuple[int, str, int | None, bytes | None]]
    step_status: str

    def kinds(self, kind: str) -> list[tuple[int, str, int | None, bytes | None]]:
        return [event for event in self.events if event[1] == kind]


def read_journal(db: Path | str) -> Journal:
    """The run's rows (read once no worker writes: the queries need not share a snapshot)."""
    [(run_id, run_status)] = query_journal(db, "SELECT run_id, status FROM runs")
    rows = query_journal(
        db,
        "SELECT idx, attempt, writer, format, data FROM stream_chunks "
        "WHERE run_id = ? AND name = 'default' ORDER BY idx",
        (run_id,),
    )
    chunks = []
    for idx, attempt, writer, fmt, data in rows:
        assert fmt == TEXT, f"chunk {idx} has format {fmt}"
        chunks.append((idx, attempt, writer, bytes(data).decode()))
    events = query_journal(
        db,
        "SELECT seq, kind, attempt, payload FROM events WHERE run_id = ? ORDER BY seq",
        (run_id,),
    )
    [(step_status,)] = query_journal(db, "SELECT status FROM steps WHERE run_id = ?", (run_id,))
    return Journal(run_status, chunks, events, step_status)


def durable_chunks(db: Path | str) -> int:
    """Chunks committed so far (0 while the journal is not there yet)."""
    if isinstance(db, Path):
        # Never open the file before a worker has: that would create it.
        if not db.with_name(db.name + "-shm").exists():
            return 0
        try:
            [(count,)] = query_journal(db, "SELECT count(*) FROM stream_chunks")
        except sqlite3.OperationalError:  # the schema is being created
            return 0
        return int(count)
    if query_journal(db, "SELECT to_regclass('stream_chunks') IS NULL") == [(True,)]:
        return 0
    [(count,)] = query_journal(db, "SELECT count(*) FROM stream_chunks")
    return int(count)


@dataclasses.dataclass
class Harness:
    tmp_path: Path
    db: Path | str
    workers: list[Worker] = dataclasses.field(default_factory=list)
    #: Tells this test's workers' sessions apart from any other on the server.
    token: str = dataclasses.field(default_factory=lambda: secrets.token_hex(4))

    def spawn(self, mode: str, arg: str, *, backend: str, **env: str) -> Worker:
        n = len(self.workers)
        stdout = self.tmp_path / f"worker{n}.out"
        stderr = self.tmp_path / f"worker{n}.err"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_CRASH_")}
        environ.update(env, STREAM_CRASH_BACKEND=backend)
        db, session = self.db, None
        if not isinstance(db, Path):
            session = f"rw-stream-crash-{self.token}-{n}"
            db = f"{db}&application_name={session}"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), os.fspath(db), mode, arg],
                cwd=self.tmp_path,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        worker = Worker(proc, stdout, stderr, self.db, session)
        self.workers.append(worker)
        return worker

    def run_id(self) -> str:
        [(run_id,)] = query_journal(self.db, "SELECT run_id FROM runs")
        return str(run_id)


@pytest.fixture
def harness(tmp_path: Path, db_path: Path | str) -> Iterator[Harness]:
    harness = Harness(tmp_path, db_path)
    try:
        yield harness
    finally:
        for worker in harness.workers:
            if worker.proc.poll() is None:
                os.kill(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait()


def check_finished_run(
    journal: Journal, run_id: str, before: list[tuple[int, int, str, str]], chunks: int
) -> None:
    """The run completed; attempt 2 wrote every chunk after the chunks *before* the kill,
    which are unchanged; its step_completed comes after all of them."""
    writer = f"{run_id}:0"
    assert journal.run_status == "completed"
    assert journal.step_status == "completed"
    kept = len(before)
    assert journal.chunks[:kept] == before
    assert journal.chunks[kept:] == [(kept + i, 2, writer, f"2:{i}") for i in range(chunks)], (
        "attempt 2's chunks do not follow attempt 1's"
    )
    assert [idx for idx, *_ in journal.chunks] == list(range(kept + chunks))

    # Attempt 1 was claimed with the step (its step_scheduled tells), attempt 2 on its own.
    [(_, _, first, _)] = journal.kinds("step_scheduled")
    assert [first] + [attempt for _, _, attempt, _ in journal.kinds("step_started")] == [1, 2]
    [(completed_seq, _, completed_attempt, _)] = journal.kinds("step_completed")
    assert completed_attempt == 2
    appended = journal.kinds("stream_appended")
    assert appended, "no stream_appended event"
    # The appends cover the indices once each, in order...
    covered: list[int] = []
    for _, _, _, payload in appended:
        assert payload is not None
        first, last = map(int, payload.decode().split("-"))
        covered.extend(range(first, last + 1))
    assert covered == list(range(kept + chunks))
    # ...and the last of them (the last chunk's) committed before the step's outcome.
    assert max(seq for seq, *_ in appended) < completed_seq
    [(run_completed_seq, *_)] = journal.kinds("run_completed")
    assert completed_seq < run_completed_seq


def check_readers(record: dict[str, Any], journal: Journal, chunks: int) -> None:
    """Both readers of the restarted worker saw exactly the journal's chunks, once, in order."""
    assert record["result"] == chunks
    expected = [[idx, attempt, data] for idx, attempt, _, data in journal.chunks]
    assert record["live"] == expected
    assert record["after"] == expected


# -- the tests -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_killed_after_the_flush_before_the_outcome_commits(harness: Harness, backend: str) -> None:
    chunks = 40
    worker = harness.spawn("start", str(chunks), backend=backend, STREAM_CRASH_KILL_AT_COMPLETE="1")
    assert worker.wait() == -signal.SIGKILL, worker.output()
    assert "SIGKILL in Tx.complete_step" in worker.stderr.read_text(), worker.output()
    run_id = harness.run_id()

    # Everything the step wrote was durable before its outcome was being journaled...
    killed = read_journal(harness.db)
    writer = f"{run_id}:0"
    assert killed.chunks == [(i, 1, writer, f"1:{i}") for i in range(chunks)]
    # ...and the outcome never committed: the step is still running, in the journal.
    assert killed.kinds("step_completed") == []
    assert killed.step_status == "running"
    assert killed.run_status == "running"

    record = harness.spawn("resume", run_id, backend=backend).finish()
    final = read_journal(harness.db)
    assert final.events[: len(killed.events)] == killed.events
    check_finished_run(final, run_id, killed.chunks, chunks)
    check_readers(record, final, chunks)


@pytest.mark.parametrize(
    ("after", "backend"),
    [(1, "asyncio"), (47, "trio"), (130, "asyncio"), (200, "trio")],
)
def test_killed_while_writing(harness: Harness, after: int, backend: str) -> None:
    """SIGKILL from outside once at least *after* chunks are durable, wherever the step is."""
    chunks = 300
    worker = harness.spawn("start", str(chunks), backend=backend, STREAM_CRASH_DELAY="0.001")
    deadline = time.monotonic() + DEADLINE
    while durable_chunks(harness.db) < after:
        if worker.proc.poll() is not None:
            pytest.fail(f"the worker exited before {after} chunks\n{worker.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {after} chunks\n{worker.output()}")
        time.sleep(0.0002)
    os.kill(worker.proc.pid, signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    run_id = harness.run_id()

    killed = read_journal(harness.db)
    kept = len(killed.chunks)
    assert after <= kept < chunks, "killed too late: the step had written every chunk"
    assert killed.kinds("step_completed") == [], "killed too late: the step had completed"
    # Whatever commit the kill interrupted, attempt 1's durable chunks are a prefix of
    # what it wrote: no hole, nothing twice.
    writer = f"{run_id}:0"
    assert killed.chunks == [(i, 1, writer, f"1:{i}") for i in range(kept)]

    record = harness.spawn("resume", run_id, backend=backend).finish()
    final = read_journal(harness.db)
    assert final.events[: len(killed.events)] == killed.events
    check_finished_run(final, run_id, killed.chunks, chunks)
    check_readers(record, final, chunks)
