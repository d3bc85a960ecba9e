"""Two runtimes on one database file, as two processes on one host would be:
a client's run is picked up by a worker, and a cancel or a run's end written by
one reaches the other through the journal watcher, not a timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import runwright as rw
from runwright.journal.postgres._journal import PostgresJournal
from runwright.journal.sqlite import SqliteJournal

pytestmark = pytest.mark.anyio

state: dict[str, bool] = {}


@rw.step
async def waits_forever() -> None:
    state["started"] = True
    try:
        await anyio.sleep_forever()
    finally:
        state["cancelled"] = True


@rw.workflow
async def blocked() -> None:
    await waits_forever()


@rw.step
async def shout(text: str) -> str:
    return text.upper()


@rw.workflow
async def greet(name: str) -> str:
    return await shout(f"hello {name}")


async def test_a_cancel_written_elsewhere_stops_the_owners_steps(
    make_runtime: Callable[..., rw.Runtime],
):
    state.clear()
    async with make_runtime() as owner, make_runtime(execute=False) as client:
        handle = await owner.start(blocked)
        with anyio.fail_after(10):
            while not state.get("started"):  # noqa: ASYNC110 (the step runs in this process)
                await anyio.sleep(0.001)
        await client.get_run(handle.id).cancel()
        with anyio.fail_after(5), pytest.raises(rw.RunCancelled):
            await handle.result()
        with anyio.fail_after(5):
            while not state.get("cancelled"):  # noqa: ASYNC110 (the step runs in this process)
                await anyio.sleep(0.001)


async def test_a_clients_run_is_claimed_and_run_by_a_worker(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as worker, make_runtime(execute=False) as client:
        handle = await client.start(greet, "ana")
        with anyio.fail_after(5):
            assert await handle.result() == "HELLO ANA"
        assert await worker.get_run(handle.id).status() is rw.RunStatus.COMPLETED


async def test_a_run_started_elsewhere_just_after_a_worker_opened_is_noticed(
    make_runtime: Callable[..., rw.Runtime], monkeypatch: pytest.MonkeyPatch
):
    # A watcher thread that is slow to take its starting point must still see
    # every commit made after the runtime opened (else the run waits for the
    # lease loop, 10 s away).
    originals = {cls: cls._watch_loop for cls in (SqliteJournal, PostgresJournal)}

    def slow_start(self: Any, *args: Any) -> None:
        time.sleep(0.2)
        originals[type(self)](self, *args)

    for cls in originals:
        monkeypatch.setattr(cls, "_watch_loop", slow_start)
    async with make_runtime() as worker:
        for cls, original in originals.items():
            monkeypatch.setattr(cls, "_watch_loop", original)
        async with make_runtime(execute=False) as client:
            handle = await client.start(greet, "bo")
            with anyio.fail_after(5):
                assert await handle.result() == "HELLO BO"
        assert await worker.get_run(handle.id).status() is rw.RunStatus.COMPLETED
