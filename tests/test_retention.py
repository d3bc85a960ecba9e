"""Retention: ended runs are pruned with everything they hold, in small transactions,
never a run still going, nor a run whose child or parent is still going."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from conftest import query_journal, resume_when_live

import runwright as rw
from runwright._cli import main
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

DAY = 86400.0
TABLES = ("runs", "events", "steps", "waits", "hooks", "streams", "stream_chunks")


@rw.step
async def produce(text: str) -> str:
    async with rw.writable("out") as out:
        await out.write(text)
    return text


@rw.workflow
async def finishes(text: str) -> str:
    await rw.sleep(1)
    return await produce(text)


@rw.workflow
async def waits(token: str) -> str:
    return await rw.hook(token)


@rw.workflow
async def parent_of_waiting(token: str) -> str:
    child = await rw.start_child(waits, token)
    return await child.result()


@rw.workflow
async def starts_and_leaves(token: str) -> str:
    await rw.start_child(waits, token)
    return "left the child running"


def _counts(db: Path | str, run_id: str) -> dict[str, int]:
    return {
        table: query_journal(db, f"SELECT count(*) FROM {table} WHERE run_id = ?", (run_id,))[0][0]
        for table in TABLES
    }


async def test_prune_deletes_old_ended_runs_and_everything_they_hold(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime() as runtime:
        old = await runtime.start(finishes, "old")
        await clock.jump()
        assert await old.result(timeout=10) == "old"
        cancelled = await runtime.start(waits, "never")
        await cancelled.cancel()
        running = await runtime.start(waits, "still going")
        leaves = await runtime.start(starts_and_leaves, "orphan")
        assert await leaves.result(timeout=10) == "left the child running"
        parent = await runtime.start(parent_of_waiting, "kid")
        child = runtime.get_run(f"{parent.id}.0")
        with anyio.fail_after(10):
            while (await child.summary()).status.value != "running":  # noqa: ASYNC110 (polls)
                await anyio.sleep(0.001)
        clock.advance(2 * DAY)
        recent = await runtime.start(finishes, "recent")
        await clock.jump()
        assert await recent.result(timeout=10) == "recent"
        assert _counts(db_path, old.id)["stream_chunks"] == 1

        assert await runtime.prune(DAY) == 2  # old and cancelled
        for run in (old, cancelled):
            assert set(_counts(db_path, run.id).values()) == {0}
        for run in (running, leaves, parent, recent):  # going, or a child of it is
            assert _counts(db_path, run.id)["runs"] == 1
        with pytest.raises(rw.RunNotFound):
            await old.summary()

        # Once the child ends, its parent can go too (it ended itself first).
        await resume_when_live(runtime, "orphan", "done")
        assert await runtime.get_run(f"{leaves.id}.0").result(timeout=10) == "done"
        clock.advance(2 * DAY)
        # leaves, its child, and recent (ended two days ago by now)
        assert await runtime.prune(DAY, status="completed") == 3
        assert _counts(db_path, leaves.id)["runs"] == 0
        assert _counts(db_path, running.id)["runs"] == 1
        assert _counts(db_path, parent.id)["runs"] == 1


async def test_only_ended_runs_can_be_pruned(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        with pytest.raises(ValueError, match="only ended runs"):
            await runtime.prune(DAY, status="running")
        with pytest.raises(ValueError, match="older_than"):
            await runtime.prune(0)


async def test_retention_prunes_in_the_background_while_runs_go_on(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime(retention=3600) as runtime:
        done = [await runtime.start(finishes, str(i)) for i in range(20)]
        going = await runtime.start(waits, "going")
        await clock.jump()
        for run in done:
            await run.result(timeout=10)
        clock.advance(3601)
        with anyio.fail_after(10):
            while query_journal(db_path, "SELECT count(*) FROM runs")[0][0] > 1:
                await clock.jump()
                await anyio.sleep(0.01)
        await resume_when_live(runtime, "going", "still here")
        assert await going.result(timeout=10) == "still here"


def _cli(*argv: str) -> int:
    return main(list(argv))


def _size(db: Path | str) -> int | None:
    """The SQLite file's size (None for a PostgreSQL journal)."""
    return os.path.getsize(db) if isinstance(db, Path) else None


async def test_the_cli_prunes_and_vacuums(
    make_runtime: Callable[..., rw.Runtime],
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    clock = FakeClock(time.time() - 10 * DAY)  # the CLI prunes by the real clock
    async with make_runtime(clock=clock) as runtime:
        runs = [await runtime.start(finishes, "x" * 2000) for _ in range(100)]
        await clock.jump()
        for run in runs:
            await run.result(timeout=10)
    before = _size(db_path)

    async def cli(*argv: str) -> int:
        return await anyio.to_thread.run_sync(_cli, *argv, "--db", str(db_path))

    assert await cli("runs", "prune", "--older-than", "30d") == 0
    assert "pruned 0 run(s) that ended before" in capsys.readouterr().out
    assert await cli("runs", "prune", "--older-than", "1w") == 0
    assert "pruned 100 run(s)" in capsys.readouterr().out
    assert query_journal(db_path, "SELECT count(*) FROM events")[0][0] == 0
    assert await cli("db", "vacuum") == 0
    assert " MiB before, " in capsys.readouterr().out
    if before is not None:
        assert (_size(db_path) or 0) < before
    assert await cli("runs", "prune", "--older-than", "soon") == 2
    assert "not an age: 'soon'" in capsys.readouterr().err
