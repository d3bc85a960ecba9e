"""Hooks: external events delivered to a waiting workflow through the journal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
from conftest import resume_when_live

import runwright as rw
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio


@rw.step
async def note(text: str) -> str:
    return text


@rw.workflow
async def approval(order_id: str) -> str:
    decision = await rw.hook(token=f"approve:{order_id}")
    await note("decided")
    return f"{decision['by']} said {decision['ok']}"


@rw.workflow
async def chat(room: str) -> list[str]:
    seen = []
    async for message in rw.hook(token=f"chat:{room}"):
        seen.append(message["text"])
        await note(message["text"])
        if message.get("done"):
            break
    return seen


@rw.workflow
async def claims(token: str) -> str:
    try:
        await rw.hook(token=token)
    except rw.HookConflict as exc:
        return f"conflict on {exc.token}"
    return "received"


@rw.workflow
async def disposes(token: str) -> str:
    async with rw.hook(token=token) as first:
        value = await first
    await rw.sleep(10)
    return str(value)


@rw.workflow
async def generated() -> list[str]:
    hook = rw.hook()
    await note(hook.token)
    payload = await hook
    return [hook.token, payload]


@rw.workflow
async def hook_or_timeout(token: str) -> Any:
    return await rw.race(rw.hook(token=token), rw.sleep(60))


async def tokens(runtime: rw.Runtime) -> set[str]:
    return {
        row[0]
        for row in await runtime.journal.read(
            lambda c: c.execute("SELECT token FROM hooks").fetchall()
        )
    }


async def test_await_a_hook_for_its_first_payload(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(approval, "o-1")
        await resume_when_live(runtime, "approve:o-1", {"by": "ana", "ok": True})
        assert await handle.result(timeout=10) == "ana said True"
        assert await tokens(runtime) == set()


async def test_iterate_every_payload_in_order_none_lost(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(chat, "r1")
        await resume_when_live(runtime, "chat:r1", {"text": "a"})
        for text in "bcd":
            await runtime.resume_hook("chat:r1", {"text": text})
        await runtime.resume_hook("chat:r1", {"text": "e", "done": True})
        assert await handle.result(timeout=10) == ["a", "b", "c", "d", "e"]


async def test_a_second_live_hook_with_a_token_conflicts_until_it_is_freed(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        holder = await runtime.start(claims, "t-1")
        with anyio.fail_after(10):
            while "t-1" not in await tokens(runtime):  # noqa: ASYNC110 (polls the database)
                await anyio.sleep(0.001)
        rival = await runtime.start(claims, "t-1")
        assert await rival.result(timeout=10) == "conflict on t-1"
        await runtime.resume_hook("t-1", "go")
        assert await holder.result(timeout=10) == "received"
        again = await runtime.start(claims, "t-1")
        await resume_when_live(runtime, "t-1", "go")
        assert await again.result(timeout=10) == "received"


async def test_dispose_frees_the_token_while_the_run_goes_on(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        handle = await runtime.start(disposes, "d-1")
        await resume_when_live(runtime, "d-1", 7)
        await clock.wait_for_sleeper()
        assert "d-1" not in await tokens(runtime)
        with pytest.raises(rw.HookNotFound, match="d-1"):
            await runtime.resume_hook("d-1", 8)
        await clock.jump()
        assert await handle.result(timeout=10) == "7"


async def test_resuming_an_unknown_token_raises(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        with pytest.raises(rw.HookNotFound):
            await runtime.resume_hook("nobody", 1)
        with pytest.raises(rw.EncodeError):
            await runtime.resume_hook("nobody", object())


async def test_generated_tokens_are_long_random_and_replayed(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        first = await runtime.start(generated)
        second = await runtime.start(generated)
        live: set[str] = set()
        with anyio.fail_after(10):
            while len(live) < 2:
                live = await tokens(runtime)
                await anyio.sleep(0.001)
        for token in live:
            await runtime.resume_hook(token, f"for {token}")
        one, two = await first.result(timeout=10), await second.result(timeout=10)
    assert one[1] == f"for {one[0]}"
    assert two[1] == f"for {two[0]}"
    assert one[0] != two[0]
    assert len(one[0]) >= 22  # token_urlsafe(16): 128 random bits


async def test_a_hook_can_lose_a_race(make_runtime: Callable[..., rw.Runtime], clock: FakeClock):
    async with make_runtime() as runtime:
        handle = await runtime.start(hook_or_timeout, "slow")
        await clock.jump()
        assert await handle.result(timeout=10) is None
        with pytest.raises(rw.HookNotFound):
            await runtime.resume_hook("slow", 1)


async def test_a_hook_resumed_by_another_runtime(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as owner, make_runtime(execute=False) as client:
        handle = await owner.start(approval, "x")
        await resume_when_live(client, "approve:x", {"by": "bo", "ok": False})
        assert await handle.result(timeout=10) == "bo said False"


async def test_hook_survives_a_restart(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(chat, "r2")
        await resume_when_live(runtime, "chat:r2", {"text": "before"})
    async with make_runtime() as runtime:
        await runtime.resume_hook("chat:r2", {"text": "after", "done": True})
        assert await runtime.get_run(handle.id).result(timeout=10) == ["before", "after"]


def test_hook_outside_a_workflow():
    with pytest.raises(rw.NotInWorkflowError):
        rw.hook("x")


body_runs = {"count": 0}


@rw.workflow
async def counts_its_runs(token: str, n: int) -> int:
    body_runs["count"] += 1
    total = 0
    async for value in rw.hook(token=token):
        total += await note_number(value)
        if value == n:
            break
    return total


@rw.step
async def note_number(value: int) -> int:
    return value


async def test_payloads_reach_a_hot_run_without_replaying_it(
    make_runtime: Callable[..., rw.Runtime], cache_runs: int
):
    body_runs["count"] = 0

    async def steps_done() -> int:
        rows = await owner.journal.read(
            lambda c: c.execute("SELECT count(*) FROM steps WHERE status = 'completed'").fetchall()
        )
        return int(rows[0][0])

    async with make_runtime() as owner, make_runtime(execute=False) as client:
        handle = await owner.start(counts_its_runs, "hot", 10)
        await resume_when_live(client, "hot", 1)
        for value in range(2, 11):
            with anyio.fail_after(10):
                while await steps_done() < value - 1:  # noqa: ASYNC110 (polls the journal)
                    await anyio.sleep(0.001)
            await client.resume_hook("hot", value)
        assert await handle.result(timeout=10) == 55
    # Payloads applied to the suspended body as they come: one run of it. (With
    # cache_runs=0 every activation replays by design.)
    if cache_runs:
        assert body_runs["count"] == 1
