"""The sans-IO workflow interpreter.

Theory of operation
-------------------
A workflow body is an ordinary coroutine, but it never runs on the host event
loop. The interpreter drives it by hand with ``coro.send``/``coro.throw`` on
a tiny deterministic scheduler of *fibers*: the body is the main fiber, and
each awaitable handed to ``rw.gather`` or ``rw.race`` becomes a child fiber.

When a fiber awaits a runwright operation it yields a *request* object (a
step, a sleep, a group). Steps and sleeps get a correlation id (``cid``) in
the order they are issued and come out of :meth:`Interpreter.start` /
:meth:`Interpreter.resolve` as *commands* for the caller to carry out. Groups
are handled inside: they spawn fibers and resume their owner when the join
condition holds (every child for gather, the first for race). Groups are
structured: when a race has its first outcome, or a gather member fails, the
other members are cancelled before the owner resumes (their coroutines are
closed, and a :class:`CancelCommand` releases each step, sleep or child run
they still waited for).

The caller feeds back *resolutions* (``resolve(cid, outcome, at)``) in journal
order; after each one the interpreter runs every ready fiber, in FIFO order,
until all are blocked again. Nothing here depends on wall time, thread timing
or the event loop, so the same journal always produces the same sequence of
commands: that is what makes replay and ``gather``/``race`` deterministic.

Replay is checked: commands already in the journal (``recorded``) must match
what the code issues at the same ``cid``, by kind and name; a mismatch raises
:class:`~runwright.NonDeterminismError` out of the interpreter, never into the
workflow, and the interpreter is then unusable.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal

import attrs

from .._exceptions import Cancelled, EncodeError, NonDeterminismError, RunwrightError
from ._commands import (
    HOOK_ENDED,
    AttributeCommand,
    CancelCommand,
    ChildCommand,
    ChildResult,
    Command,
    Failure,
    GroupRequest,
    HookCommand,
    HookDisposeCommand,
    HookReceive,
    MessageReceive,
    Outcome,
    PatchCommand,
    PublishCommand,
    SleepCommand,
    SleepRequest,
    StartChildRequest,
    StepCommand,
    StepRequest,
    Value,
    describe,
)

__all__ = ["Interpreter", "current_interpreter"]

current_interpreter: contextvars.ContextVar[Interpreter | None] = contextvars.ContextVar(
    "runwright_interpreter", default=None
)


@attrs.define(eq=False)
class _ChildState:
    starter: _Fiber
    outcome: Outcome | None = None
    waiters: deque[_Fiber] = attrs.field(factory=deque)
    cancelled: bool = False


@attrs.define(eq=False)
class _HookState:
    token: str
    payloads: deque[Any] = attrs.field(factory=deque)
    waiters: deque[_Fiber] = attrs.field(factory=deque)
    disposed: bool = False
    error: BaseException | None = None


@attrs.define(eq=False)
class _Topic:
    payloads: deque[Any] = attrs.field(factory=deque)
    waiters: deque[_Fiber] = attrs.field(factory=deque)


@attrs.define(eq=False)
class _Group:
    kind: Literal["gather", "race"]
    owner: _Fiber
    results: list[Any]
    remaining: int
    members: list[_Fiber] = attrs.field(factory=list)
    done: bool = False


@attrs.define(eq=False)
class _Fiber:
    coro: Coroutine[Any, Any, Any]
    group: _Group | None = None
    index: int = 0
    finished: bool = False
    #: The group this fiber awaits, if any: its members are cancelled with it.
    awaiting: _Group | None = None


async def _adopt(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class Interpreter:
    """Drives one run's workflow body. No I/O, no clock, no event loop.

    *body* is called once to create the coroutine. *recorded* maps each cid the
    journal already holds to its (kind, name) label.
    """

    def __init__(
        self,
        run_id: str,
        body: Callable[[], Coroutine[Any, Any, Any]],
        *,
        started_at: float,
        recorded: Mapping[int, tuple[str, str]] | None = None,
        hook_tokens: Mapping[int, str] | None = None,
        info: Any = None,
    ) -> None:
        self.run_id = run_id
        self.info = info
        self.now = started_at
        self._rng: random.Random | None = None
        self.outcome: Outcome | None = None
        self.pending: dict[int, _Fiber] = {}
        self._body = body
        self._recorded = recorded or {}
        self._next_cid = 0
        self._ready: deque[tuple[_Fiber, Outcome | None]] = deque()
        # A dict, not a set: fibers are closed in the order they were spawned.
        self._fibers: dict[_Fiber, None] = {}
        self._sleeps: set[int] = set()
        self._commands: list[Command] = []
        self._main: _Fiber | None = None
        self._broken = False
        self._hooks: dict[int, _HookState] = {}
        #: Messages to the run by topic: what arrived before a receive asked, and who waits.
        self._topics: dict[str, _Topic] = {}
        self._children: dict[int, _ChildState] = {}
        self._cancelled = False
        self._hook_tokens = hook_tokens or {}

    @property
    def rng(self) -> random.Random:
        """The run's deterministic random generator, seeded with the run id on first use."""
        if self._rng is None:
            self._rng = random.Random(self.run_id)
        return self._rng

    @property
    def issued(self) -> int:
        """How many commands have been issued (the next cid)."""
        return self._next_cid

    def start(self) -> list[Command]:
        """Run the body until every fiber is blocked; return the commands it issued."""
        if self._main is not None:
            raise RuntimeError("the interpreter was already started")
        self._main = self._spawn(self._body(), None, 0)
        return self._run()

    def resolve(self, cid: int, outcome: Outcome, at: float) -> list[Command]:
        """Deliver the outcome of command *cid*, recorded at time *at*; run to quiescence."""
        if self._broken:
            raise RuntimeError("the interpreter stopped after a non-determinism error")
        if cid >= self._next_cid:
            self._broken = True
            raise NonDeterminismError(
                self.run_id,
                cid,
                "a result for it",
                f"nothing yet: the code issued only {self._next_cid} command(s) before waiting",
            )
        self.now = max(self.now, at)
        fiber = self.pending.pop(cid, None)
        if fiber is None or fiber.finished:
            return []
        self._ready.append((fiber, outcome))
        return self._run()

    # -- cancellation --------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self, at: float) -> list[Command]:
        """The run was cancelled: raise Cancelled in the body where it waits.

        Every other fiber (what a gather or race was waiting for) is closed,
        so nothing it awaited is pending any more; the body may catch the
        error and run cleanup steps, which are issued as usual.
        """
        if self._cancelled or self.outcome is not None or self._main is None:
            return []
        self._cancelled = True
        self.now = max(self.now, at)
        main = self._main
        main.awaiting = None
        # Children need no command of their own: the run's cancel reaches them all.
        for child in self._children.values():
            child.cancelled = True
        self._cancel_fibers([fiber for fiber in self._fibers if fiber is not main])
        for cid in list(self.pending):
            self._abandon(cid)
        for state in self._hooks.values():
            state.waiters.clear()
        for topic in self._topics.values():
            topic.waiters.clear()
        self._ready = deque(item for item in self._ready if item[0] is main)
        self._ready.append((main, Failure(Cancelled(self.run_id))))
        return self._run()

    def _cancel_fibers(self, fibers: list[_Fiber]) -> None:
        """Cancel *fibers*, and the groups they await, as a task group cancels its tasks.

        What they wait for is released (a CancelCommand for each step, sleep
        and child run they started and still wait for), then each coroutine is
        closed, innermost first: ``finally`` blocks and context managers run,
        but a cancelled branch cannot await anything more (as in trio, where a
        cancelled task's cleanup cannot block).
        """
        doomed: list[_Fiber] = []

        def collect(fiber: _Fiber) -> None:
            if fiber.finished or fiber in doomed:
                return
            doomed.append(fiber)
            if fiber.awaiting is not None:
                for member in fiber.awaiting.members:
                    collect(member)

        for fiber in fibers:
            collect(fiber)
        if not doomed:
            return
        gone = set(doomed)
        for cid, fiber in list(self.pending.items()):
            if fiber in gone:
                self._abandon(cid)
        for cid, child in self._children.items():
            child.waiters = deque(f for f in child.waiters if f not in gone)
            if child.outcome is None and not child.cancelled and child.starter in gone:
                child.cancelled = True
                self._commands.append(CancelCommand(cid, "child"))
        for state in self._hooks.values():
            state.waiters = deque(f for f in state.waiters if f not in gone)
        for topic in self._topics.values():
            topic.waiters = deque(f for f in topic.waiters if f not in gone)
        for fiber in reversed(doomed):
            self._close(fiber)

    def _abandon(self, cid: int) -> None:
        del self.pending[cid]
        self._commands.append(CancelCommand(cid, "sleep" if cid in self._sleeps else "step"))

    # -- patches -------------------------------------------------------------------

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes patch *patch_id*'s new branch (see ``rw.patched``).

        Where the journal already holds the run's history, the answer is what
        it recorded: the marker at this position means True; another command
        there means the run passed this point on code without the patch, so
        False (and no position is taken). Past the recorded history, the run
        reaches the call on the new code for the first time: the marker is
        recorded and the answer is True, now and on every replay.
        """
        self._skip_stale_markers(patch_id)
        cid = self._next_cid
        recorded = self._recorded.get(cid)
        if recorded is not None and recorded != ("patch", patch_id):
            return False
        self._issue(None, ("patch", patch_id))
        self._commands.append(PatchCommand(cid, patch_id))
        return True

    def deprecate_patch(self, patch_id: str) -> None:
        """Accept *patch_id*'s marker where the journal has it; never record one."""
        self._skip_stale_markers(patch_id)
        if self._recorded.get(self._next_cid) == ("patch", patch_id):
            self._next_cid += 1

    def _skip_stale_markers(self, keep: str | None = None) -> None:
        """Step over recorded markers of patches the code no longer asks about here
        (deprecated, then deleted): they take a position but decide nothing."""
        while True:
            recorded = self._recorded.get(self._next_cid)
            if recorded is None or recorded[0] != "patch" or recorded[1] == keep:
                return
            self._next_cid += 1

    # -- hooks ---------------------------------------------------------------------

    def create_hook(self, token: str | None) -> tuple[int, str]:
        """Issue a hook (called synchronously from the body); return its cid and token."""
        self._skip_stale_markers()
        cid = self._next_cid
        generated = token is None
        if token is None:
            token = self._hook_tokens.get(cid) or secrets.token_urlsafe(16)
        self._issue(None, ("hook", "" if generated else token))
        self._hooks[cid] = _HookState(token)
        self._commands.append(HookCommand(cid, token, generated))
        return cid, token

    def set_attribute(self, key: str, text: str, type_name: str, payload: bytes) -> None:
        """Set the run's attribute *key* (called synchronously from the body)."""
        cid = self._issue(None, ("attribute", key))
        self._commands.append(AttributeCommand(cid, key, text, type_name, payload))

    def publish(self, key: str, value: bytes) -> None:
        """Publish an encoded value under *key* (called synchronously from the body)."""
        cid = self._issue(None, ("publish", key))
        self._commands.append(PublishCommand(cid, key, value))

    def dispose_hook(self, cid: int) -> None:
        """Dispose a hook: waiting fibers see it end; the token is freed when journaled."""
        state = self._hooks[cid]
        if state.disposed:
            return
        state.disposed = True
        self._commands.append(HookDisposeCommand(cid))
        while state.waiters and not state.payloads:
            self._ready.append((state.waiters.popleft(), Value(HOOK_ENDED)))

    def deliver_hook(self, cid: int, payload: Any, at: float) -> list[Command]:
        """A payload for hook *cid*, in journal order: to the first waiter, else buffered."""
        state = self._hook_state(cid, at)
        if state.waiters:
            self._ready.append((state.waiters.popleft(), Value(payload)))
        else:
            state.payloads.append(payload)
        return self._run()

    def deliver_message(self, topic: str, payload: Any, at: float) -> list[Command]:
        """A message sent to the run on *topic*, in journal order: to the first receive
        waiting for that topic, else kept for the next one. Each goes to one receive."""
        self.now = max(self.now, at)
        state = self._topics.setdefault(topic, _Topic())
        if state.waiters:
            self._ready.append((state.waiters.popleft(), Value(payload)))
        else:
            state.payloads.append(payload)
        return self._run()

    def fail_hook(self, cid: int, error: BaseException, at: float) -> list[Command]:
        """Hook *cid* could not be created (token taken): every await on it raises *error*."""
        state = self._hook_state(cid, at)
        if state.error is not None:
            return []
        state.error = error
        while state.waiters:
            self._ready.append((state.waiters.popleft(), Failure(error)))
        return self._run()

    def _hook_state(self, cid: int, at: float) -> _HookState:
        if cid >= self._next_cid or cid not in self._hooks:
            self._broken = True
            raise NonDeterminismError(
                self.run_id, cid, "a hook payload for it", "no hook at that position"
            )
        self.now = max(self.now, at)
        return self._hooks[cid]

    def close(self) -> None:
        """Close every fiber's coroutine (the run was evicted or finished)."""
        for fiber in list(self._fibers):
            self._close(fiber)
        self.pending.clear()

    def unissued_recorded(self) -> int | None:
        """The first recorded cid the code has not issued, if any (checked once it finishes)."""
        missing = [
            cid
            for cid, (kind, _) in self._recorded.items()
            if cid >= self._next_cid and kind != "patch"
        ]
        return min(missing) if missing else None

    # -- the scheduler -------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], group: _Group | None, index: int) -> _Fiber:
        fiber = _Fiber(coro, group, index)
        self._fibers[fiber] = None
        self._ready.append((fiber, None))
        return fiber

    def _run(self) -> list[Command]:
        while self._ready and self.outcome is None:
            fiber, outcome = self._ready.popleft()
            if not fiber.finished:
                self._advance(fiber, outcome)
        if self.outcome is not None:
            finished = self.unissued_recorded()
            if finished is not None:
                self._broken = True
                raise NonDeterminismError(
                    self.run_id,
                    finished,
                    describe(self._recorded[finished]),
                    "the workflow to return",
                )
            self.close()
        commands, self._commands = self._commands, []
        return commands

    def _advance(self, fiber: _Fiber, outcome: Outcome | None) -> None:
        token = current_interpreter.set(self)
        try:
            if isinstance(outcome, Failure):
                request = fiber.coro.throw(outcome.error)
            else:
                request = fiber.coro.send(None if outcome is None else outcome.value)
        except StopIteration as stop:
            self._finish(fiber, Value(stop.value))
            return
        except Exception as exc:
            self._finish(fiber, Failure(exc))
            return
        finally:
            current_interpreter.reset(token)
        self._handle(fiber, request)

    def _handle(self, fiber: _Fiber, request: object) -> None:
        if isinstance(request, StepRequest):
            try:
                encoded = request.encode_args()
            except EncodeError as exc:
                self._ready.append((fiber, Failure(exc)))
                return
            cid = self._issue(fiber, ("step", request.name))
            self._commands.append(
                StepCommand(
                    cid, request.name, request.definition, request.args, request.kwargs, encoded
                )
            )
        elif isinstance(request, SleepRequest):
            cid = self._issue(fiber, ("sleep", "sleep"))
            self._sleeps.add(cid)
            self._commands.append(SleepCommand(cid, request.seconds, request.until))
        elif isinstance(request, GroupRequest):
            self._group(fiber, request)
        elif isinstance(request, HookReceive):
            self._receive(fiber, request.cid)
        elif isinstance(request, MessageReceive):
            topic = self._topics.setdefault(request.topic, _Topic())
            if topic.payloads:
                self._ready.append((fiber, Value(topic.payloads.popleft())))
            else:
                topic.waiters.append(fiber)
        elif isinstance(request, StartChildRequest):
            self._start_child(fiber, request)
        elif isinstance(request, ChildResult):
            child = self._children.get(request.cid)
            if child is None:
                error = RunwrightError("child.result() needs a child started by this run")
                self._ready.append((fiber, Failure(error)))
            elif child.outcome is not None:
                self._ready.append((fiber, child.outcome))
            else:
                child.waiters.append(fiber)
        else:
            error = RunwrightError(
                f"a workflow body awaited {request!r}, which is not a runwright operation; "
                "workflows may await steps, rw.sleep, rw.gather and rw.race only. "
                "Do I/O inside a step."
            )
            self._ready.append((fiber, Failure(error)))

    def _issue(self, fiber: _Fiber | None, label: tuple[str, str]) -> int:
        if self._recorded and label[0] != "patch":
            self._skip_stale_markers()
        cid = self._next_cid
        recorded = self._recorded.get(cid)
        if recorded is not None and recorded != label:
            self._broken = True
            raise NonDeterminismError(self.run_id, cid, describe(recorded), describe(label))
        self._next_cid += 1
        if fiber is not None:
            self.pending[cid] = fiber
        return cid

    def _start_child(self, fiber: _Fiber, request: StartChildRequest) -> None:
        try:
            encoded = request.encode_args()
        except EncodeError as exc:
            self._ready.append((fiber, Failure(exc)))
            return
        cid = self._issue(None, ("child", request.name))
        child_id = f"{self.run_id}.{cid}"
        self._children[cid] = _ChildState(fiber)
        timeout = getattr(request.definition, "timeout", None)
        self._commands.append(ChildCommand(cid, request.name, child_id, encoded, timeout))
        self._ready.append((fiber, Value((cid, child_id))))

    def deliver_child(self, cid: int, outcome: Outcome, at: float) -> list[Command]:
        """The child started at *cid* ended with *outcome* (in the parent's journal order)."""
        child = self._children.get(cid)
        if cid >= self._next_cid or child is None:
            self._broken = True
            raise NonDeterminismError(
                self.run_id, cid, "a child's outcome for it", "no child at that position"
            )
        self.now = max(self.now, at)
        child.outcome = outcome
        while child.waiters:
            self._ready.append((child.waiters.popleft(), outcome))
        return self._run()

    def _receive(self, fiber: _Fiber, cid: int) -> None:
        state = self._hooks[cid]
        if state.payloads:
            self._ready.append((fiber, Value(state.payloads.popleft())))
        elif state.error is not None:
            self._ready.append((fiber, Failure(state.error)))
        elif state.disposed:
            self._ready.append((fiber, Value(HOOK_ENDED)))
        else:
            state.waiters.append(fiber)

    def _group(self, owner: _Fiber, request: GroupRequest) -> None:
        count = len(request.awaitables)
        if count == 0:
            if request.kind == "race":
                error = ValueError("rw.race() needs at least one awaitable")
                self._ready.append((owner, Failure(error)))
            else:
                self._ready.append((owner, Value([])))
            return
        group = _Group(request.kind, owner, [None] * count, count)
        owner.awaiting = group
        for index, awaitable in enumerate(request.awaitables):
            group.members.append(self._spawn(_adopt(awaitable), group, index))

    def _finish(self, fiber: _Fiber, outcome: Outcome) -> None:
        fiber.finished = True
        self._fibers.pop(fiber, None)
        if fiber is self._main:
            self.outcome = outcome
            return
        group = fiber.group
        if group is None or group.done:
            return
        if isinstance(outcome, Failure) or group.kind == "race":
            # A race has its winner, or a gather member failed: the rest are
            # cancelled before the owner sees the outcome.
            self._settle(group, outcome)
            self._cancel_fibers(group.members)
            return
        group.results[fiber.index] = outcome.value
        group.remaining -= 1
        if group.remaining == 0:
            self._settle(group, Value(group.results))

    def _settle(self, group: _Group, outcome: Outcome) -> None:
        group.done = True
        group.owner.awaiting = None
        self._ready.append((group.owner, outcome))

    def _close(self, fiber: _Fiber) -> None:
        """Close a fiber's coroutine without letting it do anything.

        Closing runs the body's ``finally`` blocks. With this interpreter
        current, a step awaited there only yields a request (which ends the
        close with a RuntimeError, suppressed) instead of running the step
        for real, and whatever it issues is discarded.
        """
        fiber.finished = True
        self._fibers.pop(fiber, None)
        commands, next_cid = self._commands, self._next_cid
        self._commands = []
        token = current_interpreter.set(self)
        try:
            with contextlib.suppress(RuntimeError):
                fiber.coro.close()
        finally:
            current_interpreter.reset(token)
            # Leaving ``async with hook`` disposes it; a disposal takes no
            # position, so it is kept. Anything else issued here is not.
            commands += [
                c for c in self._commands if isinstance(c, HookDisposeCommand) and c.cid < next_cid
            ]
            self._commands, self._next_cid = commands, next_cid
