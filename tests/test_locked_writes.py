"""A write that finds the database locked past the busy timeout is retried by the
actor; nothing is lost, nothing runs twice, and a cancel made meanwhile still lands."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

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


@contextmanager
def locked(db_path: Path) -> Iterator[None]:
    """Another process holds the write lock."""
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


async def until(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not predicate():  # noqa: ASYNC110 (state changes in this process)
            await anyio.sleep(0.005)


async def test_a_locked_write_is_retried_and_loses_nothing(
    make_runtime: Callable[..., rw.Runtime], db_path: Path, caplog: pytest.LogCaptureFixture
):
    ran.clear()
    gates.clear()
    gates.update(first=anyio.Event(), second=anyio.Event())
    async with make_runtime(busy_timeout=0.05) as runtime:
        handle = await runtime.start(two_gated)
        await until(lambda: ran["first"] == 1)
        with locked(db_path):
            gates["first"].set()
            await until(lambda: "journal write failed, retrying" in caplog.text)
        await until(lambda: ran["second"] == 1)
        gates["second"].set()
        assert await handle.result(timeout=10) == ["first", "second"]
    assert ran == Counter({"first": 1, "second": 1})


async def test_a_cancel_made_while_the_database_is_locked_still_lands(
    make_runtime: Callable[..., rw.Runtime], db_path: Path, caplog: pytest.LogCaptureFixture
):
    ran.clear()
    gates.clear()
    gates.update(first=anyio.Event(), second=anyio.Event())
    gates["first"].set()
    async with make_runtime(busy_timeout=0.05) as runtime:
        handle = await runtime.start(two_gated)
        await until(lambda: ran["second"] == 1)
        async with anyio.create_task_group() as tg:
            with locked(db_path):
                tg.start_soon(handle.cancel)
                await until(lambda: "journal write failed, retrying" in caplog.text)
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
    assert ran["cleanup"] == 1
