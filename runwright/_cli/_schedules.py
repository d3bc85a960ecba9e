"""``schedules list``, ``schedules pause``, ``schedules resume`` and ``schedules trigger``.

``list`` reads the journal read-only: each schedule's latest declaration (by
any process), whether it is paused, its last fired tick and its next one, in
the schedule's time zone. The others write through a client runtime, which
runs no steps: a pause or a resume takes effect in every process at its
schedule's next tick; ``trigger`` journals a run of the schedule's workflow
for the time now, which a process that declares the workflow picks up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import anyio

from .._scheduler import ScheduleInfo
from ..journal._schedules import schedule_rows
from ..journal._tx import Connection
from ._common import CommandError, Target, check_journal, client, read_only, target_of
from ._format import iso_json, print_json, print_json_lines, print_table

__all__ = ["list_command", "pause_command", "resume_command", "trigger_command"]

#: The journal schema version that added schedules.
_SCHEDULES_VERSION = 4


def list_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    now = time.time()
    with read_only(target) as conn:
        version = _version(conn, target)
        if version < _SCHEDULES_VERSION:
            raise CommandError(
                f"{target.display} has journal schema version {version}, which predates "
                "schedules: upgrade it with `runwright db migrate`"
            )
        rows = schedule_rows(conn)
    try:
        schedules = [ScheduleInfo.from_row(row, now) for row in rows]
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print_json_lines(_as_json(info) for info in schedules)
        return 0
    if not schedules:
        print("no schedules")
        return 0
    table = [["NAME", "CRON", "TIMEZONE", "CATCH UP", "PAUSED", "LAST TICK", "NEXT TICK"]]
    table.extend(
        [
            info.name,
            info.cron,
            info.timezone,
            info.catch_up,
            "yes" if info.paused else "no",
            _local(info.last_tick) or "-",
            _local(info.next_tick) or "-",
        ]
        for info in schedules
    )
    print_table(table)
    return 0


def pause_command(args: argparse.Namespace) -> int:
    return _set_paused(args, True, "it starts no run until it is resumed")


def resume_command(args: argparse.Namespace) -> int:
    return _set_paused(
        args, False, "it fires from its next tick (ticks missed while paused are not)"
    )


def _set_paused(args: argparse.Namespace, paused: bool, meaning: str) -> int:
    target = target_of(args)
    check_journal(target)

    async def set_paused() -> None:
        async with client(target) as runtime:
            if paused:
                await runtime.pause_schedule(args.name)
            else:
                await runtime.resume_schedule(args.name)

    anyio.run(set_paused)
    if args.json:
        print_json({"name": args.name, "paused": paused})
        return 0
    print(f"{args.name} {'paused' if paused else 'resumed'}: {meaning}")
    return 0


def trigger_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    check_journal(target)

    async def trigger() -> str:
        async with client(target) as runtime:
            return (await runtime.trigger_schedule(args.name)).id

    run_id = anyio.run(trigger)
    if args.json:
        print_json({"name": args.name, "run_id": run_id})
    else:
        print(run_id)
    return 0


def _as_json(info: ScheduleInfo) -> dict[str, object]:
    return {
        "name": info.name,
        "workflow": info.workflow,
        "cron": info.cron,
        "timezone": info.timezone,
        "catch_up": info.catch_up,
        "paused": info.paused,
        "last_tick": _utc(info.last_tick),
        "next_tick": _utc(info.next_tick),
        "declared_at": _utc(info.declared_at),
    }


def _utc(when: dt.datetime | None) -> str | None:
    """A time as every ``--json`` output gives one: ISO 8601 in UTC."""
    return None if when is None else iso_json(when.timestamp())


def _local(when: dt.datetime | None) -> str | None:
    """A time in its schedule's zone, as ISO 8601 with its UTC offset."""
    return None if when is None else when.isoformat(timespec="seconds")


def _version(conn: Connection, target: Target) -> int:
    if target.backend == "postgresql":
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    else:
        row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])
