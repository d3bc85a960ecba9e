"""``@rw.schedule``: a workflow started on every tick of a cron expression.

A :class:`Schedule` is the declaration (name, cron expression, time zone,
catch-up policy) that the decorator attaches to the workflow definition as
``definition.schedule``; the definition is also registered here by schedule
name, so that a runtime serves every schedule its process declared (see
``_scheduler``). The decorator goes above ``@rw.workflow`` and returns the
same definition, which can still be started by hand.

Ticks are computed by `cronsim <https://pypi.org/project/cronsim/>`_ (the
``runwright[schedules]`` extra) in the schedule's time zone, with Debian
cron's rules for daylight-saving transitions (docs/decisions/0016): a tick
at a fixed time that the spring transition skips (02:30 when clocks jump
from 02:00 to 03:00) fires at the first minute after the gap, once; one in
the hour that autumn repeats fires once, in its first occurrence; ticks of
an expression whose minute or hour field starts with ``*`` (``*/15 * * *
*``) follow absolute time, so the repeated hour has its quarters twice and
the skipped hour none. A tick is a timezone-aware datetime in the schedule's
zone.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar, get_args

import attrs

from ._definitions import WorkflowDefinition, _origin

__all__ = ["CatchUp", "Schedule", "declared_schedules", "schedule", "scheduled_workflow"]

W = TypeVar("W", bound=WorkflowDefinition[Any, Any])

CatchUp = Literal["latest", "all", "skip"]
#: The most missed ticks ``catch_up="all"`` fires at once (the most recent ones).
MAX_CATCH_UP = 1000

_registry: dict[str, WorkflowDefinition[Any, Any]] = {}


def _cronsim() -> Any:
    try:
        import cronsim
    except ImportError:
        raise ImportError(
            "schedules need the cronsim package: pip install 'runwright[schedules]'"
        ) from None
    return cronsim


@attrs.frozen
class Schedule:
    """When a scheduled workflow runs: ``cron`` (five fields: minute, hour, day of
    month, month, day of week) in ``timezone`` (an IANA name), and what to do with
    ticks missed while no process ran (``catch_up``: ``"latest"`` fires the most
    recent one, ``"all"`` every one, up to the 1,000 most recent, ``"skip"`` none)."""

    name: str
    cron: str
    timezone: str = "UTC"
    catch_up: CatchUp = "latest"
    # Held here so that the zone is never loaded from disk again on the event loop
    # (zoneinfo keeps only a few zones alive on its own).
    _zone: zoneinfo.ZoneInfo = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        check_spec(self.name, self.cron, self.timezone, self.catch_up)
        object.__setattr__(self, "_zone", zoneinfo.ZoneInfo(self.timezone))

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self._zone

    def tick_at(self, timestamp: float) -> dt.datetime:
        """*timestamp* as a datetime in the schedule's time zone (what the workflow gets)."""
        return dt.datetime.fromtimestamp(timestamp, self._zone)

    def ticks_after(self, after: float) -> Iterator[float]:
        """Tick times (epoch seconds) later than *after*, in order."""
        start = self.tick_at(math.floor(after))
        for tick in _cronsim().CronSim(self.cron, start):
            at = float(tick.timestamp())
            # Iterating in local time, a start inside the hour autumn repeats can
            # yield that hour's ticks again: those are not after *after*.
            if at > after:
                yield at

    def ticks_before(self, before: float) -> Iterator[float]:
        """Tick times (epoch seconds) up to and including *before*, latest first."""
        start = self.tick_at(math.floor(before) + 1)
        for tick in _cronsim().CronSim(self.cron, start, reverse=True):
            at = float(tick.timestamp())
            if at <= before:
                yield at

    def next_after(self, after: float) -> float:
        """The first tick later than *after* (inf if the expression never fires again)."""
        return next(self.ticks_after(after), math.inf)


def check_spec(name: str, cron: object, timezone: object, catch_up: object) -> None:
    """Raise ValueError or TypeError, naming the schedule, if a part is bad."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a schedule's name must be a non-empty string, got {name!r}")
    if not isinstance(cron, str):
        raise TypeError(f"schedule {name!r}: the cron expression must be a string, got {cron!r}")
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(
            f"schedule {name!r}: invalid cron expression {cron!r}: it needs 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    cronsim = _cronsim()
    try:
        cronsim.CronSim(cron, dt.datetime(2000, 1, 1))
    except cronsim.CronSimError as exc:
        raise ValueError(f"schedule {name!r}: invalid cron expression {cron!r}: {exc}") from None
    if not isinstance(timezone, str) or not timezone:
        raise TypeError(
            f"schedule {name!r}: timezone must be an IANA name such as 'Europe/Berlin', "
            f"got {timezone!r}"
        )
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"schedule {name!r}: unknown timezone {timezone!r} (use an IANA name such as "
            "'Europe/Berlin' or 'UTC')"
        ) from None
    if catch_up not in get_args(CatchUp):
        raise ValueError(
            f"schedule {name!r}: catch_up must be 'latest', 'all' or 'skip', got {catch_up!r}"
        )


def schedule(
    cron: str,
    *,
    timezone: str = "UTC",
    catch_up: CatchUp = "latest",
    name: str | None = None,
) -> Callable[[W], W]:
    """Start the workflow below on every tick of *cron* in *timezone*, passing it the
    tick time (a timezone-aware datetime) as its one positional argument.

    Goes above ``@rw.workflow``::

        @rw.schedule("*/15 * * * *", timezone="Europe/Berlin", catch_up="latest")
        @rw.workflow
        async def sync_inventory(tick: datetime) -> None: ...

    Every runtime that runs steps serves the schedules declared in its
    process; each tick starts one run, whichever processes share the
    journal (the run's key is ``schedule:NAME:TICK``). *catch_up* says what
    to do with ticks missed while no process ran: ``"latest"`` starts the
    most recent one, ``"all"`` each of them (at most the 1,000 most
    recent), ``"skip"`` none. *name* (default: the workflow's) names the
    schedule in the journal, the API and ``runwright schedules``.
    """

    def decorate(definition: W) -> W:
        if not isinstance(definition, WorkflowDefinition):
            raise TypeError(
                f"@rw.schedule goes above @rw.workflow (it schedules a workflow), "
                f"got {definition!r}"
            )
        spec = Schedule(name or definition.name, cron, timezone, catch_up)
        if definition.schedule is not None:
            raise ValueError(f"workflow {definition.name!r} already has a schedule")
        try:
            definition.signature.bind(dt.datetime.now(dt.UTC))
        except TypeError as exc:
            raise TypeError(
                f"schedule {spec.name!r}: workflow {definition.name!r} cannot take the tick "
                f"time as its one positional argument ({exc})"
            ) from None
        existing = _registry.get(spec.name)
        if existing is not None and _origin(existing.fn) != _origin(definition.fn):
            raise ValueError(
                f"schedule name {spec.name!r} is already used by {_origin(existing.fn)}; "
                "give one of them another name="
            )
        definition.schedule = spec
        _registry[spec.name] = definition
        return definition

    return decorate


def scheduled_workflow(name: str) -> WorkflowDefinition[Any, Any] | None:
    """The workflow declared under schedule *name* in this process, if any."""
    return _registry.get(name)


def declared_schedules() -> list[tuple[Schedule, WorkflowDefinition[Any, Any]]]:
    """Every schedule declared in this process, with its workflow."""
    return [(d.schedule, d) for d in _registry.values() if d.schedule is not None]


def forget_schedule(name: str) -> None:
    """Undeclare schedule *name* in this process (tests that declare their own)."""
    definition = _registry.pop(name, None)
    if definition is not None:
        definition.schedule = None
