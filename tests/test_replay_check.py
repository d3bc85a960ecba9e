"""The replay check (``runwright replay`` and ``runwright.testing.replay``): recorded
runs against changed code, in memory, with nothing written.

A deploy is played by switching ``CODE`` after the runs are recorded: the
registered workflow is the same, what its body asks for changes.
"""

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
from runwright.testing import FakeClock, ReplayDivergence, replay

pytestmark = pytest.mark.anyio

CODE = {"version": 1}
MODULE = __name__


@pytest.fixture(autouse=True)
def _reset() -> None:
    CODE["version"] = 1


@rw.step
async def reserve(order: str) -> str:
    return f"reserved {order}"


@rw.step
async def charge(order: str) -> str:
    return f"charged {order}"


@rw.step
async def charge_v2(order: str) -> str:
    return f"charged {order} (v2)"


@rw.workflow
async def checkout(order: str) -> list[str]:
    done = [await reserve(order)]
    await rw.sleep(60)
    version = CODE["version"]
    if version == 1:
        done.append(await charge(order))
    elif version == 2:  # changed without a patch: breaks runs past the sleep
        done.append(await charge_v2(order))
    else:  # changed with a patch: every run replays
        done.append(await (charge_v2(order) if rw.patched("charge-v2") else charge(order)))
    if version == 4:
        raise RuntimeError("now it fails")
    return done


async def cli(*argv: str) -> int:
    return await anyio.to_thread.run_sync(main, list(argv))


async def _record(make_runtime: Callable[..., rw.Runtime], clock: FakeClock) -> dict[str, str]:
    """Runs on version 1: two done (past the change), one in the sleep (before it), one
    never started."""
    async with make_runtime() as runtime:
        done = await runtime.start(checkout, "done")
        also = await runtime.start(checkout, "also")
        await clock.jump()
        assert await done.result(timeout=10) == ["reserved done", "charged done"]
        assert await also.result(timeout=10) == ["reserved also", "charged also"]
        asleep = await runtime.start(checkout, "asleep")
        await _until_asleep(runtime, asleep.id)
    async with make_runtime(execute=False) as client:
        pending = await client.start(checkout, "pending")
    return {"done": done.id, "also": also.id, "asleep": asleep.id, "pending": pending.id}


async def _until_asleep(runtime: rw.Runtime, run_id: str) -> None:
    sql = "SELECT count(*) FROM waits WHERE run_id = ?"

    def count(c: Any) -> int:
        return int(c.execute(sql, (run_id,)).fetchone()[0])

    with anyio.fail_after(10):
        while not await runtime.journal.read(count):  # noqa: ASYNC110 (polls the journal)
            await anyio.sleep(0.001)


def _events(db: Path | str) -> list[tuple[Any, ...]]:
    return query_journal(db, "SELECT seq, run_id, kind FROM events ORDER BY seq")


async def test_unchanged_code_replays_every_run(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    runs = await _record(make_runtime, clock)
    results = await replay(db_path, MODULE)
    assert {r.run_id: r.ok for r in results} == {
        runs["done"]: True,
        runs["also"]: True,
        runs["asleep"]: True,
        runs["pending"]: True,
    }


async def test_a_change_without_a_patch_is_found_before_the_deploy(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    runs = await _record(make_runtime, clock)
    before = _events(db_path)
    CODE["version"] = 2
    with pytest.raises(ReplayDivergence) as info:
        await replay(db_path, MODULE)
    bad = {r.run_id: r for r in info.value.results if not r.ok}
    # Both finished runs charged on v1; the run still asleep has not: it would take v2.
    assert set(bad) == {runs["done"], runs["also"]}
    divergence = bad[runs["done"]]
    assert divergence.position == 2
    assert divergence.recorded == f"step {charge.name!r}"
    assert divergence.requested == f"step {charge_v2.name!r}"
    assert runs["done"] in str(info.value)

    assert await cli("replay", MODULE, "--db", str(db_path)) == 1
    captured = capsys.readouterr()
    assert f"DIVERGED  {runs['done']}  {checkout.name}  completed: at position 2 the " in (
        captured.out
    )
    assert f"ok        {runs['asleep']}  {checkout.name}  running\n" in captured.out
    assert "4 run(s) replayed against the loaded code: 2 ok, 2 diverged" in captured.err
    assert _events(db_path) == before  # nothing was written


async def test_a_patched_change_replays(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    await _record(make_runtime, clock)
    CODE["version"] = 3
    assert len(await replay(db_path, MODULE)) == 4
    assert await cli("replay", MODULE, "--db", str(db_path)) == 0


async def test_a_run_that_would_now_end_another_way_diverges(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    runs = await _record(make_runtime, clock)
    CODE["version"] = 4
    with pytest.raises(ReplayDivergence) as info:
        await replay(db_path, MODULE, status="completed")
    [bad] = [r for r in info.value.results if r.run_id == runs["done"]]
    assert bad.recorded == "the run's end (completed)"
    assert bad.requested == "it to have failed"


async def test_select_runs_by_id_status_or_handle(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    runs = await _record(make_runtime, clock)
    CODE["version"] = 2
    assert await cli("replay", MODULE, "--db", str(db_path), "--status", "running") == 0
    out = capsys.readouterr().out
    assert runs["asleep"] in out
    assert runs["done"] not in out
    assert await cli("replay", MODULE, "--db", str(db_path), "--run", runs["done"], "--json") == 1
    [shown] = map(json.loads, capsys.readouterr().out.splitlines())
    assert shown["id"] == runs["done"]
    assert shown["ok"] is False
    assert shown["position"] == 2
    assert await cli("replay", MODULE, "--db", str(db_path), "--run", "nope") == 1
    assert "no run with id 'nope'" in capsys.readouterr().out
    async with make_runtime(execute=False) as client:
        handle = client.get_run(runs["asleep"])
        [result] = await replay([handle])
        assert result.ok


async def test_an_unknown_workflow_or_module_is_reported(
    make_runtime: Callable[..., rw.Runtime],
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    ghost = rw.WorkflowDefinition(_ghost, name="tests.nowhere.ghost")
    async with make_runtime(execute=False) as client:
        run = await client.start(ghost)
        async with make_runtime() as runtime:
            await runtime.journal.write(
                lambda tx: tx.claim_run(run.id, "someone", 30.0)  # started somewhere
            )
    assert await cli("replay", MODULE, "--db", str(db_path)) == 1
    assert "tests.nowhere.ghost" in capsys.readouterr().out
    assert await cli("replay", "no_such_module_here", "--db", str(db_path)) == 1
    assert "cannot import 'no_such_module_here'" in capsys.readouterr().err


async def _ghost() -> None:
    """A workflow no module registers."""
