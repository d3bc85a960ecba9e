"""End-to-end behaviour of runs: steps, retries, sleeps, gather/race, restarts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import pytest
from conftest import query_journal

import runwright as rw
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

calls: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()
    flaky_state.clear()


@rw.step
async def add(a: int, b: int) -> int:
    calls[f"add:{a}:{b}"] += 1
    return a + b


@rw.step
def multiply(a: int, b: int) -> int:
    calls["multiply"] += 1
    return a * b


@rw.step
async def echo(value: Any) -> Any:
    calls["echo"] += 1
    return value


flaky_state: dict[str, int] = {}


@rw.step(retries=3, backoff=rw.Backoff(initial=10, factor=2))
async def flaky(name: str, failures: int) -> str:
    info = rw.step_info()
    flaky_state[name] = info.attempt
    if info.attempt <= failures:
        raise ConnectionError(f"{name} attempt {info.attempt} failed")
    return f"{name} ok on attempt {info.attempt}"


@rw.step(retries=5)
async def fatal_step() -> None:
    calls["fatal"] += 1
    raise rw.FatalError("card declined")


@rw.step(retries=2)
async def retry_after_step() -> str:
    attempt = rw.step_info().attempt
    if attempt == 1:
        raise rw.RetryableError("rate limited", retry_after=42)
    return "done"


@rw.workflow
async def sequence(n: int) -> int:
    total = 0
    for i in range(n):
        total = await add(total, i)
    return total


@rw.workflow
async def mixed() -> dict[str, Any]:
    product = await multiply(6, 7)
    together = await rw.gather(add(1, 1), add(2, 2), echo("x"))
    return {"product": product, "together": together}


@rw.workflow
async def uses_flaky(failures: int) -> str:
    return await flaky("pay", failures)


@rw.workflow
async def catches_fatal() -> str:
    try:
        await fatal_step()
    except rw.FatalError as exc:
        return f"caught: {exc}"
    return "not reached"


@rw.workflow
async def uses_retry_after() -> str:
    return await retry_after_step()


@rw.workflow
async def sleeper(seconds: float) -> str:
    before = rw.now()
    await rw.sleep(seconds)
    after = rw.now()
    await add(0, 0)
    return f"{(after - before).total_seconds():.0f}"


@rw.workflow
async def racer() -> Any:
    return await rw.race(add(100, 1), rw.sleep(5))


@rw.workflow
async def sleep_wins() -> Any:
    first = await rw.race(rw.sleep(5), rw.sleep(50))
    return ["sleep won", first]


@rw.workflow
async def gather_fails() -> str:
    try:
        await rw.gather(add(1, 2), fatal_step(), add(3, 4))
    except rw.FatalError as exc:
        return f"gather raised {exc}"
    return "not reached"


async def _two_steps(base: int) -> int:
    first = await add(base, 1)
    return await add(first, 1)


@rw.workflow
async def nested() -> Any:
    return await rw.gather(_two_steps(10), rw.race(_two_steps(20), rw.sleep(1000)))


@rw.workflow
async def deterministic_values() -> Any:
    info = rw.run_info()
    return [rw.random(), str(rw.uuid4()), info.run_id, info.workflow]


@rw.workflow
async def raises() -> None:
    await add(1, 1)
    raise ValueError("the workflow broke")


@rw.workflow
async def no_steps(x: int) -> int:
    return x * 2


@dataclasses.dataclass(frozen=True)
class Order:
    order_id: str
    amount: Decimal
    placed: dt.datetime
    tags: frozenset[str]


@rw.workflow
async def rich(order: Order, ident: UUID, blob: bytes) -> Any:
    echoed = await echo(order)
    pair = await echo((ident, blob, {1, 2}))
    return echoed, pair


async def test_sequential_steps_return_the_right_value(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(sequence, 20)
        assert await handle.result() == sum(range(20))
        assert await handle.status() is rw.RunStatus.COMPLETED
    assert all(count == 1 for count in calls.values())
    assert len(calls) == 20


async def test_sync_steps_and_gather(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(mixed)
        assert await handle.result() == {"product": 42, "together": [2, 4, "x"]}


async def test_a_workflow_without_steps(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(no_steps, 21)
        assert await handle.result() == 42


async def test_rich_values_round_trip(make_runtime: Callable[..., rw.Runtime]):
    order = Order("o-1", Decimal("9.99"), dt.datetime(2026, 1, 2, tzinfo=dt.UTC), frozenset("ab"))
    ident = UUID(int=7)
    async with make_runtime() as runtime:
        handle = await runtime.start(rich, order, ident, b"\x00\xff")
        echoed, pair = await handle.result()
    assert echoed == order
    assert pair == (ident, b"\x00\xff", {1, 2})


async def test_retries_with_backoff_on_the_clock(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(uses_flaky, 2)
        start = clock.now()
        assert await clock.jump() == start + 10
        assert await clock.jump() == start + 10 + 20
        assert await handle.result() == "pay ok on attempt 3"
    assert flaky_state["pay"] == 3


async def test_retries_exhausted_fail_the_run(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(uses_flaky, 10)
        for _ in range(3):
            await clock.jump()
        with pytest.raises(rw.RunFailed) as info:
            await handle.result()
    assert info.value.type_name == "builtins:ConnectionError"
    assert "pay attempt 4 failed" in info.value.message
    assert "ConnectionError" in info.value.traceback
    assert isinstance(info.value.__cause__, ConnectionError)
    assert flaky_state["pay"] == 4


async def test_fatal_error_is_never_retried_and_can_be_caught(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        handle = await runtime.start(catches_fatal)
        assert await handle.result() == "caught: card declined"
    assert calls["fatal"] == 1


async def test_retryable_error_sets_the_delay(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(uses_retry_after)
        start = clock.now()
        assert await clock.jump() == start + 42
        assert await handle.result() == "done"


async def test_durable_sleep_fires_on_the_fake_clock(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(sleeper, 3600)
        start = clock.now()
        assert await clock.jump() == start + 3600
        assert await handle.result() == "3600"


async def test_sleep_survives_a_restart_and_fires_once(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(sleeper, 600)
        await clock.wait_for_sleeper()
        run_id = handle.id
    clock.advance(601)
    async with make_runtime() as runtime:
        assert await runtime.get_run(run_id).result() == "601"  # rw.now() is when it fired
    fired = query_journal(
        db_path,
        "SELECT count(*) FROM events WHERE run_id = ? AND kind = 'wait_completed'",
        (run_id,),
    )
    assert fired == [(1,)]
    assert calls["add:0:0"] == 1


async def test_race_returns_the_first_value(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(racer)
        assert await handle.result() == 101


async def test_race_of_sleeps_returns_none(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(sleep_wins)
        await clock.jump()
        assert await handle.result() == ["sleep won", None]


async def test_gather_raises_the_first_error_and_others_still_complete(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(gather_fails)
        assert await handle.result() == "gather raised card declined"
    assert calls["add:1:2"] == 1
    assert calls["add:3:4"] == 1
    statuses = query_journal(
        db_path, "SELECT status FROM steps WHERE run_id = ? ORDER BY cid", (handle.id,)
    )
    assert [s for (s,) in statuses] == ["completed", "failed", "completed"]


async def test_nested_gather_and_race(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(nested)
        assert await handle.result() == [12, 22]


async def test_deterministic_values_are_stable_across_replay(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        handle = await runtime.start(deterministic_values)
        values = await handle.result()
    assert values[2] == handle.id
    assert values[3] == deterministic_values.name
    assert 0 <= values[0] < 1
    assert UUID(values[1]).version == 4


async def test_a_raising_workflow_fails_the_run(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(raises)
        with pytest.raises(rw.RunFailed, match="the workflow broke") as info:
            await handle.result()
        assert await handle.status() is rw.RunStatus.FAILED
    assert isinstance(info.value.__cause__, ValueError)


async def test_same_key_same_run_one_execution(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        first = await runtime.start(sequence, 3, key="order-1")
        second = await runtime.start(sequence, 3, key="order-1")
        assert first.id == second.id
        assert await second.result() == 3
        third = await runtime.start(sequence, 3, key="order-1")
        assert third.id == first.id
    assert calls["add:0:0"] == 1


async def test_a_key_held_by_another_workflow_or_other_arguments_conflicts(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        first = await runtime.start(sequence, 3, key="order-2")
        with pytest.raises(rw.KeyConflict, match=r"run .* of workflow .*sequence") as info:
            await runtime.start(racer, key="order-2")
        assert info.value.run_id == first.id
        assert info.value.key == "order-2"
        with pytest.raises(rw.KeyConflict, match="started with other arguments"):
            await runtime.start(sequence, 4, key="order-2")
        assert (await runtime.start(sequence, 3, key="order-2")).id == first.id
        assert await first.result() == 3
    assert query_journal(db_path, "SELECT count(*) FROM runs")[0][0] == 1


async def test_result_timeout_leaves_the_run_going(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(sleeper, 10)
        with pytest.raises(rw.RunTimeout):
            await handle.result(timeout=0.05)
        assert await handle.status() is rw.RunStatus.RUNNING
        await clock.jump()
        assert await handle.result() == "10"


async def test_cancel_a_sleeping_run(make_runtime: Callable[..., rw.Runtime], clock: FakeClock):
    async with make_runtime() as runtime:
        handle = await runtime.start(sleeper, 10)
        await clock.wait_for_sleeper()
        await handle.cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result()
        assert await handle.status() is rw.RunStatus.CANCELLED


async def test_list_runs_filters(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        done = await runtime.start(no_steps, 1)
        await done.result()
        bad = await runtime.start(raises)
        with pytest.raises(rw.RunFailed):
            await bad.result()
        assert {r.id for r in await runtime.list_runs()} == {done.id, bad.id}
        failed = await runtime.list_runs(status=rw.RunStatus.FAILED)
        assert [r.id for r in failed] == [bad.id]
        assert failed[0].error_type == "builtins:ValueError"
        by_name = await runtime.list_runs(workflow=no_steps)
        assert [r.id for r in by_name] == [done.id]
        assert await runtime.list_runs(limit=1) != []


async def test_unfinished_runs_resume_on_start(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(uses_flaky, 1)
        await clock.wait_for_sleeper()
    clock.advance(100)
    async with make_runtime() as runtime:
        assert await runtime.get_run(handle.id).result() == "pay ok on attempt 2"


release_blocker = {"block": True}


@rw.step(retries=0)
async def blocks_until_released() -> int:
    attempt = rw.step_info().attempt
    if release_blocker["block"]:
        await anyio.sleep_forever()
    return attempt


@rw.workflow
async def interrupted() -> int:
    return await blocks_until_released()


async def test_an_interrupted_attempt_is_retried_even_without_retries(
    make_runtime: Callable[..., rw.Runtime],
):
    release_blocker["block"] = True
    async with make_runtime(shutdown_grace=0) as runtime:
        handle = await runtime.start(interrupted)
        with pytest.raises(rw.RunTimeout):
            await handle.result(timeout=0.05)
    release_blocker["block"] = False
    async with make_runtime() as runtime:
        assert await runtime.get_run(handle.id).result(timeout=10) == 2


async def test_a_run_cancelled_elsewhere_ends_here_at_its_next_event(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as owner, make_runtime(execute=False) as client:
        handle = await owner.start(sleeper, 10)
        await clock.wait_for_sleeper()
        await client.get_run(handle.id).cancel()
        await clock.jump()
        with pytest.raises(rw.RunCancelled):
            await handle.result(timeout=10)
    assert calls["add:0:0"] == 0


async def test_each_step_costs_one_write(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        warm = await runtime.start(no_steps, 1)
        await warm.result()
        before = runtime.journal.batches
        handle = await runtime.start(sequence, 10)
        assert await handle.result() == 45
        # Created with step 1 claimed; each completion shares its write with the
        # next step's claim; the last one with the run's end.
        assert runtime.journal.batches - before == 11
