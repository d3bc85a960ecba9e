"""The schedules table on both backends: the latest declaration wins, a tick is
claimed only while its schedule is not paused and unchanged, ``last_tick`` only moves
forward, and resuming skips what fell while paused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from runwright.journal import Journal, open_journal
from runwright.journal._schedules import (
    claim_tick,
    declare_schedule,
    schedule_row,
    schedule_rows,
    set_paused,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def journal(db_path: Path | str) -> AsyncIterator[Journal]:
    async with anyio.create_task_group() as tg:
        opened = await open_journal(db_path)
        await tg.start(opened.serve)
        try:
            yield opened
        finally:
            opened.stop_writing()
    await opened.close()


async def test_the_first_declaration_sets_where_ticks_begin(journal: Journal):
    row = await journal.write(
        lambda tx: declare_schedule(tx, "s", "wf", "*/15 * * * *", "UTC", "latest", 100.0)
    )
    assert (row.workflow, row.cron, row.timezone, row.catch_up) == (
        "wf",
        "*/15 * * * *",
        "UTC",
        "latest",
    )
    assert (row.paused, row.last_tick, row.fire_after, row.declared_at) == (
        False,
        None,
        100.0,
        100.0,
    )
    # Declaring it again the same way changes nothing.
    again = await journal.write(
        lambda tx: declare_schedule(tx, "s", "wf", "*/15 * * * *", "UTC", "latest", 200.0)
    )
    assert again == row


async def test_the_latest_declaration_wins(journal: Journal):
    await journal.write(
        lambda tx: declare_schedule(tx, "s", "wf", "*/15 * * * *", "UTC", "latest", 100.0)
    )
    # Only the policy changed: the expression's ticks still count from the first.
    row = await journal.write(
        lambda tx: declare_schedule(tx, "s", "wf", "*/15 * * * *", "UTC", "all", 200.0)
    )
    assert (row.catch_up, row.fire_after, row.declared_at) == ("all", 100.0, 200.0)
    # Another expression's ticks count from its declaration.
    row = await journal.write(
        lambda tx: declare_schedule(tx, "s", "wf", "0 * * * *", "Europe/Berlin", "all", 300.0)
    )
    assert (row.cron, row.timezone, row.fire_after, row.declared_at) == (
        "0 * * * *",
        "Europe/Berlin",
        300.0,
        300.0,
    )
    assert [r.name for r in await journal.read(schedule_rows)] == ["s"]


async def test_a_tick_is_claimed_only_while_the_schedule_allows_it(journal: Journal):
    await journal.write(
        lambda tx: declare_schedule(tx, "s", "wf", "*/15 * * * *", "UTC", "latest", 100.0)
    )

    async def claim(tick: float, cron: str = "*/15 * * * *") -> bool:
        return await journal.write(lambda tx: claim_tick(tx, "s", cron, "UTC", tick, 1.0))

    assert not await claim(100.0)  # not after the declaration
    assert await claim(900.0)
    assert await claim(900.0)  # the run's key, not the claim, makes a tick fire once
    assert not await claim(1800.0, cron="0 * * * *")  # the expression changed since
    assert await journal.write(lambda tx: set_paused(tx, "s", True, 2000.0))
    assert not await claim(2700.0)
    assert await journal.write(lambda tx: set_paused(tx, "s", False, 3000.0))
    row = await journal.read(lambda c: schedule_row(c, "s"))
    assert row is not None
    assert (row.paused, row.fire_after, row.last_tick) == (False, 3000.0, 900.0)
    assert not await claim(2700.0)  # fell while paused: skipped for good
    assert await claim(3600.0)
    assert await claim(3300.0)  # an older tick after the resume (a slow process's catch-up)
    row = await journal.read(lambda c: schedule_row(c, "s"))
    assert row is not None
    assert row.last_tick == 3600.0  # only ever moves forward


async def test_pausing_and_resuming_an_unknown_schedule_finds_nothing(journal: Journal):
    assert not await journal.write(lambda tx: set_paused(tx, "nope", True, 1.0))
    assert not await journal.write(lambda tx: set_paused(tx, "nope", False, 1.0))
    assert not await journal.write(lambda tx: claim_tick(tx, "nope", "* * * * *", "UTC", 60, 1))


async def test_resuming_a_running_schedule_skips_nothing(journal: Journal):
    await journal.write(
        lambda tx: declare_schedule(tx, "s", "wf", "*/15 * * * *", "UTC", "latest", 100.0)
    )
    assert await journal.write(lambda tx: set_paused(tx, "s", False, 5000.0))
    row = await journal.read(lambda c: schedule_row(c, "s"))
    assert row is not None
    assert (row.paused, row.fire_after) == (False, 100.0)
