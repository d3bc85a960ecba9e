"""``runs list``, ``runs show``, ``runs cancel`` and ``runs prune``.

The reads open the journal read-only and never change it. ``runs cancel``
and ``runs prune`` write through a client runtime, which runs no steps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import anyio
import attrs

from .._exceptions import RunNotFound
from ..journal._attributes import ATTRIBUTES_VERSION, attributes_of
from ..journal._codec import DefaultCodec
from ..journal._events import Kind
from ..journal._queries import (
    events_of,
    list_runs,
    problem_of,
    problems_of,
    run_row,
    steps_of,
)
from ..journal._states import RunStatus
from ..journal._tx import Connection
from ._common import Target, check_journal, client, read_only, target_of
from ._format import (
    iso,
    iso_json,
    print_json,
    print_json_lines,
    print_table,
    short_type,
    summary_json,
)
from ._timeline import build_view, print_view

__all__ = [
    "cancel_command",
    "list_command",
    "parse_age",
    "parse_attribute",
    "parse_since",
    "prune_command",
    "show_command",
]


def list_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    pairs: list[tuple[str, str]] = args.attribute or []
    with read_only(target) as conn:
        kept = _has_attributes(conn, target)  # an older journal has no attributes at all
        rows = []
        if kept or not pairs:
            rows = list_runs(
                conn,
                status=args.status,
                workflow=args.workflow,
                stuck=True if args.stuck else None,
                key=args.key,
                parent=args.parent,
                since=args.since,
                attributes=pairs,
                after=args.after,
                limit=args.limit,
            )
        run_ids = [row.run_id for row in rows]
        problems = problems_of(conn, run_ids)
        attributes = attributes_of(conn, run_ids) if kept and args.json else {}
    if len(rows) == args.limit:
        print(f"runwright: more runs may follow: --after {rows[-1].run_id}", file=sys.stderr)
    if args.json:
        print_json_lines(
            {
                **summary_json(row, problems.get(row.run_id)),
                "attributes": attributes.get(row.run_id, {}),
            }
            for row in rows
        )
        return 0
    if not rows:
        print("no runs")
        return 0
    table = [["RUN ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED", "ERROR"]]
    for row in rows:
        problem = problems.get(row.run_id)
        if problem is not None:
            error = f"stuck: {problem[0]}"  # the run stays running; `runs show` says why
        else:
            error = short_type(row.error_type) if row.error_type else "-"
        table.append(
            [
                row.run_id,
                row.workflow,
                row.status,
                iso(row.created_at, "seconds"),
                iso(row.finished_at, "seconds"),
                error,
            ]
        )
    print_table(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    # One read transaction: the row, events and steps are one consistent snapshot.
    target = target_of(args)
    with read_only(target) as conn:
        row = run_row(conn, args.run_id, with_args=False)
        if row is None:
            raise RunNotFound(args.run_id)
        events = events_of(conn, args.run_id)
        # The arguments are in the run_created event: read once, not again with the row.
        created = next((e.payload for e in events if e.kind == Kind.RUN_CREATED), None)
        row = run_row(conn, args.run_id) if created is None else attrs.evolve(row, args=created)
        assert row is not None
        retry_at = {
            step.cid: step.retry_at
            for step in steps_of(conn, args.run_id)
            if step.status == "retrying"
        }
        problem = problem_of(conn, args.run_id)
        attributes = (
            attributes_of(conn, [args.run_id])[args.run_id] if _has_attributes(conn, target) else {}
        )
    view = build_view(row, events, retry_at, problem, DefaultCodec())
    view = attrs.evolve(view, attributes=attributes)
    if args.json:
        print_json(view.as_json())
    else:
        print_view(view)
    return 0


def _has_attributes(conn: Connection, target: Target) -> bool:
    """Whether the journal keeps run attributes (schema version 5 or later): a read-only
    look at an older journal upgrades nothing, and finds none."""
    if target.backend == "sqlite":
        row = conn.execute("PRAGMA user_version").fetchone()
    else:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) >= ATTRIBUTES_VERSION


def cancel_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    check_journal(target)
    run_id: str = args.run_id

    async def cancel() -> tuple[RunStatus, RunStatus]:
        async with client(target) as runtime:
            handle = runtime.get_run(run_id)
            before = await handle.status()
            await handle.cancel()
            return before, await handle.status()

    before, after = anyio.run(cancel)
    if args.json:
        print_json(
            {
                "id": run_id,
                "previous_status": before.value,
                "status": after.value,
                "cancel_requested": not before.is_terminal,
            }
        )
    elif before.is_terminal:
        print(f"{run_id} {after.value} (it had already ended; nothing was cancelled)")
    elif after.is_terminal:
        print(f"{run_id} {after.value}")
    else:
        print(
            f"{run_id} cancel requested: the process that drives it raises rw.Cancelled "
            "in its workflow, which may clean up, and the run ends cancelled"
        )
    return 0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``15m``, ``90s``, ``2w`` (or plain seconds) as seconds."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an age: {text!r} (use a number with s, m, h, d or w, e.g. 30d)"
        ) from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"an age must be > 0, got {text!r}")
    return seconds


def parse_attribute(text: str) -> tuple[str, str]:
    """``key=value`` as ``(key, value)``: the value is matched exactly against the
    attribute's text form (``vip=true``, ``retries=3``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"an attribute filter is KEY=VALUE, got {text!r}")
    return key, value


def parse_since(text: str) -> float:
    """An ISO time (UTC when it names no zone) or an age back from now, as a timestamp."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            return time.time() - parse_age(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"not a time or an age: {text!r} (e.g. 2026-11-30T08:00, or 2h, 7d)"
            ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def prune_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    check_journal(target)

    async def prune() -> tuple[int, float]:
        async with client(target) as runtime:
            cutoff = runtime.clock.now() - args.older_than
            return await runtime.prune(args.older_than, status=args.status), cutoff

    pruned, cutoff = anyio.run(prune)
    if args.json:
        print_json({"pruned": pruned, "ended_before": iso_json(cutoff)})
        return 0
    print(f"{target.display}: pruned {pruned} run(s) that ended before {iso(cutoff)}")
    return 0
