"""Changing a workflow's code under live runs with rw.patched: runs that passed the
patch point on the old code keep the old branch, the others take the new one.

A deploy is played by switching ``CODE`` between runtimes: the registered
workflow is the same, what its body does changes, as after a restart on new code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from conftest import query_journal, resume_when_live

import runwright as rw

pytestmark = pytest.mark.anyio

CODE = {"version": 1}
sent: list[str] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    CODE["version"] = 1
    sent.clear()


@rw.step
async def prepare(order: str) -> str:
    return order


@rw.step
async def send_receipt(order: str) -> str:
    sent.append(f"v1 {order}")
    return "v1"


@rw.step
async def send_receipt_v2(order: str) -> str:
    sent.append(f"v2 {order}")
    return "v2"


@rw.workflow
async def order_flow(order: str) -> list[str]:
    await prepare(order)
    await rw.hook(f"pay:{order}")
    version = CODE["version"]
    if version == 1:
        receipt = await send_receipt(order)
    elif version == 2:
        if rw.patched("receipt-v2"):
            receipt = await send_receipt_v2(order)
        else:
            receipt = await send_receipt(order)
    elif version == 3:
        rw.deprecate_patch("receipt-v2")
        receipt = await send_receipt_v2(order)
    else:
        receipt = await send_receipt_v2(order)
    done = await rw.hook(f"done:{order}")
    return [receipt, done]


async def _wait_for_hook(runtime: rw.Runtime, token: str) -> None:
    with anyio.fail_after(10):
        while not await runtime.journal.read(  # noqa: ASYNC110 (polls the journal)
            lambda c: c.execute("SELECT 1 FROM hooks WHERE token = ?", (token,)).fetchall()
        ):
            await anyio.sleep(0.001)


def _markers(db: Path | str, run_id: str) -> list[tuple[int, str]]:
    sql = "SELECT cid, name FROM events WHERE run_id = ? AND kind = 'patched' ORDER BY seq"
    return [(int(cid), str(name)) for cid, name in query_journal(db, sql, (run_id,))]


async def test_runs_keep_the_branch_they_took_across_a_deploy(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        past = await runtime.start(order_flow, "past")  # passes the patch point on old code
        before = await runtime.start(order_flow, "before")  # stops before it
        await resume_when_live(runtime, "pay:past")
        await _wait_for_hook(runtime, "done:past")
        await _wait_for_hook(runtime, "pay:before")
    assert sent == ["v1 past"]

    CODE["version"] = 2  # the deploy
    async with make_runtime() as runtime:
        fresh = await runtime.start(order_flow, "fresh")
        await resume_when_live(runtime, "done:past", "ok")
        await resume_when_live(runtime, "pay:before")
        await resume_when_live(runtime, "done:before", "ok")
        await resume_when_live(runtime, "pay:fresh")
        await resume_when_live(runtime, "done:fresh", "ok")
        assert await runtime.get_run(past.id).result(timeout=10) == ["v1", "ok"]
        assert await runtime.get_run(before.id).result(timeout=10) == ["v2", "ok"]
        assert await fresh.result(timeout=10) == ["v2", "ok"]
    assert sorted(sent) == ["v1 past", "v2 before", "v2 fresh"]
    assert _markers(db_path, past.id) == []
    assert _markers(db_path, before.id) == [(2, "receipt-v2")]
    assert _markers(db_path, fresh.id) == [(2, "receipt-v2")]


async def test_a_patch_can_be_deprecated_then_deleted_under_live_runs(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    CODE["version"] = 2
    async with make_runtime() as runtime:
        marked = await runtime.start(order_flow, "marked")
        await resume_when_live(runtime, "pay:marked")
        await _wait_for_hook(runtime, "done:marked")

    CODE["version"] = 3  # only the new branch is left; the marker is accepted
    async with make_runtime() as runtime:
        unmarked = await runtime.start(order_flow, "unmarked")
        await resume_when_live(runtime, "pay:unmarked")
        await _wait_for_hook(runtime, "done:unmarked")
    assert _markers(db_path, unmarked.id) == []

    CODE["version"] = 4  # the call is gone: a recorded marker is stepped over
    async with make_runtime() as runtime:
        await resume_when_live(runtime, "done:marked", "ok")
        await resume_when_live(runtime, "done:unmarked", "ok")
        assert await runtime.get_run(marked.id).result(timeout=10) == ["v2", "ok"]
        assert await runtime.get_run(unmarked.id).result(timeout=10) == ["v2", "ok"]
    assert sorted(sent) == ["v2 marked", "v2 unmarked"]


async def test_patched_outside_a_workflow_raises():
    with pytest.raises(rw.NotInWorkflowError, match=r"rw\.patched"):
        rw.patched("x")
    with pytest.raises(rw.NotInWorkflowError, match=r"rw\.deprecate_patch"):
        rw.deprecate_patch("x")
