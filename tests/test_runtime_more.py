"""More of the public surface: sleep_until, timedelta sleeps, step timeouts,
backoff forms, unrebuildable step errors, cancelling a running step."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal

import runwright as rw
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

state: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _reset() -> None:
    state.clear()


@rw.workflow
async def sleeps_until(when: dt.datetime) -> str:
    await rw.sleep_until(when)
    return rw.now().isoformat()


@rw.workflow
async def sleeps_a_timedelta() -> float:
    before = rw.now()
    await rw.sleep(dt.timedelta(hours=2))
    return (rw.now() - before).total_seconds()


@rw.step(retries=0, timeout=0.05)
async def hangs() -> None:
    await anyio.sleep_forever()


@rw.workflow
async def times_out() -> str:
    try:
        await hangs()
    except TimeoutError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no"


slow_attempts: list[int] = []


@rw.step(retries=1, backoff=0, timeout=0.05)
async def slow_then_fast() -> int:
    attempt = rw.step_info().attempt
    slow_attempts.append(attempt)
    if attempt == 1:
        await anyio.sleep_forever()
    return attempt


@rw.workflow
async def retried_after_a_timeout() -> int:
    return await slow_then_fast()


thread_done = threading.Event()


@rw.step(retries=0, timeout=0.05)
def blocks_a_thread() -> str:
    thread_done.wait(10)
    return "finished late"


@rw.workflow
async def sync_step_times_out() -> str:
    try:
        return await blocks_a_thread()
    except rw.StepTimeout as exc:
        return f"abandoned after {exc.timeout:g}s"


def attempts_then_ok(failures: int) -> Callable[[], Any]:
    async def body() -> int:
        attempt = rw.step_info().attempt
        if attempt <= failures:
            raise OSError(f"attempt {attempt}")
        return attempt

    return body


constant = rw.step(name="more.constant", retries=2, backoff=7)(attempts_then_ok(2))
custom = rw.step(name="more.custom", retries=2, backoff=lambda n: 100.0 * n)(attempts_then_ok(2))


@rw.workflow
async def uses_constant() -> int:
    return await constant()


@rw.workflow
async def uses_custom() -> int:
    return await custom()


@rw.step(retries=0)
async def raises_unrebuildable() -> None:
    class LocalError(Exception):
        pass

    raise LocalError("from a class nobody can import")


@rw.workflow
async def catches_step_failed() -> list[str]:
    try:
        await raises_unrebuildable()
    except rw.StepFailed as exc:
        return [exc.step, exc.type_name, exc.message, exc.traceback]
    return []


@rw.step
async def blocks_until_cancelled() -> None:
    state["started"] = True
    try:
        await anyio.sleep_forever()
    finally:
        state["cancelled"] = True


@rw.workflow
async def long_step() -> None:
    await blocks_until_cancelled()


async def test_sleep_until_a_datetime(make_runtime: Callable[..., rw.Runtime], clock: FakeClock):
    when = dt.datetime.fromtimestamp(clock.now() + 3600, dt.UTC)
    async with make_runtime() as runtime:
        handle = await runtime.start(sleeps_until, when)
        assert await clock.jump() == when.timestamp()
        assert await handle.result() == when.isoformat()


async def test_sleep_takes_a_timedelta(make_runtime: Callable[..., rw.Runtime], clock: FakeClock):
    async with make_runtime() as runtime:
        handle = await runtime.start(sleeps_a_timedelta)
        await clock.jump()
        assert await handle.result() == 7200.0


async def test_a_step_timeout_raises_step_timeout(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(times_out)
        assert await handle.result(timeout=10) == (
            f"StepTimeout: step {hangs.name!r} attempt 1 timed out after 0.05s"
        )
    assert issubclass(rw.StepTimeout, TimeoutError)


async def test_a_timed_out_attempt_is_retried(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    slow_attempts.clear()
    async with make_runtime() as runtime:
        handle = await runtime.start(retried_after_a_timeout)
        assert await handle.result(timeout=10) == 2
    assert slow_attempts == [1, 2]
    kinds = query_journal(
        db_path, "SELECT kind FROM events WHERE run_id = ? ORDER BY seq", (handle.id,)
    )
    assert ("step_retrying",) in kinds


async def test_a_timed_out_sync_step_is_abandoned(make_runtime: Callable[..., rw.Runtime]):
    thread_done.clear()
    try:
        async with make_runtime() as runtime:
            handle = await runtime.start(sync_step_times_out)
            assert await handle.result(timeout=5) == "abandoned after 0.05s"
    finally:
        thread_done.set()


async def test_constant_and_custom_backoff(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        start = clock.now()
        handle = await runtime.start(uses_constant)
        assert await clock.jump() == start + 7
        assert await clock.jump() == start + 14
        assert await handle.result() == 3
        start = clock.now()
        handle = await runtime.start(uses_custom)
        assert await clock.jump() == start + 100
        assert await clock.jump() == start + 300
        assert await handle.result() == 3


async def test_an_unrebuildable_error_arrives_as_step_failed(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        step, type_name, message, traceback = await (
            await runtime.start(catches_step_failed)
        ).result()
    assert step == raises_unrebuildable.name
    assert type_name.endswith("LocalError")
    assert message == "from a class nobody can import"
    assert "raise LocalError" in traceback


async def test_cancel_cancels_a_running_step(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(long_step)
        with anyio.fail_after(10):
            while "started" not in state:
                await anyio.lowlevel.checkpoint()
        await handle.cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
        assert await handle.status() is rw.RunStatus.CANCELLED
    assert state["cancelled"] is True


def test_step_options_are_checked():
    with pytest.raises(ValueError, match="retries"):
        rw.step(retries=-1)(attempts_then_ok(0))
    with pytest.raises(ValueError, match="timeout"):
        rw.step(timeout=0)(attempts_then_ok(0))
    with pytest.raises(ValueError, match="backoff"):
        rw.step(backoff=-1)(attempts_then_ok(0))
    with pytest.raises(ValueError, match="Backoff"):
        rw.Backoff(factor=0.5)
    assert rw.Backoff(initial=1, factor=3, maximum=20).delay(3) == 9
    assert rw.Backoff(initial=1, factor=3, maximum=20).delay(9) == 20
