"""The supervisor: every run actor of one process, their timers and leases.

It starts runs (create and first commands in one write), resumes every
unfinished run it can claim when the runtime starts, fires durable timers
(:mod:`._timers`, on the injectable clock), renews the leases of the runs it
drives, bounds hot interpreters (``cache_runs``, least recently used first)
and running steps (a capacity limiter), and on shutdown stops starting steps,
gives running ones a grace period, and releases its leases so that another
process can continue at once.

Ownership: a run's ``owner`` names a process as ``host:pid:token``. A lease
that has expired, or whose owner is a process on this host that no longer
exists, may be claimed; the claim is a conditional UPDATE, so two claimants
cannot both win.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar, cast

import anyio
import anyio.abc

from .._clock import Clock
from .._definitions import WorkflowDefinition, lookup_workflow
from .._exceptions import (
    DecodeError,
    HookNotFound,
    JournalError,
    JournalUnavailable,
    KeyConflict,
    RunEnded,
    RunNotFound,
    UnknownWorkflowError,
)
from .._tracing import Tracing
from ..journal._codec import Codec
from ..journal._events import STREAM_KINDS, Kind
from ..journal._journal import Journal
from ..journal._queries import claimable_runs, live_runs, owners
from ..journal._tx import Tx
from ..streams._hub import StreamHub
from ._actor import RunActor
from ._commands import ChildCommand
from ._hydration import HydrationCache
from ._identity import new_owner_id, new_run_id, owner_is_dead
from ._messages import (
    CancelRequested,
    JournalChanged,
    Message,
    RunContext,
    RunEnd,
    TimerDue,
)
from ._slots import StepSlots
from ._timers import Timers
from ._waiters import Waiters
from ._writes import journal_commands, run_end, write_end

__all__ = ["Supervisor"]

T = TypeVar("T")
log = logging.getLogger("runwright")

_TERMINAL = ("completed", "failed", "cancelled")
_END_KINDS = frozenset({Kind.RUN_COMPLETED, Kind.RUN_FAILED, Kind.RUN_CANCELLED})
#: Seconds between looks for runs held by processes of this host that no longer exist.
_DEAD_OWNER_CHECK = 1.0


class Supervisor:
    def __init__(
        self,
        journal: Journal,
        codec: Codec,
        clock: Clock,
        *,
        cache_runs: int,
        max_concurrent_steps: int,
        lease_seconds: float,
        hydration_bytes: int,
        execute: bool = True,
        host_id: str | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        if cache_runs < 0:
            raise ValueError(f"cache_runs must be >= 0, got {cache_runs}")
        if max_concurrent_steps < 1:
            raise ValueError(f"max_concurrent_steps must be >= 1, got {max_concurrent_steps}")
        self.journal = journal
        self.codec = codec
        self.clock = clock
        if host_id is not None and (not host_id or ":" in host_id):
            raise ValueError(f"host_id must be a non-empty name without ':', got {host_id!r}")
        self.owner = new_owner_id(host_id)
        self.cache_runs = cache_runs
        self.lease_seconds = lease_seconds
        self.execute = execute
        #: OpenTelemetry spans of runs, if this runtime traces (decided once, at open).
        self.tracing = tracing
        self.max_concurrent_steps = max_concurrent_steps
        self.step_limiter = StepSlots(max_concurrent_steps)
        self.hydration = HydrationCache(hydration_bytes)
        self.streams = StreamHub(journal, codec, clock.now, self.spawn)
        self.stopping = False
        self.actors: dict[str, RunActor] = {}
        self.hot: OrderedDict[str, RunActor] = OrderedDict()
        self.stuck_runs: dict[str, str] = {}
        self._running_steps = 0
        #: Made only while stop() waits for running steps (not one per step).
        self._steps_idle: anyio.Event | None = None
        #: The durable timers this process waits for (sleeps, deadlines).
        self.timers = Timers(clock, self._timer_due)
        self.waiters = Waiters(journal, lambda run_id: run_id in self.actors)
        self._scan_requested = False
        self._scanning = False
        self._backlog = False
        self._tg: anyio.abc.TaskGroup | None = None

    # -- life ----------------------------------------------------------------------

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.execute:
                tg.start_soon(self.timers.run)
                tg.start_soon(self._lease_loop)
                tg.start_soon(self._dead_owner_loop)
                try:
                    await self.recover(dead_owners=True)
                except JournalError as exc:
                    # Open anyway (reads work, and new writes say why they fail);
                    # the runs are claimed once the journal takes writes again.
                    log.warning("runwright: cannot claim runs yet, will retry: %s", exc)
                    self.request_scan()
            task_status.started()

    async def stop(self, grace: float) -> None:
        """Stop starting steps, wait up to *grace* seconds for running ones, stop every actor."""
        self.stopping = True
        with anyio.move_on_after(grace):
            if self._running_steps:
                self._steps_idle = anyio.Event()
                await self._steps_idle.wait()
            # Let actors journal what the last steps returned before they stop
            # (not while the journal refuses writes: what they hold is redone on
            # the next start).
            while self.journal.fault is None and any(  # noqa: ASYNC110 (once, at shutdown)
                actor.busy for actor in self.actors.values()
            ):
                await anyio.sleep(0.001)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def release_run(self, run_id: str) -> None:
        owner = self.owner
        with _survive(f"releasing run {run_id}"):
            if await self.journal.write(lambda tx: tx.release_run(run_id, owner)):
                self.request_scan()

    async def release(self) -> None:
        """Free this process's leases at shutdown; if the journal cannot take it, they expire."""
        owner = self.owner
        try:
            await self.journal.write(lambda tx: tx.release_runs(owner))
        except JournalError as exc:
            log.warning("runwright: could not release leases (they will expire): %s", exc)

    def adopt(self, run_id: str) -> None:
        """Drive a run this process just created and owns (a child run)."""
        if run_id not in self.actors:
            self.spawn(self._resume, run_id)

    async def _lease_loop(self) -> None:
        """Renew leases; let go of runs another process took; claim runs nobody drives."""
        while True:
            await anyio.sleep(self.lease_seconds / 3)
            with _survive("renewing leases"):
                await self.renew()
                await self.recover(dead_owners=True)

    async def _dead_owner_loop(self) -> None:
        """Take over at once the runs of processes on this host that died (kill -9)."""
        while True:
            await anyio.sleep(_DEAD_OWNER_CHECK)
            with _survive("looking for runs of dead processes"):
                holders = await self.journal.read(owners)
                if any(owner != self.owner and owner_is_dead(owner) for owner in holders):
                    await self.recover(dead_owners=True)

    async def renew(self) -> None:
        renew = functools.partial(
            Tx.renew_leases, owner=self.owner, lease_seconds=self.lease_seconds
        )
        # Only actors that existed before the renewal: a run claimed while it
        # was being written is ours but not in *owned*.
        before = dict(self.actors)
        owned = await self.journal.write(renew)
        for run_id, actor in before.items():
            if run_id not in owned and not actor.done and self.actors.get(run_id) is actor:
                actor.stop_driving()

    # -- runs ----------------------------------------------------------------------

    async def start_run(
        self,
        definition: WorkflowDefinition[Any, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        key: str | None,
        *,
        timeout: float | None = None,
        only_if: Callable[[Tx], object] | None = None,
    ) -> str:
        """Create a run and journal its first commands in one write; return its id.

        With *timeout*, the run's deadline is written with it. *only_if* runs
        first in the same transaction and may raise to refuse it (nothing is
        written; the caller gets its exception).
        """
        if self.stopping:
            raise RuntimeError("the runtime is shutting down; it starts no new runs")
        definition.check_args(args, kwargs)
        encoded_args = definition.encode_args(self.codec, args, kwargs)
        run_id = new_run_id()
        at = self.clock.now()
        owner = self.owner if self.execute else None
        lease = self.lease_seconds
        actor = self._actor(run_id, definition, args, kwargs, at)
        deadline = None if timeout is None else at + timeout
        commands: list[Any] = []
        end = None
        tracing = self.tracing
        #: The run's trace context as journaled, if this runtime traces.
        journaled: str | None = None
        if self.execute:
            interpreter = actor.new_interpreter(None)
            actor.interpreter, actor.log = interpreter, []
            commands = interpreter.start()
            if interpreter.outcome is not None:
                actor.finishing = interpreter.outcome
                end = run_end(actor, interpreter.outcome)

        def create(tx: Tx) -> tuple[tuple[str, str, bytes] | None, list[Any]]:
            if only_if is not None:
                only_if(tx)
            existing = tx.create_run(
                run_id,
                definition.name,
                encoded_args,
                at,
                key=key,
                owner=owner,
                lease_seconds=lease,
            )
            if existing is not None:
                return existing, []
            if journaled is not None:
                tx.append(run_id, Kind.TRACE_CONTEXT, at, name=journaled)
            if deadline is not None:
                tx.set_deadline(run_id, deadline, self.codec.encode(deadline), at)
            journal_commands(actor, tx, commands, at)
            if end is not None:
                write_end(tx, run_id, end, at)
            return None, tx.events

        try:
            if tracing is None:
                existing, events = await self._write_patiently(create)
            else:
                with tracing.starting(run_id, definition.name) as journaled:
                    # Before the write: the children it starts journal the run's context.
                    actor.trace = tracing.run(run_id, definition.name, at, journaled)
                    existing, events = await self._write_patiently(create)
                    if existing is not None:
                        tracing.found(existing[0])
        except BaseException:
            actor.drop_interpreter()
            raise
        if existing is not None:
            actor.drop_interpreter()
            holder, workflow, held_args = existing
            if workflow != definition.name:
                raise KeyConflict(key or "", holder, f"a run of workflow {workflow!r}")
            if self.codec.decode(held_args) != self.codec.decode(encoded_args):
                raise KeyConflict(key or "", holder, "a run started with other arguments")
            return holder
        if not self.execute:
            return run_id
        actor.remember(events)
        if end is not None:
            actor.drop_interpreter()
            if actor.trace is not None:
                actor.trace.ended(end.status, at)
            self.finished(actor, end)
            # Children it started before returning are driven here (their lease is ours).
            for command in commands:
                if isinstance(command, ChildCommand):
                    self.adopt(command.child_id)
            return run_id
        self.actors[run_id] = actor
        self.touch(actor)
        if deadline is not None:
            actor.set_deadline(deadline)
        actor.start(commands, events)
        return run_id

    async def _write_patiently(self, fn: Callable[[Tx], T]) -> T:
        """Write *fn*, retrying while the journal is unavailable, for up to its
        ``reconnect_timeout`` (*fn* must be safe to repeat: its first try may
        have committed unseen)."""
        deadline = time.monotonic() + getattr(self.journal, "reconnect_timeout", 0.0)
        delay = 0.05
        while True:
            try:
                return await self.journal.write(fn)
            except JournalUnavailable:
                if time.monotonic() + delay >= deadline:
                    raise
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _actor(
        self,
        run_id: str,
        definition: WorkflowDefinition[Any, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        started_at: float,
    ) -> RunActor:
        context = RunContext(
            run_id, definition.name, dt.datetime.fromtimestamp(started_at, dt.UTC), self.codec
        )
        return RunActor(self, run_id, definition, args, kwargs, started_at, context)

    async def recover(self, *, dead_owners: bool = False) -> None:
        """Claim and resume unfinished runs that nobody alive drives, as many as fit.

        A process takes at most as many runs as it has free step slots (and
        at least one), oldest first, so that several workers share a backlog;
        it looks again as its runs end. With *dead_owners* it also takes runs
        whose owner is a process on this host that no longer exists (this
        reads every live run, so it is done at start and with lease renewal).
        """
        me = self.owner
        room = max(1, self.max_concurrent_steps - len(self.actors))
        skip = len(self.actors) + len(self.stuck_runs)  # rows we may see that are ours already
        if dead_owners:
            rows = await self.journal.read(live_runs)
        else:
            rows = await self.journal.read(lambda c: claimable_runs(c, me, room + skip + 1))
        candidates: list[tuple[str, str]] = []
        for run_id, owner, expired in rows:
            if run_id in self.actors or run_id in self.stuck_runs:
                continue
            if owner is None or owner == me or expired:
                candidates.append((run_id, ""))
            elif dead_owners and owner_is_dead(owner):
                candidates.append((run_id, owner))
        self._backlog = len(candidates) > room
        candidates = candidates[:room]
        if not candidates:
            return
        lease = self.lease_seconds
        claimed: list[str] = await self.journal.write(
            lambda tx: [
                run_id
                for run_id, dead in candidates
                if tx.claim_run(run_id, me, lease, steal_from=dead)
            ]
        )
        if self._backlog and len(claimed) < len(candidates):
            # Others won some claims and more runs wait: look again now (with no
            # run of its own ending, a process would idle until its next renewal).
            self.request_scan()
        for run_id in claimed:
            await self._resume(run_id)

    async def _resume(self, run_id: str) -> None:
        try:
            row = await self.journal.run(run_id)
        except DecodeError as exc:  # its arguments' file is missing (PayloadFileCorrupt)
            await self._mark_stuck(run_id, "undecodable_payload", exc)
            return
        except JournalError as exc:
            # It is ours (claimed or adopted): a later scan picks it up again.
            log.warning("runwright: cannot read run %s yet, will retry: %s", run_id, exc)
            self.request_scan()
            return
        if row is None or row.status in _TERMINAL:
            return
        try:
            definition = lookup_workflow(row.workflow, run_id)
            args, kwargs = cast("tuple[list[Any], dict[str, Any]]", self.codec.decode(row.args))
        except UnknownWorkflowError as exc:
            await self._mark_stuck(run_id, "unknown_workflow", exc)
            return
        except DecodeError as exc:
            await self._mark_stuck(run_id, "undecodable_payload", exc)
            return
        if run_id in self.actors:
            return  # a concurrent scan claimed it too (claims by one owner both win)
        actor = self._actor(run_id, definition, tuple(args), kwargs, row.created_at)
        self.actors[run_id] = actor
        self.spawn(actor.recover)

    async def _mark_stuck(self, run_id: str, kind: str, error: Exception) -> None:
        log.error("run %s cannot advance: %s", run_id, error)
        self.stuck_runs[run_id] = str(error)
        owner, at, message = self.owner, time.time(), str(error)

        def record(tx: Tx) -> None:
            tx.set_problem(run_id, kind, message, at)
            tx.release_run(run_id, owner)

        with anyio.CancelScope(shield=True), _survive(f"recording why run {run_id} is stuck"):
            await self.journal.write(record)

    async def stuck(self, actor: RunActor, kind: str, error: Exception) -> None:
        self.forget(actor)
        await self._mark_stuck(actor.run_id, kind, error)

    def forget(self, actor: RunActor) -> None:
        if self.actors.get(actor.run_id) is actor:
            del self.actors[actor.run_id]
        if self.hot.get(actor.run_id) is actor:
            del self.hot[actor.run_id]
        self.poke(actor.run_id)

    def on_foreign_events(self, events: list[tuple[int, str, str]]) -> None:
        """Other processes wrote *events*: wake the actors, waiters and claims they concern."""
        touched: set[str] = set()
        scan = False
        self.streams.on_foreign_events(events)
        for _seq, run_id, kind in events:
            if kind in STREAM_KINDS:
                continue
            if run_id in self.actors:
                touched.add(run_id)
            if kind in _END_KINDS:
                self.poke(run_id)
            elif kind == Kind.RUN_CREATED:
                scan = True
        for run_id in touched:
            actor = self.actors[run_id]
            if not actor.done:
                self.spawn(actor.deliver, JournalChanged())
        if scan:
            self.request_scan()

    def request_scan(self) -> None:
        """Look for runs to claim soon (requests made during a scan coalesce into one more)."""
        if self.execute and not self.stopping:
            self._scan_requested = True
            if not self._scanning:
                self.spawn(self._scan)

    async def _scan(self) -> None:
        """Claim new runs until no request for a scan is left (requests coalesce)."""
        self._scanning = True
        delay = 0.05
        try:
            while self._scan_requested and not self.stopping:
                self._scan_requested = False
                try:
                    await self.recover()
                    delay = 0.05
                except JournalError as exc:
                    # The runs to claim are still there: look again soon, not at
                    # the next lease renewal.
                    log.warning("runwright: claiming new runs failed, will retry: %s", exc)
                    self._scan_requested = True
                    await self.journal.backoff(delay)
                    delay = min(delay * 2, 2.0)
        finally:
            self._scanning = False

    def poke(self, run_id: str) -> None:
        """Make whoever waits for *run_id* look again (it is no longer driven here)."""
        self.waiters.poke(run_id)

    def finished(self, actor: RunActor, end: RunEnd) -> None:
        # Its waiters learn the end first: forgetting the actor then finds them
        # answered (a poke before would wake them to look for nothing).
        self.waiters.ended(actor.run_id, end)
        self.forget(actor)
        self.streams.run_ended(actor.run_id)
        parent_id, dot, _ = actor.run_id.rpartition(".")
        parent = self.actors.get(parent_id) if dot else None
        if parent is not None and not parent.done:
            # The child's end is in the parent's journal already; let it look.
            self.spawn(parent.deliver, JournalChanged())
        if self._backlog:
            self.request_scan()

    def touch(self, actor: RunActor) -> None:
        """Mark *actor*'s interpreter as just used; evict the least recent beyond cache_runs."""
        if self.cache_runs == 0 or actor.interpreter is None:
            return
        self.hot[actor.run_id] = actor
        self.hot.move_to_end(actor.run_id)
        while len(self.hot) > self.cache_runs:
            _, oldest = self.hot.popitem(last=False)
            if oldest.activating:
                oldest.evict_requested = True
            else:
                oldest.drop_interpreter()

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, object]], *args: object) -> None:
        """Start a task in the supervisor's task group (actors and their steps)."""
        assert self._tg is not None
        self._tg.start_soon(fn, *args)

    async def _apply_here(self, actor: RunActor, message: Message) -> None:
        """Hand *message* to *actor* and wait until it is applied. The activation runs in
        a task of the supervisor: a caller that stops waiting (a timeout) must not
        interrupt it halfway, between its journal write and what follows from it."""
        applied = anyio.Event()

        async def apply() -> None:
            try:
                await actor.deliver(message)
            finally:
                applied.set()

        self.spawn(apply)
        await applied.wait()

    def deliver(self, run_id: str, message: Message) -> None:
        actor = self.actors.get(run_id)
        if actor is not None and not actor.done:
            self.spawn(actor.deliver, message)

    async def resume_hook(self, token: str, payload: object) -> None:
        """Deliver *payload* to the live hook holding *token*, in any process's run."""
        encoded = self.codec.encode(payload)
        at = self.clock.now()
        event = await self.journal.write(lambda tx: tx.resume_hook(token, encoded, at))
        if event is None:
            raise HookNotFound(token)
        actor = self.actors.get(event.run_id)
        if actor is not None and not actor.done:
            await self._apply_here(actor, JournalChanged())

    async def send(self, run_id: str, topic: str, payload: object) -> None:
        """Journal a message to a run; whichever process drives it delivers it."""
        encoded = self.codec.encode(payload)
        at = self.clock.now()
        sent = await self.journal.write(lambda tx: tx.send_message(run_id, topic, encoded, at))
        if sent == "unknown":
            raise RunNotFound(run_id)
        if sent == "ended":
            raise RunEnded(run_id)
        actor = self.actors.get(run_id)
        if actor is not None and not actor.done:
            await self._apply_here(actor, JournalChanged())

    async def cancel(self, run_id: str) -> None:
        """Ask a run to cancel; whichever process drives it raises Cancelled in its body."""
        actor = self.actors.get(run_id)
        if actor is not None and not actor.done:
            await self._apply_here(actor, CancelRequested())
            return
        at = self.clock.now()
        answer = await self.journal.write(lambda tx: tx.request_cancel(run_id, at))
        if answer == "unknown":
            raise RunNotFound(run_id)
        if answer == "finished":
            self.streams.run_ended(run_id)
            self.poke(run_id)

    async def wait(
        self, run_id: str, timeout: float | None, *, raise_on_problem: bool = False
    ) -> RunEnd:
        """Wait for a run to end (see :class:`Waiters`)."""
        return await self.waiters.wait(run_id, timeout, raise_on_problem=raise_on_problem)

    # -- steps ---------------------------------------------------------------------

    def idle(self) -> bool:
        """No step runs and no actor applies outcomes: every run here waits (for a timer,
        a hook, a child, or another process)."""
        return self._running_steps == 0 and not any(a.busy for a in self.actors.values())

    def step_started(self) -> None:
        self._running_steps += 1

    def step_finished(self) -> None:
        self._running_steps -= 1
        if self._running_steps == 0 and self._steps_idle is not None:
            self._steps_idle.set()

    # -- timers --------------------------------------------------------------------

    def _timer_due(self, run_id: str, cid: int) -> None:
        if not self.stopping:
            self.deliver(run_id, TimerDue(cid))


@contextlib.contextmanager
def _survive(doing: str) -> Iterator[None]:
    """Background work meets a locked or failing journal: log it; the next round retries."""
    try:
        yield
    except JournalError as exc:
        log.warning("runwright: %s failed, will retry: %s", doing, exc)
