"""Firing schedules: one loop per declared schedule in each runtime that runs steps,
and what the API and the CLI do to schedules (list, pause, resume, trigger).

Theory of operation
-------------------
When a runtime opens, it records in the journal the schedules its process
declared (:func:`~.journal._schedules.declare_schedule`: the latest
declaration wins), then runs one loop per schedule in its supervisor's task
group. A loop sleeps on the runtime's clock until the schedule's next tick,
reads the schedule's row, and starts the due ticks' runs. Nothing else in
the process knows about schedules, so shutdown is the supervisor's: its
task group is cancelled and the loops with it.

Due ticks are those after ``max(fire_after, last_tick)`` and not after now,
the newest first, as many as the catch-up policy can use: with
``"latest"`` only the newest; with ``"all"`` up to :data:`MAX_CATCH_UP`,
oldest first; with ``"skip"`` the newest, and only if it fell since this
loop began (a tick that fell while no process served the schedule is never
started). In a process that runs along, one tick is due at each wake-up
and every policy starts it.

A tick's run is started with key ``schedule:NAME:TICK`` (the tick in UTC),
in the same transaction as :func:`~.journal._schedules.claim_tick`, which
refuses a paused schedule or one whose expression changed since the row
was read. Two processes that fire the same tick write the same key: one
creates the run, the other gets it back. The loop follows the journal's
declaration of its schedule (cron expression, time zone, catch-up), which
is the newest any process made, and fires only while the journal names the
same workflow as this process.

``trigger`` starts a run now, whatever the schedule's ticks and pause: its
key is ``schedule:NAME:trigger:NOW`` (microseconds, UTC), so a write that
is retried after a lost connection starts one run, and two triggers start
two. A process that has not declared the schedule (the CLI) creates the
run unowned, for a process that has its workflow to claim.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import zoneinfo
from typing import Any

import anyio
import anyio.to_thread
import attrs

from ._clock import Clock
from ._definitions import WorkflowDefinition, lookup_workflow
from ._exceptions import JournalError, KeyConflict, ScheduleNotFound, UnknownWorkflowError
from ._schedule import MAX_CATCH_UP, Schedule, declared_schedules
from .actors._identity import new_run_id
from .actors._supervisor import Supervisor
from .journal._codec import Codec
from .journal._journal import Journal
from .journal._schedules import (
    ScheduleRow,
    claim_tick,
    declare_schedule,
    schedule_row,
    schedule_rows,
    set_paused,
)
from .journal._tx import Tx

__all__ = [
    "ScheduleInfo",
    "Scheduler",
    "list_schedules",
    "pause",
    "start_schedules",
    "tick_key",
    "trigger",
    "trigger_key",
]

log = logging.getLogger("runwright")
#: How many runs a catching-up schedule starts at once.
_CONCURRENT_STARTS = 64


def tick_key(name: str, tick: float) -> str:
    """The key of the run a tick starts: the same in every process."""
    return f"schedule:{name}:{_utc(tick, 'seconds')}"


def trigger_key(name: str, at: float) -> str:
    return f"schedule:{name}:trigger:{_utc(at, 'microseconds')}"


def _utc(timestamp: float, timespec: str) -> str:
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC).replace(tzinfo=None)
    return when.isoformat(timespec=timespec) + "Z"


@attrs.frozen
class ScheduleInfo:
    """A schedule as the journal holds it (its latest declaration, by any process).

    ``last_tick`` is the newest tick that started a run; ``next_tick`` the
    next one due (None while paused), both in the schedule's time zone.
    """

    name: str
    workflow: str
    cron: str
    timezone: str
    catch_up: str
    paused: bool
    last_tick: dt.datetime | None
    next_tick: dt.datetime | None
    declared_at: dt.datetime

    @classmethod
    def from_row(cls, row: ScheduleRow, now: float) -> ScheduleInfo:
        try:
            spec: Schedule | None = _spec(row)
        except (ValueError, KeyError):  # declared by a process whose cronsim or zones know more
            spec = None
        zone: dt.tzinfo = dt.UTC if spec is None else spec.zone
        upcoming = None
        if spec is not None and not row.paused:
            upcoming = spec.next_after(max(now, row.fired_through))
        return cls(
            row.name,
            row.workflow,
            row.cron,
            row.timezone,
            row.catch_up,
            row.paused,
            _in(zone, row.last_tick),
            None if upcoming is None or math.isinf(upcoming) else _in(zone, upcoming),
            dt.datetime.fromtimestamp(row.declared_at, zone),
        )


def _in(zone: dt.tzinfo, timestamp: float | None) -> dt.datetime | None:
    return None if timestamp is None else dt.datetime.fromtimestamp(timestamp, zone)


def _declare(
    tx: Tx, spec: Schedule, definition: WorkflowDefinition[Any, Any], at: float
) -> ScheduleRow:
    return declare_schedule(
        tx, spec.name, definition.name, spec.cron, spec.timezone, spec.catch_up, at
    )


def _spec(row: ScheduleRow) -> Schedule:
    return Schedule(row.name, row.cron, row.timezone, row.catch_up)  # type: ignore[arg-type]


class _TickRefused(Exception):
    """The schedule was paused, or its expression changed, since its row was read."""


class Scheduler:
    """The loops that fire this process's declared schedules."""

    def __init__(
        self,
        supervisor: Supervisor,
        clock: Clock,
        schedules: list[tuple[Schedule, WorkflowDefinition[Any, Any]]],
    ) -> None:
        self.supervisor = supervisor
        self.journal: Journal = supervisor.journal
        self.clock = clock
        self.schedules = schedules
        #: Every declaration is in the journal (else each loop writes its own first).
        self.declared = False
        self._warned: set[str] = set()

    async def declare(self) -> None:
        """Record every declaration in the journal, in one write."""
        at = self.clock.now()

        def write(tx: Tx) -> None:
            for spec, definition in self.schedules:
                _declare(tx, spec, definition, at)

        await self.journal.write(write)
        self.declared = True

    async def serve(self) -> None:
        async with anyio.create_task_group() as tg:
            for spec, definition in self.schedules:
                tg.start_soon(self._serve_one, spec, definition)

    async def _serve_one(
        self, declared: Schedule, definition: WorkflowDefinition[Any, Any]
    ) -> None:
        began = self.clock.now()
        journal, delay = self.journal, 0.05
        spec, wake, recorded = declared, 0.0, self.declared
        while not self.supervisor.stopping:
            await self.clock.sleep_until(wake)
            try:
                row, now = None, self.clock.now()
                if recorded:
                    row = await journal.read(lambda c: schedule_row(c, declared.name))
                if row is None:  # not declared yet, or the row was deleted by hand
                    row = await journal.write(
                        functools.partial(_declare, spec=declared, definition=definition, at=now)
                    )
                    recorded = True
                now = self.clock.now()
                followed = await self._follow(row, definition, spec)
                if followed is not None:
                    spec = followed
                    if not row.paused:
                        await self._fire_due(spec, definition, row, now, began)
                wake = spec.next_after(max(now, row.fired_through))
                delay = 0.05
            except JournalError as exc:
                log.warning("runwright: schedule %r: %s; will retry", declared.name, exc)
                await journal.backoff(delay)
                delay = min(delay * 2, 2.0)

    async def _follow(
        self, row: ScheduleRow, definition: WorkflowDefinition[Any, Any], current: Schedule
    ) -> Schedule | None:
        """The journal's declaration of the schedule, which this process follows; None
        if it cannot (another workflow's, or an expression its cronsim refuses)."""
        if row.workflow != definition.name:
            why = f"the journal declares it for workflow {row.workflow!r}, not {definition.name!r}"
        elif (row.cron, row.timezone, row.catch_up) == (
            current.cron,
            current.timezone,
            current.catch_up,
        ):
            return current
        else:
            try:  # declared by another process since: its time zone may need loading
                return await anyio.to_thread.run_sync(_spec, row)
            except ValueError as exc:
                why = f"this process cannot read its declaration ({exc})"
        if row.name not in self._warned:
            self._warned.add(row.name)
            log.warning("runwright: schedule %r: %s; this process does not fire it", row.name, why)
        return None

    async def _fire_due(
        self,
        spec: Schedule,
        definition: WorkflowDefinition[Any, Any],
        row: ScheduleRow,
        now: float,
        began: float,
    ) -> None:
        floor = row.fired_through
        limit = MAX_CATCH_UP if spec.catch_up == "all" else 1
        due: list[float] = []
        for tick in spec.ticks_before(now):
            if tick <= floor or len(due) == limit:
                break
            due.append(tick)
        if spec.catch_up == "skip":
            due = [tick for tick in due if tick >= began]
        if len(due) == 1:
            await self._fire(spec, definition, due[0])
            return
        # Catching up: many starts at once share the journal's group commits.
        limiter = anyio.CapacityLimiter(_CONCURRENT_STARTS)
        faults: list[JournalError] = []

        async def fire(tick: float) -> None:
            async with limiter:
                try:
                    await self._fire(spec, definition, tick)
                except JournalError as exc:  # the others go on; the loop retries the rest
                    faults.append(exc)

        async with anyio.create_task_group() as tg:
            for tick in reversed(due):
                tg.start_soon(fire, tick)
        if faults:
            raise faults[0]

    async def _fire(
        self, spec: Schedule, definition: WorkflowDefinition[Any, Any], tick: float
    ) -> None:
        """Start *tick*'s run (or find the one another process started), unless the
        schedule changed under it or the runtime is closing."""
        if self.supervisor.stopping:
            return
        name, cron, timezone, at = spec.name, spec.cron, spec.timezone, self.clock.now()

        def claim(tx: Tx) -> None:
            if not claim_tick(tx, name, cron, timezone, tick, at):
                raise _TickRefused

        try:
            run_id = await self.supervisor.start_run(
                definition,
                (spec.tick_at(tick),),
                {},
                tick_key(name, tick),
                timeout=definition.timeout,
                only_if=claim,
            )
            log.debug(
                "runwright: schedule %r fired %s: run %s", name, _utc(tick, "seconds"), run_id
            )
        except _TickRefused:
            log.debug("runwright: schedule %r did not fire %s: paused or redeclared", name, tick)
        except KeyConflict as exc:  # the key holds a run of another workflow: leave it
            log.warning("runwright: schedule %r cannot fire: %s", name, exc)


def _row_and_zone(conn: Any, name: str) -> tuple[ScheduleRow, zoneinfo.ZoneInfo] | None:
    row = schedule_row(conn, name)
    return None if row is None else (row, zoneinfo.ZoneInfo(row.timezone))


async def start_schedules(supervisor: Supervisor, clock: Clock) -> None:
    """Record this process's schedules in the journal and start firing them (in the
    supervisor's task group, which shutdown cancels)."""
    declared = declared_schedules()
    if not declared:
        return
    scheduler = Scheduler(supervisor, clock, declared)
    try:
        await scheduler.declare()
    except JournalError as exc:  # each loop declares its own once the journal takes writes
        log.warning("runwright: cannot record schedules yet, will retry: %s", exc)
    supervisor.spawn(scheduler.serve)


async def list_schedules(journal: Journal, now: float) -> list[ScheduleInfo]:
    # Off the event loop: a time zone may have to be loaded from disk.
    return await journal.read(lambda c: [ScheduleInfo.from_row(r, now) for r in schedule_rows(c)])


async def pause(journal: Journal, name: str, paused: bool, at: float) -> None:
    if not await journal.write(lambda tx: set_paused(tx, name, paused, at)):
        raise ScheduleNotFound(name)


async def trigger(supervisor: Supervisor, codec: Codec, name: str, at: float) -> str:
    """Start a run of schedule *name* for the time *at*; return its id."""
    journal = supervisor.journal
    found = await journal.read(lambda c: _row_and_zone(c, name))
    if found is None:
        raise ScheduleNotFound(name)
    row, zone = found
    tick = dt.datetime.fromtimestamp(at, zone)
    key = trigger_key(name, at)
    try:
        definition = lookup_workflow(row.workflow)
    except UnknownWorkflowError:
        definition = None
    if definition is not None:
        return await supervisor.start_run(definition, (tick,), {}, key, timeout=definition.timeout)
    # Not declared here (the CLI): journal the run for a process that has its workflow.
    run_id, args, workflow = new_run_id(), codec.encode(((tick,), {})), row.workflow
    lease = supervisor.lease_seconds
    existing = await journal.write(
        lambda tx: tx.create_run(
            run_id, workflow, args, at, key=key, owner=None, lease_seconds=lease
        )
    )
    return run_id if existing is None else existing[0]
