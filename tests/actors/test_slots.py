"""Step slots: free slots cost no wait, no more than the total are held, and a
cancelled waiter leaves the queue without losing a slot."""

from __future__ import annotations

import anyio
import pytest

from runwright.actors._slots import StepSlots

pytestmark = pytest.mark.anyio


async def test_slots_bound_holders_and_every_waiter_gets_one():
    slots = StepSlots(2)
    entered: list[int] = []
    holding = {"now": 0, "peak": 0}
    release = anyio.Event()

    async def hold(i: int) -> None:
        async with slots:
            entered.append(i)
            holding["now"] += 1
            holding["peak"] = max(holding["peak"], holding["now"])
            await release.wait()
            await anyio.lowlevel.checkpoint()
            holding["now"] -= 1

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(hold, i)
            await anyio.wait_all_tasks_blocked()
        assert entered == [0, 1]
        release.set()
    assert sorted(entered) == [0, 1, 2, 3, 4]
    assert holding["peak"] == 2
    assert slots.used == 0


async def test_a_cancelled_waiter_leaves_the_queue():
    slots = StepSlots(1)
    await slots.acquire()
    got: list[str] = []

    async def waiter(name: str, scope_out: list[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scope_out.append(scope)
            async with slots:
                got.append(name)

    scopes: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "first", scopes)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "second", scopes)
        await anyio.wait_all_tasks_blocked()
        scopes[0].cancel()
        await anyio.wait_all_tasks_blocked()
        slots.release()
    assert got == ["second"]
    assert slots.used == 0


def test_at_least_one_slot():
    with pytest.raises(ValueError, match=r">= 1"):
        StepSlots(0)
