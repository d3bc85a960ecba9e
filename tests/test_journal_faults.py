"""Faults of the journal itself: a full disk, a journal that cannot be written, a damaged
file. Each is reported as what it is, nothing hangs, and runs finish once it is fixed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal
from faults import FaultPlan, injected

import runwright as rw
from runwright._cli import main

pytestmark = pytest.mark.anyio

CHUNKS = 12


@rw.step
async def pour(n: int) -> int:
    """Streams incompressible chunks: each needs new pages of the journal file."""
    async with rw.writable() as out:
        for i in range(n):
            await out.write(i.to_bytes(2, "big") + os.urandom(32 * 1024))
    return n


@rw.workflow
async def pouring(n: int) -> int:
    return await pour(n) + 1


@rw.workflow
async def plain(x: int) -> int:
    return x + 1


async def _until(predicate: Callable[[], bool], seconds: float = 20) -> None:
    with anyio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 (state changes in this process)
            await anyio.sleep(0.005)


def _set_max_pages(pages: int | None) -> Callable[[Any], None]:
    """A write that changes SQLite's size limit of the writer's connection (what a
    full disk looks like to SQLite: SQLITE_FULL)."""

    def limit(tx: Any) -> None:
        conn = tx._conn
        if pages is None:
            conn.execute("PRAGMA max_page_count = 4294967294")
        else:
            (count,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {count + pages}")

    return limit


@pytest.mark.sqlite_only("SQLITE_FULL from the database's page limit is SQLite's")
async def test_the_disk_fills_under_a_streaming_step_and_the_run_still_completes(
    make_runtime: Callable[..., rw.Runtime], db_path: Path
):
    async with make_runtime() as runtime:
        await runtime.journal.write(_set_max_pages(4))
        handle = await runtime.start(pouring, CHUNKS)
        await _until(lambda: isinstance(runtime.journal.fault, rw.JournalFull))
        assert "the disk is full" in str(runtime.journal.fault)
        assert await handle.status() is rw.RunStatus.RUNNING
        # The operator frees space.
        while True:
            try:
                await runtime.journal.write(_set_max_pages(None))
                break
            except rw.JournalFull:  # the write itself may need a page: try until it fits
                await anyio.sleep(0.01)
        assert await handle.result(timeout=20) == CHUNKS + 1
        chunks = [c async for c in handle.stream(skip_superseded=True)]
    assert [int.from_bytes(c.data[:2], "big") for c in chunks] == list(range(CHUNKS))
    attempts = query_journal(
        str(db_path),
        "SELECT attempt FROM events WHERE run_id = ? AND kind = 'step_completed'",
        (handle.id,),
    )
    failed = query_journal(
        str(db_path),
        "SELECT count(*) FROM events WHERE kind IN ('step_failed', 'step_retrying')",
    )
    assert len(attempts) == 1
    assert attempts[0][0] > 1  # the attempt the disk failed under was abandoned
    assert failed == [(0,)]  # and it was not the step's failure


async def test_a_runtime_opens_while_writes_fail_and_claims_its_runs_after(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime(execute=False) as client:
        run_id = (await client.start(plain, 1)).id
    plan = FaultPlan()
    with injected(plan, db_path):
        plan.fail(plan.transactions + 1, None)  # every write, until cleared
        async with make_runtime() as runtime:  # its claim of the waiting run fails
            assert plan.failed >= 1
            waiting = runtime.get_run(run_id)
            with pytest.raises(rw.JournalFull, match="the disk is full"):
                await runtime.start(plain, 2)
            with anyio.move_on_after(0.2):
                await waiting.result()
            assert await waiting.status() is rw.RunStatus.PENDING  # not claimed, not lost
            plan.clear()
            assert await waiting.result(timeout=10) == 2
            assert await (await runtime.start(plain, 5)).result(timeout=10) == 6


async def test_every_public_call_honours_a_timeout_while_writes_fail(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    plan = FaultPlan()
    with injected(plan, db_path):
        async with make_runtime() as runtime:
            handle = await runtime.start(plain, 1)
            assert await handle.result(timeout=10) == 2
            plan.fail(plan.transactions + 1, None)
            with pytest.raises(rw.JournalFull):
                await runtime.start(plain, 2)
            with pytest.raises(rw.JournalFull):
                await handle.cancel()  # a no-op once ended, but it asks the journal
            with pytest.raises(rw.JournalFull):
                await runtime.send(handle.id, "topic", 1)
            with pytest.raises(rw.JournalFull):
                await runtime.resume_hook("no-such-token", 1)
            assert [s.id for s in await runtime.list_runs()] == [handle.id]  # reads work
            plan.clear()


# -- messages --------------------------------------------------------------------------


def _cli(db: Path, *argv: str) -> int:
    return main([*argv, "--db", str(db)])


async def _make_journal(path: Path) -> str:
    async with rw.Runtime(path, synchronous="NORMAL") as runtime:
        handles = [await runtime.start(plain, i) for i in range(200)]
        for handle in handles:
            await handle.result(timeout=10)
    return handles[0].id


@pytest.mark.sqlite_only("a damaged file is SQLite's fault")
async def test_a_truncated_journal_is_called_malformed_not_foreign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "journal.db"
    run_id = await _make_journal(path)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(rw.JournalCorrupt) as info:
        async with rw.Runtime(path):
            pass
    message = str(info.value)
    assert "is a runwright journal but its file is malformed" in message
    assert "restore it from a backup" in message
    assert "PRAGMA integrity_check says: " in message
    assert "not a runwright journal" not in message
    for argv in (("runs", "list"), ("runs", "show", run_id)):
        assert await anyio.to_thread.run_sync(_cli, path, *argv) == 1
        err = capsys.readouterr().err
        assert "malformed" in err, err
        assert "restore it from a backup" in err, err
        assert "not a runwright journal" not in err


@pytest.mark.sqlite_only("the file's own header is SQLite's")
async def test_a_file_that_is_no_journal_is_still_called_so(tmp_path: Path):
    path = tmp_path / "notes.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(rw.NotARunwrightDatabase, match="is not a runwright journal"):
        async with rw.Runtime(path):
            pass


@pytest.mark.sqlite_only("a file system that fills up is the SQLite journal's")
async def test_opening_on_a_full_disk_says_the_disk_is_full(small_mount: Path):
    path = small_mount / "journal.db"
    async with rw.Runtime(path, synchronous="NORMAL") as runtime:
        await (await runtime.start(plain, 1)).result(timeout=10)

    def fill() -> None:
        with contextlib.suppress(OSError), (small_mount / "filler").open("wb") as f:
            while True:
                f.write(b"\0" * 65536)

    await anyio.to_thread.run_sync(fill)
    # Opening needs room for the -wal and -shm files: SQLite calls it an I/O error.
    with pytest.raises(rw.JournalFull, match="no space is left on the disk"):
        async with rw.Runtime(path):
            pass
    os.remove(small_mount / "filler")
    async with rw.Runtime(path) as runtime:
        assert await (await runtime.start(plain, 2)).result(timeout=10) == 3
