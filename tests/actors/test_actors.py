"""Run actors and the supervisor: hot resumes, replay logs, the hydration cache,
bounded step concurrency and graceful shutdown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import runwright as rw
from runwright.actors._hydration import HydrationCache
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

seen: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _reset() -> None:
    seen.clear()
    concurrency.update(active=0, peak=0)


@rw.step
async def inc(x: int) -> int:
    seen["inc"] += 1
    return x + 1


@rw.step
async def make_list(n: int) -> list[int]:
    return list(range(n))


@rw.workflow
async def counts_body_runs(n: int) -> int:
    seen["body"] += 1
    x = 0
    for _ in range(n):
        x = await inc(x)
    return x


@rw.workflow
async def mutates_results() -> list[int]:
    items = await make_list(3)
    items.append(99)
    await inc(0)
    await inc(1)
    return items


async def test_a_hot_run_resumes_without_replaying(
    make_runtime: Callable[..., rw.Runtime], cache_runs: int
):
    async with make_runtime() as runtime:
        handle = await runtime.start(counts_body_runs, 10)
        assert await handle.result() == 10
    assert seen["inc"] == 10
    if cache_runs:
        assert seen["body"] == 1
    else:
        assert seen["body"] == 11  # the start, then one replay per completed step


async def test_replays_come_from_the_actor_log_not_the_journal(
    make_runtime: Callable[..., rw.Runtime], monkeypatch: pytest.MonkeyPatch
):
    async with make_runtime() as runtime:
        reads = Counter[str]()
        original = runtime.journal.events

        async def counting_events(run_id: str, after: int = 0) -> Any:
            reads[run_id] += 1
            return await original(run_id, after)

        monkeypatch.setattr(runtime.journal, "events", counting_events)
        handle = await runtime.start(counts_body_runs, 10)
        assert await handle.result() == 10
    assert reads[handle.id] == 0


async def test_replays_never_share_a_mutable_result(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(mutates_results)
        assert await handle.result() == [0, 1, 2, 99]


def test_the_hydration_cache_keeps_only_immutable_values_within_its_bound():
    cache = HydrationCache(max_bytes=100)
    decoded: list[bytes] = []

    def decode(payload: bytes) -> object:
        decoded.append(payload)
        return payload.decode() if payload.startswith(b"s") else [payload]

    assert cache.get(1, b"s-one", decode) == "s-one"
    assert cache.get(1, b"s-one", decode) == "s-one"
    assert decoded == [b"s-one"]
    first = cache.get(2, b"list", decode)
    second = cache.get(2, b"list", decode)
    assert first == second
    assert first is not second
    for seq in range(10, 40):
        cache.get(seq, b"s" * 10, decode)
    assert cache.size <= 100
    assert 1 not in cache._entries


@rw.step
async def tracked() -> None:
    concurrency["active"] += 1
    concurrency["peak"] = max(concurrency["peak"], concurrency["active"])
    for _ in range(20):
        await anyio.lowlevel.checkpoint()
    concurrency["active"] -= 1


concurrency = {"active": 0, "peak": 0}


@rw.workflow
async def fan_out(n: int) -> None:
    await rw.gather(*(tracked() for _ in range(n)))


async def test_step_concurrency_is_bounded(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime(max_concurrent_steps=2) as runtime:
        await (await runtime.start(fan_out, 8)).result()
    assert concurrency["peak"] == 2


@rw.step
async def slow_once() -> str:
    seen["slow"] += 1
    await anyio.sleep(0.05)
    return "slow done"


@rw.workflow
async def slow_then_sleep() -> str:
    value = await slow_once()
    await rw.sleep(10)
    return value


async def test_shutdown_lets_running_steps_finish_and_journals_them(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime(shutdown_grace=30) as runtime:
        handle = await runtime.start(slow_then_sleep)
        with anyio.fail_after(10):
            while seen["slow"] == 0:
                await anyio.lowlevel.checkpoint()
    async with make_runtime() as runtime:
        await clock.jump()
        assert await runtime.get_run(handle.id).result(timeout=10) == "slow done"
    assert seen["slow"] == 1


async def test_new_runs_are_refused_while_shutting_down(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        runtime.supervisor.stopping = True
        with pytest.raises(RuntimeError, match="shutting down"):
            await runtime.start(counts_body_runs, 1)
        runtime.supervisor.stopping = False


@rw.workflow
async def step_sleep_step() -> int:
    await inc(0)
    await rw.sleep(5)
    return await inc(10)


async def test_a_lost_claim_follows_the_journal_from_the_cursor(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(step_sleep_step)
        await clock.wait_for_sleeper()
        # Another process fires the durable sleep first; this one is not told.
        at = clock.now()
        fired = await runtime.journal.write(lambda tx: tx.fire_wait(handle.id, 1, at))
        assert fired is not None
        await clock.jump()
        assert await handle.result(timeout=10) == 11
        events = await runtime.journal.events(handle.id)
    assert [e.kind for e in events].count("wait_completed") == 1
    assert seen["inc"] == 2


async def expire_leases(runtime: rw.Runtime) -> None:
    """As if the owning process had been paused past its lease."""
    await runtime.journal.write(lambda tx: tx._conn.execute("UPDATE runs SET lease_expires_at = 0"))


async def test_an_expired_lease_is_taken_over_and_the_old_owner_lets_go(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as old, make_runtime() as new:
        handle = await old.start(step_sleep_step)
        await clock.wait_for_sleeper()
        await expire_leases(old)
        await new.supervisor.recover()
        assert handle.id in new.supervisor.actors
        # Both processes now time the same sleep; the old one learns it lost
        # the run either from its lease renewal or from its next write.
        await clock.jump()
        assert await new.get_run(handle.id).result(timeout=10) == 11
        assert await handle.result(timeout=10) == 11
        assert handle.id not in old.supervisor.actors
        events = await new.journal.events(handle.id)
    assert [e.kind for e in events].count("wait_completed") == 1
    assert [e.kind for e in events].count("step_completed") == 2
    assert seen["inc"] == 2


async def test_lease_renewal_lets_go_of_runs_taken_over(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as old, make_runtime() as new:
        handle = await old.start(step_sleep_step)
        await clock.wait_for_sleeper()
        await expire_leases(old)
        await new.supervisor.recover()
        await old.supervisor.renew()
        assert handle.id not in old.supervisor.actors
        await clock.jump()
        assert await handle.result(timeout=10) == 11
