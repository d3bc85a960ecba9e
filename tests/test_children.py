"""Child workflows: started durably from a parent, awaited through the parent's journal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import anyio
import pytest

import runwright as rw
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

seen: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    seen.clear()


@rw.step
async def ship(order_id: str) -> str:
    seen[f"ship {order_id}"] += 1
    return f"tracking-{order_id}"


@rw.workflow
async def shipping(order_id: str) -> str:
    return await ship(order_id)


@rw.workflow
async def breaks(order_id: str) -> str:
    raise KeyError(order_id)


@rw.workflow
async def slow_child(seconds: float) -> str:
    await rw.sleep(seconds)
    return await ship("slow")


@rw.step
async def child_cleanup() -> None:
    seen["child cleanup"] += 1


@rw.workflow
async def waits_for_ever() -> None:
    try:
        await rw.hook()
    except rw.Cancelled:
        await child_cleanup()
        raise


@rw.workflow
async def parent(order_id: str) -> list[str]:
    child = await rw.start_child(shipping, order_id)
    first = await child.result()
    again = await rw.start_child(shipping, order_id + "-2")
    return [child.id, first, await again.result()]


@rw.workflow
async def parent_of_broken() -> str:
    child = await rw.start_child(breaks, "o-9")
    try:
        await child.result()
    except rw.RunFailed as exc:
        return f"{exc.type_name}: {exc.message} ({type(exc.__cause__).__name__})"
    return "no"


@rw.workflow
async def parent_of_slow() -> str:
    child = await rw.start_child(slow_child, 60)
    return await child.result()


@rw.workflow
async def parent_of_stuck() -> None:
    child = await rw.start_child(waits_for_ever)
    await child.result()


async def children_of(runtime: rw.Runtime, run_id: str) -> list[tuple[str, str]]:
    return await runtime.journal.read(
        lambda c: c.execute(
            "SELECT run_id, status FROM runs WHERE parent_run_id = ? ORDER BY run_id", (run_id,)
        ).fetchall()
    )


async def test_a_child_runs_and_its_result_reaches_the_parent(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        handle = await runtime.start(parent, "o-1")
        child_id, first, second = await handle.result(timeout=10)
        children = await children_of(runtime, handle.id)
    assert (first, second) == ("tracking-o-1", "tracking-o-1-2")
    assert child_id == f"{handle.id}.0"
    assert [status for _, status in children] == ["completed", "completed"]
    assert seen == Counter({"ship o-1": 1, "ship o-1-2": 1})


@rw.workflow
async def fire_and_forget(order_id: str) -> str:
    child = await rw.start_child(shipping, order_id)
    return child.id


async def test_a_child_of_a_parent_that_returns_at_once_runs_at_once(
    make_runtime: Callable[..., rw.Runtime],
):
    # The child is written with the parent's start and end; it is driven right away,
    # not when a lease scan (every lease_seconds / 3) finds it.
    async with make_runtime(lease_seconds=600) as runtime:
        handle = await runtime.start(fire_and_forget, "o-3")
        child_id = await handle.result(timeout=5)
        assert await runtime.get_run(child_id).result(timeout=5) == "tracking-o-3"


async def test_a_failed_child_raises_in_the_parent(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(parent_of_broken)
        assert await handle.result(timeout=10) == "builtins:KeyError: 'o-9' (KeyError)"


async def test_a_child_survives_a_restart_and_is_not_started_twice(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(parent_of_slow)
        await clock.wait_for_sleeper()
    clock.advance(60)
    async with make_runtime() as runtime:
        assert await runtime.get_run(handle.id).result(timeout=10) == "tracking-slow"
        assert len(await children_of(runtime, handle.id)) == 1
    assert seen["ship slow"] == 1


async def test_cancelling_the_parent_cancels_its_children(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        handle = await runtime.start(parent_of_stuck)
        with anyio.fail_after(10):
            while not await children_of(runtime, handle.id):  # noqa: ASYNC110 (polls the journal)
                await anyio.sleep(0.001)
        await handle.cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
        child_id = (await children_of(runtime, handle.id))[0][0]
        with pytest.raises(rw.RunCancelled):
            await runtime.get_run(child_id).result(timeout=10)
    assert seen["child cleanup"] == 1


def test_start_child_outside_a_workflow():
    with pytest.raises(rw.NotInWorkflowError):
        rw.start_child(shipping, "x")
