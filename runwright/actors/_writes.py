"""What a run actor's writes put in the journal: the commands a workflow issued, the
run's end, and the outcomes of steps, timers and cancels (each a function of a
transaction, so that one activation's outcomes go into one write)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .._exceptions import EncodeError
from ..journal._attributes import write_attributes
from ..journal._codec import encode_error
from ..journal._events import Event, Kind
from ..journal._tx import Tx
from ._commands import (
    AttributeCommand,
    CancelCommand,
    ChildCommand,
    Command,
    HookCommand,
    HookDisposeCommand,
    Outcome,
    PatchCommand,
    PublishCommand,
    SleepCommand,
    StepCommand,
    Value,
)
from ._messages import RunEnd, StepDone

if TYPE_CHECKING:
    from ._actor import RunActor

__all__ = [
    "LostClaim",
    "LostOwnership",
    "activation",
    "end_step",
    "fire_deadline",
    "fire_wait",
    "journal_commands",
    "positions",
    "request_cancel",
    "run_end",
    "wake_at",
    "write_end",
]


class LostOwnership(Exception):
    """Another process drives the run now (this one's lease expired)."""


class LostClaim(Exception):
    """A conditional write matched nothing: someone else moved the run on.

    What did win is already in the journal and the replay log.
    """


def activation(
    actor: RunActor,
    ends: list[Callable[[Tx], object]],
    commands: list[Command],
    end: RunEnd | None,
    at: float,
) -> Callable[[Tx], tuple[list[Event], type[Exception] | None]]:
    """The write of one activation: the outcomes *ends* record, then, if the actor may
    go on, the *commands* that follow and the run's *end*. It returns the events
    written and, if the actor may not go on, why: :class:`LostOwnership` (another
    process drives the run) or :class:`LostClaim` (the run moved on without it)."""
    run_id, owner, known = actor.run_id, actor.sup.owner, actor.resolved_through

    def apply(tx: Tx) -> tuple[list[Event], type[Exception] | None]:
        # Outcomes this actor has not seen (written by another process)
        # come before ours in journal order, so the commands derived
        # without them would not replay: follow the journal instead.
        # The check sees the journal before the outcomes below are written;
        # its answer may travel with theirs.
        state = tx.run_state(run_id, owner, positions(commands))
        # A step's outcome is recorded whoever drives the run (its claim
        # decides); what follows from it only by the run's owner.
        won = [op(tx) for op in ends]
        latest, owned, taken = state.get()
        if not owned:
            return tx.events, LostOwnership
        if latest > known or taken or not all(won):
            # The outcomes that won are kept; the commands were derived
            # from all of them, so none is written.
            return tx.events, LostClaim
        journal_commands(actor, tx, commands, at)
        if end is not None:
            write_end(tx, run_id, end, at)
        return tx.events, None

    return apply


def journal_commands(actor: RunActor, tx: Tx, commands: list[Command], at: float) -> None:
    """Write what *commands* start (or cancel, or dispose) for *actor*'s run."""
    start = not actor.sup.stopping
    codec = actor.sup.codec
    for command in commands:
        if isinstance(command, StepCommand):
            tx.schedule_step(
                actor.run_id, command.cid, command.name, command.encoded_args, at, start=start
            )
        elif isinstance(command, SleepCommand):
            when = wake_at(command, at)
            tx.create_wait(actor.run_id, command.cid, when, codec.encode(when), at)
        elif isinstance(command, HookCommand):
            generated = codec.encode(command.generated)
            tx.create_hook(actor.run_id, command.cid, command.token, generated, at)
        elif isinstance(command, ChildCommand):
            tx.start_child(
                actor.run_id,
                command.cid,
                command.child_id,
                command.name,
                command.encoded_args,
                at,
                owner=actor.sup.owner,
                lease_seconds=actor.sup.lease_seconds,
            )
            if command.timeout is not None:
                deadline = at + command.timeout
                tx.set_deadline(command.child_id, deadline, codec.encode(deadline), at)
            if actor.trace is not None:  # a child run joins its parent's trace
                tx.append(command.child_id, Kind.TRACE_CONTEXT, at, name=actor.trace.journaled)
        elif isinstance(command, PatchCommand):
            tx.record_patch(actor.run_id, command.cid, command.patch_id, at)
        elif isinstance(command, PublishCommand):
            tx.set_event(actor.run_id, command.cid, command.key, command.value, at)
        elif isinstance(command, AttributeCommand):
            attribute = (command.key, command.text, command.type_name, command.payload)
            write_attributes(tx, actor.run_id, [attribute], at, cid=command.cid)
        elif isinstance(command, CancelCommand):
            if command.kind == "step":
                tx.cancel_step(actor.run_id, command.cid, at)
            elif command.kind == "sleep":
                tx.cancel_wait(actor.run_id, command.cid, at)
            else:
                tx.cancel_child(actor.run_id, command.cid, f"{actor.run_id}.{command.cid}", at)
        elif command.cid not in actor.disposed_hooks:
            tx.dispose_hook(actor.run_id, command.cid, at)


def wake_at(command: SleepCommand, at: float) -> float:
    if command.until is not None:
        return command.until
    assert command.seconds is not None
    return at + command.seconds


def run_end(actor: RunActor, outcome: Outcome) -> RunEnd:
    """How *actor*'s run ends with *outcome* (cancelled if it was being cancelled)."""
    codec = actor.sup.codec
    if actor.cancelling:
        reason = actor.cancel_reason
        return RunEnd("cancelled", codec.encode(reason), error_message=reason)
    if isinstance(outcome, Value):
        try:
            return RunEnd("completed", codec.encode(outcome.value))
        except EncodeError as exc:
            error: BaseException = EncodeError(
                f"workflow {actor.definition.name!r} returned a value that cannot be "
                f"encoded: {exc.reason}",
                path=exc.path,
            )
    else:
        error = outcome.error
    return RunEnd(
        "failed",
        encode_error(codec, error),
        _type_name(error),
        str(error),
    )


def write_end(tx: Tx, run_id: str, end: RunEnd, at: float) -> None:
    tx.finish_run(
        run_id,
        end.status,
        at,
        outcome=end.outcome,
        error_type=end.error_type,
        error_message=end.error_message,
    )


def positions(commands: list[Command]) -> list[int]:
    """The positions *commands* would take (a disposal or a cancel names an existing one)."""
    return [c.cid for c in commands if not isinstance(c, HookDisposeCommand | CancelCommand)]


def _type_name(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}:{cls.__qualname__}"


def end_step(run_id: str, message: StepDone, at: float) -> Callable[[Tx], object]:
    """The write of a step's final outcome, with the attributes its attempt set."""
    end = Tx.complete_step if message.ok else Tx.fail_step

    def write(tx: Tx) -> object:
        event = end(tx, run_id, message.cid, message.name, message.attempt, message.payload, at)
        if event is not None and message.attributes:
            write_attributes(
                tx, run_id, message.attributes, at, cid=message.cid, attempt=message.attempt
            )
        return event

    return write


def request_cancel(run_id: str, at: float) -> Callable[[Tx], object]:
    return lambda tx: tx.request_cancel(run_id, at) == "requested"


def fire_deadline(run_id: str, at: float) -> Callable[[Tx], object]:
    return lambda tx: tx.fire_deadline(run_id, at) == "requested"


def fire_wait(run_id: str, cid: int, at: float) -> Callable[[Tx], object]:
    return lambda tx: tx.fire_wait(run_id, cid, at)
