"""Schedules in runtimes, on both backends and both event loops, on a fake clock: each
tick starts one run (also with two runtimes on one journal), the tick reaches the
workflow, firing survives restarts and follows catch_up, and pause, resume and
trigger work from the API."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest
from conftest import query_journal
from faults import FaultPlan, injected

import runwright as rw
from runwright._schedule import declared_schedules, forget_schedule
from runwright._scheduler import tick_key, trigger_key
from runwright.journal._schedules import declare_schedule
from runwright.journal.sqlite._schema import SCHEMA_VERSION as SQLITE_VERSION
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

QUARTER = 900.0
BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")  # loaded here, not by a declaration on the event loop
seen: list[dt.datetime] = []


@rw.step
async def record(tick: dt.datetime) -> None:
    seen.append(tick)


@rw.workflow(name="schedules.sync_inventory")
async def sync_inventory(tick: dt.datetime) -> str:
    await record(tick)
    return tick.isoformat()


@pytest.fixture(autouse=True)
def schedule() -> Iterator[Callable[..., rw.WorkflowDefinition[Any, Any]]]:
    """Declare a schedule on ``sync_inventory`` for this test only."""
    seen.clear()
    before = {spec.name for spec, _ in declared_schedules()}

    def declare(cron: str = "*/15 * * * *", **options: Any) -> rw.WorkflowDefinition[Any, Any]:
        options.setdefault("timezone", "Europe/Berlin")
        return rw.schedule(cron, **options)(sync_inventory)

    yield declare
    for spec, _ in declared_schedules():
        if spec.name not in before:
            forget_schedule(spec.name)


async def settle(clock: FakeClock, until: float, sleepers: int = 1) -> None:
    """Wait until *sleepers* schedule loops sleep until *until* (they fired what was due)."""
    with anyio.fail_after(30):
        while clock.sleeping(until) < sleepers:  # noqa: ASYNC110 (another task's state)
            await anyio.sleep(0.001)


async def results(runtime: rw.Runtime, count: int) -> list[str]:
    """The results of the journal's runs (their ticks), in tick order, once there are *count*."""
    with anyio.fail_after(30):
        while len(runs := await runtime.list_runs(limit=1000)) < count:  # noqa: ASYNC110
            await anyio.sleep(0.001)
    assert len(runs) == count
    ran = [await runtime.get_run(run.id).result(timeout=10) for run in runs]
    return sorted(ran, key=dt.datetime.fromisoformat)


def at(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, BERLIN)


async def test_a_day_of_quarter_hour_ticks_starts_96_runs_with_their_ticks(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, schedule: Any
):
    schedule()
    start = clock.now()  # a quarter hour: it was the declaration, so it does not fire
    async with make_runtime() as runtime:
        for i in range(1, 97):
            await settle(clock, start + i * QUARTER)
            clock.advance(QUARTER)
        await settle(clock, start + 97 * QUARTER)
        ticks = [at(start + i * QUARTER) for i in range(1, 97)]
        assert await results(runtime, 96) == [tick.isoformat() for tick in ticks]
        assert seen == ticks
        assert all(tick.tzinfo == BERLIN for tick in seen)
        keys = {run.key for run in await runtime.list_runs(limit=1000)}
        assert keys == {tick_key("schedules.sync_inventory", t.timestamp()) for t in ticks}
        [info] = await runtime.list_schedules()
        assert info.last_tick == ticks[-1]
        assert info.next_tick == at(start + 97 * QUARTER)


async def test_two_runtimes_on_one_journal_start_one_run_per_tick(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, schedule: Any
):
    schedule()
    start = clock.now()
    async with make_runtime() as first, make_runtime() as second:
        for i in range(1, 9):
            await settle(clock, start + i * QUARTER, sleepers=2)
            clock.advance(QUARTER)
        await settle(clock, start + 9 * QUARTER, sleepers=2)
        await results(first, 8)
        assert len(await second.list_runs(limit=1000)) == 8
    assert seen == [at(start + i * QUARTER) for i in range(1, 9)]  # each step ran once


async def test_firing_survives_a_restart(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, schedule: Any
):
    schedule()
    start = clock.now()
    async with make_runtime() as runtime:
        await settle(clock, start + QUARTER)
        clock.advance(QUARTER)
        await settle(clock, start + 2 * QUARTER)
        await results(runtime, 1)
    clock.advance(60)  # no tick falls while no runtime runs
    async with make_runtime() as runtime:
        await settle(clock, start + 2 * QUARTER)
        assert len(await runtime.list_runs()) == 1  # the fired tick is not fired again
        clock.advance(QUARTER - 60)
        await settle(clock, start + 3 * QUARTER)
        await results(runtime, 2)
    assert seen == [at(start + QUARTER), at(start + 2 * QUARTER)]


@pytest.mark.parametrize(
    ("catch_up", "missed_runs"),
    [("latest", [8]), ("all", [1, 2, 3, 4, 5, 6, 7, 8]), ("skip", [])],
)
async def test_ticks_missed_while_no_runtime_ran_follow_catch_up(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    schedule: Any,
    catch_up: str,
    missed_runs: list[int],
):
    schedule(catch_up=catch_up)
    start = clock.now()
    async with make_runtime():
        await settle(clock, start + QUARTER)
    clock.advance(2 * 3600 + 60)  # eight ticks fall while nothing runs
    async with make_runtime() as runtime:
        await settle(clock, start + 9 * QUARTER)
        expected = [at(start + i * QUARTER).isoformat() for i in missed_runs]
        assert await results(runtime, len(missed_runs)) == expected
        clock.advance(QUARTER - 60)  # and the next tick fires, whatever the policy
        await settle(clock, start + 10 * QUARTER)
        ran = await results(runtime, len(missed_runs) + 1)
        assert ran[-1] == at(start + 9 * QUARTER).isoformat()


async def test_catch_up_all_is_bounded(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    schedule: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr("runwright._scheduler.MAX_CATCH_UP", 50)  # 1,000 in earnest
    schedule("* * * * *", catch_up="all")
    start = clock.now()
    async with make_runtime():
        await settle(clock, start + 60)
    clock.advance(86400)  # 1,440 one-minute ticks
    async with make_runtime() as runtime:
        await settle(clock, start + 86400 + 60)
        [info] = await runtime.list_schedules()
        assert info.last_tick == at(start + 86400)
        keys = {run.key for run in await runtime.list_runs(limit=2000)}
        last = start + 86400
        # The most recent fifty.
        assert keys == {tick_key("schedules.sync_inventory", last - i * 60) for i in range(50)}


async def test_pause_resume_and_trigger_from_the_api(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, schedule: Any
):
    schedule(catch_up="all")
    name = "schedules.sync_inventory"
    start = clock.now()
    async with make_runtime() as runtime:
        await settle(clock, start + QUARTER)
        await runtime.pause_schedule(name)
        [info] = await runtime.list_schedules()
        assert (info.paused, info.next_tick) == (True, None)
        for i in range(1, 3):  # two ticks fall while paused: nothing starts
            clock.advance(QUARTER)
            await settle(clock, start + (i + 1) * QUARTER)
        assert await runtime.list_runs() == []

        # Trigger-now works while paused; the same instant is the same run.
        clock.advance(10)
        now = clock.now()
        handle = await runtime.trigger_schedule(name)
        assert (await runtime.trigger_schedule(name)).id == handle.id
        assert await handle.result(timeout=10) == at(now).isoformat()
        [summary] = await runtime.list_runs()
        assert summary.key == trigger_key(name, now)
        clock.advance(0.001)
        again = await runtime.trigger_schedule(name)
        assert again.id != handle.id
        await again.result(timeout=10)

        # Resumed, it does not catch up what fell while paused (even with "all").
        await runtime.resume_schedule(name)
        [info] = await runtime.list_schedules()
        assert (info.paused, info.next_tick) == (False, at(start + 3 * QUARTER))
        clock.advance(start + 3 * QUARTER - clock.now())
        await settle(clock, start + 4 * QUARTER)
        ran = await results(runtime, 3)
        assert ran[-1] == at(start + 3 * QUARTER).isoformat()
        # A pause and resume between ticks loses nothing.
        await runtime.pause_schedule(name)
        await runtime.resume_schedule(name)
        clock.advance(QUARTER)
        await settle(clock, start + 5 * QUARTER)
        assert (await results(runtime, 4))[-1] == at(start + 4 * QUARTER).isoformat()


async def test_unknown_schedule_names_are_refused(make_runtime: Callable[..., rw.Runtime]):
    async with make_runtime() as runtime:
        for call in (runtime.pause_schedule, runtime.resume_schedule, runtime.trigger_schedule):
            with pytest.raises(rw.ScheduleNotFound, match="no schedule named 'nope'") as caught:
                await call("nope")
            assert caught.value.name == "nope"
        assert await runtime.list_schedules() == []


async def test_a_changed_declaration_wins_and_counts_from_its_deployment(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, schedule: Any
):
    schedule()
    start = clock.now()
    async with make_runtime():
        await settle(clock, start + QUARTER)
    clock.advance(2 * 3600 + 60)
    forget_schedule("schedules.sync_inventory")
    schedule("0 * * * *", timezone="UTC", catch_up="all")
    async with make_runtime() as runtime:
        restart = clock.now()
        await settle(clock, start + 3 * 3600)
        [info] = await runtime.list_schedules()
        assert (info.cron, info.timezone, info.catch_up) == ("0 * * * *", "UTC", "all")
        assert info.declared_at == dt.datetime.fromtimestamp(restart, UTC)
        # The hourly ticks before the new declaration belong to the old expression.
        assert await runtime.list_runs() == []
        clock.advance(start + 3 * 3600 - clock.now())
        await settle(clock, start + 4 * 3600)
        assert await results(runtime, 1) == [
            dt.datetime.fromtimestamp(start + 3 * 3600, UTC).isoformat()
        ]


async def test_a_client_runtime_neither_declares_nor_fires(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock, schedule: Any
):
    schedule()
    async with make_runtime(execute=False) as client:
        assert clock.sleeping() == 0
        assert await client.list_schedules() == []


async def test_hourly_ticks_through_the_autumn_transition_start_25_runs(
    make_runtime: Callable[..., rw.Runtime], schedule: Any
):
    schedule("0 * * * *")
    start = dt.datetime(2027, 10, 31, 0, 0, 30, tzinfo=BERLIN).timestamp()
    clock = FakeClock(start)
    async with make_runtime(clock=clock) as runtime:
        for _ in range(25):
            clock.advance(await clock.wait_for_sleeper() - clock.now())
        await settle(clock, dt.datetime(2027, 11, 1, 1, tzinfo=BERLIN).timestamp())
        ran = await results(runtime, 25)
    hours = [t.strftime("%d %H:%M%z") for t in seen]
    assert hours[:4] == ["31 01:00+0200", "31 02:00+0200", "31 02:00+0100", "31 03:00+0100"]
    assert hours[-1] == "01 00:00+0100"
    assert [t.fold for t in seen[1:3]] == [0, 1]  # the repeated hour, each time as it was
    assert ran == [t.isoformat() for t in seen]


def as_version_3(db: Path | str) -> None:
    """Make the journal look as version 3 left it: no schedules table."""
    if isinstance(db, Path):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("DROP TABLE schedules")
            conn.execute("PRAGMA user_version = 3")
        return
    import psycopg

    from runwright.journal.postgres import PgTarget

    target = PgTarget(db)
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{target.schema}"')
        conn.execute("DROP TABLE schedules")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


async def test_a_version_3_journal_gets_schedules_when_opened(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    schedule: Any,
    db_path: Path | str,
):
    async with make_runtime() as runtime:
        done = await runtime.start(sync_inventory, at(clock.now()))
        await done.result(timeout=10)
    as_version_3(db_path)
    schedule()
    start = clock.now()
    async with make_runtime() as runtime:
        await settle(clock, start + QUARTER)
        clock.advance(QUARTER)
        await settle(clock, start + 2 * QUARTER)
        assert len(await results(runtime, 2)) == 2
    if isinstance(db_path, Path):
        assert query_journal(db_path, "PRAGMA user_version") == [(SQLITE_VERSION,)]
    else:
        version = query_journal(db_path, "SELECT value FROM meta WHERE key = 'schema_version'")
        assert version == [("5",)]
    assert query_journal(db_path, "SELECT name, last_tick FROM schedules") == [
        ("schedules.sync_inventory", start + QUARTER)
    ]


async def test_a_running_loop_follows_the_journals_latest_declaration(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    schedule: Any,
    caplog: pytest.LogCaptureFixture,
):
    schedule()
    name = "schedules.sync_inventory"
    start = clock.now()
    async with make_runtime() as runtime:
        await settle(clock, start + QUARTER)
        # Another process, deployed since, declares it hourly.
        clock.advance(10)
        await runtime.journal.write(
            lambda tx: declare_schedule(
                tx, name, name, "0 * * * *", "Europe/Berlin", "latest", start + 10
            )
        )
        clock.advance(QUARTER - 10)
        await settle(clock, start + 3600)  # the quarter hours are gone
        assert await runtime.list_runs() == []
        clock.advance(3600 - QUARTER)
        await settle(clock, start + 7200)
        assert await results(runtime, 1) == [at(start + 3600).isoformat()]

        # And one that declares it for another workflow: this process leaves it alone.
        await runtime.journal.write(
            lambda tx: declare_schedule(
                tx, name, "elsewhere.report", "0 * * * *", "Europe/Berlin", "latest", start + 3600
            )
        )
        with caplog.at_level(logging.WARNING, logger="runwright"):
            clock.advance(3600)
            await settle(clock, start + 3 * 3600)
        assert len(await runtime.list_runs()) == 1
    assert (
        f"schedule {name!r}: the journal declares it for workflow 'elsewhere.report', not "
        f"{name!r}; this process does not fire it"
    ) in caplog.text


async def test_a_declaration_this_process_cannot_read_is_listed_and_left_alone(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    schedule: Any,
    caplog: pytest.LogCaptureFixture,
):
    schedule()
    name = "schedules.sync_inventory"
    start = clock.now()
    async with make_runtime() as runtime:
        await settle(clock, start + QUARTER)
        # A process with a newer time zone database declared it in a zone unknown here.
        await runtime.journal.write(
            lambda tx: declare_schedule(
                tx, name, name, "*/15 * * * *", "Mars/Olympus_Mons", "latest", start
            )
        )
        [info] = await runtime.list_schedules()
        assert (info.timezone, info.next_tick, info.paused) == ("Mars/Olympus_Mons", None, False)
        assert info.declared_at == dt.datetime.fromtimestamp(start, dt.UTC)
        with caplog.at_level(logging.WARNING, logger="runwright"):
            clock.advance(QUARTER)
            await settle(clock, start + 2 * QUARTER)
        assert await runtime.list_runs() == []
    assert (
        f"schedule {name!r}: this process cannot read its declaration (schedule {name!r}: "
        "unknown timezone 'Mars/Olympus_Mons'"
    ) in caplog.text


async def test_ticks_due_while_the_journal_refuses_writes_fire_once_it_takes_them(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    schedule: Any,
    db_path: Path | str,
    caplog: pytest.LogCaptureFixture,
):
    schedule(catch_up="all")
    start = clock.now()
    with injected(FaultPlan(), db_path) as plan:
        async with make_runtime() as runtime:
            await settle(clock, start + QUARTER)
            plan.fail(plan.transactions + 1, None)  # every write from now on, until cleared
            with caplog.at_level(logging.WARNING, logger="runwright"):
                clock.advance(3 * QUARTER)  # three ticks fall due at once
                with anyio.fail_after(10):
                    while "injected fault" not in caplog.text:  # noqa: ASYNC110
                        await anyio.sleep(0.001)
            assert await runtime.list_runs() == []
            plan.clear()
            await settle(clock, start + 4 * QUARTER)
            assert await results(runtime, 3) == [
                at(start + i * QUARTER).isoformat() for i in (1, 2, 3)
            ]
    assert "runwright: schedule 'schedules.sync_inventory': " in caplog.text
