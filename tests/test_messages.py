"""Messages to a run: sent from any process, however early, received in order and
exactly once, with a durable timeout; and the live hooks listed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal

import runwright as rw
from runwright._cli import main
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio


@rw.step
async def note(text: str) -> str:
    return text


@rw.workflow
async def collects(count: int) -> list[Any]:
    await note("started")  # messages sent before this are kept for the receives below
    return [await rw.receive("orders") for _ in range(count)]


@rw.workflow
async def two_topics() -> list[Any]:
    first = await rw.receive("b")
    second = await rw.receive("a")
    return [first, second]


@rw.workflow
async def waits_a_minute() -> Any:
    try:
        return await rw.receive(timeout=60)
    except rw.ReceiveTimeout as exc:
        late = await rw.receive()  # the message that came after the timeout is not lost
        return [str(exc), late]


@rw.workflow
async def holds_a_hook(token: str) -> Any:
    return await rw.hook(token)


async def test_messages_sent_early_are_received_in_order_once(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        run = await runtime.start(collects, 3)
        for i in range(3):
            await run.send("orders", {"n": i})  # before, while and after it waits
        assert await run.result(timeout=10) == [{"n": 0}, {"n": 1}, {"n": 2}]
        with pytest.raises(rw.RunEnded):
            await run.send("orders", "too late")
        with pytest.raises(rw.RunNotFound):
            await runtime.send("nope", "orders", 1)
    sent = query_journal(
        db_path, "SELECT count(*) FROM events WHERE run_id = ? AND kind = 'message_sent'",
        (run.id,),
    )  # fmt: skip
    assert sent == [(3,)]


async def test_topics_are_separate_and_none_is_lost_across_a_restart(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        run = await runtime.start(two_topics)
        await run.send("a", "for a")  # waits while the workflow asks for "b"
    async with make_runtime(execute=False) as client:  # another process sends
        await client.send(run.id, "b", "for b")
    async with make_runtime() as runtime:
        assert await runtime.get_run(run.id).result(timeout=10) == ["for b", "for a"]


async def test_a_receive_times_out_durably_and_a_late_message_waits(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        run = await runtime.start(waits_a_minute)
        await clock.wait_for_sleeper()
        await clock.jump()
        await anyio.sleep(0.05)
        await run.send("default", "late")
        assert await run.result(timeout=10) == ["no message on topic 'default' within 60s", "late"]


async def test_hooks_list(
    make_runtime: Callable[..., rw.Runtime],
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    async with make_runtime() as runtime:
        first = await runtime.start(holds_a_hook, "tok-1")
        second = await runtime.start(holds_a_hook, "tok-2")
        with anyio.fail_after(10):
            while len(query_journal(db_path, "SELECT token FROM hooks")) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.001)

        def cli(*argv: str) -> str:
            assert main(["hooks", "list", *argv, "--db", str(db_path)]) == 0
            return capsys.readouterr().out

        everything = await anyio.to_thread.run_sync(cli)
        assert "TOKEN" in everything
        assert f"tok-1  {first.id}  0" in everything
        assert f"tok-2  {second.id}  0" in everything
        only = await anyio.to_thread.run_sync(cli, second.id, "--json")
        assert json.loads(only) == {"token": "tok-2", "run_id": second.id, "position": 0}
        await runtime.resume_hook("tok-1", 1)
        await runtime.resume_hook("tok-2", 2)
        await first.result(timeout=10)
        await second.result(timeout=10)
        assert await anyio.to_thread.run_sync(cli) == "no live hooks\n"


@rw.workflow
async def reports_progress(steps: int) -> str:
    for i in range(steps):
        rw.set_event("progress", {"done": i + 1, "of": steps})
        await rw.receive("next")
    rw.set_event("summary", "all done")
    return "finished"


async def test_published_values_are_read_while_the_run_goes_on(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        run = await runtime.start(reports_progress, 2)
        assert await run.get_event("progress", timeout=10) == {"done": 1, "of": 2}
        with pytest.raises(rw.EventTimeout, match=r"published no event 'summary' within 0\.05s"):
            await run.get_event("summary", timeout=0.05)
        await run.send("next")
        with anyio.fail_after(10):
            while await run.get_event("progress") != {"done": 2, "of": 2}:  # noqa: ASYNC110
                await anyio.sleep(0.001)
        await run.send("next")
        assert await run.result(timeout=10) == "finished"
        assert await run.get_event("summary") == "all done"
        with pytest.raises(rw.EventNotSet, match=r"ended \(completed\) without publishing"):
            await run.get_event("never")
    # Journaled once each, whatever replays happened (cache_runs=0 replays every step).
    published = query_journal(
        db_path, "SELECT name FROM events WHERE run_id = ? AND kind = 'event_set' ORDER BY seq",
        (run.id,),
    )  # fmt: skip
    assert published == [("progress",), ("progress",), ("summary",)]


def test_set_event_checks_its_value_where_it_is_called():
    with pytest.raises(rw.NotInWorkflowError, match=r"rw\.set_event"):
        rw.set_event("k", 1)


@rw.workflow
async def publishes_the_unencodable() -> str:
    class Local:
        pass

    try:
        rw.set_event("bad", Local())
    except rw.EncodeError as exc:
        return str(exc)
    return "no error"


async def test_an_unencodable_published_value_fails_where_it_is_set(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        run = await runtime.start(publishes_the_unencodable)
        assert "rw.set_event('bad')" in await run.result(timeout=10)
