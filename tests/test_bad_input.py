"""Bad input gets a clear, specific error, and nothing already journaled is lost.

What a test checks was stored, or spoils on purpose, it reads and writes
straight in the journal, outside any runtime, on either backend.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal

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


def events(db: Path | str) -> list[tuple[Any, ...]]:
    return query_journal(db, "SELECT * FROM events ORDER BY seq")


def problem(db: Path | str, run_id: str) -> tuple[str, str] | None:
    rows = query_journal(db, "SELECT kind, message FROM run_problems WHERE run_id = ?", (run_id,))
    return (rows[0][0], rows[0][1]) if rows else None


def spoil(db: Path | str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run *sql* (``?`` placeholders) on the journal at *db* and commit: what another
    program, or a damaged disk, might do to it behind the runtime's back."""
    target = os.fspath(db)
    if not target.startswith("postgresql://"):
        with contextlib.closing(sqlite3.connect(target)) as conn, conn:
            conn.execute(sql, params)
        return
    import psycopg

    from runwright.journal.postgres._url import PgTarget

    parsed = PgTarget(target)
    with psycopg.connect(parsed.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{parsed.schema}"')
        conn.execute(sql.replace("?", "%s"), params or None)


async def wait_for(predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not await anyio.to_thread.run_sync(predicate):  # noqa: ASYNC110 (polls the journal)
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
    db_path: Path | str,
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
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
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
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        handle = await runtime.start(passes_a_lambda)
        step_name, argument, reason = (await handle.result()).split("|")
    assert step_name == ping.name
    assert argument == "value"
    assert "cannot encode" in reason
    assert not any(e[2] == "step_scheduled" for e in events(db_path))


async def test_unencodable_start_argument_writes_nothing(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
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
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, db_path: Path | str
):
    run_id = await start_until_sleeping(make_runtime, clock, flow_version(1))
    spoil(
        db_path,
        "UPDATE events SET payload = ? WHERE run_id = ? AND kind = 'step_completed'",
        (b"\xff\x00", run_id),
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


def schema_of(db: Path | str) -> str:
    from runwright.journal.postgres._url import PgTarget

    return PgTarget(os.fspath(db)).schema


def tables_in(db: Path | str) -> list[tuple[Any, ...]]:
    """The tables of the PostgreSQL schema *db* names (which may not exist)."""
    return query_journal(
        db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
        "ORDER BY table_name",
        (schema_of(db),),
    )


@pytest.mark.postgres_only("a schema is PostgreSQL's; an SQLite journal is a file of its own")
async def test_another_applications_schema(db_path: str):
    spoil(db_path, f'CREATE SCHEMA "{schema_of(db_path)}"')
    spoil(db_path, "CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with pytest.raises(rw.NotARunwrightDatabase, match="did not create"):
        async with rw.Runtime(db_path):
            pass
    assert tables_in(db_path) == [("customers",)]


@pytest.mark.postgres_only("a schema is PostgreSQL's; an SQLite journal is a file of its own")
async def test_another_applications_meta_table(db_path: str):
    spoil(db_path, f'CREATE SCHEMA "{schema_of(db_path)}"')
    spoil(db_path, "CREATE TABLE meta (id INTEGER PRIMARY KEY, note TEXT)")
    with pytest.raises(rw.NotARunwrightDatabase, match="did not create"):
        async with rw.Runtime(db_path):
            pass
    assert tables_in(db_path) == [("meta",)]


@pytest.mark.postgres_only("migrate= is PostgreSQL's: an SQLite journal is made with its file")
async def test_without_migrate_an_empty_schema_is_refused(db_path: str):
    with pytest.raises(rw.NotARunwrightDatabase, match=r"create it with `runwright db migrate`"):
        async with rw.Runtime(db_path, migrate=False):
            pass
    assert tables_in(db_path) == []
    async with rw.Runtime(db_path) as runtime:
        await (await runtime.start(takes_one, 1)).result()
    async with rw.Runtime(db_path, migrate=False) as runtime:
        assert [run.status for run in await runtime.list_runs()] == [rw.RunStatus.COMPLETED]


@pytest.mark.parametrize(
    ("url", "schema"),
    [
        ("postgresql://postgres@127.0.0.1:1/test", "Robert'); drop"),
        ("postgresql://postgres@127.0.0.1:1/test?schema=Robert%27%29%3B+drop", None),
        ("postgresql://postgres@127.0.0.1:1/test", ""),
        ("postgresql://postgres@127.0.0.1:1/test?schema=one", "two"),
    ],
)
async def test_a_bad_schema_is_refused_before_connecting(url: str, schema: str | None):
    # Nothing listens on port 1: had it tried to connect, JournalUnavailable would say so.
    with pytest.raises(ValueError, match="schema"):
        async with rw.Runtime(url, schema=schema, reconnect_timeout=0.1):
            pass


async def test_a_schema_for_an_sqlite_journal_is_refused(tmp_path: Path):
    path = tmp_path / "journal.db"
    with pytest.raises(ValueError, match="SQLite file has no schemas"):
        async with rw.Runtime(path, schema="runwright"):
            pass
    assert not path.exists()


#: Where each backend keeps the journal's schema version: how to set it, how to read it.
SCHEMA_VERSION_SQL = {
    "sqlite": ("PRAGMA user_version = 99", "PRAGMA user_version"),
    "postgresql": (
        "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
        "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version'",
    ),
}


async def test_a_newer_schema_is_refused(db_path: Path | str, journal_backend: str):
    async with rw.Runtime(db_path) as runtime:
        await (await runtime.start(takes_one, 1)).result()
    set_version, get_version = SCHEMA_VERSION_SQL[journal_backend]
    spoil(db_path, set_version)
    before = events(db_path)
    with pytest.raises(rw.SchemaVersionError, match=r"version 99, newer.*upgrade runwright"):
        async with rw.Runtime(db_path):
            pass
    assert query_journal(db_path, get_version) == [(99,)]
    assert events(db_path) == before


@pytest.mark.sqlite_only(
    "busy_timeout and the file's write lock are SQLite's; on PostgreSQL a write waits for "
    "the journal's write lock (test_locked_writes.py)"
)
async def test_a_database_locked_past_the_busy_timeout(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
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
