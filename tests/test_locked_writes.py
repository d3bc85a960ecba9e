"""A write that finds the journal locked by another process is not lost: nothing runs
twice, and a cancel made meanwhile still lands.

On SQLite the lock is the file's write lock: a write that waits past the busy
timeout fails and the actor retries it. On PostgreSQL it is the journal's write
advisory lock, which every write transaction takes first: a write waits for
another session that holds it, and lands once it is released.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from conftest import query_journal

import runwright as rw

pytestmark = pytest.mark.anyio

ran: Counter[str] = Counter()
gates: dict[str, anyio.Event] = {}


@rw.step
async def gated(name: str) -> str:
    ran[name] += 1
    await gates[name].wait()
    return name


@rw.step
async def cleanup() -> None:
    ran["cleanup"] += 1


@rw.workflow
async def two_gated() -> list[str]:
    first = await gated("first")
    try:
        second = await gated("second")
    except rw.Cancelled:
        await cleanup()
        raise
    return [first, second]


@pytest.fixture(autouse=True)
def _fresh_gates() -> None:
    """Each test starts with no step run and both gates closed."""
    ran.clear()
    gates.clear()
    gates.update(first=anyio.Event(), second=anyio.Event())


@contextmanager
def locked(db_path: Path) -> Iterator[None]:
    """Another process holds the SQLite file's write lock."""
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


@contextmanager
def write_lock_held(url: str) -> Iterator[Callable[[], bool]]:
    """Another session holds the PostgreSQL journal's write lock; yields a check that
    some session waits for it."""
    import psycopg

    from runwright.journal.postgres._schema import lock_key
    from runwright.journal.postgres._url import PgTarget

    target = PgTarget(url)
    key = lock_key(target.schema, "write")
    # pg_locks shows a bigint advisory key as its high and low 32 bits.
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    with psycopg.connect(target.conninfo, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))

        def waited_for() -> bool:
            row = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
                (high, low),
            ).fetchone()
            return row is not None and row[0] > 0

        try:
            yield waited_for
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (key,))


def completed_steps(db: str, run_id: str) -> list[str]:
    rows = query_journal(
        db,
        "SELECT name FROM events WHERE run_id = ? AND kind = 'step_completed' ORDER BY seq",
        (run_id,),
    )
    return [name for (name,) in rows]


async def until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not predicate():  # noqa: ASYNC110 (state changes in this process)
            await anyio.sleep(0.005)


@pytest.mark.sqlite_only("the file's write lock and busy_timeout are SQLite's")
async def test_a_locked_write_is_retried_and_loses_nothing(
    make_runtime: Callable[..., rw.Runtime], db_path: Path, caplog: pytest.LogCaptureFixture
):
    async with make_runtime(busy_timeout=0.05) as runtime:
        handle = await runtime.start(two_gated)
        await until(lambda: ran["first"] == 1)
        with locked(db_path):
            gates["first"].set()
            await until(lambda: "journal writes fail" in caplog.text)
        await until(lambda: ran["second"] == 1)
        gates["second"].set()
        assert await handle.result(timeout=10) == ["first", "second"]
    assert ran == Counter({"first": 1, "second": 1})


@pytest.mark.sqlite_only("the file's write lock and busy_timeout are SQLite's")
async def test_a_cancel_made_while_the_database_is_locked_still_lands(
    make_runtime: Callable[..., rw.Runtime], db_path: Path, caplog: pytest.LogCaptureFixture
):
    gates["first"].set()
    async with make_runtime(busy_timeout=0.05) as runtime:
        handle = await runtime.start(two_gated)
        await until(lambda: ran["second"] == 1)
        async with anyio.create_task_group() as tg:
            with locked(db_path):
                tg.start_soon(handle.cancel)
                await until(lambda: "journal writes fail" in caplog.text)
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
    assert ran["cleanup"] == 1


@pytest.mark.postgres_only("the journal's write advisory lock is PostgreSQL's")
async def test_a_write_waits_for_another_sessions_write_lock_and_loses_nothing(
    make_runtime: Callable[..., rw.Runtime], db_path: str, caplog: pytest.LogCaptureFixture
):
    async with make_runtime() as runtime:
        handle = await runtime.start(two_gated)
        await until(lambda: ran["first"] == 1)
        with write_lock_held(db_path) as waited_for:
            gates["first"].set()
            await until(waited_for)
            await anyio.sleep(0.1)
            # The first step's outcome, and the second's claim, wait; reads do not.
            assert completed_steps(db_path, handle.id) == []
            assert ran["second"] == 0
            assert await handle.status() is rw.RunStatus.RUNNING
        await until(lambda: ran["second"] == 1)
        gates["second"].set()
        assert await handle.result(timeout=10) == ["first", "second"]
    assert ran == Counter({"first": 1, "second": 1})
    assert completed_steps(db_path, handle.id) == [gated.name, gated.name]
    assert "journal writes fail" not in caplog.text


@pytest.mark.postgres_only("the journal's write advisory lock is PostgreSQL's")
async def test_a_cancel_made_while_another_session_holds_the_write_lock_still_lands(
    make_runtime: Callable[..., rw.Runtime], db_path: str
):
    gates["first"].set()
    cancelled = anyio.Event()

    async def cancel() -> None:
        await handle.cancel()
        cancelled.set()

    async with make_runtime() as runtime:
        handle = await runtime.start(two_gated)
        await until(lambda: ran["second"] == 1)
        async with anyio.create_task_group() as tg:
            with write_lock_held(db_path) as waited_for:
                tg.start_soon(cancel)
                await until(waited_for)
                await anyio.sleep(0.1)
                assert not cancelled.is_set()
                assert await handle.status() is rw.RunStatus.RUNNING
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
    assert ran["cleanup"] == 1
    assert ran["second"] == 1


@contextmanager
def lock_of(db: Path | str) -> Iterator[None]:
    """Another process or session holds the journal's write lock."""
    if isinstance(db, str) and db.startswith("postgresql://"):
        with write_lock_held(db):
            yield
    else:
        with locked(Path(db)):
            yield


async def test_a_runtime_closes_in_time_while_the_journal_is_locked(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    """Closing ends within shutdown_grace and a second however long the lock is held;
    the step whose outcome could not be written is redone by the next runtime."""
    grace = 0.5
    runtime = make_runtime(shutdown_grace=grace, lease_seconds=1.0)
    await runtime.__aenter__()
    try:
        handle = await runtime.start(two_gated)
        await until(lambda: ran["first"] == 1)
        with lock_of(db_path):
            gates["first"].set()  # its outcome now waits for the lock
            await anyio.sleep(0.05)
            began = time.monotonic()
            closing, runtime = runtime, None
            await closing.__aexit__(None, None, None)
            took = time.monotonic() - began
    finally:
        if runtime is not None:
            await runtime.__aexit__(None, None, None)
    assert took <= grace + 1.0, took
    gates["second"].set()
    async with make_runtime(lease_seconds=1.0) as again:
        assert await again.get_run(handle.id).result(timeout=20) == ["first", "second"]
    assert completed_steps(str(db_path), handle.id) == [gated.name, gated.name]
    assert ran["second"] == 1


async def test_calls_honour_a_cancel_scope_while_the_journal_is_locked(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    """A write that waits for the lock can be given up on; reads do not wait at all."""
    async with make_runtime(busy_timeout=30.0) as runtime:
        handle = await runtime.start(two_gated)
        await until(lambda: ran["first"] == 1)
        with lock_of(db_path):
            for call in (
                lambda: runtime.start(two_gated),
                lambda: runtime.send(handle.id, "topic", 1),
                lambda: runtime.resume_hook("nobody-holds-this", 1),
                handle.cancel,
            ):
                began = time.monotonic()
                with anyio.move_on_after(0.2) as scope:
                    await call()
                assert scope.cancelled_caught
                assert time.monotonic() - began < 2.0
            with pytest.raises(rw.RunTimeout):
                await handle.result(timeout=0.1)
            assert await handle.status() is rw.RunStatus.RUNNING
            assert len(await runtime.list_runs()) >= 1
        gates["first"].set()
        gates["second"].set()
        # The cancel was handed to the run, which records it once it can.
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=20)
        runs = await runtime.list_runs()
    if isinstance(db_path, Path):
        # SQLite's writer waits for the lock before it runs a write: the start given
        # up on was not made.
        assert [s.id for s in runs] == [handle.id]
    else:
        # PostgreSQL's writer sends a write with its transaction, which waits for the
        # lock on the server: given up on after that, the start commits with it.
        assert len(runs) == 2
