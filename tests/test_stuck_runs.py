"""A run that cannot advance is visible through the API and the CLI: its summary has a
problem, listing finds it, waiting for it says why, and a test can fail fast on it."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import runwright as rw
from runwright._cli import main

pytestmark = pytest.mark.anyio


@rw.step
async def heads() -> str:
    return "heads"


@rw.step
async def tails() -> str:
    return "tails"


@rw.workflow
async def coin_flips() -> list[str]:
    """Non-deterministic: the stdlib's random, not rw.random(), picks which step to
    ask for, and every replay (cache_runs=0 replays on every step) flips again."""
    return [await (heads() if random.random() < 0.5 else tails()) for _ in range(60)]


@rw.workflow
async def _done() -> str:
    return "done"


async def _stuck_run(runtime: rw.Runtime) -> rw.RunHandle[list[str]]:
    handle = await runtime.start(coin_flips)
    with pytest.raises(rw.RunStuck) as info:
        await handle.result(timeout=10, raise_on_problem=True)
    assert info.value.kind == "non_determinism"
    return handle


async def test_a_run_that_cannot_advance_says_so(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime(cache_runs=0) as runtime:
        stuck = await _stuck_run(runtime)
        fine = await runtime.start(_done)
        summary = await stuck.summary()
        assert summary.status is rw.RunStatus.RUNNING
        assert summary.problem is not None
        assert summary.problem.kind == "non_determinism"
        message = summary.problem.message
        # Both causes are named, with what to use instead.
        for words in ("code changed", "not deterministic", "rw.now()", "rw.random()", "step"):
            assert words in message, words
        with pytest.raises(rw.RunTimeout, match="it cannot advance: non_determinism: "):
            await stuck.result(timeout=0.05)
        assert [s.id for s in await runtime.list_runs(stuck=True)] == [stuck.id]
        assert stuck.id not in [s.id for s in await runtime.list_runs(stuck=False)]
        await fine.result(timeout=10)
        listed = {s.id: s for s in await runtime.list_runs()}
        assert listed[stuck.id].problem == summary.problem
        assert listed[fine.id].problem is None


async def test_runs_list_shows_and_filters_stuck_runs(
    make_runtime: Callable[..., rw.Runtime],
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    async with make_runtime(cache_runs=0) as runtime:
        stuck = await _stuck_run(runtime)
        fine = await runtime.start(_done)
        assert await fine.result(timeout=10) == "done"

    def cli(*argv: str) -> int:
        return main([*argv, "--db", str(db_path)])

    assert await anyio.to_thread.run_sync(cli, "runs", "list", "--stuck") == 0
    out = capsys.readouterr().out
    assert stuck.id in out
    assert "stuck: non_determinism" in out
    assert fine.id not in out
    assert await anyio.to_thread.run_sync(cli, "runs", "list", "--json") == 0
    shown = {run["id"]: run for run in map(json.loads, capsys.readouterr().out.splitlines())}
    assert shown[stuck.id]["problem"]["kind"] == "non_determinism"
    assert shown[stuck.id]["status"] == "running"
    assert shown[fine.id]["problem"] is None
