"""A run's recorded history, and how its outcomes are fed to an interpreter.

Both the actors (rebuilding a run to go on driving it) and the replay check
(``runwright replay``, which only compares) read a run's events the same way:
:func:`read_history` finds what the journal recorded at each position, and
:func:`apply_event` delivers one recorded outcome to an interpreter, in
journal order. Nothing here writes or waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .._exceptions import HookConflict, RunCancelled, RunFailed, StepFailed
from ..journal._codec import Codec, rebuild_exception
from ..journal._events import CANCELLATION_KINDS, RESOLUTION_KINDS, Event, Kind
from ._commands import Command, Failure, Outcome, Value
from ._interpreter import Interpreter

__all__ = [
    "COMMAND_KINDS",
    "REPLAY_KINDS",
    "History",
    "apply_event",
    "read_history",
    "step_error",
]

#: Events that record a command, and the kind of command each is.
COMMAND_KINDS = {
    Kind.PATCHED: "patch",
    Kind.EVENT_SET: "publish",
    Kind.ATTRIBUTE_SET: "attribute",
    Kind.STEP_SCHEDULED: "step",
    Kind.WAIT_CREATED: "sleep",
    Kind.HOOK_CREATED: "hook",
    Kind.CHILD_STARTED: "child",
}
#: Every event a replay needs.
REPLAY_KINDS = (
    frozenset(COMMAND_KINDS) | RESOLUTION_KINDS | CANCELLATION_KINDS | {Kind.HOOK_DISPOSED}
)


@attrs.define
class History:
    """What a run's events recorded, by position."""

    #: The (kind, name) label of the command at each position.
    recorded: dict[int, tuple[str, str]] = attrs.field(factory=dict)
    #: The token of each hook (generated ones are reused on replay).
    tokens: dict[int, str] = attrs.field(factory=dict)
    disposed_hooks: set[int] = attrs.field(factory=set)
    #: Positions whose work was cancelled (a race's losers, a failed gather's others).
    released: set[int] = attrs.field(factory=set)
    children: set[str] = attrs.field(factory=set)


def read_history(run_id: str, events: Iterable[Event], codec: Codec) -> History:
    history = History()
    for event in events:
        cid = event.cid
        if cid is None:
            continue
        if event.kind in CANCELLATION_KINDS:
            history.released.add(cid)
        elif event.kind == Kind.HOOK_CREATED:
            assert event.payload is not None
            assert event.name is not None
            generated = codec.decode(event.payload)
            history.tokens[cid] = event.name
            history.recorded[cid] = ("hook", "" if generated else event.name)
        elif event.kind == Kind.HOOK_DISPOSED:
            history.disposed_hooks.add(cid)
        elif event.kind == Kind.CHILD_STARTED:
            history.children.add(f"{run_id}.{cid}")
            history.recorded[cid] = ("child", event.name or "")
        elif (kind := COMMAND_KINDS.get(event.kind)) is not None:
            history.recorded[cid] = (kind, event.name or kind)
    return history


def apply_event(
    interpreter: Interpreter,
    event: Event,
    codec: Codec,
    result_of: Callable[[Event], Any] | None = None,
) -> list[Command]:
    """Deliver one recorded outcome to *interpreter*; return the commands that follow.

    *result_of* decodes a completed step's result (the actors pass their
    hydration cache); by default the codec does.
    """
    if event.kind == Kind.CANCEL_REQUESTED:
        return interpreter.cancel(event.at)
    if event.kind == Kind.MESSAGE_SENT:
        assert event.payload is not None
        payload = codec.decode(event.payload)
        return interpreter.deliver_message(event.name or "", payload, event.at)
    assert event.cid is not None
    if event.kind == Kind.HOOK_RECEIVED:
        assert event.payload is not None
        return interpreter.deliver_hook(event.cid, codec.decode(event.payload), event.at)
    if event.kind == Kind.HOOK_CONFLICT:
        return interpreter.fail_hook(event.cid, HookConflict(event.name or ""), event.at)
    if event.kind == Kind.CHILD_COMPLETED:
        child_id = f"{interpreter.run_id}.{event.cid}"
        return interpreter.deliver_child(
            event.cid, _child_outcome(child_id, event, codec), event.at
        )
    outcome: Outcome
    if event.kind == Kind.WAIT_COMPLETED:
        outcome = Value(None)
    elif event.kind == Kind.STEP_COMPLETED:
        assert event.payload is not None
        outcome = Value(codec.decode(event.payload) if result_of is None else result_of(event))
    else:
        assert event.payload is not None
        outcome = Failure(step_error(event.name or "?", event.payload, codec))
    return interpreter.resolve(event.cid, outcome, event.at)


def step_error(name: str, payload: bytes, codec: Codec) -> BaseException:
    """The exception a failed step raises in the workflow, rebuilt from its record."""
    info = codec.decode(payload)
    assert isinstance(info, dict)
    error = rebuild_exception(info)
    text = str(info.get("traceback") or "")
    if error is None:
        return StepFailed(name, str(info.get("type")), str(info.get("message")), text)
    if text:
        error.add_note(f"step {name!r} failed; its traceback was:\n{text.rstrip()}")
    return error


def _child_outcome(child_id: str, event: Event, codec: Codec) -> Outcome:
    if event.name == "completed":
        assert event.payload is not None
        return Value(codec.decode(event.payload))
    if event.name == "cancelled":
        reason = codec.decode(event.payload) if event.payload else None
        return Failure(RunCancelled(child_id, reason if isinstance(reason, str) else None))
    info: Any = codec.decode(event.payload) if event.payload else {}
    error = RunFailed(
        child_id,
        str(info.get("type", "?")),
        str(info.get("message", "")),
        str(info.get("traceback") or ""),
    )
    error.__cause__ = rebuild_exception(info) if isinstance(info, dict) else None
    return Failure(error)
