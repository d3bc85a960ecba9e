"""Looking runs up: by key, by parent, since a time, page after page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import runwright as rw
from runwright._cli import main
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio


@rw.workflow
async def quick(n: int) -> int:
    return n


@rw.workflow
async def with_children(count: int) -> list[int]:
    children = [await rw.start_child(quick, i) for i in range(count)]
    return [await child.result() for child in children]


async def test_get_run_by_key(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        started = await runtime.start(quick, 1, key="order-9")
        found = await runtime.get_run(key="order-9")
        assert found.id == started.id
        assert await found.result(timeout=10) == 1
        with pytest.raises(rw.RunNotFound, match="no run holding the key 'nope'"):
            await runtime.get_run(key="nope")
        with pytest.raises(TypeError):
            runtime.get_run()  # type: ignore[call-overload]


async def test_list_by_parent_since_and_in_pages(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
):
    async with make_runtime() as runtime:
        parent = await runtime.start(with_children, 3)
        assert await parent.result(timeout=10) == [0, 1, 2]
        clock.advance(3600)
        cutoff = dt.datetime.fromtimestamp(clock.now(), dt.UTC)
        later = [await runtime.start(quick, i) for i in range(5)]
        for run in later:
            await run.result(timeout=10)

        children = await runtime.list_runs(parent=parent.id)
        assert sorted(s.id for s in children) == [f"{parent.id}.{i}" for i in range(3)]
        recent = await runtime.list_runs(since=cutoff)
        assert {s.id for s in recent} == {run.id for run in later}

        seen: list[str] = []
        page = await runtime.list_runs(limit=3)
        while page:
            seen += [s.id for s in page]
            page = await runtime.list_runs(limit=3, after=page[-1])
        everything = await runtime.list_runs(limit=100)
        assert seen == [s.id for s in everything]  # no gap, no repeat, same order
        assert len(seen) == 9


async def test_runs_list_by_key_parent_since_and_pages(
    make_runtime: Callable[..., rw.Runtime],
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    clock = FakeClock(dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp())
    async with make_runtime(clock=clock) as runtime:
        parent = await runtime.start(with_children, 2, key="family")
        await parent.result(timeout=10)
        clock.advance(86400)
        single = await runtime.start(quick, 7)
        await single.result(timeout=10)

    def cli(*argv: str) -> tuple[list[str], str]:
        assert main(["runs", "list", *argv, "--db", str(db_path)]) == 0
        captured = capsys.readouterr()
        return [line.split()[0] for line in captured.out.splitlines()[1:]], captured.err

    async def ids(*argv: str) -> list[str]:
        return (await anyio.to_thread.run_sync(cli, *argv))[0]

    assert await ids("--key", "family") == [parent.id]
    assert sorted(await ids("--parent", parent.id)) == [f"{parent.id}.0", f"{parent.id}.1"]
    assert await ids("--since", "2026-11-02") == [single.id]
    first, hint = await anyio.to_thread.run_sync(cli, "--limit", "2")
    assert first[0] == single.id
    assert hint == f"runwright: more runs may follow: --after {first[-1]}\n"
    second = await ids("--limit", "2", "--after", first[-1])
    assert len(set(first + second)) == 4

    def bad_since() -> int:
        return main(["runs", "list", "--since", "someday", "--db", str(db_path)])

    assert await anyio.to_thread.run_sync(bad_since) == 2
    assert "not a time or an age: 'someday'" in capsys.readouterr().err
