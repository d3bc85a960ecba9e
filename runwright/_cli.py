"""``runwright``: list, inspect and cancel runs, follow their streams, and run workers.

``runwright worker MODULE...`` imports the modules (registering their
workflows) and executes runs from the journal until SIGINT/SIGTERM; any
number of workers and client processes may share one database file.

Read commands (``runs list``, ``runs show``) open the journal read-only
(``file:...?mode=ro``), so they never create a database and never change
one; they read it while a runtime writes it (WAL); ``streams list`` does too.
``runs cancel`` writes through a client runtime (``Runtime(db, execute=False)``),
which runs no steps. ``streams tail`` reads through one, whose journal watcher
wakes it as soon as another process appends to the stream or ends the run.

Payloads are decoded with the default codec. Decoding imports the modules a
payload names (the journal is trusted); a value whose class cannot be imported
here is shown as ``<undecodable: ...>`` rather than failing the command.

Exit status: 0 on success, 1 on an error (written to stderr), 2 on a usage
error, 130 when ``streams tail`` is interrupted (SIGINT).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import importlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import attrs
import zstandard

from . import __version__
from ._exceptions import (
    DecodeError,
    RunNotFound,
    RunwrightError,
)
from ._runtime import DEFAULT_DB, Runtime
from ._streaming import DEFAULT_STREAM
from .journal._codec import DefaultCodec
from .journal._events import Event, Kind
from .journal._queries import (
    events_of,
    list_runs,
    problem_of,
    run_row,
    run_status,
    steps_of,
    streams_of,
)
from .journal._rows import RunRow, StreamRow
from .journal._states import RunStatus
from .journal.sqlite import connect_read_only
from .streams._chunks import Chunk, StreamInfo

__all__ = ["main"]

_REPR_LIMIT = 200
_MESSAGE_LIMIT = 200
_TERMINAL = frozenset(status.value for status in RunStatus if status.is_terminal)


class _CommandError(Exception):
    """A problem the command reports on stderr before exiting with status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line *argv* (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (_CommandError, RunwrightError) as exc:
        print(f"runwright: error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"runwright: error: {_db_path(args.db)}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`runwright runs list | head`); don't trace back.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runwright", description="Inspect and control runwright runs."
    )
    parser.add_argument("--version", action="version", version=f"runwright {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", required=True)
    runs = commands.add_parser("runs", help="list, show and cancel runs")
    actions = runs.add_subparsers(metavar="ACTION", required=True)

    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        metavar="PATH",
        help=f"the journal file (default: $RUNWRIGHT_DB, else ./{DEFAULT_DB})",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    listing = actions.add_parser(
        "list",
        parents=[db, as_json],
        help="list runs, newest first",
        description="List runs, newest first.",
    )
    listing.add_argument(
        "--status", choices=[s.value for s in RunStatus], help="only runs in this status"
    )
    listing.add_argument("--workflow", metavar="NAME", help="only runs of this workflow")
    listing.add_argument(
        "--limit", type=_positive_int, default=100, metavar="N", help="at most N runs (100)"
    )
    listing.set_defaults(handler=_list_command)

    show = actions.add_parser(
        "show",
        parents=[db, as_json],
        help="show one run and its timeline",
        description="Show a run: its arguments, outcome, and every step attempt and sleep.",
    )
    show.add_argument("run_id", metavar="RUN_ID")
    show.set_defaults(handler=_show_command)

    cancel = actions.add_parser(
        "cancel",
        parents=[db],
        help="cancel a run",
        description="Cancel a run that has not ended; its running steps are cancelled.",
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.set_defaults(handler=_cancel_command)

    hooks = commands.add_parser("hooks", help="deliver payloads to hooks")
    hook_actions = hooks.add_subparsers(metavar="ACTION", required=True)
    resume = hook_actions.add_parser(
        "resume",
        parents=[db],
        help="deliver a payload to the live hook holding TOKEN",
        description="Deliver a JSON payload to the live hook holding TOKEN.",
    )
    resume.add_argument("token", metavar="TOKEN")
    resume.add_argument(
        "--data", default="null", metavar="JSON", help="the payload, as JSON (default: null)"
    )
    resume.set_defaults(handler=_resume_command)

    streams = commands.add_parser("streams", help="list and follow the streams of a run")
    stream_actions = streams.add_subparsers(metavar="ACTION", required=True)
    stream_list = stream_actions.add_parser(
        "list",
        parents=[db, as_json],
        help="list the streams of a run",
        description=(
            "List the streams a run has written to, oldest first: chunks, bytes, and whether "
            "each is closed (a stream is also closed once its run ended)."
        ),
    )
    stream_list.add_argument("run_id", metavar="RUN_ID")
    stream_list.set_defaults(handler=_streams_list_command)
    tail = stream_actions.add_parser(
        "tail",
        parents=[db],
        help="print a stream's chunks as they arrive",
        description=(
            "Print the chunks of a run's stream as they become durable, and exit once the "
            "stream is closed or the run ended. Text chunks are written as they are (no "
            "newline is added), bytes raw, and any other value as one line of JSON."
        ),
    )
    tail.add_argument("run_id", metavar="RUN_ID")
    tail.add_argument(
        "name",
        nargs="?",
        default=DEFAULT_STREAM,
        metavar="NAME",
        help="the stream's name (default: %(default)s)",
    )
    tail.add_argument(
        "--start",
        type=int,
        default=0,
        metavar="N",
        help="first chunk index; negative counts back from the end (0)",
    )
    tail.add_argument(
        "--json",
        action="store_true",
        help=(
            'one JSON object per chunk: {"index", "writer", "attempt", "data"}; '
            'bytes become {"$b": BASE64}'
        ),
    )
    tail.set_defaults(handler=_tail_command)

    worker = commands.add_parser(
        "worker",
        parents=[db],
        help="run a worker process that executes runs",
        description=(
            "Import MODULEs (registering their workflows) and execute runs from the journal "
            "until SIGINT or SIGTERM, then shut down gracefully and release its runs."
        ),
    )
    worker.add_argument("modules", nargs="+", metavar="MODULE", help="modules to import")
    worker.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="SQLite durability (default FULL)",
    )
    worker.add_argument(
        "--concurrency", type=_positive_int, default=100, metavar="N", help="steps at once (100)"
    )
    worker.add_argument(
        "--lease",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="run lease; another worker takes over this long after a hang (30)",
    )
    worker.add_argument(
        "--host-id",
        metavar="NAME",
        help="this process's host in run leases (default: the host name)",
    )
    worker.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    worker.set_defaults(handler=_worker_command)
    return parser


def _resume_command(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise _CommandError(f"--data is not valid JSON: {exc}") from None
    path = _db_path(args.db)
    _connect_read_only(path).close()  # a missing or foreign file is an error, not a new journal

    async def resume() -> None:
        async with Runtime(path, execute=False) as runtime:
            await runtime.resume_hook(args.token, payload)

    anyio.run(resume)
    print(f"delivered to {args.token}")
    return 0


def _worker_command(args: argparse.Namespace) -> int:
    sys.path.insert(0, os.getcwd())
    for module in args.modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise _CommandError(f"cannot import {module!r}: {exc}") from None
    path = _db_path(args.db)

    async def serve() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with Runtime(
                path,
                synchronous=args.synchronous,
                max_concurrent_steps=args.concurrency,
                lease_seconds=args.lease,
                host_id=args.host_id,
            ) as runtime:
                print(
                    f"runwright worker {os.getpid()}: executing runs from {runtime.path}",
                    file=sys.stderr,
                    flush=True,
                )
                async for signum in signals:
                    print(
                        f"runwright worker {os.getpid()}: {signal.Signals(signum).name}, "
                        "shutting down",
                        file=sys.stderr,
                        flush=True,
                    )
                    break

    anyio.run(serve, backend=args.backend)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# -- the journal ----------------------------------------------------------------------


def _db_path(option: str | None) -> str:
    """The ``--db`` option, else ``$RUNWRIGHT_DB``, else the runtime's default."""
    if option is not None:
        return option
    return os.environ.get("RUNWRIGHT_DB", DEFAULT_DB)


def _check_journal(path: str) -> None:
    """Fail unless *path* is an existing runwright journal that this version can read."""
    conn = _connect_read_only(path)
    conn.close()


def _connect_read_only(path: str) -> sqlite3.Connection:
    if not os.path.lexists(path):
        raise _CommandError(f"no runwright database at {path}")
    return connect_read_only(path)


# -- runs list --------------------------------------------------------------------------


def _list_command(args: argparse.Namespace) -> int:
    conn = _connect_read_only(_db_path(args.db))
    try:
        rows = list_runs(conn, status=args.status, workflow=args.workflow, limit=args.limit)
    finally:
        conn.close()
    if args.json:
        _print_json([_summary_json(row) for row in rows])
        return 0
    if not rows:
        print("no runs")
        return 0
    table = [["RUN ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED", "ERROR"]]
    table.extend(
        [
            row.run_id,
            row.workflow,
            row.status,
            _iso(row.created_at, "seconds"),
            _iso(row.finished_at, "seconds"),
            _short_type(row.error_type) if row.error_type else "-",
        ]
        for row in rows
    )
    _print_table(table)
    return 0


def _summary_json(row: RunRow) -> dict[str, object]:
    return {
        "id": row.run_id,
        "workflow": row.workflow,
        "status": row.status,
        "key": row.key,
        "created_at": _iso_json(row.created_at),
        "finished_at": _iso_json(row.finished_at),
        "error_type": row.error_type,
        "error_message": row.error_message,
    }


# -- runs show --------------------------------------------------------------------------


@attrs.frozen
class _Error:
    """A recorded exception, as the journal's error payload describes it."""

    type: str
    message: str
    traceback: str

    def summary(self) -> str:
        return f"{_short_type(self.type)}: {_one_line(self.message)}"

    def as_json(self) -> dict[str, object]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


@attrs.define
class _Attempt:
    """One attempt of a step.

    ``outcome`` is ``ok``, ``retrying`` (failed, another attempt follows),
    ``failed`` (failed for good), ``running``, ``interrupted`` (a later
    attempt started without this one ending: its process stopped),
    ``cancelled`` or ``unfinished`` (the run ended first).
    """

    number: int
    started_at: float | None
    ended_at: float | None = None
    outcome: str = "running"
    error: _Error | None = None
    retry_at: float | None = None

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at) * 1000

    def as_json(self) -> dict[str, object]:
        return {
            "attempt": self.number,
            "started_at": _iso_json(self.started_at),
            "ended_at": _iso_json(self.ended_at),
            "duration_ms": None if self.duration_ms is None else round(self.duration_ms, 1),
            "outcome": self.outcome,
            "error": None if self.error is None else self.error.as_json(),
            "retry_at": _iso_json(self.retry_at),
        }


@attrs.define
class _Step:
    cid: int
    name: str
    call: str
    scheduled_at: float
    attempts: list[_Attempt] = attrs.field(factory=list)

    @property
    def status(self) -> str:
        if not self.attempts:
            return "scheduled"
        return {"ok": "completed", "failed": "failed", "retrying": "retrying"}.get(
            self.attempts[-1].outcome, "running"
        )

    def attempt(self, number: int) -> _Attempt:
        for attempt in self.attempts:
            if attempt.number == number:
                return attempt
        attempt = _Attempt(number, None)
        self.attempts.append(attempt)
        self.attempts.sort(key=lambda a: a.number)
        return attempt

    def as_json(self) -> dict[str, object]:
        return {
            "type": "step",
            "cid": self.cid,
            "name": self.name,
            "call": self.call,
            "scheduled_at": _iso_json(self.scheduled_at),
            "status": self.status,
            "attempts": [attempt.as_json() for attempt in self.attempts],
        }


@attrs.define
class _Sleep:
    cid: int
    created_at: float
    wake_at: float | None
    fired_at: float | None = None
    status: str = "pending"

    def as_json(self) -> dict[str, object]:
        return {
            "type": "sleep",
            "cid": self.cid,
            "created_at": _iso_json(self.created_at),
            "wake_at": _iso_json(self.wake_at),
            "fired_at": _iso_json(self.fired_at),
            "status": self.status,
        }


@attrs.frozen
class _Mark:
    """A run-level event (created, completed, ...), or an event kind this CLI does not know."""

    kind: str
    at: float

    def as_json(self) -> dict[str, object]:
        if self.kind.startswith("run_"):
            return {
                "type": "run",
                "event": self.kind.removeprefix("run_"),
                "at": _iso_json(self.at),
            }
        return {"type": "event", "kind": self.kind, "at": _iso_json(self.at)}


@attrs.define
class _Streamed:
    """Appends to one stream that follow each other in the timeline, or its close."""

    name: str
    at: float
    first: int
    last: int
    closed: bool = False

    def as_json(self) -> dict[str, object]:
        if self.closed:
            return {"type": "stream", "name": self.name, "closed": True, "at": _iso_json(self.at)}
        return {
            "type": "stream",
            "name": self.name,
            "chunks": [self.first, self.last],
            "at": _iso_json(self.at),
        }


_Entry = _Step | _Sleep | _Mark | _Streamed


@attrs.frozen
class _RunView:
    row: RunRow
    args: str
    result: str | None
    error: _Error | None
    problem: tuple[str, str, float] | None
    timeline: list[_Entry]

    def as_json(self) -> dict[str, object]:
        row = self.row
        problem = None
        if self.problem is not None:
            kind, message, at = self.problem
            problem = {"kind": kind, "message": message, "at": _iso_json(at)}
        summary = _summary_json(row)
        del summary["error_type"], summary["error_message"]
        return {
            **summary,
            "args": self.args,
            "result": self.result,
            "error": None if self.error is None else self.error.as_json(),
            "problem": problem,
            "timeline": [entry.as_json() for entry in self.timeline],
        }


def _show_command(args: argparse.Namespace) -> int:
    conn = _connect_read_only(_db_path(args.db))
    try:
        # One read transaction: the row, events and steps are one consistent snapshot.
        conn.execute("BEGIN")
        row = run_row(conn, args.run_id)
        if row is None:
            raise RunNotFound(args.run_id)
        events = events_of(conn, args.run_id)
        retry_at = {
            step.cid: step.retry_at
            for step in steps_of(conn, args.run_id)
            if step.status == "retrying"
        }
        problem = problem_of(conn, args.run_id)
    finally:
        conn.close()
    view = _build_view(row, events, retry_at, problem, DefaultCodec())
    if args.json:
        _print_json(view.as_json())
    else:
        _print_view(view)
    return 0


def _build_view(
    row: RunRow,
    events: list[Event],
    retry_at: dict[int, float | None],
    problem: tuple[str, str, float] | None,
    codec: DefaultCodec,
) -> _RunView:
    timeline: list[_Entry] = []
    steps: dict[int, _Step] = {}
    sleeps: dict[int, _Sleep] = {}

    def step_of(event: Event) -> _Step:
        assert event.cid is not None
        step = steps.get(event.cid)
        if step is None:
            step = steps[event.cid] = _Step(
                event.cid, event.name or "?", event.name or "?", event.at
            )
            timeline.append(step)
        return step

    for event in events:
        kind = event.kind
        if kind == Kind.STEP_SCHEDULED and event.cid is not None:
            step = step_of(event)
            step.call = _call(step.name, _decode(codec, event.payload))
        elif kind == Kind.STEP_STARTED and event.cid is not None and event.attempt is not None:
            step = step_of(event)
            for earlier in step.attempts:
                if earlier.outcome == "running":
                    earlier.outcome = "interrupted"
            step.attempt(event.attempt).started_at = event.at
        elif (
            kind in (Kind.STEP_RETRYING, Kind.STEP_COMPLETED, Kind.STEP_FAILED)
            and event.cid is not None
            and event.attempt is not None
        ):
            attempt = step_of(event).attempt(event.attempt)
            attempt.ended_at = event.at
            if kind == Kind.STEP_COMPLETED:
                attempt.outcome = "ok"
            else:
                attempt.outcome = "retrying" if kind == Kind.STEP_RETRYING else "failed"
                attempt.error = _error(codec, event.payload)
        elif kind == Kind.WAIT_CREATED and event.cid is not None:
            wake_at = _decode(codec, event.payload)
            sleep = _Sleep(event.cid, event.at, wake_at if isinstance(wake_at, float) else None)
            sleeps[event.cid] = sleep
            timeline.append(sleep)
        elif kind == Kind.WAIT_COMPLETED and event.cid in sleeps:
            sleeps[event.cid].fired_at = event.at
            sleeps[event.cid].status = "fired"
        elif kind == Kind.STREAM_APPENDED:
            first, _, last = (event.payload or b"").decode().partition("-")
            if not (first.isdigit() and last.isdigit()):
                timeline.append(_Mark(kind, event.at))
                continue
            previous = timeline[-1] if timeline else None
            if (
                isinstance(previous, _Streamed)
                and previous.name == event.name
                and not previous.closed
                and previous.last + 1 == int(first)
            ):
                previous.last = int(last)
            else:
                timeline.append(_Streamed(event.name or "?", event.at, int(first), int(last)))
        elif kind == Kind.STREAM_CLOSED:
            timeline.append(_Streamed(event.name or "?", event.at, 0, -1, closed=True))
        elif kind != Kind.STEP_SCHEDULED:
            timeline.append(_Mark(kind, event.at))

    ended = row.status in _TERMINAL
    for step in steps.values():
        for attempt in step.attempts:
            if attempt.outcome == "running" and ended:
                attempt.outcome = "cancelled" if row.status == "cancelled" else "unfinished"
        if step.attempts and step.attempts[-1].outcome == "retrying":
            step.attempts[-1].retry_at = retry_at.get(step.cid)
    for sleep in sleeps.values():
        if sleep.status == "pending" and ended:
            sleep.status = "cancelled"

    result = error = None
    if row.status == "completed" and row.outcome is not None:
        result = _shorten(_repr(_decode(codec, row.outcome)))
    elif row.status == "failed":
        if row.outcome is not None:
            error = _error(codec, row.outcome)
        else:
            error = _Error(row.error_type or "?", row.error_message or "", "")
    args = _call("", _decode(codec, row.args))
    return _RunView(row, args, result, error, problem, timeline)


def _print_view(view: _RunView) -> None:
    row = view.row
    fields = [
        ("run", row.run_id),
        ("workflow", row.workflow),
        ("status", row.status),
        ("key", row.key if row.key is not None else "-"),
        ("created", _iso(row.created_at)),
        ("finished", _iso(row.finished_at)),
        ("args", view.args),
    ]
    if view.result is not None:
        fields.append(("result", view.result))
    if view.error is not None:
        fields.append(("error", view.error.summary()))
    for label, value in fields:
        print(f"{label:<9} {value}")
    if view.problem is not None:
        kind, message, at = view.problem
        print()
        print(f"PROBLEM: {kind}: {message}")
        print(f"         (recorded {_iso(at)}; the run cannot advance until this is fixed)")
    print()
    print("timeline")
    for entry in view.timeline:
        for line in _entry_lines(entry):
            print(f"  {line}")
    if view.error is not None and view.error.traceback:
        print()
        print("traceback of the run's error")
        for line in view.error.traceback.rstrip().splitlines():
            print(f"  {line}")


def _entry_lines(entry: _Entry) -> list[str]:
    """Timeline rows: a time column, then what happened (attempts indented under their step)."""
    if isinstance(entry, _Mark):
        what = entry.kind.replace("_", " ") if entry.kind.startswith("run_") else entry.kind
        return [_row(entry.at, what)]
    if isinstance(entry, _Streamed):
        if entry.closed:
            return [_row(entry.at, f"stream {entry.name!r} closed")]
        span = (
            f"chunk {entry.first}"
            if entry.first == entry.last
            else f"chunks {entry.first}-{entry.last}"
        )
        return [_row(entry.at, f"stream {entry.name!r}: {span}")]
    if isinstance(entry, _Sleep):
        until = f"sleep #{entry.cid} until {_iso(entry.wake_at)}"
        if entry.status == "fired":
            return [_row(entry.created_at, until), _row(entry.fired_at, "  fired")]
        return [_row(entry.created_at, f"{until} ({entry.status})")]
    lines = [_row(entry.scheduled_at, f"step #{entry.cid} {entry.call}: {entry.status}")]
    for attempt in entry.attempts:
        duration = "-" if attempt.duration_ms is None else f"{attempt.duration_ms:.1f} ms"
        outcome = attempt.outcome
        if attempt.error is not None:
            outcome = f"error {attempt.error.summary()}"
        if attempt.outcome == "retrying":
            later = [a.started_at for a in entry.attempts if a.number > attempt.number]
            if later and later[0] is not None:
                outcome += f"; retried at {_iso(later[0])}"
            elif attempt.retry_at is not None:
                outcome += f"; retry at {_iso(attempt.retry_at)}"
        lines.append(
            _row(attempt.started_at, f"  attempt {attempt.number}  {duration:>9}  {outcome}")
        )
    return lines


def _row(at: float | None, text: str) -> str:
    return f"{_iso(at):<24}  {text}"


# -- runs cancel ------------------------------------------------------------------------


def _cancel_command(args: argparse.Namespace) -> int:
    path = _db_path(args.db)
    _check_journal(path)  # a client runtime would create a missing database
    run_id: str = args.run_id

    async def cancel() -> tuple[RunStatus, RunStatus]:
        async with Runtime(path, execute=False) as runtime:
            handle = runtime.get_run(run_id)
            before = await handle.status()
            await handle.cancel()
            return before, await handle.status()

    before, after = anyio.run(cancel)
    if before.is_terminal:
        print(f"{run_id} {after.value} (it had already ended; nothing was cancelled)")
    elif after.is_terminal:
        print(f"{run_id} {after.value}")
    else:
        print(
            f"{run_id} cancel requested: the process that drives it raises rw.Cancelled "
            "in its workflow, which may clean up, and the run ends cancelled"
        )
    return 0


# -- streams list -----------------------------------------------------------------------


def _streams_list_command(args: argparse.Namespace) -> int:
    conn = _connect_read_only(_db_path(args.db))
    try:
        conn.execute("BEGIN")  # the run's status and its streams from one snapshot
        status = run_status(conn, args.run_id)
        if status is None:
            raise RunNotFound(args.run_id)
        rows: list[StreamRow] = []
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'streams'").fetchone():
            rows = streams_of(conn, args.run_id)  # a journal older than streams has none
    finally:
        conn.close()
    infos = [StreamInfo.of(row, status) for row in rows]
    if args.json:
        _print_json(
            [
                {"name": i.name, "chunks": i.chunks, "bytes": i.bytes, "closed": i.closed}
                for i in infos
            ]
        )
        return 0
    if not infos:
        print("no streams")
        return 0
    table = [["NAME", "CHUNKS", "BYTES", "CLOSED"]]
    table.extend([i.name, str(i.chunks), str(i.bytes), "yes" if i.closed else "no"] for i in infos)
    _print_table(table)
    return 0


# -- streams tail -----------------------------------------------------------------------


@attrs.frozen
class _LenientCodec:
    """The default codec, except that a value it cannot decode becomes an ``_Undecodable``:
    one chunk whose class cannot be imported here must not end the tail."""

    inner: DefaultCodec = attrs.Factory(DefaultCodec)

    def encode(self, value: object) -> bytes:
        return self.inner.encode(value)

    def decode(self, data: bytes) -> object:
        return _decode(self.inner, data)


def _tail_command(args: argparse.Namespace) -> int:
    path = _db_path(args.db)
    _check_journal(path)  # a client runtime would create a missing database
    run_id: str = args.run_id
    name: str = args.name
    start: int = args.start
    emit = _emit_json if args.json else _emit_chunk

    async def tail() -> None:
        async with Runtime(path, execute=False, codec=_LenientCodec()) as runtime:
            async for chunk in runtime.get_run(run_id).stream(name, start=start):
                emit(chunk)

    try:
        anyio.run(tail)
    except KeyboardInterrupt:
        return 130
    return 0


def _emit_chunk(chunk: Chunk) -> None:
    """A chunk as its writer meant it: text as is, bytes raw, any other value as a JSON line."""
    data = chunk.data
    if isinstance(data, str):
        _write_text(data)
    elif isinstance(data, bytes):
        sys.stdout.flush()
        binary = getattr(sys.stdout, "buffer", None)
        if binary is None:  # stdout was replaced by a text-only stream
            _write_text(data.decode("utf-8", "backslashreplace"))
            return
        binary.write(data)
        binary.flush()
    else:
        _write_text(json.dumps(_jsonable(data), ensure_ascii=False) + "\n")


def _emit_json(chunk: Chunk) -> None:
    record = {
        "index": chunk.index,
        "writer": chunk.writer,
        "attempt": chunk.attempt,
        "data": _jsonable(chunk.data),
    }
    _write_text(json.dumps(record) + "\n")


def _write_text(text: str) -> None:
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:  # a lone surrogate, or a character the locale cannot encode
        encoding = sys.stdout.encoding or "utf-8"
        sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding))
    sys.stdout.flush()


def _jsonable(value: object) -> object:
    """*value* as JSON can hold it: bytes as ``{"$b": base64}`` (the codec's tag), tuples and
    sets as lists, and anything else JSON has no form for as its repr."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, bytes | bytearray):
        return {"$b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_jsonable(item) for item in value]
        try:
            return sorted(items)  # type: ignore[type-var]
        except TypeError:
            return items
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else _repr(key): _jsonable(item)
            for key, item in value.items()
        }
    return _repr(value)


# -- formatting -------------------------------------------------------------------------


@attrs.frozen
class _Undecodable:
    reason: str

    def __repr__(self) -> str:
        return f"<undecodable: {self.reason}>"


def _decode(codec: DefaultCodec, data: bytes | None) -> object:
    if data is None:
        return None
    try:
        return codec.decode(data)
    except DecodeError as exc:
        return _Undecodable(str(exc))


def _error(codec: DefaultCodec, data: bytes | None) -> _Error:
    """The type, message and traceback of an error payload, even if its values won't decode."""
    info = _decode(codec, data)
    if isinstance(info, _Undecodable) and data is not None:
        info = _raw_json(data)
    if not isinstance(info, dict):
        return _Error("?", repr(info), "")
    return _Error(
        str(info.get("type", "?")),
        str(info.get("message", "")),
        str(info.get("traceback") or ""),
    )


def _raw_json(data: bytes) -> object:
    """A JSON payload parsed without rebuilding tagged values (which may need missing classes)."""
    try:
        if data[:1] == b"\x01":
            return json.loads(data[1:])
        if data[:1] == b"\x02":
            return json.loads(zstandard.ZstdDecompressor().decompress(data[1:]))
    except (ValueError, zstandard.ZstdError):
        pass
    return None


def _call(name: str, decoded: object) -> str:
    """``name(1, 'a', flag=True)`` from a decoded ``(args, kwargs)`` pair."""
    if (
        isinstance(decoded, tuple)
        and len(decoded) == 2
        and isinstance(decoded[0], tuple | list)
        and isinstance(decoded[1], dict)
    ):
        parts = [_repr(value) for value in decoded[0]]
        parts.extend(f"{key}={_repr(value)}" for key, value in decoded[1].items())
        return _shorten(f"{name}({', '.join(parts)})")
    return _shorten(f"{name}{_repr(decoded)}" if name else _repr(decoded))


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<unprintable {type(value).__name__}: {exc!r}>"


def _shorten(text: str, limit: int = _REPR_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(message: str) -> str:
    lines = message.strip().splitlines()
    if not lines:
        return ""
    text = lines[0] + (" ..." if len(lines) > 1 else "")
    return _shorten(text, _MESSAGE_LIMIT)


def _short_type(type_name: str) -> str:
    return type_name.removeprefix("builtins:")


def _iso(timestamp: float | None, timespec: str = "milliseconds") -> str:
    if timestamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def _iso_json(timestamp: float | None) -> str | None:
    return None if timestamp is None else _iso(timestamp, "microseconds")


def _print_table(table: list[list[str]]) -> None:
    """Rows of cells in left-aligned columns; the first row is the header."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    raise SystemExit(main())
