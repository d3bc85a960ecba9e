"""Schedules firing on a fake clock: how long a tick takes to start its run.

Each scenario opens runtimes on a fresh journal with a ``FakeClock`` and a
schedule ``*/15 * * * *`` (``* * * * *`` for catch-up), then moves the clock
from tick to tick:

* ``day``: one runtime, a day of quarter-hour ticks (96);
* ``two``: two runtimes on the same journal (two processes' worth of
  writers and watchers), the same day: each tick is fired by both, one run
  starts;
* ``catchup``: ``catch_up="all"`` after 1,000 one-minute ticks were missed
  while no runtime ran: the time until the reopened runtime has started them
  all (its loop sleeps again).

A tick's fire time is from moving the clock to the loop sleeping again
(every loop, for ``two``): reading the schedule's row, and claiming the tick
and creating its run in one write. ``total`` is the wall time of the whole
scenario until every run completed (each run is one step).

    python bench/schedules.py [--quick] [--db postgresql://...] [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import sys
import time
from typing import Any

import anyio
from journals import Journals
from report import format_machine, host_facts, percentile, render_table

import runwright as rw
from runwright._schedule import forget_schedule
from runwright.testing import FakeClock

QUARTER = 900.0


@rw.step(name="bench.schedule_step")
async def touch(tick: dt.datetime) -> str:
    return tick.isoformat()


@rw.workflow(name="bench.scheduled")
async def scheduled(tick: dt.datetime) -> str:
    return await touch(tick)


async def wait_for(clock: FakeClock, until: float, sleepers: int) -> None:
    with anyio.fail_after(60):
        while clock.sleeping(until) < sleepers:  # noqa: ASYNC110 (the loops' state)
            await anyio.sleep(0.0002)


async def finish(runtime: rw.Runtime, count: int) -> None:
    with anyio.fail_after(120):
        while len(runs := await runtime.list_runs(limit=count + 1)) < count:  # noqa: ASYNC110
            await anyio.sleep(0.001)
    for run in runs:
        await runtime.get_run(run.id).result(timeout=60)
    if len(runs) != count:
        raise AssertionError(f"{len(runs)} runs, expected {count}")


async def ticks(db: str, synchronous: str, count: int, runtimes: int) -> tuple[list[float], int]:
    clock = FakeClock()
    start = clock.now()
    options: dict[str, Any] = {"clock": clock, "synchronous": synchronous}
    fired: list[float] = []
    async with rw.Runtime(db, **options) as first, contextlib.AsyncExitStack() as stack:
        for _ in range(runtimes - 1):
            await stack.enter_async_context(rw.Runtime(db, **options))
        for i in range(1, count + 1):
            await wait_for(clock, start + i * QUARTER, runtimes)
            began = time.perf_counter()
            clock.advance(QUARTER)
            await wait_for(clock, start + (i + 1) * QUARTER, runtimes)
            fired.append(time.perf_counter() - began)
        await finish(first, count)
    return fired, count


async def catch_up(db: str, synchronous: str, missed: int) -> tuple[list[float], int]:
    clock = FakeClock()
    start = clock.now()
    options: dict[str, Any] = {"clock": clock, "synchronous": synchronous}
    async with rw.Runtime(db, **options):
        await wait_for(clock, start + 60, 1)
    clock.advance(missed * 60)
    began = time.perf_counter()
    async with rw.Runtime(db, **options) as runtime:
        await wait_for(clock, start + (missed + 1) * 60, 1)
        elapsed = time.perf_counter() - began
        await finish(runtime, missed)
    return [elapsed], missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="24 ticks, 100 missed")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--db", help="a postgresql:// URL (default: an SQLite file)")
    parser.add_argument("--dir", help="where SQLite journals go (default: a temporary dir)")
    args = parser.parse_args()
    count, missed = (24, 100) if args.quick else (96, 1000)
    journals = Journals(args.db, parent=args.dir)
    print(format_machine(host_facts()))
    print(f"journal: {journals.describe()}; synchronous {args.synchronous}")
    rows = [["scenario", "ticks", "runs", "total s", "fire median ms", "fire p95 ms"]]
    scenarios = [
        ("day", "*/15 * * * *", "latest", lambda db: ticks(db, args.synchronous, count, 1)),
        ("two", "*/15 * * * *", "latest", lambda db: ticks(db, args.synchronous, count, 2)),
        ("catchup", "* * * * *", "all", lambda db: catch_up(db, args.synchronous, missed)),
    ]
    for name, cron, policy, measure in scenarios:
        rw.schedule(cron, catch_up=policy)(scheduled)  # type: ignore[arg-type]
        with journals.journal(f"schedules_{name}") as db:
            began = time.perf_counter()
            fired, runs = anyio.run(measure, db)
            total = time.perf_counter() - began
        forget_schedule(scheduled.name)
        ms = [f * 1000 for f in fired]
        rows.append(
            [
                name,
                str(count if name != "catchup" else missed),
                f"{runs:,}",
                f"{total:.2f}",
                f"{statistics.median(ms):.1f}",
                f"{percentile(ms, 95):.1f}",
            ]
        )
    print(render_table(rows, right={1, 2, 3, 4, 5}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
