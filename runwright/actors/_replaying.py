"""How a run actor rebuilds its run from the journal (after a restart, a takeover or
an eviction): read the run's new events, replay the workflow body against them,
journal what the replay issued that the journal lacks, and resume the steps
and timers that were in progress.

A replay is a fresh interpreter fed every recorded outcome in journal order;
decoded step results come from the hydration cache, so a hot replay does not
decode them again.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ..journal._events import DEADLINE_CID, RESOLUTION_KINDS, Event, Kind
from ..journal._queries import events_of, steps_of, waits_of
from ..journal._rows import StepRow, WaitRow
from ..journal._tx import Tx
from ._commands import CancelCommand, Command, HookDisposeCommand, StepCommand
from ._history import apply_event, read_history
from ._interpreter import Interpreter
from ._writes import LostOwnership, journal_commands, positions

if TYPE_CHECKING:
    from ._actor import RunActor

__all__ = [
    "apply_outcome",
    "catch_up",
    "journal_new",
    "rebuild",
    "rebuild_and_resume",
    "replay",
    "result_of",
]

_ENDED_STEP = frozenset({"completed", "failed", "cancelled"})


async def rebuild_and_resume(actor: RunActor) -> None:
    """Rebuild a run from its journal: replay, then resume what was in progress.

    New events, steps and waits are read in one snapshot, so the replay
    and the rows it resumes from agree with each other.
    """
    while True:
        step_rows, wait_rows = await catch_up(actor)
        new = replay(actor)
        if not new or await journal_new(actor, new):
            break
    steps = {s.cid: s for s in step_rows}
    waits = {w.cid: w for w in wait_rows}
    deadline = next((w for w in wait_rows if w.cid == DEADLINE_CID), None)
    if deadline is not None and deadline.status == "pending" and not actor.cancelling:
        actor.set_deadline(deadline.wake_at)
    for cid, command in sorted(actor.pending_commands.items()):
        if any(c.cid == cid for c in new):
            continue
        if isinstance(command, StepCommand):
            row = steps.get(cid)
            if row is None or row.status in _ENDED_STEP or cid in actor.in_flight:
                continue
            actor._start_step(
                command,
                attempt=row.attempt + 1,
                claimed=False,
                retry_at=row.retry_at if row.status == "retrying" else None,
            )
        else:
            wait = waits.get(cid)
            if wait is not None and wait.status == "pending" and cid not in actor.waiting:
                actor.waiting[cid] = wait.wake_at
                actor.sup.timers.add(wait.wake_at, actor.run_id, cid)
    if actor.finishing is not None and not actor.in_flight:
        await actor._write([], [], actor.sup.clock.now())
    if actor.sup.cache_runs == 0:
        actor.drop_interpreter()


async def catch_up(actor: RunActor) -> tuple[list[StepRow], list[WaitRow]]:
    """Read the run's new events, steps and waits (one snapshot) into the log."""
    run_id, after = actor.run_id, actor.cursor
    events, steps, waits = await actor.sup.journal.read(
        lambda c: (events_of(c, run_id, after), steps_of(c, run_id), waits_of(c, run_id))
    )
    actor.merge(events)
    actor.drop_interpreter()
    return steps, waits


async def journal_new(actor: RunActor, new: list[Command]) -> bool:
    """Journal commands a replay issued that the journal lacks, and start them.

    False if another writer recorded commands at those positions first
    (read the journal again); raises LostOwnership if the run is no
    longer this process's.
    """
    run_id, owner, at = actor.run_id, actor.sup.owner, actor.sup.clock.now()

    def journal_new(tx: Tx) -> list[Event] | str:
        _, owned, taken = tx.run_state(run_id, owner, positions(new)).get()
        if not owned:
            return "not owner"
        if taken:
            return "taken"
        journal_commands(actor, tx, new, at)
        return tx.events

    written = await actor.sup.journal.write(journal_new)
    if written == "not owner":
        raise LostOwnership
    if written == "taken":
        return False
    assert isinstance(written, list)
    actor.remember(written)
    actor.launch(new, at)
    return True


async def rebuild(actor: RunActor) -> list[Command]:
    """Replay the body from the log; return commands the journal lacks (normally none)."""
    if actor.log is None:
        await actor.refresh_log()
    return replay(actor)


def replay(actor: RunActor) -> list[Command]:
    assert actor.log is not None
    history = read_history(actor.run_id, actor.log, actor.sup.codec)
    recorded = history.recorded
    actor.disposed_hooks, actor.released = history.disposed_hooks, history.released
    actor.children |= history.children
    interpreter = actor.new_interpreter(recorded, history.tokens)
    actor.interpreter = interpreter
    issued: dict[int, Command] = {}
    disposals: list[HookDisposeCommand] = []

    cancels: list[CancelCommand] = []

    def collect(commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, HookDisposeCommand):
                disposals.append(command)
            elif isinstance(command, CancelCommand):
                cancels.append(command)
            else:
                issued[command.cid] = command

    collect(interpreter.start())
    for event in actor.log:
        if event.kind in RESOLUTION_KINDS:
            collect(apply_outcome(actor, interpreter, event))
    actor.sup.touch(actor)
    if interpreter.outcome is not None and actor.finishing is None:
        actor.finishing = interpreter.outcome
    actor.pending_commands = {cid: issued[cid] for cid in interpreter.pending if cid in issued}
    new: list[Command] = [c for cid, c in sorted(issued.items()) if cid not in recorded]
    new += [d for d in disposals if d.cid not in actor.disposed_hooks]
    return new + [c for c in cancels if c.cid not in actor.released]


def apply_outcome(actor: RunActor, interpreter: Interpreter, event: Event) -> list[Command]:
    """Apply one journaled outcome to *interpreter*; return the commands that follow."""
    if event.kind == Kind.CANCEL_REQUESTED:
        actor.cancelling, actor.cancel_reason = True, event.name
    return apply_event(interpreter, event, actor.sup.codec, functools.partial(result_of, actor))


def result_of(actor: RunActor, event: Event) -> Any:
    assert event.payload is not None
    return actor.sup.hydration.get(event.seq, event.payload, actor.sup.codec.decode)
