"""``runwright schedules list|pause|resume|trigger`` against a journal a runtime fires
schedules into, on both backends (the CLI runs in a worker thread, as it blocks)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import anyio
import anyio.to_thread
import pytest

import runwright as rw
from runwright._cli import main
from runwright._schedule import declared_schedules, forget_schedule
from runwright.journal import describe
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

NAME = "cli.nightly"
BERLIN = ZoneInfo("Europe/Berlin")
seen: list[dt.datetime] = []


@rw.step
async def note(tick: dt.datetime) -> None:
    seen.append(tick)


@rw.workflow(name="cli_schedules.nightly_export")
async def nightly_export(tick: dt.datetime) -> str:
    await note(tick)
    return tick.isoformat()


@pytest.fixture(autouse=True)
def _scheduled() -> Iterator[None]:
    seen.clear()
    rw.schedule("*/15 * * * *", timezone="Europe/Berlin", catch_up="skip", name=NAME)(
        nightly_export
    )
    yield
    for spec, _ in declared_schedules():
        if spec.name == NAME:
            forget_schedule(NAME)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return await anyio.to_thread.run_sync(run_cli, capsys, *argv)


async def settle(clock: FakeClock, until: float) -> None:
    with anyio.fail_after(10):
        while clock.sleeping(until) < 1:  # noqa: ASYNC110 (another task's state)
            await anyio.sleep(0.001)


async def test_list_pause_resume_and_trigger(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    db = str(db_path)
    start = clock.now()
    async with make_runtime() as runtime:
        await settle(clock, start + 900)
        clock.advance(900)
        await settle(clock, start + 1800)

        status, out, err = await cli(capsys, "schedules", "list", "--db", db)
        assert (status, err) == (0, "")
        assert out.splitlines() == [
            "NAME         CRON          TIMEZONE       CATCH UP  PAUSED  LAST TICK"
            "                  NEXT TICK",
            "cli.nightly  */15 * * * *  Europe/Berlin  skip      no      "
            "2027-01-15T09:15:00+01:00  2027-01-15T09:30:00+01:00",
        ]

        assert await cli(capsys, "schedules", "pause", NAME, "--db", db) == (
            0,
            f"{NAME} paused: it starts no run until it is resumed\n",
            "",
        )
        [info] = await runtime.list_schedules()
        assert info.paused
        status, out, _ = await cli(capsys, "schedules", "list", "--db", db, "--json")
        assert list(map(json.loads, out.splitlines())) == [
            {
                "name": NAME,
                "workflow": "cli_schedules.nightly_export",
                "cron": "*/15 * * * *",
                "timezone": "Europe/Berlin",
                "catch_up": "skip",
                "paused": True,
                "last_tick": "2027-01-15T08:15:00.000000Z",
                "next_tick": None,
                "declared_at": "2027-01-15T08:00:00.000000Z",
            }
        ]
        clock.advance(900)  # a tick falls while paused
        await settle(clock, start + 2700)

        status, out, _ = await cli(capsys, "schedules", "resume", NAME, "--db", db)
        assert (status, out) == (
            0,
            f"{NAME} resumed: it fires from its next tick (ticks missed while paused are not)\n",
        )
        [info] = await runtime.list_schedules()
        assert not info.paused

        # The CLI journals the run; this runtime, which has the workflow, runs it.
        before = dt.datetime.now(BERLIN)
        status, out, _ = await cli(capsys, "schedules", "trigger", NAME, "--db", db)
        assert status == 0
        triggered = runtime.get_run(out.strip())
        tick = dt.datetime.fromisoformat(await triggered.result(timeout=10))
        assert before <= tick <= dt.datetime.now(BERLIN)
        assert tick.utcoffset() == dt.timedelta(hours=1)
        summary = await triggered.summary()
        assert summary.key is not None
        assert summary.key.startswith(f"schedule:{NAME}:trigger:")
        assert len(await runtime.list_runs()) == 2  # the tick while paused started nothing


async def test_pause_resume_and_trigger_as_json(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    db = str(db_path)
    async with make_runtime() as runtime:
        for action, paused in (("pause", True), ("resume", False)):
            status, out, err = await cli(capsys, "schedules", action, NAME, "--db", db, "--json")
            assert (status, err) == (0, "")
            assert json.loads(out) == {"name": NAME, "paused": paused}
            assert out.count("\n") == 1
            [info] = await runtime.list_schedules()
            assert info.paused is paused
        status, out, err = await cli(capsys, "schedules", "trigger", NAME, "--db", db, "--json")
        assert (status, err) == (0, "")
        shown = json.loads(out)
        assert shown == {"name": NAME, "run_id": shown["run_id"]}
        triggered = runtime.get_run(shown["run_id"])
        assert dt.datetime.fromisoformat(await triggered.result(timeout=10)).tzinfo is not None


async def test_unknown_names_and_journals_without_schedules(
    make_runtime: Callable[..., rw.Runtime],
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    db = str(db_path)
    forget_schedule(NAME)
    async with make_runtime():
        pass
    assert await cli(capsys, "schedules", "list", "--db", db) == (0, "no schedules\n", "")
    assert await cli(capsys, "schedules", "list", "--db", db, "--json") == (0, "", "")
    for action in ("pause", "resume", "trigger"):
        status, out, err = await cli(capsys, "schedules", action, "nope", "--db", db)
        assert (status, out) == (1, "")
        assert err.startswith("runwright: error: no schedule named 'nope' in this journal")
    # A journal written before schedules existed is not changed by reading it.
    if isinstance(db_path, Path):
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            conn.execute("DROP TABLE schedules")
            conn.execute("PRAGMA user_version = 3")
    else:
        import psycopg

        from runwright.journal.postgres import PgTarget

        target = PgTarget(db_path)
        with psycopg.connect(target.conninfo, autocommit=True) as pg:
            pg.execute(f'SET search_path TO "{target.schema}"')
            pg.execute("DROP TABLE schedules")
            pg.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    status, out, err = await cli(capsys, "schedules", "list", "--db", db)
    assert (status, out) == (1, "")
    assert err == (
        f"runwright: error: {describe(db)} has journal schema version 3, which predates "
        "schedules: upgrade it with `runwright db migrate`\n"
    )


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    status, _, err = run_cli(capsys, "schedules", "pause", "--db", str(tmp_path / "j.db"))
    assert status == 2
    assert "the following arguments are required: NAME" in err
    status, _, err = run_cli(capsys, "schedules", "list", "--db", str(tmp_path / "none.db"))
    assert (status, err) == (1, f"runwright: error: no runwright database at {tmp_path}/none.db\n")
