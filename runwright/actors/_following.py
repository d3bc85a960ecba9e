"""When the journal moved on without a run's actor: another process wrote outcomes
for the run, took it over, or ended it.

An actor whose write finds outcomes it has not seen (or a position already
taken) follows the journal: it applies those outcomes to its hot interpreter
when a replay would do exactly that, and otherwise rebuilds the run from the
journal. An actor that no longer owns the run lets it go: the run ended
elsewhere (its waiters here get that end), or another process drives it now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..journal._events import RESOLUTION_KINDS, Kind
from ..journal._rows import RunRow
from ._commands import Command
from ._history import REPLAY_KINDS
from ._messages import RunEnd
from ._replaying import apply_outcome, rebuild_and_resume

if TYPE_CHECKING:
    from ._actor import RunActor

__all__ = ["follow_journal", "let_go", "take_foreign_outcomes"]

#: New events that decide how an actor catches up with another process's writes.
_FOLLOWED_KINDS = REPLAY_KINDS | {Kind.RUN_COMPLETED, Kind.RUN_FAILED, Kind.RUN_CANCELLED}
_ENDED = ("completed", "failed", "cancelled")


async def let_go(actor: RunActor) -> None:
    """This process no longer drives the run: it ended elsewhere, or was taken over."""
    row = await actor.sup.journal.run(actor.run_id)
    if row is not None and row.status in _ENDED:
        _ended_elsewhere(actor, row)
    else:
        actor.stop_driving()


def _ended_elsewhere(actor: RunActor, row: RunRow) -> None:
    actor.cancel_steps()
    actor.done = True
    end = RunEnd(row.status, row.outcome, row.error_type, row.error_message)  # type: ignore[arg-type]
    actor.sup.finished(actor, end)


async def take_foreign_outcomes(actor: RunActor) -> bool:
    """Apply outcomes other processes wrote to the hot interpreter, in journal order.

    Possible when every new event is an outcome that comes after all the
    outcomes this actor knows (its own writes included): then applying them
    now is exactly what a replay would do. Returns False otherwise (commands
    written elsewhere, the run ended, or an outcome older than ours), and the
    caller replays the run instead.
    """
    interpreter = actor.interpreter
    if interpreter is None or actor.finishing is not None or actor.log is None:
        return False
    known = actor.resolved_through
    events = await actor.sup.journal.events(actor.run_id, after=actor.cursor)
    logged = {event.seq for event in actor.log if event.seq > actor.cursor}
    fresh = [e for e in events if e.seq not in logged and e.kind in _FOLLOWED_KINDS]
    if any(e.kind not in RESOLUTION_KINDS or e.seq <= known for e in fresh):
        return False
    actor.merge(events)
    commands: list[Command] = []
    for event in fresh:
        if actor.finishing is None:
            commands += apply_outcome(actor, interpreter, event)
    await actor.write_all(interpreter, [], commands, [], actor.sup.clock.now())
    return True


async def follow_journal(actor: RunActor) -> None:
    """Someone else moved the run on: follow the journal, or stop if the run ended."""
    actor.drop_interpreter()
    actor.finishing = None
    row = await actor.sup.journal.run(actor.run_id)
    if row is not None and row.status in _ENDED:
        _ended_elsewhere(actor, row)
        return
    await rebuild_and_resume(actor)
