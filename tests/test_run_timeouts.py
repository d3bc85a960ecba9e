"""Run timeouts: a durable deadline that cancels the run ("timed out") once, across
restarts, tested on the fake clock."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import query_journal, resume_when_live

import runwright as rw
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

seen: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    seen.clear()


@rw.step
async def clean_up(what: str) -> None:
    seen[f"cleaned {what}"] += 1


@rw.workflow
async def waits_for_approval(order: str) -> str:
    try:
        return await rw.hook(f"approve:{order}")
    except rw.Cancelled:
        await clean_up(order)
        raise


@rw.workflow(timeout=dt.timedelta(minutes=5))
async def bounded(order: str) -> str:
    return await rw.hook(f"bounded:{order}")


@rw.workflow
async def parent_of_bounded() -> str:
    child = await rw.start_child(bounded, "kid")
    try:
        return await child.result()
    except rw.RunCancelled as exc:
        return f"child ended: {exc}"


def _deadline(db: Path | str, run_id: str) -> list[tuple[float, str]]:
    sql = "SELECT wake_at, status FROM waits WHERE run_id = ? AND cid = -1"
    return [(float(at), str(status)) for at, status in query_journal(db, sql, (run_id,))]


def _cancels(db: Path | str, run_id: str) -> list[tuple[str | None]]:
    sql = "SELECT name FROM events WHERE run_id = ? AND kind = 'cancel_requested'"
    return query_journal(db, sql, (run_id,))


async def test_a_run_past_its_timeout_is_cancelled_and_cleans_up(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(waits_for_approval, "o-1", timeout=3600)
        assert _deadline(db_path, handle.id) == [(clock.now() + 3600, "pending")]
        assert await clock.jump() == _deadline(db_path, handle.id)[0][0]
        with pytest.raises(rw.RunCancelled, match=r"\(timed out\)") as info:
            await handle.result(timeout=10)
        assert info.value.reason == "timed out"
        summary = await handle.summary()
    assert summary.status is rw.RunStatus.CANCELLED
    assert summary.error_message == "timed out"
    assert seen["cleaned o-1"] == 1
    assert _cancels(db_path, handle.id) == [("timed out",)]
    assert _deadline(db_path, handle.id)[0][1] == "fired"


async def test_the_deadline_fires_once_across_restarts(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(waits_for_approval, "o-2", timeout=60)
    clock.advance(120)  # the deadline passes while no process runs
    async with make_runtime() as runtime:
        with pytest.raises(rw.RunCancelled, match="timed out"):
            await runtime.get_run(handle.id).result(timeout=10)
    async with make_runtime() as runtime:
        with pytest.raises(rw.RunCancelled):
            await runtime.get_run(handle.id).result(timeout=10)
    assert seen["cleaned o-2"] == 1
    assert _cancels(db_path, handle.id) == [("timed out",)]


async def test_a_run_that_ends_first_releases_its_deadline(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(waits_for_approval, "o-3", timeout=60)
        await resume_when_live(runtime, "approve:o-3", "yes")
        assert await handle.result(timeout=10) == "yes"
        clock.advance(120)
    assert _deadline(db_path, handle.id)[0][1] == "cancelled"
    assert _cancels(db_path, handle.id) == []


async def test_the_workflow_timeout_is_the_default_and_start_overrides_it(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    started = clock.now()
    async with make_runtime() as runtime:
        default = await runtime.start(bounded, "a")
        longer = await runtime.start(bounded, "b", timeout=dt.timedelta(hours=1))
        unbounded = await runtime.start(waits_for_approval, "c")
        await clock.jump()
        with pytest.raises(rw.RunCancelled, match="timed out"):
            await default.result(timeout=10)
        assert (await longer.summary()).status is rw.RunStatus.RUNNING
    assert _deadline(db_path, default.id)[0][0] == started + 300 == clock.now()
    assert _deadline(db_path, longer.id)[0][0] == started + 3600
    assert _deadline(db_path, unbounded.id) == []


async def test_a_child_run_times_out_by_its_own_workflow_timeout(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(parent_of_bounded)
        await clock.jump()
        result = await handle.result(timeout=10)
    assert result == f"child ended: run {handle.id}.0 was cancelled (timed out)"


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(0, ValueError), (-1, ValueError), (float("inf"), ValueError), ("1h", TypeError)],
)
async def test_a_bad_timeout_is_refused_before_anything_is_written(
    make_runtime: Callable[..., rw.Runtime], timeout: object, error: type[Exception]
):
    async with make_runtime() as runtime:
        with pytest.raises(error, match="timeout"):
            await runtime.start(waits_for_approval, "x", timeout=timeout)
        assert await runtime.list_runs() == []
    with pytest.raises(error, match="timeout"):
        rw.workflow(timeout=timeout)(_body)  # type: ignore[arg-type]


async def _body() -> None:
    """A workflow body for the decorator's argument check."""
