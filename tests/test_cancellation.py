"""Cancellation: rw.Cancelled is raised where the workflow waits; cleanup steps run;
the run ends CANCELLED; in-flight steps are cancelled; hooks and timers are released."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import anyio
import pytest

import runwright as rw
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

events: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    events.clear()


@rw.step
async def work_forever() -> None:
    events["work started"] += 1
    try:
        await anyio.sleep_forever()
    finally:
        events["work cancelled"] += 1


@rw.step
async def cleanup(what: str) -> str:
    events[f"cleanup {what}"] += 1
    return what


@rw.workflow
async def catches() -> str:
    try:
        await work_forever()
    except rw.Cancelled:
        await cleanup("except")
        raise
    return "not reached"


@rw.workflow
async def uses_finally(seconds: float) -> None:
    try:
        await rw.gather(rw.sleep(seconds), rw.hook(token="cancel-me"))
    finally:
        await cleanup("finally")


@rw.workflow
async def swallows() -> str:
    try:
        await work_forever()
    except rw.Cancelled:
        return "swallowed"
    return "not reached"


async def started() -> None:
    with anyio.fail_after(10):
        while not events["work started"]:  # noqa: ASYNC110 (the step runs in this process)
            await anyio.sleep(0.001)


async def test_cleanup_in_except_runs_and_the_run_ends_cancelled(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        handle = await runtime.start(catches)
        await started()
        await handle.cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
        assert await handle.status() is rw.RunStatus.CANCELLED
    assert events["work cancelled"] == 1
    assert events["cleanup except"] == 1


async def test_cleanup_in_finally_and_timers_and_hooks_are_released(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(uses_finally, 600)
        await clock.wait_for_sleeper()
        await handle.cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
        with pytest.raises(rw.HookNotFound):
            await runtime.resume_hook("cancel-me", 1)
        waits = await runtime.journal.read(
            lambda c: c.execute("SELECT status FROM waits").fetchall()
        )
    assert waits == [("cancelled",)]
    assert events["cleanup finally"] == 1


async def test_a_swallowed_cancel_still_ends_the_run_cancelled(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        handle = await runtime.start(swallows)
        await started()
        await handle.cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)


async def test_cancel_from_another_process_runs_cleanup_in_the_owner(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as owner, make_runtime(execute=False) as client:
        handle = await owner.start(catches)
        await started()
        await client.get_run(handle.id).cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
    assert events["work cancelled"] == 1
    assert events["cleanup except"] == 1


async def test_cancel_survives_a_restart(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime(shutdown_grace=0) as runtime:
        handle = await runtime.start(catches)
        await started()
    async with make_runtime(execute=False) as client:
        await client.get_run(handle.id).cancel()
    async with make_runtime() as runtime:
        with pytest.raises(rw.RunCancelled):
            await runtime.get_run(handle.id).result(timeout=10)
    assert events["cleanup except"] == 1


async def test_cancelling_an_ended_or_unknown_run(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(swallows)
        await started()
        await handle.cancel()
        await handle.cancel()  # asked twice: one cancel
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
        await handle.cancel()  # ended: nothing to do
        with pytest.raises(rw.RunNotFound):
            await runtime.get_run("nope").cancel()
