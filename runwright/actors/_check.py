"""The replay check: a run's recorded history against the workflow code loaded now.

:func:`check_run` replays one run in memory, as a runtime would rebuild it,
but carries nothing out: no step runs, nothing is written. It reports the
first place where the code and the journal disagree:

- a position where the journal recorded one command and the code asks for
  another (or for nothing: the code waits, or returns, without asking for
  what the run recorded next);
- a run that ended whose code still waits, asks for more, or ends the other
  way (returns where the run failed, or raises where it completed).

A run that is still going may have outcomes its driver has not applied yet
(a hook payload or a cancel written by another process), so commands past
its recorded history are what would follow, not a divergence.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import attrs

from .._definitions import lookup_workflow
from .._exceptions import DecodeError, NonDeterminismError, UnknownWorkflowError
from ..journal._codec import Codec
from ..journal._events import RESOLUTION_KINDS, Event
from ..journal._queries import events_of_runs, run_row, runs_after
from ..journal._rows import RunRow
from ..journal._tx import Connection
from ._commands import CancelCommand, Command, Failure, HookDisposeCommand, describe
from ._history import apply_event, read_history
from ._interpreter import Interpreter
from ._messages import RunContext

__all__ = ["ReplayResult", "check_journal", "check_run"]


@attrs.frozen
class ReplayResult:
    """How one run replayed: ``ok``, or the first divergence (or why it could not)."""

    run_id: str
    workflow: str
    status: str
    #: None when the run replayed; otherwise what went wrong, in words.
    problem: str | None = None
    #: Where the code and the journal first disagree (for a divergence).
    position: int | None = None
    recorded: str | None = None
    requested: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        return "replays" if self.problem is None else self.problem


def check_run(row: RunRow, events: Iterable[Event], codec: Codec) -> ReplayResult:
    """Replay *row*'s history (its *events*, in journal order) against the loaded code."""
    run_id, status = row.run_id, row.status

    def diverged(position: int, recorded: str, requested: str) -> ReplayResult:
        problem = (
            f"at position {position} the journal recorded {recorded}; "
            f"the code now asks for {requested}"
        )
        return ReplayResult(run_id, row.workflow, status, problem, position, recorded, requested)

    if status == "pending":
        return ReplayResult(run_id, row.workflow, status)  # never started: nothing recorded
    try:
        definition = lookup_workflow(row.workflow, run_id)
        args, kwargs = cast("tuple[list[Any], dict[str, Any]]", codec.decode(row.args))
    except (UnknownWorkflowError, DecodeError) as exc:
        return ReplayResult(run_id, row.workflow, status, str(exc))
    events = list(events)
    history = read_history(run_id, events, codec)
    recorded = history.recorded
    if not recorded and status == "cancelled":
        return ReplayResult(run_id, row.workflow, status)  # cancelled before it started
    started = dt.datetime.fromtimestamp(row.created_at, dt.UTC)
    interpreter = Interpreter(
        run_id,
        lambda: definition.fn(*args, **kwargs),
        started_at=row.created_at,
        recorded=recorded,
        hook_tokens=history.tokens,
        info=RunContext(run_id, row.workflow, started, codec),
    )
    extra: list[tuple[int, tuple[str, str]]] = []

    def collect(commands: list[Command]) -> None:
        for c in commands:
            if isinstance(c, HookDisposeCommand | CancelCommand) or c.cid in recorded:
                continue
            if c.label[0] != "patch":
                extra.append((c.cid, c.label))

    try:
        collect(interpreter.start())
        for event in events:
            if event.kind in RESOLUTION_KINDS:
                collect(apply_event(interpreter, event, codec))
    except NonDeterminismError as exc:
        return diverged(exc.position, exc.recorded, exc.requested)
    except DecodeError as exc:
        return ReplayResult(run_id, row.workflow, status, str(exc))
    finally:
        interpreter.close()
    outcome = interpreter.outcome
    if outcome is None and (missing := interpreter.unissued_recorded()) is not None:
        return diverged(missing, describe(recorded[missing]), "nothing: it waits before that")
    if status not in ("completed", "failed", "cancelled"):
        return ReplayResult(run_id, row.workflow, status)
    if extra:
        cid, label = extra[0]
        return diverged(cid, f"nothing more (the run {status})", describe(label))
    if outcome is None:
        return diverged(interpreter.issued, f"the run's end ({status})", "it to wait")
    ended = "failed" if isinstance(outcome, Failure) else "completed"
    if status != "cancelled" and ended != status:
        return diverged(interpreter.issued, f"the run's end ({status})", f"it to have {ended}")
    return ReplayResult(run_id, row.workflow, status)


def check_journal(
    conn: Connection,
    codec: Codec,
    *,
    run_ids: Sequence[str] = (),
    statuses: Sequence[str] = (),
    batch: int = 500,
) -> Iterator[ReplayResult]:
    """Check the runs *run_ids* (else every run, or those in *statuses*), in id order,
    reading their events *batch* runs at a time."""
    if run_ids:
        rows = []
        for run_id in run_ids:
            row = run_row(conn, run_id)
            if row is None:
                yield ReplayResult(run_id, "?", "-", f"no run with id {run_id!r} in this journal")
            elif not statuses or row.status in statuses:
                rows.append(row)
        pages: Iterable[list[RunRow]] = [rows[i : i + batch] for i in range(0, len(rows), batch)]
    else:
        pages = _pages(conn, list(statuses), batch)
    for page in pages:
        events = events_of_runs(conn, [row.run_id for row in page])
        for row in page:
            yield check_run(row, events[row.run_id], codec)


def _pages(conn: Connection, statuses: list[str], batch: int) -> Iterator[list[RunRow]]:
    after = ""
    while page := runs_after(conn, after, statuses=statuses or None, limit=batch):
        yield page
        after = page[-1].run_id
