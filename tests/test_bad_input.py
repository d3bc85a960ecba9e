"""Bad input gets a clear, specific error, and nothing already journaled is lost."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import runwright as rw
from runwright._definitions import _registry
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio


@rw.step
async def ping(value: Any = None) -> str:
    return "pong"


@rw.step
def sync_ping() -> str:
    return "sync pong"


@rw.step(name="nd.first")
async def first() -> str:
    return "first"


@rw.step(name="nd.second")
async def second() -> str:
    return "second"


@rw.step(name="nd.other")
async def other() -> str:
    return "other"


def flow_version(version: int) -> rw.WorkflowDefinition[[], str]:
    """The same workflow name, deployed as version 1 (original) or 2 (changed)."""

    @rw.workflow(name="bad.flow")
    async def flow() -> str:
        await first()
        await rw.sleep(10)
        if version == 1:
            await second()
        else:
            await other()
        await rw.sleep(10)
        return f"v{version}"

    return flow


@rw.workflow
async def passes_a_lambda() -> str:
    try:
        await ping(lambda: 1)
    except rw.EncodeError as exc:
        return f"{exc.step}|{exc.argument}|{exc.reason[:20]}"
    return "no"


@rw.workflow
async def returns_a_lambda() -> Any:
    return lambda: 1


@rw.workflow
async def takes_one(x: int) -> int:
    return x


def events(db_path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT * FROM events ORDER BY seq").fetchall()


def problem(db_path: Path, run_id: str) -> tuple[str, str] | None:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT kind, message FROM run_problems WHERE run_id = ?", (run_id,)
        ).fetchone()


async def wait_for(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not predicate():  # noqa: ASYNC110 (polls the database file)
            await anyio.sleep(0.005)


async def start_until_sleeping(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, workflow: Any, sleeps: int = 1
) -> str:
    """Start *workflow* and stop the runtime while it is in its *sleeps*-th sleep."""
    async with make_runtime() as runtime:
        handle = await runtime.start(workflow)
        for _ in range(sleeps - 1):
            await clock.jump()
        await clock.wait_for_sleeper()
        return handle.id


async def test_changed_code_stops_the_run_without_touching_the_journal(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
):
    run_id = await start_until_sleeping(make_runtime, clock, flow_version(1), sleeps=2)
    before = events(db_path)

    flow_version(2)
    async with make_runtime() as runtime:
        await wait_for(lambda: problem(db_path, run_id) is not None)
        assert await runtime.get_run(run_id).status() is rw.RunStatus.RUNNING
    kind, message = problem(db_path, run_id) or ("", "")
    assert kind == "non_determinism"
    logged = [r for r in caplog.records if r.name == "runwright" and r.levelname == "ERROR"]
    assert any(run_id in r.getMessage() and "nd.other" in r.getMessage() for r in logged)
    assert f"run {run_id}: at position 2" in message
    assert "recorded step 'nd.second'" in message
    assert "asks for step 'nd.other'" in message
    assert events(db_path) == before

    flow_version(1)
    clock.advance(10)
    async with make_runtime() as runtime:
        assert await runtime.get_run(run_id).result(timeout=10) == "v1"
    assert problem(db_path, run_id) is None


async def test_unknown_workflow_on_resume_is_reported_and_kept(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path
):
    flow = flow_version(1)
    run_id = await start_until_sleeping(make_runtime, clock, flow)
    del _registry[flow.name]
    async with make_runtime() as runtime:
        await wait_for(lambda: problem(db_path, run_id) is not None)
        assert await runtime.get_run(run_id).status() is rw.RunStatus.RUNNING
    kind, message = problem(db_path, run_id) or ("", "")
    assert kind == "unknown_workflow"
    assert "no workflow named 'bad.flow' is registered" in message
    flow_version(1)
    clock.advance(10)
    async with make_runtime() as runtime:
        await clock.jump()
        assert await runtime.get_run(run_id).result(timeout=10) == "v1"


async def test_unencodable_step_argument_fails_at_the_call_site(
    make_runtime: Callable[..., rw.Runtime], db_path: Path
):
    async with make_runtime() as runtime:
        handle = await runtime.start(passes_a_lambda)
        step_name, argument, reason = (await handle.result()).split("|")
    assert step_name == ping.name
    assert argument == "value"
    assert "cannot encode" in reason
    assert not any(e[2] == "step_scheduled" for e in events(db_path))


async def test_unencodable_start_argument_writes_nothing(
    make_runtime: Callable[..., rw.Runtime], db_path: Path
):
    async with make_runtime() as runtime:
        with pytest.raises(rw.EncodeError) as info:
            await runtime.start(takes_one, object())
        assert info.value.argument == "x"
        assert await runtime.list_runs() == []
        with pytest.raises(TypeError, match="takes_one"):
            await runtime.start(takes_one, 1, 2)


async def test_unencodable_return_value_fails_the_run(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        handle = await runtime.start(returns_a_lambda)
        with pytest.raises(rw.RunFailed, match="cannot be encoded"):
            await handle.result()


async def test_undecodable_payload_stops_the_run_and_keeps_the_journal(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path
):
    run_id = await start_until_sleeping(make_runtime, clock, flow_version(1))
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "UPDATE events SET payload = x'ff00' WHERE run_id = ? AND kind = 'step_completed'",
            (run_id,),
        )
    before = events(db_path)
    async with make_runtime() as runtime:
        await wait_for(lambda: problem(db_path, run_id) is not None)
        assert await runtime.get_run(run_id).status() is rw.RunStatus.RUNNING
    kind, message = problem(db_path, run_id) or ("", "")
    assert kind == "undecodable_payload"
    assert "format" in message
    assert events(db_path) == before


async def test_a_file_that_is_not_a_database(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not SQLite\n" * 10)
    with pytest.raises(rw.NotARunwrightDatabase, match="not an SQLite database"):
        async with rw.Runtime(path):
            pass
    assert path.read_text().startswith("hello")


async def test_another_applications_database(tmp_path: Path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with pytest.raises(rw.NotARunwrightDatabase, match="did not create"):
        async with rw.Runtime(path):
            pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("customers",)]


async def test_a_newer_schema_is_refused(db_path: Path):
    async with rw.Runtime(db_path):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(rw.SchemaVersionError, match="upgrade runwright"):
        async with rw.Runtime(db_path):
            pass


async def test_a_database_locked_past_the_busy_timeout(
    make_runtime: Callable[..., rw.Runtime], db_path: Path
):
    async with make_runtime(busy_timeout=0.1) as runtime:
        done = await runtime.start(takes_one, 1)
        assert await done.result() == 1
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(rw.DatabaseLocked, match="locked by another process"):
                await runtime.start(takes_one, 2)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        again = await runtime.start(takes_one, 3)
        assert await again.result() == 3
        assert await done.result() == 1
        assert len(await runtime.list_runs()) == 2


async def test_steps_outside_a_workflow_just_run():
    assert await ping() == "pong"
    assert await sync_ping() == "sync pong"


async def test_start_needs_a_workflow(make_runtime: Callable[..., rw.Runtime]):
    async def plain() -> None:
        pass

    async with make_runtime() as runtime:
        with pytest.raises(TypeError, match=r"@rw\.workflow"):
            await runtime.start(plain)  # type: ignore[arg-type]


def test_workflow_needs_an_async_function():
    def not_async() -> None:
        pass

    with pytest.raises(TypeError, match="async def"):
        rw.workflow(not_async)  # type: ignore[arg-type]


def test_two_workflows_cannot_share_a_name():
    async def one() -> None:
        pass

    async def two() -> None:
        pass

    rw.workflow(name="bad.shared")(one)
    with pytest.raises(ValueError, match="already used"):
        rw.workflow(name="bad.shared")(two)


async def test_result_of_an_unknown_run(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        with pytest.raises(rw.RunNotFound):
            await runtime.get_run("nope").result()
        with pytest.raises(rw.RunNotFound):
            await runtime.get_run("nope").status()
