"""``runwright``: list, inspect and cancel runs, follow their streams, run workers, and
create or describe the journal.

Every command works on the journal named by ``--db`` (else ``$RUNWRIGHT_DB``,
else ``./runwright.db``): an SQLite file, or a ``postgresql://`` URL whose
``?schema=`` (or ``--schema``) names the schema that holds it. A URL's
password is never shown, in output or in errors.

Read commands (``runs list``, ``runs show``, ``streams list``, ``db info``)
open the journal read-only (an SQLite file with ``mode=ro``; a PostgreSQL
session whose transactions are all read-only), so they never create a
journal and never change one; they read it while runtimes write it.
``runs cancel``, ``hooks resume`` and ``schedules pause|resume|trigger`` write through
a client runtime
(``Runtime(db, execute=False)``), which runs no steps. ``streams tail``
reads through one, whose journal watcher wakes it as soon as another process
appends to the stream or ends the run. ``db migrate`` creates or upgrades the
journal; ``worker`` executes runs; ``replay`` checks that the loaded code
still replays the journal's runs (reading it read-only); ``ui`` serves the web
view (``runwright.web``) through a client runtime.

The commands live in ``_runs``, ``_hooks``, ``_streams``, ``_schedules``, ``_db``, ``_worker``,
``_replay`` and ``_ui``; what
they share (the journal's address, a read-only connection, errors) in
``_common``, and how they print in ``_format``.

Output for machines: every ``runs``, ``hooks``, ``streams`` and ``schedules``
command (and ``db info`` and ``replay``) takes ``--json``. A list prints one
JSON object per line (JSON Lines), nothing when it is empty; any other command
prints one object on one line; ``streams tail --json`` one object per chunk.
Fields are snake_case and keep their names; times are ISO 8601 strings in UTC
(``2027-01-15T08:00:00.000000Z``) or null. An error is still a line of text
on stderr with exit status 1 (2 for a usage error), and nothing on stdout.

Exit status: 0 on success, 1 on an error (written to stderr), 2 on a usage
error, 130 when ``streams tail`` is interrupted (SIGINT).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import __version__
from .._exceptions import RunwrightError
from .._runtime import DEFAULT_DB
from .._streaming import DEFAULT_STREAM
from ..journal import driver_error_text, driver_errors
from ..journal._states import RunStatus
from . import _db, _hooks, _replay, _runs, _schedules, _streams, _ui, _worker
from ._common import CommandError, raw_target

__all__ = ["main"]

if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]


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
    except (CommandError, RunwrightError) as exc:
        return _fail(args, str(exc))
    except driver_errors() as exc:
        target = raw_target(args)
        return _fail(args, f"{target.display}: {driver_error_text(exc)}")
    except BrokenPipeError:
        # The reader went away (`runwright runs list | head`); don't trace back.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"runwright: error: {raw_target(args).hide_password(message)}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runwright", description="Inspect and control runwright runs."
    )
    parser.add_argument("--version", action="version", version=f"runwright {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", required=True)

    db = argparse.ArgumentParser(add_help=False)
    db.add_argument(
        "--db",
        metavar="PATH|URL",
        help=(
            "the journal: an SQLite file, or postgresql://user:password@host:port/dbname"
            f"?schema=name (default: $RUNWRIGHT_DB, else ./{DEFAULT_DB})"
        ),
    )
    db.add_argument(
        "--schema",
        metavar="NAME",
        help="the PostgreSQL schema that holds the journal (default: the URL's, else runwright)",
    )
    _add_runs(commands, db)
    _add_hooks(commands, db)
    _add_streams(commands, db)
    _add_schedules(commands, db)
    _add_db(commands, db)
    _add_worker(commands, db)
    _add_replay(commands, db)
    _ui.add_parser(commands, db)
    return parser


def _add_runs(
    commands: _Commands,
    db: argparse.ArgumentParser,
) -> None:
    runs = commands.add_parser("runs", help="list, show and cancel runs")
    actions = runs.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[db],
        help="list runs, newest first",
        description=(
            "List runs, newest first. Filters combine: a run is listed if it matches them "
            "all. When N runs are listed, stderr names the --after that gives the next page."
        ),
    )
    listing.add_argument(
        "--status", choices=[s.value for s in RunStatus], help="only runs in this status"
    )
    listing.add_argument("--workflow", metavar="NAME", help="only runs of this workflow")
    listing.add_argument(
        "--stuck",
        action="store_true",
        help="only runs that cannot advance (replay divergence, unknown workflow, ...)",
    )
    listing.add_argument("--key", metavar="KEY", help="only the run that holds this key")
    listing.add_argument("--parent", metavar="RUN_ID", help="only the children of this run")
    listing.add_argument(
        "--since",
        type=_runs.parse_since,
        metavar="WHEN",
        help=(
            "only runs created since WHEN: an ISO 8601 time (UTC if it names no zone) or "
            "an age back from now (90s, 10m, 2h, 3d, 2w)"
        ),
    )
    listing.add_argument(
        "--attribute",
        action="append",
        type=_runs.parse_attribute,
        metavar="KEY=VALUE",
        help=(
            "only runs whose attribute KEY has this text form (customer=c-17, vip=true); "
            "repeatable: a run must have them all"
        ),
    )
    listing.add_argument(
        "--after",
        metavar="RUN_ID",
        help="the next page: runs listed after this one (the last of the previous page)",
    )
    listing.add_argument(
        "--limit", type=_positive_int, default=100, metavar="N", help="at most N runs (100)"
    )
    _json(listing, listing=True)
    listing.set_defaults(handler=_runs.list_command)

    show = actions.add_parser(
        "show",
        parents=[db],
        help="show one run and its timeline",
        description="Show a run: its arguments, outcome, and every step attempt and sleep.",
    )
    show.add_argument("run_id", metavar="RUN_ID")
    _json(show, listing=False)
    show.set_defaults(handler=_runs.show_command)

    prune = actions.add_parser(
        "prune",
        parents=[db],
        help="delete runs that ended long ago",
        description=(
            "Delete runs that ended more than AGE ago with their events, steps, waits, hooks "
            "and streams, in small transactions (running runs are never touched, nor a run "
            "whose child or parent is still going). `db vacuum` gives the space back."
        ),
    )
    prune.add_argument(
        "--older-than",
        required=True,
        type=_runs.parse_age,
        metavar="AGE",
        help="e.g. 30d, 12h, 15m, 90s, 2w",
    )
    prune.add_argument(
        "--status",
        action="append",
        choices=["completed", "failed", "cancelled"],
        help="only runs that ended so (repeatable; default: all three)",
    )
    _json(prune, listing=False)
    prune.set_defaults(handler=_runs.prune_command)
    cancel = actions.add_parser(
        "cancel",
        parents=[db],
        help="cancel a run",
        description="Cancel a run that has not ended; its running steps are cancelled.",
    )
    cancel.add_argument("run_id", metavar="RUN_ID")
    _json(cancel, listing=False)
    cancel.set_defaults(handler=_runs.cancel_command)


def _add_hooks(
    commands: _Commands,
    db: argparse.ArgumentParser,
) -> None:
    hooks = commands.add_parser("hooks", help="list live hooks, deliver payloads to them")
    actions = hooks.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[db],
        help="list live hooks and their tokens",
        description="List the live hooks (of one run, with RUN_ID): token, run and position.",
    )
    listing.add_argument("run_id", nargs="?", metavar="RUN_ID")
    _json(listing, listing=True)
    listing.set_defaults(handler=_hooks.list_command)
    resume = actions.add_parser(
        "resume",
        parents=[db],
        help="deliver a payload to the live hook holding TOKEN",
        description="Deliver a JSON payload to the live hook holding TOKEN.",
    )
    resume.add_argument("token", metavar="TOKEN")
    resume.add_argument(
        "--data", default="null", metavar="JSON", help="the payload, as JSON (default: null)"
    )
    _json(resume, listing=False)
    resume.set_defaults(handler=_hooks.resume_command)


def _add_streams(
    commands: _Commands,
    db: argparse.ArgumentParser,
) -> None:
    streams = commands.add_parser("streams", help="list and follow the streams of a run")
    actions = streams.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[db],
        help="list the streams of a run",
        description=(
            "List the streams a run has written to, oldest first: chunks, bytes, and whether "
            "each is closed (a stream is also closed once its run ended)."
        ),
    )
    listing.add_argument("run_id", metavar="RUN_ID")
    _json(listing, listing=True)
    listing.set_defaults(handler=_streams.list_command)
    tail = actions.add_parser(
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
    tail.set_defaults(handler=_streams.tail_command)


def _add_schedules(
    commands: _Commands,
    db: argparse.ArgumentParser,
) -> None:
    schedules = commands.add_parser("schedules", help="list, pause, resume and trigger schedules")
    actions = schedules.add_subparsers(metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=[db],
        help="list schedules: cron, time zone, catch-up, paused, last and next tick",
        description=(
            "List the schedules in the journal, as the last process to declare each one "
            "declared it: cron expression, time zone, catch-up policy, whether it is paused, "
            "its last fired tick and its next one (in its time zone)."
        ),
    )
    _json(listing, listing=True)
    listing.set_defaults(handler=_schedules.list_command)
    for action, handler, text in (
        ("pause", _schedules.pause_command, "stop a schedule firing, in every process"),
        (
            "resume",
            _schedules.resume_command,
            "let a paused schedule fire again from its next tick",
        ),
        (
            "trigger",
            _schedules.trigger_command,
            "start a run of a schedule now (paused or not); prints its id",
        ),
    ):
        parser = actions.add_parser(
            action, parents=[db], help=text, description=text[0].upper() + text[1:] + "."
        )
        parser.add_argument("name", metavar="NAME", help="the schedule's name")
        _json(parser, listing=False)
        parser.set_defaults(handler=handler)


def _add_db(
    commands: _Commands,
    db: argparse.ArgumentParser,
) -> None:
    journal = commands.add_parser("db", help="create, upgrade and describe the journal")
    actions = journal.add_subparsers(metavar="ACTION", required=True)
    migrate = actions.add_parser(
        "migrate",
        parents=[db],
        help="create the journal, or upgrade it to this version's schema",
        description=(
            "Create the journal (its tables; on PostgreSQL, in its schema), or upgrade it to "
            "the schema version this runwright uses, and say which was done. Opening a "
            "runtime does the same unless it is given migrate=False."
        ),
    )
    migrate.set_defaults(handler=_db.migrate_command)
    info = actions.add_parser(
        "info",
        parents=[db],
        help="describe the journal: version, runs by status, lease holders",
        description=(
            "Describe the journal: its backend, address (without a password), schema "
            "version, how many runs are in each status, and which processes hold leases "
            "on runs, with when each lease expires by the journal's clock."
        ),
    )
    _json(info, listing=False)
    info.set_defaults(handler=_db.info_command)
    vacuum = actions.add_parser(
        "vacuum",
        parents=[db],
        help="give back the space pruned runs held",
        description=(
            "SQLite: rewrite the file without the pages pruning freed (writers wait while it "
            "runs). PostgreSQL: VACUUM every journal table."
        ),
    )
    vacuum.set_defaults(handler=_db.vacuum_command)


def _add_worker(
    commands: _Commands,
    db: argparse.ArgumentParser,
) -> None:
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
        "--shutdown-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long running steps may take to finish (10)",
    )
    worker.add_argument(
        "--host-id",
        metavar="NAME",
        help="this process's host in run leases (default: the host name)",
    )
    worker.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    worker.set_defaults(handler=_worker.worker_command)


def _add_replay(
    commands: _Commands,
    db: argparse.ArgumentParser,
) -> None:
    replay = commands.add_parser(
        "replay",
        parents=[db],
        help="check that the loaded code still replays the journal's runs",
        description=(
            "Import MODULEs (registering their workflows) and replay each selected run's "
            "recorded history against them in memory: no step runs, nothing is written. "
            "Prints ok or the first divergence per run; exits 1 if any run diverged."
        ),
    )
    replay.add_argument("modules", nargs="+", metavar="MODULE", help="modules to import")
    replay.add_argument("--run", action="append", metavar="ID", help="only this run (repeatable)")
    replay.add_argument(
        "--status",
        action="append",
        choices=[status.value for status in RunStatus],
        help="only runs in this status (repeatable; default: every run)",
    )
    _json(replay, listing=True)
    replay.set_defaults(handler=_replay.replay_command)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _json(parser: argparse.ArgumentParser, *, listing: bool) -> None:
    """``--json``: see "Output for machines" in the module's docstring."""
    parser.add_argument(
        "--json",
        action="store_true",
        help=(
            "print one JSON object per line (JSON Lines), none if there are none"
            if listing
            else "print one JSON object, on one line"
        )
        + "; snake_case fields, times in ISO 8601 UTC; errors stay text on stderr",
    )
