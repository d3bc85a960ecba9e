"""Structured concurrency inside workflows: a race's losers and a failed gather's others
are cancelled (steps, sleeps, hooks, children), journaled as such, and never waited for."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal, resume_when_live

import runwright as rw
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

seen: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    seen.clear()


@rw.step(retries=3)
async def blocks(tag: str) -> str:
    """Never returns on its own; notes when it starts and when it is cancelled."""
    seen[f"start {tag}"] += 1
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        seen[f"cancelled {tag}"] += 1
        raise
    return tag  # pragma: no cover


@rw.step(retries=0)
async def declines() -> None:
    raise rw.FatalError("card declined")


@rw.step
async def after(value: Any) -> str:
    return f"after {value}"


@rw.workflow
async def step_against_timer() -> Any:
    return await rw.race(blocks("slow"), rw.sleep(1))


@rw.workflow
async def gather_with_a_failure() -> str:
    try:
        await rw.gather(blocks("a"), declines(), blocks("b"))
    except rw.FatalError as exc:
        return await after(str(exc))
    return "no error"


@rw.workflow
async def waits_for_ever() -> None:
    await rw.hook()


async def _start_and_await_child() -> Any:
    child = await rw.start_child(waits_for_ever)
    return await child.result()


@rw.workflow
async def child_against_timer() -> str:
    await rw.race(_start_and_await_child(), rw.sleep(1))
    return "timer won"


async def _approval(token: str) -> Any:
    async with rw.hook(token) as hook:
        return await hook


@rw.workflow
async def hook_against_timer(token: str) -> Any:
    first = await rw.race(_approval(token), rw.sleep(1))
    return [first, await rw.hook(token + ":next")]


@rw.workflow
async def step_against_hook(token: str) -> Any:
    won = await rw.race(blocks("x"), rw.hook(token))
    return await after(won)


async def _until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 (the condition is set by another task's step)
            await anyio.sleep(0.001)


def _kinds(db: Path | str, run_id: str) -> list[tuple[str, int | None]]:
    sql = "SELECT kind, cid FROM events WHERE run_id = ? ORDER BY seq"
    rows = query_journal(db, sql, (run_id,))
    return [(str(kind), cid) for kind, cid in rows]


async def test_a_race_cancels_the_losing_step_and_the_run_ends_at_once(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(step_against_timer)
        await _until(lambda: seen["start slow"] == 1)
        await clock.jump()
        # The step never returns on its own: the run ends because it was cancelled.
        assert await handle.result(timeout=10) is None
        await _until(lambda: seen["cancelled slow"] == 1)
    kinds = _kinds(db_path, handle.id)
    assert ("step_cancelled", 0) in kinds
    assert ("step_failed", 0) not in kinds
    assert ("step_retrying", 0) not in kinds
    assert kinds.index(("wait_completed", 1)) < kinds.index(("step_cancelled", 0))
    sql = "SELECT status, attempt FROM steps WHERE run_id = ?"
    steps = query_journal(db_path, sql, (handle.id,))
    assert steps == [("cancelled", 1)]
    assert seen["start slow"] == 1  # a cancelled attempt is not retried


async def test_a_failed_gather_member_cancels_the_others_before_the_workflow_sees_the_error(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(gather_with_a_failure)
        assert await handle.result(timeout=10) == "after card declined"
        await _until(lambda: seen["cancelled a"] == 1 and seen["cancelled b"] == 1)
    kinds = _kinds(db_path, handle.id)
    failed = kinds.index(("step_failed", 1))
    follow_up = kinds.index(("step_scheduled", 3))
    assert failed < kinds.index(("step_cancelled", 0)) < follow_up
    assert failed < kinds.index(("step_cancelled", 2)) < follow_up
    statuses = query_journal(
        db_path, "SELECT status FROM steps WHERE run_id = ? ORDER BY cid", (handle.id,)
    )
    assert [s for (s,) in statuses] == ["cancelled", "failed", "cancelled", "completed"]


async def test_a_losing_child_run_is_cancelled(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(child_against_timer)
        child = runtime.get_run(f"{handle.id}.0")
        await clock.wait_for_sleeper()
        await clock.jump()
        assert await handle.result(timeout=10) == "timer won"
        with pytest.raises(rw.RunCancelled):
            await child.result(timeout=10)
    assert ("child_cancelled", 0) in _kinds(db_path, handle.id)


async def test_a_hook_in_a_losing_branch_is_released_while_the_run_goes_on(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(hook_against_timer, "h-1")
        await clock.jump()
        await resume_when_live(runtime, "h-1:next", "later")
        assert await handle.result(timeout=10) == [None, "later"]
        with pytest.raises(rw.HookNotFound):
            await runtime.resume_hook("h-1", "too late")


async def test_a_payload_from_another_process_cancels_the_step_running_here(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as owner, make_runtime(execute=False) as client:
        handle = await owner.start(step_against_hook, "go")
        await _until(lambda: seen["start x"] == 1)
        await resume_when_live(client, "go", "approved")
        assert await client.get_run(handle.id).result(timeout=10) == "after approved"
        await _until(lambda: seen["cancelled x"] == 1)
    assert ("step_cancelled", 1) in _kinds(db_path, handle.id)


async def test_a_settled_race_replays_after_a_restart(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(hook_against_timer, "h-2")
        await clock.jump()
        await _until(lambda: ("hook_created", 2) in _kinds(db_path, handle.id))
    async with make_runtime() as runtime:
        await resume_when_live(runtime, "h-2:next", "after restart")
        assert await runtime.get_run(handle.id).result(timeout=10) == [None, "after restart"]
    kinds = _kinds(db_path, handle.id)
    assert kinds.count(("hook_created", 0)) == 1
    assert kinds.count(("hook_disposed", 0)) == 1
    assert kinds.count(("hook_created", 2)) == 1
    assert kinds.count(("wait_completed", 1)) == 1


async def test_cancelling_a_run_journals_its_running_step_as_cancelled(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(step_against_timer)
        await _until(lambda: seen["start slow"] == 1)
        await handle.cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
        await _until(lambda: seen["cancelled slow"] == 1)
    statuses = query_journal(db_path, "SELECT status FROM steps WHERE run_id = ?", (handle.id,))
    assert statuses == [("cancelled",)]
    waits = query_journal(db_path, "SELECT status FROM waits WHERE run_id = ?", (handle.id,))
    assert waits == [("cancelled",)]


@rw.workflow
async def approval_or_timeout(token: str) -> list[Any]:
    which, value = await rw.select(approval=rw.hook(token), timeout=rw.sleep(60))
    return [which, value]


async def test_select_tells_which_branch_won(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        approved = await runtime.start(approval_or_timeout, "sel-1")
        await resume_when_live(runtime, "sel-1", None)  # a payload of None
        assert await approved.result(timeout=10) == ["approval", None]
        timed_out = await runtime.start(approval_or_timeout, "sel-2")
        await clock.wait_for_sleeper()
        await clock.jump()
        assert await timed_out.result(timeout=10) == ["timeout", None]
        with pytest.raises(rw.HookNotFound):  # the losing hook was released with its run
            await runtime.resume_hook("sel-2", "late")


def test_select_needs_a_workflow_and_a_branch():
    with pytest.raises(rw.NotInWorkflowError, match=r"rw\.select\(\)"):
        rw.select(a=rw.sleep)  # type: ignore[arg-type]
