"""A journal write that fails is the journal's fault, never the run's: for every k,
failing the k-th write transaction (once, for a stretch, or until cleared) leaves
every run to end with the result it would have had, each step recorded once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal
from faults import FaultPlan, injected

import runwright as rw
from runwright.testing import skip_time

pytestmark = pytest.mark.anyio


@rw.step
async def double(x: int) -> int:
    return 2 * x


@rw.step
async def tell(words: list[str]) -> int:
    async with rw.writable() as out:
        for word in words:
            await out.write(word)
        await out.close()
    return len(words)


@rw.workflow
async def leaf(x: int) -> int:
    return await double(x) + 1


@rw.workflow
async def everything(token: str) -> list[Any]:
    a = await double(1)
    b, c = await rw.gather(double(2), double(3))
    await rw.sleep(60)
    heard = await rw.hook(token)
    child = await rw.start_child(leaf, 10)
    d = await child.result()
    n = await tell(["one", "two", "three"])
    return [a, b, c, heard, d, n]


EXPECTED = [2, 4, 6, "hello", 21, 3]


async def _patiently(call: Callable[[], Any]) -> Any:
    """What a caller does while the journal fails: try again."""
    while True:
        try:
            return await call()
        except rw.JournalError:
            await anyio.sleep(0.005)


async def _one_run(runtime: rw.Runtime, token: str) -> rw.RunHandle[list[Any]]:
    handle: rw.RunHandle[list[Any]] = await _patiently(lambda: runtime.start(everything, token))
    async with skip_time(runtime):
        while True:
            try:
                await runtime.resume_hook(token, "hello")
                break
            except (rw.HookNotFound, rw.JournalError):
                await anyio.sleep(0.002)
        assert await handle.result(timeout=30) == EXPECTED
    return handle


async def _check(db: Path | str, handle: rw.RunHandle[Any]) -> None:
    words = [c.data async for c in handle.stream(skip_superseded=True)]
    assert words == ["one", "two", "three"]
    twice = query_journal(
        db,
        "SELECT run_id, cid, count(*) FROM events WHERE kind = 'step_completed' "
        "GROUP BY run_id, cid HAVING count(*) > 1",
    )
    assert twice == []
    unfinished = query_journal(db, "SELECT run_id, status FROM runs WHERE status != 'completed'")
    assert unfinished == []


async def _clear_after(plan: FaultPlan, failures: int) -> None:
    """The operator frees the disk once the journal has refused a few writes."""
    while plan.failed < failures:  # noqa: ASYNC110 (a test watching a counter)
        await anyio.sleep(0.002)
    plan.clear()


@pytest.mark.parametrize("mode", ["once", "stretch", "until_cleared"])
async def test_every_write_transaction_may_fail(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str, mode: str
):
    plan = FaultPlan()
    with injected(plan, db_path):
        async with make_runtime() as runtime:
            before = plan.transactions
            await _one_run(runtime, "clean")
            writes = plan.transactions - before
            assert writes >= 8
            for k in range(1, writes + 1):
                plan.failed = 0
                first = plan.transactions + k
                async with anyio.create_task_group() as tg:
                    if mode == "once":
                        plan.fail(first, 1)
                    elif mode == "stretch":
                        plan.fail(first, 5)
                    else:
                        plan.fail(first, None)
                        tg.start_soon(_clear_after, plan, 4)
                    handle = await _one_run(runtime, f"hook-{k}")
                    await _check(db_path, handle)
                    tg.cancel_scope.cancel()
                assert plan.failed > 0 or plan.transactions < first, k
                plan.clear()
