"""What a workflow body and a step can ask about and await.

Inside a workflow, time and randomness come from the run, not the machine:
``rw.now()`` is the journal time of the event that last resumed the body (the
run's start time at first), and ``rw.random()``/``rw.uuid4()`` come from a
generator seeded with the run id. Replay therefore sees exactly the values
the first execution saw.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import uuid
from collections.abc import Awaitable, Generator
from typing import Any, TypeVar, overload

import attrs

from ._exceptions import EncodeError, NotInWorkflowError, ReceiveTimeout, RunwrightError
from .actors._commands import (
    HOOK_ENDED,
    ChildResult,
    GroupRequest,
    HookReceive,
    MessageReceive,
    SleepRequest,
    StartChildRequest,
)
from .actors._interpreter import Interpreter, current_interpreter

__all__ = [
    "ChildHandle",
    "Hook",
    "RunInfo",
    "StepInfo",
    "deprecate_patch",
    "gather",
    "hook",
    "now",
    "patched",
    "race",
    "random",
    "receive",
    "run_info",
    "select",
    "set_event",
    "sleep",
    "sleep_until",
    "start_child",
    "step_info",
    "uuid4",
]

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")


@attrs.frozen
class RunInfo:
    """The run a workflow body belongs to."""

    run_id: str
    workflow: str
    started_at: dt.datetime


@attrs.frozen
class StepInfo:
    """The step attempt being executed. ``step_id`` is the same for every attempt."""

    run_id: str
    step_id: str
    name: str
    attempt: int


current_step: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "runwright_step", default=None
)


def _interpreter(operation: str) -> Interpreter:
    interpreter = current_interpreter.get()
    if interpreter is None:
        raise NotInWorkflowError(operation)
    return interpreter


def _seconds(value: float | dt.timedelta, operation: str) -> float:
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    if seconds != seconds or seconds < 0:
        raise ValueError(f"{operation} needs a duration >= 0, got {value!r}")
    return seconds


def sleep(duration: float | dt.timedelta) -> Awaitable[None]:
    """A durable sleep: survives restarts, fires once. Seconds or a timedelta."""
    _interpreter("rw.sleep()")
    return SleepRequest(_seconds(duration, "rw.sleep()"), None)


def sleep_until(when: dt.datetime) -> Awaitable[None]:
    """A durable sleep until *when* (an aware datetime; naive means UTC)."""
    _interpreter("rw.sleep_until()")
    if not isinstance(when, dt.datetime):
        raise TypeError(f"rw.sleep_until() needs a datetime, got {when!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return SleepRequest(None, when.timestamp())


@overload
def gather(a: Awaitable[T1], /) -> Awaitable[tuple[T1]]: ...
@overload
def gather(a: Awaitable[T1], b: Awaitable[T2], /) -> Awaitable[tuple[T1, T2]]: ...
@overload
def gather(
    a: Awaitable[T1], b: Awaitable[T2], c: Awaitable[T3], /
) -> Awaitable[tuple[T1, T2, T3]]: ...
@overload
def gather(*awaitables: Awaitable[T]) -> Awaitable[list[T]]: ...


def gather(*awaitables: Awaitable[Any]) -> Awaitable[Any]:
    """Await all, concurrently; results in argument order; the first error is raised.

    As in a task group: when one fails, the others are cancelled (their steps'
    attempts stopped and journaled as cancelled, sleeps released, children they
    started cancelled) before the error reaches the workflow.
    """
    _interpreter("rw.gather()")
    return GroupRequest("gather", awaitables)


def race(*awaitables: Awaitable[T]) -> Awaitable[T]:
    """The outcome of whichever awaitable finishes first (a sleep's value is None).

    The others are cancelled before the workflow goes on: a step's running
    attempt is stopped wherever it runs and journaled as cancelled (not failed,
    not retried), a sleep is released, a hook a branch opened with ``async
    with`` is disposed, a child run a branch started is cancelled. A cancelled
    branch's ``finally`` blocks run, but it cannot await anything more.
    ``rw.race(call(), rw.sleep(30))`` is therefore a timeout.
    """
    _interpreter("rw.race()")
    return GroupRequest("race", awaitables)


def receive(
    topic: str = "default", *, timeout: float | dt.timedelta | None = None
) -> Awaitable[Any]:
    """The next message sent to this run on *topic* (``run.send(topic, payload)``).

    Messages wait for the workflow in the order they were sent, however early
    they arrive; each is received once, across restarts. With *timeout* (a
    durable timer), :class:`rw.ReceiveTimeout` is raised if none comes in time,
    and a later message waits for the next receive.
    """
    _interpreter("rw.receive()")
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"a topic must be a non-empty string, got {topic!r}")
    if timeout is None:
        return MessageReceive(topic)
    seconds = _seconds(timeout, "rw.receive()")

    async def receive_or_time_out() -> Any:
        which, value = await select(message=MessageReceive(topic), timeout=sleep(seconds))
        if which == "timeout":
            raise ReceiveTimeout(topic, seconds)
        return value

    return receive_or_time_out()


def set_event(key: str, value: Any) -> None:
    """Publish *value* under *key* for clients of this run: ``await run.get_event(key)``
    returns the latest value, while the run goes on and after it ended. Journaled, so a
    replay publishes nothing twice; *value* must be encodable (checked here)."""
    interpreter = _interpreter("rw.set_event()")
    if not isinstance(key, str) or not key:
        raise ValueError(f"an event key must be a non-empty string, got {key!r}")
    try:
        encoded = interpreter.info.codec.encode(value)
    except EncodeError as exc:
        raise EncodeError(
            f"rw.set_event({key!r}): {exc.reason}", path=exc.path, argument="value"
        ) from None
    interpreter.publish(key, encoded)


def select(**branches: Awaitable[Any]) -> Awaitable[tuple[str, Any]]:
    """Race named branches; the winner's name and value: ``(name, value)``.

    ``which, payload = await rw.select(approval=rw.hook(token), timeout=rw.sleep(60))``
    tells a hook payload of ``None`` from a timer that won. The others are
    cancelled, as by :func:`race`; an error in the first branch to finish is
    raised.
    """
    _interpreter("rw.select()")
    if not branches:
        raise ValueError("rw.select() needs at least one named awaitable")

    async def named(name: str, awaitable: Awaitable[Any]) -> tuple[str, Any]:
        return name, await awaitable

    return GroupRequest("race", tuple(named(name, a) for name, a in branches.items()))


class Hook:
    """A durable mailbox for events from outside, made by :func:`hook`.

    ``await hook`` returns the next payload (the first, the first time);
    ``async for payload in hook`` yields every payload in order, none lost
    while the workflow is busy, until the hook is disposed. ``dispose()`` (or
    leaving ``async with hook``) frees the token; so does the run's end.
    """

    __slots__ = ("_cid", "_interpreter", "token")

    def __init__(self, interpreter: Interpreter, cid: int, token: str) -> None:
        self._interpreter = interpreter
        self._cid = cid
        self.token = token

    def __repr__(self) -> str:
        return f"<runwright hook {self.token!r}>"

    def __await__(self) -> Generator[Any, Any, Any]:
        value = yield from HookReceive(self._cid).__await__()
        if value is HOOK_ENDED:
            raise RunwrightError(f"hook {self.token!r} was disposed; no payload will arrive")
        return value

    def __aiter__(self) -> Hook:
        return self

    async def __anext__(self) -> Any:
        value = await HookReceive(self._cid)
        if value is HOOK_ENDED:
            raise StopAsyncIteration
        return value

    def dispose(self) -> None:
        """Stop receiving: the token is free again once this is journaled."""
        self._interpreter.dispose_hook(self._cid)

    async def __aenter__(self) -> Hook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.dispose()


def hook(token: str | None = None) -> Hook:
    """A hook of this run that other code resumes with ``runtime.resume_hook(token, payload)``.

    Without *token*, an unguessable one (128 random bits) is made, recorded,
    and reused on replay. A token is unique among live hooks: a second live
    hook with it raises :class:`rw.HookConflict` where the workflow awaits it.
    """
    interpreter = _interpreter("rw.hook()")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError(f"a hook token must be a non-empty string, got {token!r}")
    cid, token = interpreter.create_hook(token)
    return Hook(interpreter, cid, token)


class ChildHandle:
    """A child run started by :func:`start_child`."""

    __slots__ = ("_cid", "id")

    def __init__(self, cid: int, run_id: str) -> None:
        self._cid = cid
        self.id = run_id

    def __repr__(self) -> str:
        return f"<runwright child run {self.id}>"

    def result(self) -> Awaitable[Any]:
        """The child's return value; raises rw.RunFailed or rw.RunCancelled as it ended.

        The parent waits through its own journal (the child's end is written
        there in the same transaction), not by polling the child.
        """
        return ChildResult(self._cid)


def start_child(workflow: Any, /, *args: Any, **kwargs: Any) -> Awaitable[ChildHandle]:
    """Start *workflow* as a child run of this one; journaled, so replay starts no second child.

    Cancelling the parent cancels its children.
    """
    from ._definitions import WorkflowDefinition

    interpreter = _interpreter("rw.start_child()")
    if not isinstance(workflow, WorkflowDefinition):
        raise TypeError(f"rw.start_child() needs an @rw.workflow, got {workflow!r}")
    workflow.check_args(args, kwargs)
    codec = interpreter.info.codec
    request = StartChildRequest(
        workflow.name,
        workflow,
        args,
        kwargs,
        lambda: workflow.encode_args(codec, args, kwargs),
    )

    async def start() -> ChildHandle:
        cid, run_id = await request
        return ChildHandle(cid, run_id)

    return start()


def now() -> dt.datetime:
    """The workflow's deterministic clock, as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(_interpreter("rw.now()").now, dt.UTC)


def random() -> float:
    """A deterministic float in [0, 1), replayed identically."""
    return _interpreter("rw.random()").rng.random()


def uuid4() -> uuid.UUID:
    """A deterministic version-4 UUID, replayed identically."""
    bits = _interpreter("rw.uuid4()").rng.getrandbits(128)
    return uuid.UUID(int=bits, version=4)


def run_info() -> RunInfo:
    """The run the calling workflow body belongs to."""
    info: Any = _interpreter("rw.run_info()").info
    return RunInfo(info.run_id, info.workflow, info.started_at)


def step_info() -> StepInfo:
    """The step attempt the caller runs in."""
    info = current_step.get()
    if info is None:
        raise NotInWorkflowError("rw.step_info()")
    return info


def patched(patch_id: str) -> bool:
    """Whether this run takes the new branch of a code change named *patch_id*.

    ``if rw.patched("receipt-v2"): new() else: old()``: a run that reaches
    the call on the new code records the patch and gets True, on every replay
    too; a run that had already passed this point on the old code gets False,
    so it replays the old branch it took. Once no unfinished run took the old
    branch, replace the ``if`` with ``rw.deprecate_patch(patch_id)`` and the
    new branch alone; once no unfinished run holds the marker, delete the call.
    """
    interpreter = _interpreter("rw.patched()")
    _check_patch_id(patch_id)
    return interpreter.patched(patch_id)


def deprecate_patch(patch_id: str) -> None:
    """Mark where ``rw.patched(patch_id)`` stood once only its new branch is left.

    Runs that recorded the patch replay through its marker; new runs record
    nothing.
    """
    interpreter = _interpreter("rw.deprecate_patch()")
    _check_patch_id(patch_id)
    interpreter.deprecate_patch(patch_id)


def _check_patch_id(patch_id: object) -> None:
    if not isinstance(patch_id, str) or not patch_id:
        raise ValueError(f"a patch id must be a non-empty string, got {patch_id!r}")
