"""Run actors: one per live run, owning its interpreter, its steps and its timers.

Theory of operation
-------------------
An actor is a mailbox and the state of one run; it has no task of its own.
Messages (a step finished, a timer is due, cancel) are handed to it with
``deliver``: if the actor is idle, the delivering task runs the activation
itself; if it is busy, the message waits and the running activation picks it
up. An activation takes every message waiting, applies them all to the
interpreter in that order, and writes the outcome as ONE journal write: the
step completions, the commands the workflow issued in response (step N+1
scheduled *and* claimed), and the run's end if the body returned. Only after
that write commits does it start the new steps: the first in the step task
whose outcome started the activation, which carries on with it (``carry``),
the others as tasks in the supervisor's task group. Because activations never
overlap and each writes what it
applied, in order, journal order is the order the interpreter saw, and replay
reproduces it.

While the run is hot its interpreter stays in memory, suspended: a step
completion resumes the coroutine, nothing is re-executed, so step N costs the
same as step 1. The actor also keeps the run's replay log (the events it
wrote or loaded, with a cursor), so when the supervisor evicts the
interpreter (``cache_runs``) the next activation replays from memory, using
the hydration cache for decoded results, without re-reading the journal.
A fresh actor (after a restart) reads the run's events once and replays.

Other processes may write a run's events too (a hook payload, a cancel, a
child's end, a takeover). An activation's write therefore records the step
outcomes its claims won, but writes the commands that follow only if, in the
same transaction, this process still owns the run, the run has no outcome
the actor has not seen, and no command exists at those positions. Otherwise
the actor follows the journal: it reads from its cursor and replays (or lets
the run go). A hook payload, a cancel or a child's end written elsewhere
reaches the actor as ``JournalChanged`` and is applied the same way.

What an activation writes is built in :mod:`._writes`; how a fresh actor
rebuilds its run by replay is :mod:`._replaying`; how it follows what another
process wrote, or lets the run go, is :mod:`._following`.

A step's attempts run in a step task (:mod:`._attempts`), which posts only
the final outcome to the actor. The retry budget is counted in
attempt numbers, but an attempt interrupted by a crash or a shutdown is
always followed by a new one, even past the budget, because the step never
got to fail (with ``retries=0`` a crash must not fail a step that never ran).
When the workflow stops waiting for a step (a race's loser, a failed
gather's other, a cancelled run), the actor journals it as cancelled and
cancels its task's scope.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import (
    DecodeError,
    JournalError,
    NonDeterminismError,
    UnknownWorkflowError,
)
from ..journal._events import (
    CANCELLATION_KINDS,
    DEADLINE_CID,
    RESOLUTION_KINDS,
    Event,
    Kind,
)
from ..journal._tx import TIMED_OUT, Tx
from ._attempts import Launch, execute
from ._commands import (
    CancelCommand,
    ChildCommand,
    Command,
    Failure,
    Outcome,
    SleepCommand,
    StepCommand,
    Value,
)
from ._following import follow_journal, let_go, take_foreign_outcomes
from ._history import REPLAY_KINDS, step_error
from ._interpreter import Interpreter
from ._messages import (
    CancelRequested,
    HooksConflicted,
    JournalChanged,
    Message,
    RunContext,
    StepDone,
    TimerDue,
)
from ._replaying import (
    apply_outcome,
    rebuild,
    rebuild_and_resume,
)
from ._writes import (
    LostClaim,
    LostOwnership,
    activation,
    end_step,
    fire_deadline,
    fire_wait,
    request_cancel,
    run_end,
    wake_at,
)

if TYPE_CHECKING:
    from .._definitions import WorkflowDefinition
    from .._tracing import RunTrace
    from ._supervisor import Supervisor

__all__ = ["RunActor"]

log = logging.getLogger("runwright")

_RESOLUTION_KINDS = RESOLUTION_KINDS
_REPLAY_KINDS = REPLAY_KINDS
_PROBLEM_KINDS: dict[type[Exception], str] = {
    NonDeterminismError: "non_determinism",
    DecodeError: "undecodable_payload",
    UnknownWorkflowError: "unknown_workflow",
}


class RunActor:
    def __init__(
        self,
        supervisor: Supervisor,
        run_id: str,
        definition: WorkflowDefinition[Any, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        started_at: float,
        context: RunContext,
    ) -> None:
        self.sup = supervisor
        self.run_id = run_id
        self.definition = definition
        self.args = args
        self.kwargs = kwargs
        self.started_at = started_at
        self.context = context
        #: The run's spans here, if this runtime traces and the run's context is known.
        self.trace: RunTrace | None = None
        self.interpreter: Interpreter | None = None
        self.log: list[Event] | None = None
        self.cursor = 0
        self.resolved_through = 0
        self.in_flight: dict[int, anyio.CancelScope] = {}
        self.waiting: dict[int, float] = {}
        self.pending_commands: dict[int, Command] = {}
        self.disposed_hooks: set[int] = set()
        #: Positions whose work the workflow stopped waiting for (journaled as cancelled).
        self.released: set[int] = set()
        self.cancelling = False
        #: Why the run is being cancelled, if the request said ("timed out").
        self.cancel_reason: str | None = None
        self.children: set[str] = set()
        self.finishing: Outcome | None = None
        self.done = False
        self.activating = False
        self.evict_requested = False
        self._mailbox: deque[Message] = deque()
        #: Set while a step's task runs the activation its outcome started: the first
        #: step that activation launches is handed back to that task (see :meth:`carry`).
        self._carried: list[Launch] | None = None

    # -- the interpreter ---------------------------------------------------------

    def new_interpreter(
        self,
        recorded: Mapping[int, tuple[str, str]] | None,
        hook_tokens: Mapping[int, str] | None = None,
    ) -> Interpreter:
        definition, args, kwargs = self.definition, self.args, self.kwargs
        return Interpreter(
            self.run_id,
            lambda: definition.fn(*args, **kwargs),
            started_at=self.started_at,
            recorded=recorded,
            hook_tokens=hook_tokens,
            info=self.context,
        )

    def drop_interpreter(self) -> None:
        if self.interpreter is not None:
            self.interpreter.close()
            self.interpreter = None
        if self.sup.hot.get(self.run_id) is self:
            del self.sup.hot[self.run_id]
        self.evict_requested = False

    # -- journal writes ----------------------------------------------------------

    def remember(self, events: list[Event]) -> None:
        """Add the events this actor just wrote to its replay log."""
        if self.log is None:
            return
        if self.trace is not None:
            self.trace.written(events)
        self.log.extend(event for event in events if event.kind in _REPLAY_KINDS)
        self._note_resolutions(events)
        self.disposed_hooks.update(
            e.cid for e in events if e.kind == Kind.HOOK_DISPOSED and e.cid is not None
        )
        self.released.update(
            e.cid for e in events if e.kind in CANCELLATION_KINDS and e.cid is not None
        )

    def _note_resolutions(self, events: list[Event]) -> None:
        for event in events:
            if event.kind in _RESOLUTION_KINDS and event.seq > self.resolved_through:
                self.resolved_through = event.seq

    async def refresh_log(self) -> None:
        """Load the run's events newer than the cursor into the replay log."""
        self.merge(await self.sup.journal.events(self.run_id, after=self.cursor))

    def merge(self, events: list[Event]) -> None:
        """Add events read from the journal (those after the cursor) to the replay log.

        The cursor is how far this actor has *read* the journal; events it
        wrote itself are already in the log and are skipped by seq when a
        read brings them back.
        """
        tracing = self.sup.tracing
        if tracing is not None:
            self.trace = tracing.follow(
                self.trace,
                self.run_id,
                self.definition.name,
                self.started_at,
                events,
                news=self.log is not None,
            )
        if self.log is None:
            self.log = []
        known = {event.seq for event in self.log if event.seq > self.cursor}
        fresh = [e for e in events if e.kind in _REPLAY_KINDS and e.seq not in known]
        if fresh:
            self.log.extend(fresh)
            self.log.sort(key=lambda event: event.seq)
        if events:
            self.cursor = events[-1].seq
        self._note_resolutions(events)

    # -- messages ----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Messages wait for it, or it is applying some."""
        return bool(self._mailbox) or self.activating

    async def deliver(self, message: Message) -> None:
        """Post *message*; if the actor is idle, apply it (and whatever follows) now.

        An actor has no task of its own: the task that hands a message to an
        idle actor runs the activation, and any message posted meanwhile is
        applied by that same loop, in order. So activations never overlap,
        and a step's completion costs no task switch to reach its run.
        """
        self._mailbox.append(message)
        if not self.activating:
            await self._drain()

    async def carry(self, outcome: StepDone) -> Launch | None:
        """Deliver a step's *outcome* from the step's own task; return the step the
        activation launched for this task to run next (the first one), if any.

        A sequential workflow launches its next step from the activation that
        its previous step's outcome runs: that step goes on in the same task
        instead of a new one (a task costs more than a step's own bookkeeping).
        Only the task that runs the activation carries; when another task is
        already activating, the outcome is queued for it and steps are spawned.
        """
        if self.activating:
            await self.deliver(outcome)
            return None
        carried: list[Launch] = []
        self._carried = carried
        try:
            await self.deliver(outcome)
        finally:
            self._carried = None
        return carried[0] if carried else None

    def start(self, initial: list[Command], events: list[Event]) -> None:
        """Carry out the commands a fresh start just journaled (in *events*)."""
        self.launch(initial, self.started_at)
        conflicts = tuple(e for e in events if e.kind == Kind.HOOK_CONFLICT)
        if conflicts:
            self.sup.spawn(self.deliver, HooksConflicted(conflicts))
        elif self.sup.cache_runs == 0:
            self.drop_interpreter()

    async def recover(self) -> None:
        """Rebuild the run from its journal, then apply what arrived meanwhile."""
        self.activating = True
        delay = 0.05
        while True:
            try:
                await self._guarded(functools.partial(rebuild_and_resume, self))
                return
            except JournalError as exc:
                # The journal logs when writes start failing and when they work again.
                log.debug("run %s: recovery failed, retrying: %s", self.run_id, exc)
                self.activating = True
                await self.sup.journal.backoff(delay)
                delay = min(delay * 2, 2.0)

    async def _drain(self) -> None:
        self.activating = True
        if len(self.in_flight) > 1:
            # Other steps of this run are running: one pass of the scheduler
            # first lets those finishing together (a gather) reach the mailbox
            # before it is read, so they share one write.
            await anyio.lowlevel.cancel_shielded_checkpoint()
        await self._guarded(self._apply_mailbox)

    async def _apply_mailbox(self) -> None:
        while self._mailbox and not self.done:
            batch = list(self._mailbox)
            self._mailbox.clear()
            await self._activate_or_requeue(batch)

    async def _guarded(self, work: Callable[[], Awaitable[None]]) -> None:
        problem: Exception | None = None
        try:
            await work()
            await self._apply_mailbox()
        except (NonDeterminismError, DecodeError, UnknownWorkflowError) as exc:
            problem = exc
        except LostOwnership:
            await let_go(self)
        finally:
            self.activating = False
            if self.done or problem is not None:
                self.cancel_steps()
                self.drop_interpreter()
                self.sup.forget(self)
        if problem is not None:
            self.done = True
            await self.sup.stuck(self, _PROBLEM_KINDS[type(problem)], problem)

    def notify_children(self) -> None:
        """Children run here see the cancel the parent's write recorded for them."""
        for child_id in self.children:
            child = self.sup.actors.get(child_id)
            if child is not None and not child.done:
                self.sup.spawn(child.deliver, JournalChanged())

    def _cancel(self, interpreter: Interpreter, at: float, reason: str | None) -> list[Command]:
        self.cancelling = True
        self.cancel_reason = reason
        return interpreter.cancel(at)

    async def _activate_or_requeue(self, batch: list[Message]) -> None:
        """Apply *batch*; if the journal cannot take the write, retry it later.

        The interpreter has already seen the batch, so it is dropped and the
        next attempt rebuilds it from the replay log, which holds only what
        was written.
        """
        finishing, waiting = self.finishing, dict(self.waiting)
        cancelling, reason = self.cancelling, self.cancel_reason
        delay = 0.05
        while True:
            try:
                await self._activate(batch)
                return
            except JournalError as exc:
                log.debug("run %s: journal write failed, retrying: %s", self.run_id, exc)
                self.drop_interpreter()
                self.finishing, self.waiting = finishing, dict(waiting)
                self.cancelling, self.cancel_reason = cancelling, reason
                await self.sup.journal.backoff(delay)
                delay = min(delay * 2, 2.0)

    async def _activate(self, batch: list[Message]) -> None:
        at = self.sup.clock.now()
        if any(isinstance(m, JournalChanged) for m in batch):
            await self._apply(batch, at)
            if not self.done and not await take_foreign_outcomes(self):
                await follow_journal(self)
            return
        await self._apply(batch, at)

    async def _apply(self, batch: list[Message], at: float) -> None:
        # Commands a replay issues that the journal lacks follow from outcomes
        # the interpreter had not applied yet (a hook conflict after a start).
        commands: list[Command] = []
        if self.interpreter is None and self.finishing is None:
            commands += await rebuild(self)
        interpreter = self.interpreter
        ends: list[Callable[[Tx], object]] = []
        resolved: list[tuple[int, object, int]] = []
        for message in batch:
            if isinstance(message, HooksConflicted):
                if interpreter is not None and self.finishing is None:
                    for event in message.events:
                        commands += apply_outcome(self, interpreter, event)
                continue
            if isinstance(message, StepDone):
                self.in_flight.pop(message.cid, None)
                if message.cid in self.released:
                    continue  # it finished as it was cancelled: the cancel stands
                ends.append(end_step(self.run_id, message, at))
                if message.ok:
                    value = self.sup.codec.decode(message.payload)
                    resolved.append((message.cid, value, len(message.payload)))
                    outcome: Outcome = Value(value)
                else:
                    outcome = Failure(step_error(message.name, message.payload, self.sup.codec))
            elif isinstance(message, TimerDue):
                if self.waiting.pop(message.cid, None) is None:
                    continue
                if message.cid == DEADLINE_CID:
                    # The run's timeout: a cancel, asked for by the clock.
                    if not self.cancelling:
                        ends.append(fire_deadline(self.run_id, at))
                        if interpreter is not None and self.finishing is None:
                            commands += self._cancel(interpreter, at, TIMED_OUT)
                    continue
                ends.append(fire_wait(self.run_id, message.cid, at))
                outcome = Value(None)
            elif isinstance(message, CancelRequested):
                if self.cancelling:
                    continue
                ends.append(request_cancel(self.run_id, at))
                if interpreter is not None and self.finishing is None:
                    commands += self._cancel(interpreter, at, None)
                continue
            else:
                continue
            if interpreter is not None and self.finishing is None:
                commands += interpreter.resolve(message.cid, outcome, at)
        await self.write_all(interpreter, ends, commands, resolved, at)

    async def write_all(
        self,
        interpreter: Interpreter | None,
        ends: list[Callable[[Tx], object]],
        commands: list[Command],
        resolved: list[tuple[int, object, int]],
        at: float,
    ) -> None:
        """Write outcomes and the commands that follow, then whatever hook conflicts cause."""
        while True:
            if interpreter is not None and interpreter.outcome is not None and not self.finishing:
                self.finishing = interpreter.outcome
            ending = self.finishing is not None and not self._steps_left(commands)
            if not ends and not commands and not ending:
                break
            events = await self._write_or_follow(ends, commands, at)
            if self.cancelling:
                self.notify_children()
            if events is None or self.done or interpreter is None:
                return
            for event in events:
                if event.kind == Kind.STEP_COMPLETED:
                    for cid, value, size in resolved:
                        if cid == event.cid:
                            self.sup.hydration.put(event.seq, value, size)
            # A hook whose token is taken fails where the workflow awaits it;
            # the workflow may go on, so what follows is written next.
            ends, commands, resolved = [], [], []
            for event in events:
                if event.kind == Kind.HOOK_CONFLICT and self.finishing is None:
                    commands += apply_outcome(self, interpreter, event)
        if self.sup.cache_runs == 0 or self.evict_requested:
            self.drop_interpreter()

    async def _write_or_follow(
        self, ends: list[Callable[[Tx], object]], commands: list[Command], at: float
    ) -> list[Event] | None:
        """Write; if the journal moved on without us, follow it (or let go) and return None."""
        try:
            return await self._write(ends, commands, at)
        except LostClaim:
            await follow_journal(self)
        except LostOwnership:
            await let_go(self)
        return None

    def stop_driving(self) -> None:
        """Another process owns the run now: cancel its steps here and let go (once:
        the lease renewal and a write that lost ownership may both find out)."""
        if self.done:
            return
        log.warning("run %s: another process drives it now; letting go", self.run_id)
        self.done = True
        self.cancel_steps()
        if not self.activating:
            self.drop_interpreter()
        self.sup.forget(self)
        # Should the lease still be ours after all, free it so the run is not
        # left held by a process that no longer drives it.
        self.sup.spawn(self.sup.release_run, self.run_id)

    async def _write(
        self, ends: list[Callable[[Tx], object]], commands: list[Command], at: float
    ) -> list[Event]:
        end = None
        if self.finishing and not self._steps_left(commands):
            end = run_end(self, self.finishing)
        events, lost = await self.sup.journal.write(activation(self, ends, commands, end, at))
        self.remember(events)
        if lost is not None:
            raise lost
        self.launch(commands, at)
        if end is not None:
            self.done = True
            if self.trace is not None:
                self.trace.ended(end.status, at)
            self.sup.finished(self, end)
        return events

    def _steps_left(self, commands: list[Command]) -> bool:
        """Whether steps of this run will still be running once *commands* are carried out."""
        if not self.in_flight:
            return False
        cancelled = {c.cid for c in commands if isinstance(c, CancelCommand) and c.kind == "step"}
        return any(cid not in cancelled for cid in self.in_flight)

    def cancel_steps(self) -> None:
        for scope in self.in_flight.values():
            scope.cancel()
        self.in_flight.clear()

    # -- steps and timers --------------------------------------------------------

    def launch(self, commands: list[Command], at: float) -> None:
        # A command released in the activation that issued it comes with its release.
        cancelled = (
            {c.cid for c in commands if isinstance(c, CancelCommand)} if commands[1:] else ()
        )
        for command in commands:
            if isinstance(command, StepCommand | SleepCommand) and command.cid in cancelled:
                continue  # issued and released in one activation: journaled, never started
            if isinstance(command, CancelCommand):
                self._release(command)
            elif isinstance(command, StepCommand):
                if not self.sup.stopping:
                    self._start_step(command, attempt=1, claimed=True)
            elif isinstance(command, SleepCommand):
                when = wake_at(command, at)
                self.waiting[command.cid] = when
                self.sup.timers.add(when, self.run_id, command.cid)
            elif isinstance(command, ChildCommand):
                self.children.add(command.child_id)
                self.sup.adopt(command.child_id)

    def set_deadline(self, deadline: float) -> None:
        """Cancel the run ("timed out") at *deadline*, unless it ends first."""
        if DEADLINE_CID not in self.waiting:
            self.waiting[DEADLINE_CID] = deadline
            self.sup.timers.add(deadline, self.run_id, DEADLINE_CID)

    def _release(self, command: CancelCommand) -> None:
        """Carry out a journaled cancel here: stop the attempt, drop the timer, tell the child."""
        self.released.add(command.cid)
        if command.kind == "step":
            scope = self.in_flight.pop(command.cid, None)
            if scope is not None:
                scope.cancel()
        elif command.kind == "sleep":
            self.waiting.pop(command.cid, None)
        else:
            child = self.sup.actors.get(f"{self.run_id}.{command.cid}")
            if child is not None and not child.done:
                self.sup.spawn(child.deliver, JournalChanged())

    def _start_step(
        self,
        command: StepCommand,
        *,
        attempt: int,
        claimed: bool,
        retry_at: float | None = None,
    ) -> None:
        scope = anyio.CancelScope()
        self.in_flight[command.cid] = scope
        carried = self._carried
        if carried is not None and not carried:
            carried.append((command, scope, attempt, claimed, retry_at))
        else:
            self.sup.spawn(execute, self, command, scope, attempt, claimed, retry_at)
