"""``@rw.schedule`` declarations: their ticks (time zones and daylight-saving
transitions, by cronsim's Debian cron rules) and the errors bad input gets when the
decorator is applied."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

import runwright as rw
from runwright._schedule import declared_schedules, forget_schedule

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(autouse=True)
def _forget_schedules() -> Iterator[None]:
    before = {spec.name for spec, _ in declared_schedules()}
    yield
    for spec, _ in declared_schedules():
        if spec.name not in before:
            forget_schedule(spec.name)


def local(*fields: int, fold: int = 0) -> float:
    return dt.datetime(*fields, tzinfo=BERLIN, fold=fold).timestamp()  # type: ignore[misc]


def ticks_between(spec: rw.Schedule, start: float, end: float) -> list[dt.datetime]:
    found = []
    for tick in spec.ticks_after(start):
        if tick > end:
            break
        found.append(spec.tick_at(tick))
    return found


def wall(ticks: list[dt.datetime]) -> list[tuple[str, int]]:
    """Each tick as local wall time and its UTC offset in hours."""
    return [(t.strftime("%H:%M"), int(t.utcoffset().total_seconds() // 3600)) for t in ticks]  # type: ignore[union-attr]


# -- daylight saving time ---------------------------------------------------------------


def test_a_fixed_time_the_spring_transition_skips_fires_once_after_the_gap():
    # 2027-03-28: clocks in Berlin jump from 02:00 CET to 03:00 CEST.
    spec = rw.Schedule("nightly", "30 2 * * *", "Europe/Berlin")
    ticks = ticks_between(spec, local(2027, 3, 27, 12), local(2027, 3, 29, 12))
    assert [(t.day, *w) for t, w in zip(ticks, wall(ticks), strict=True)] == [
        (28, "03:00", 2),  # 02:30 does not exist that day: the first minute after the gap
        (29, "02:30", 2),
    ]


def test_a_fixed_time_in_the_hour_autumn_repeats_fires_once():
    # 2027-10-31: clocks go back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    spec = rw.Schedule("nightly", "30 2 * * *", "Europe/Berlin")
    ticks = ticks_between(spec, local(2027, 10, 30, 12), local(2027, 11, 1, 12))
    assert [(t.day, *w) for t, w in zip(ticks, wall(ticks), strict=True)] == [
        (31, "02:30", 2),  # its first occurrence only
        (1, "02:30", 1),
    ]
    # Starting inside the repeated hour, after the first 02:30, does not fire it again.
    after_first = local(2027, 10, 31, 2, 10, fold=1)
    assert spec.tick_at(next(spec.ticks_after(after_first))).day == 1


def test_quarter_hours_follow_absolute_time_through_both_transitions():
    spec = rw.Schedule("sync", "*/15 * * * *", "Europe/Berlin")
    spring = ticks_between(spec, local(2027, 3, 28, 0) - 1, local(2027, 3, 28, 23, 45))
    assert len(spring) == 23 * 4  # the skipped hour has no ticks
    assert wall(spring[6:10]) == [("01:30", 1), ("01:45", 1), ("03:00", 2), ("03:15", 2)]
    autumn = ticks_between(spec, local(2027, 10, 31, 0) - 1, local(2027, 10, 31, 23, 45))
    assert len(autumn) == 25 * 4  # the repeated hour has its quarters twice
    assert wall(autumn[8:16]) == [
        ("02:00", 2),
        ("02:15", 2),
        ("02:30", 2),
        ("02:45", 2),
        ("02:00", 1),
        ("02:15", 1),
        ("02:30", 1),
        ("02:45", 1),
    ]
    assert [t.fold for t in autumn[8:16]] == [0, 0, 0, 0, 1, 1, 1, 1]
    stamps = [t.timestamp() for t in autumn]
    assert stamps == sorted(set(stamps))  # distinct instants, in order


@pytest.mark.parametrize(
    ("cron", "day"),
    [
        ("*/15 * * * *", (2027, 10, 31)),
        ("*/15 * * * *", (2027, 3, 28)),
        ("30 2 * * *", (2027, 3, 28)),
        ("30 2 * * *", (2027, 10, 31)),
        ("0 * * * *", (2027, 10, 31)),
    ],
)
def test_looking_back_finds_the_ticks_looking_forward_found(cron: str, day: tuple[int, ...]):
    spec = rw.Schedule("s", cron, "Europe/Berlin")
    start, end = local(*day) - 86400, local(*day) + 86400
    forward = [t.timestamp() for t in ticks_between(spec, start, end)]
    backward = []
    for tick in spec.ticks_before(end):
        if tick <= start:
            break
        backward.append(tick)
    assert backward[::-1] == forward


def test_a_tick_is_a_datetime_in_the_schedules_zone():
    spec = rw.Schedule("s", "0 9 * * MON-FRI", "America/New_York")
    tick = spec.tick_at(spec.next_after(dt.datetime(2027, 1, 15, 15, tzinfo=dt.UTC).timestamp()))
    assert tick == dt.datetime(2027, 1, 18, 9, tzinfo=ZoneInfo("America/New_York"))
    assert tick.tzinfo == ZoneInfo("America/New_York")


# -- the decorator ----------------------------------------------------------------------


def test_the_decorator_attaches_the_schedule_and_returns_the_workflow():
    @rw.workflow(name="spec.sync_inventory")
    async def sync_inventory(tick: dt.datetime) -> None:
        pass

    scheduled = rw.schedule("*/15 * * * *", timezone="Europe/Berlin", catch_up="all")(
        sync_inventory
    )
    assert scheduled is sync_inventory
    assert scheduled.schedule == rw.Schedule(
        "spec.sync_inventory", "*/15 * * * *", "Europe/Berlin", "all"
    )
    assert (scheduled.schedule, scheduled) in declared_schedules()


def test_a_workflow_may_take_more_arguments_if_they_have_defaults():
    @rw.schedule("0 * * * *", name="spec.hourly")
    @rw.workflow(name="spec.hourly_report")
    async def report(tick: dt.datetime, verbose: bool = False) -> None:
        pass

    assert report.schedule is not None
    assert report.schedule.name == "spec.hourly"


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("*/15 * * *", "invalid cron expression '*/15 * * *': it needs 5 fields"),
        ("0 */15 * * * *", "it needs 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("61 * * * *", "invalid cron expression '61 * * * *': Bad minute"),
        ("* 24 * * *", "Bad hour"),
        ("* * * * FUNDAY", "Bad day-of-week"),
        ("", "got 0"),
    ],
)
def test_an_invalid_cron_expression_is_refused_at_decoration(cron: str, message: str):
    @rw.workflow(name="spec.bad_cron")
    async def job(tick: dt.datetime) -> None:
        pass

    with pytest.raises(ValueError, match=r"schedule 'spec\.bad_cron'") as caught:
        rw.schedule(cron)(job)
    assert message in str(caught.value)
    assert job.schedule is None


def test_an_unknown_timezone_is_refused():
    @rw.workflow(name="spec.bad_zone")
    async def job(tick: dt.datetime) -> None:
        pass

    with pytest.raises(ValueError, match="unknown timezone 'Europe/Atlantis'"):
        rw.schedule("* * * * *", timezone="Europe/Atlantis")(job)
    with pytest.raises(ValueError, match=r"unknown timezone '\.\./etc/passwd'"):
        rw.schedule("* * * * *", timezone="../etc/passwd")(job)
    with pytest.raises(TypeError, match="timezone must be an IANA name"):
        rw.schedule("* * * * *", timezone=BERLIN)(job)  # type: ignore[arg-type]


def test_a_bad_catch_up_is_refused():
    @rw.workflow(name="spec.bad_catch_up")
    async def job(tick: dt.datetime) -> None:
        pass

    with pytest.raises(ValueError, match="catch_up must be 'latest', 'all' or 'skip', got 'some'"):
        rw.schedule("* * * * *", catch_up="some")(job)  # type: ignore[arg-type]


def test_a_workflow_that_cannot_take_the_tick_is_refused():
    @rw.workflow(name="spec.no_tick")
    async def no_tick() -> None:
        pass

    @rw.workflow(name="spec.two_args")
    async def two_args(tick: dt.datetime, region: str) -> None:
        pass

    @rw.workflow(name="spec.keyword_only")
    async def keyword_only(*, tick: dt.datetime) -> None:
        pass

    for job in (no_tick, two_args, keyword_only):
        with pytest.raises(TypeError, match="cannot take the tick time as its one positional"):
            rw.schedule("* * * * *")(job)


def test_the_decorator_goes_above_the_workflow_decorator():
    async def plain(tick: dt.datetime) -> None:
        pass

    with pytest.raises(TypeError, match=r"@rw.schedule goes above @rw.workflow"):
        rw.schedule("* * * * *")(plain)  # type: ignore[type-var]


def test_one_schedule_per_workflow_and_one_workflow_per_schedule_name():
    @rw.schedule("* * * * *")
    @rw.workflow(name="spec.once")
    async def once(tick: dt.datetime) -> None:
        pass

    with pytest.raises(ValueError, match="already has a schedule"):
        rw.schedule("0 * * * *")(once)

    @rw.workflow(name="spec.other")
    async def other(tick: dt.datetime) -> None:
        pass

    with pytest.raises(ValueError, match=r"schedule name 'spec\.once' is already used by"):
        rw.schedule("0 * * * *", name="spec.once")(other)
