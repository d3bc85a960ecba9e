"""``runwright db migrate`` and ``runwright db info``, on both backends.

The journal is made by ``db migrate`` or by a runtime in the test process;
the command runs in a worker thread (it starts its own event loop and
blocks), and as a real subprocess where the point is the installed command.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal

import runwright as rw
from runwright._cli import main
from runwright.journal import describe
from runwright.journal.postgres import PgTarget
from runwright.journal.postgres._schema import SCHEMA_VERSION as PG_VERSION
from runwright.journal.sqlite._schema import SCHEMA_VERSION as SQLITE_VERSION
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

LEASE = 20.0


@rw.step(retries=0)
async def refuse() -> None:
    raise ValueError("no")


@rw.workflow
async def nap(seconds: float) -> str:
    await rw.sleep(seconds)
    return "rested"


@rw.workflow
async def quick() -> str:
    return "done"


@rw.workflow
async def doomed() -> None:
    await refuse()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The command in this process: its exit status, stdout and stderr."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return await anyio.to_thread.run_sync(run_cli, capsys, *argv)


def execute(db: Path | str, sql: str) -> None:
    """Run one write on the journal at *db*, outside any runtime; ``rw_now()`` is the
    journal's clock on both backends."""
    if isinstance(db, Path):
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.create_function("rw_now", 0, time.time)
            conn.execute(sql)
        return
    query_journal(db, sql + " RETURNING 1")  # autocommit; RETURNING gives it rows to read


def current_version(db: Path | str) -> int:
    """This runwright's schema version for *db*'s backend (SQLite's 6 added blob files)."""
    return SQLITE_VERSION if isinstance(db, Path) else PG_VERSION


def info(capsys: pytest.CaptureFixture[str], db: Path | str) -> dict[str, Any]:
    status, out, err = run_cli(capsys, "db", "info", "--db", str(db), "--json")
    assert (status, err) == (0, "")
    result: dict[str, Any] = json.loads(out)
    return result


# -- db migrate --------------------------------------------------------------------------


def test_migrate_creates_the_journal_then_finds_it_current(
    db_path: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    db, version = str(db_path), current_version(db_path)
    assert run_cli(capsys, "db", "migrate", "--db", db) == (
        0,
        f"{describe(db)}: created the journal at version {version}\n",
        "",
    )
    assert query_journal(db_path, "SELECT count(*) FROM runs") == [(0,)]
    assert run_cli(capsys, "db", "migrate", "--db", db) == (
        0,
        f"{describe(db)}: already at version {version}\n",
        "",
    )
    assert info(capsys, db_path)["version"] == version


async def test_opening_a_runtime_migrates(
    db_path: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with rw.Runtime(db_path, synchronous="NORMAL"):
        pass
    status, out, _ = await cli(capsys, "db", "migrate", "--db", str(db_path))
    version = current_version(db_path)
    assert (status, out) == (0, f"{describe(db_path)}: already at version {version}\n")


@pytest.mark.postgres_only("an SQLite journal is created by whoever opens the file first")
async def test_a_runtime_told_not_to_migrate_needs_db_migrate(
    db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(rw.NotARunwrightDatabase, match="runwright db migrate"):
        async with rw.Runtime(db_path, migrate=False):
            pass
    status, out, _ = await cli(capsys, "db", "migrate", "--db", db_path)
    version = current_version(db_path)
    assert (status, out) == (0, f"{describe(db_path)}: created the journal at version {version}\n")
    async with rw.Runtime(db_path, migrate=False) as runtime:
        assert await (await runtime.start(quick)).result() == "done"


@pytest.mark.sqlite_only("no PostgreSQL journal had version 1")
def test_migrate_upgrades_an_older_journal(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "db", "migrate", "--db", str(db_path))[0] == 0
    with contextlib.closing(sqlite3.connect(db_path)) as conn:  # as version 1 left it
        conn.execute("DROP TABLE stream_chunks")
        conn.execute("DROP TABLE streams")
        conn.execute("PRAGMA user_version = 1")
    assert run_cli(capsys, "db", "migrate", "--db", str(db_path)) == (
        0,
        f"{db_path}: upgraded from version 1 to {SQLITE_VERSION}\n",
        "",
    )
    assert query_journal(db_path, "SELECT count(*) FROM streams") == [(0,)]
    assert info(capsys, db_path)["version"] == SQLITE_VERSION


def test_a_newer_journal_is_refused(
    db_path: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(db_path)
    assert run_cli(capsys, "db", "migrate", "--db", db)[0] == 0
    if isinstance(db_path, Path):
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            conn.execute("PRAGMA user_version = 99")
    else:
        execute(db_path, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    for argv in (["db", "migrate"], ["db", "info"], ["runs", "list"]):
        status, out, err = run_cli(capsys, *argv, "--db", db)
        assert (status, out) == (1, ""), argv
        assert err == (
            f"runwright: error: {describe(db)} has journal schema version 99, newer than "
            f"this runwright understands ({current_version(db_path)}); upgrade runwright\n"
        )


@pytest.mark.postgres_only("the schema option names a PostgreSQL schema")
def test_migrate_into_a_schema_named_by_option(
    db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = PgTarget(db_path).schema
    server = db_path.partition("?")[0]
    status, out, _ = run_cli(capsys, "db", "migrate", "--db", server, "--schema", schema)
    assert (status, out) == (
        0,
        f"{server} (schema {schema}): created the journal at version {PG_VERSION}\n",
    )
    status, out, _ = run_cli(capsys, "db", "info", "--db", server, "--schema", schema, "--json")
    assert (status, json.loads(out)["schema"]) == (0, schema)
    assert query_journal(db_path, "SELECT count(*) FROM runs") == [(0,)]  # where the URL says

    status, out, err = run_cli(capsys, "db", "migrate", "--db", db_path, "--schema", "other")
    assert (status, out) == (1, "")
    assert err == (
        f"runwright: error: the URL names schema {schema!r} and schema= names 'other'; "
        "name it once\n"
    )


# -- db info -----------------------------------------------------------------------------


async def test_info_counts_runs_and_shows_who_holds_leases(
    db_path: Path | str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(db_path)
    clock = FakeClock()
    async with rw.Runtime(
        db_path, clock=clock, synchronous="NORMAL", lease_seconds=LEASE, host_id="info-host"
    ) as runtime:
        sleeping = await runtime.start(nap, 3600)
        assert await (await runtime.start(quick)).result() == "done"
        with pytest.raises(rw.RunFailed):
            await (await runtime.start(doomed)).result()
        await clock.wait_for_sleeper()
        assert await sleeping.status() == rw.RunStatus.RUNNING
        owner = runtime.supervisor.owner
        assert owner.startswith("info-host:")

        shown = await anyio.to_thread.run_sync(info, capsys, db_path)
        assert shown["backend"] == ("sqlite" if isinstance(db_path, Path) else "postgresql")
        assert shown["target"] == db.partition("?")[0]
        assert shown["schema"] == (None if isinstance(db_path, Path) else PgTarget(db).schema)
        assert shown["version"] == current_version(db_path)
        sqlite = isinstance(db_path, Path)
        blobs = {"directory": f"{db}-blobs", "files": 0, "bytes": 0} if sqlite else None
        assert shown["blobs"] == blobs  # no payload over 1 MiB: no file
        assert shown["runs"] == {
            "pending": 0,
            "running": 1,
            "completed": 1,
            "failed": 1,
            "cancelled": 0,
        }
        [held] = shown["owners"]
        assert (held["owner"], held["runs"]) == (owner, 1)
        assert 0 < held["lease_expires_in"] <= LEASE

        status, out, err = await cli(capsys, "db", "info", "--db", db)
        assert (status, err) == (0, "")
        lines = out.splitlines()
        assert lines[:-3] == [
            f"backend  {shown['backend']}",
            f"target   {shown['target']}",
            *([] if shown["schema"] is None else [f"schema   {shown['schema']}"]),
            f"version  {current_version(db_path)}",
            "runs     3 (0 pending, 1 running, 1 completed, 1 failed, 0 cancelled)",
            *([] if shown["blobs"] is None else [f"blobs    0 files, 0 B, in {db}-blobs"]),
        ]
        assert lines[-3] == "owners   1"
        assert lines[-2].split() == ["OWNER", "RUNS", "LEASE"]
        assert re.fullmatch(rf"  {re.escape(owner)}  1     expires in \d+\.\d s", lines[-1])

    # Shut down, the runtime let go of its run; the run itself goes on.
    shown = await anyio.to_thread.run_sync(info, capsys, db_path)
    assert (shown["owners"], shown["runs"]["running"]) == ([], 1)
    status, out, _ = await cli(capsys, "db", "info", "--db", db)
    assert "\nowners   none\n" in out

    # A process that died holding the run: its lease ran out a minute ago.
    execute(
        db_path,
        f"UPDATE runs SET owner = 'gone-host:1:00', lease_expires_at = rw_now() - 60 "
        f"WHERE run_id = '{sleeping.id}'",
    )
    [held] = (await anyio.to_thread.run_sync(info, capsys, db_path))["owners"]
    assert held["owner"] == "gone-host:1:00"
    assert -70 < held["lease_expires_in"] <= -60
    status, out, _ = await cli(capsys, "db", "info", "--db", db)
    assert re.search(r"\n  gone-host:1:00  1     expired 6\d\.\d s ago\n$", out), out


async def test_db_commands_as_subprocesses(db_path: Path | str, tmp_path: Path) -> None:
    env = {**os.environ, "RUNWRIGHT_DB": str(db_path)}
    command = [sys.executable, "-m", "runwright._cli", "db"]
    with anyio.fail_after(60):
        migrated = await anyio.run_process([*command, "migrate"], env=env, cwd=tmp_path)
        assert migrated.stdout.decode() == (
            f"{describe(db_path)}: created the journal at version {current_version(db_path)}\n"
        )
        shown = await anyio.run_process([*command, "info"], env=env, cwd=tmp_path)
    version = current_version(db_path)
    assert f"\nversion  {version}\nruns     0 (0 pending," in shown.stdout.decode()
    assert shown.stderr == b""
