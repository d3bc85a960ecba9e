"""runwright.testing.skip_time: timers fire as soon as the runtime is idle, and time
stands still while a step runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import anyio
import pytest

import runwright as rw
from runwright.testing import FakeClock, skip_time

pytestmark = pytest.mark.anyio

clocks: list[FakeClock] = []
seen: dict[str, float] = {}


@rw.step
async def stamp() -> float:
    return clocks[0].now()


@rw.workflow
async def month_and_an_hour() -> float:
    start = rw.now()
    await rw.sleep(dt.timedelta(days=30))
    await stamp()
    await rw.sleep(3600)
    return (rw.now() - start).total_seconds()


attempts: list[int] = []


@rw.step(retries=2, backoff=rw.Backoff(initial=3600, factor=2, maximum=86400))
async def flaky() -> int:
    attempts.append(rw.step_info().attempt)
    if len(attempts) < 3:
        raise ConnectionError("try later")
    return len(attempts)


@rw.workflow
async def retried() -> int:
    return await flaky()


@rw.step
async def slow_real_work() -> None:
    seen["before"] = clocks[0].now()
    await anyio.sleep(0.2)  # real time: the runtime is busy, so no jump
    seen["after"] = clocks[0].now()


@rw.workflow
async def works() -> None:
    await slow_real_work()


@rw.workflow
async def naps(seconds: float) -> None:
    await rw.sleep(seconds)


async def test_month_long_sleeps_pass_at_once(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    clocks[:] = [clock]
    async with make_runtime() as runtime, skip_time(runtime):
        run = await runtime.start(month_and_an_hour)
        assert await run.result(timeout=10) == 30 * 86400 + 3600


async def test_retry_backoff_passes_at_once(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    attempts.clear()
    started = clock.now()
    async with make_runtime() as runtime, skip_time(runtime):
        run = await runtime.start(retried)
        assert await run.result(timeout=10) == 3
    assert clock.now() - started == 3600 + 7200


async def test_time_stands_still_while_a_step_runs(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    clocks[:] = [clock]
    async with make_runtime() as runtime, skip_time(runtime):
        napping = await runtime.start(naps, 10)
        working = await runtime.start(works)
        await working.result(timeout=10)
        await napping.result(timeout=10)
    assert seen["before"] == seen["after"]


async def test_skip_time_needs_a_fake_clock(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime(clock=None) as runtime:
        with pytest.raises(TypeError, match="FakeClock"):
            async with skip_time(runtime):
                pass
