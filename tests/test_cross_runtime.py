"""Two runtimes on one database file, as two processes on one host would be:
a client's run is picked up by a worker, and a cancel or a run's end written by
one reaches the other through the journal watcher, not a timer."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import runwright as rw

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
