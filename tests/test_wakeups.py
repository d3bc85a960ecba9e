"""On PostgreSQL, other processes learn of a run to claim, a hook payload, a cancel
and stream chunks through LISTEN/NOTIFY, not the safety poll; and the safety poll
alone still finds what notifications missed (lost across a reconnect)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from conftest import query_journal

import runwright as rw
from runwright.journal.postgres import _journal as pg_journal
from runwright.journal.postgres import _writer as pg_writer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.postgres_only("LISTEN/NOTIFY and its safety poll are PostgreSQL's"),
]

#: Well inside the lease loop's first look (lease_seconds / 3 = 10 s): a run or
#: message that arrives by then was woken, not found by a timer.
PROMPTLY = 3.0


@rw.step
async def shout(text: str) -> str:
    return text.upper()


@rw.workflow
async def greet(name: str) -> str:
    return await shout(f"hello {name}")


@rw.workflow
async def listen(token: str) -> Any:
    payload = await rw.hook(token=token)
    return await shout(str(payload))


@rw.step
async def blocks() -> None:
    await anyio.sleep_forever()


@rw.workflow
async def blocked() -> None:
    await blocks()


@rw.step
async def speak(words: int) -> int:
    async with rw.writable() as out:
        for i in range(words):
            await out.write(f"w{i}")
            await out.flush()
            await anyio.sleep(0.05)
    return words


@rw.workflow
async def talk(words: int) -> int:
    return await speak(words)


async def test_notifications_wake_other_processes(
    make_runtime: Callable[..., rw.Runtime], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(pg_journal, "_SAFETY_POLL", 3600.0)
    async with make_runtime() as worker, make_runtime(execute=False) as client:
        # A run to claim.
        with anyio.fail_after(PROMPTLY):
            assert await (await client.start(greet, "ana")).result() == "HELLO ANA"
        # A hook payload, delivered from the client to the worker's run.
        token = f"t-{secrets.token_hex(4)}"
        handle = await worker.start(listen, token)
        with anyio.fail_after(PROMPTLY):
            while True:
                try:
                    await client.resume_hook(token, "hi")
                    break
                except rw.HookNotFound:
                    await anyio.sleep(0.01)
            assert await handle.result() == "HI"
        # A cancel, asked by the client, carried out by the worker.
        handle = await worker.start(blocked)
        await anyio.sleep(0.1)
        await client.get_run(handle.id).cancel()
        with anyio.fail_after(PROMPTLY), pytest.raises(rw.RunCancelled):
            await handle.result()
        # Stream chunks written in the worker, read by the client as they come.
        handle = await worker.start(talk, 5)
        with anyio.fail_after(PROMPTLY):
            got = [chunk.data async for chunk in client.get_run(handle.id).stream()]
        assert got == [f"w{i}" for i in range(5)]


async def test_the_safety_poll_finds_what_no_notification_announced(
    make_runtime: Callable[..., rw.Runtime], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(pg_writer, "AWAITED_KINDS", frozenset())  # nobody notifies
    monkeypatch.setattr(pg_journal, "_SAFETY_POLL", 0.2)
    async with make_runtime(), make_runtime(execute=False) as client:
        with anyio.fail_after(PROMPTLY):
            assert await (await client.start(greet, "bo")).result() == "HELLO BO"


async def test_a_watcher_that_lost_its_connection_looks_again(
    db_path: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(pg_journal, "_SAFETY_POLL", 3600.0)
    name = f"rw_wake_{secrets.token_hex(4)}"
    async with (
        rw.Runtime(f"{db_path}&application_name={name}"),
        rw.Runtime(db_path, execute=False) as client,
    ):
        assert await (await client.start(greet, "one")).result(timeout=10) == "HELLO ONE"
        # Cut every connection of the worker: its watcher, reader and writer.
        query_journal(
            db_path,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?",
            (name,),
        )
        # A run created now may be announced while the watcher is away; it reconnects
        # and looks at once, without waiting an hour for its safety poll.
        with anyio.fail_after(PROMPTLY * 3):
            assert await (await client.start(greet, "two")).result() == "HELLO TWO"
