"""``runs show``: a run's timeline, built from its events.

Each step is one entry with its attempts under it (their durations, errors
and retries); sleeps, stream writes and run-level events are entries of
their own, in the order the journal recorded them. Arguments and results
over ``SHOW_LIMIT`` bytes are shown by their size and never decoded, so a
run with a 50 MB argument shows as fast as any other.
"""

from __future__ import annotations

import attrs

from ..journal._codec import DefaultCodec
from ..journal._events import Event, Kind
from ..journal._json import payload_json
from ..journal._rows import RunRow
from ..journal._states import RunStatus
from ._format import (
    SHOW_LIMIT,
    ErrorInfo,
    arguments,
    call,
    decode,
    error_info,
    iso,
    iso_json,
    peek,
    safe_repr,
    shorten,
    summary_json,
)

__all__ = ["RunView", "build_view", "print_view"]

_TERMINAL = frozenset(status.value for status in RunStatus if status.is_terminal)
#: Events shown as a mark with the name they carry.
_NAMED_MARKS = frozenset(
    {
        Kind.CANCEL_REQUESTED,
        Kind.PATCHED,
        Kind.HOOK_CREATED,
        Kind.HOOK_RECEIVED,
        Kind.ATTRIBUTE_SET,
        Kind.STEP_ATTRIBUTE_SET,
    }
)
#: A step's status from its last attempt's outcome.
_STEP_STATUS = {
    "ok": "completed",
    "failed": "failed",
    "retrying": "retrying",
    "cancelled": "cancelled",
    "unfinished": "unfinished",
}


@attrs.define
class _Attempt:
    """One attempt of a step.

    ``outcome`` is ``ok``, ``retrying`` (failed, another attempt follows),
    ``failed`` (failed for good), ``running``, ``interrupted`` (a later
    attempt started without this one ending: its process stopped),
    ``cancelled`` or ``unfinished`` (the run ended first).
    """

    number: int
    started_at: float | None
    ended_at: float | None = None
    outcome: str = "running"
    error: ErrorInfo | None = None
    retry_at: float | None = None

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at) * 1000

    def as_json(self) -> dict[str, object]:
        return {
            "attempt": self.number,
            "started_at": iso_json(self.started_at),
            "ended_at": iso_json(self.ended_at),
            "duration_ms": None if self.duration_ms is None else round(self.duration_ms, 1),
            "outcome": self.outcome,
            "error": None if self.error is None else self.error.as_json(),
            "retry_at": iso_json(self.retry_at),
        }


@attrs.define
class _Step:
    cid: int
    name: str
    call: str
    scheduled_at: float
    attempts: list[_Attempt] = attrs.field(factory=list)
    #: The workflow stopped waiting for it (a race's loser, a failed gather's other).
    cancelled: bool = False

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if not self.attempts:
            return "scheduled"
        return _STEP_STATUS.get(self.attempts[-1].outcome, "running")

    def attempt(self, number: int) -> _Attempt:
        for attempt in self.attempts:
            if attempt.number == number:
                return attempt
        attempt = _Attempt(number, None)
        self.attempts.append(attempt)
        self.attempts.sort(key=lambda a: a.number)
        return attempt

    def as_json(self) -> dict[str, object]:
        return {
            "type": "step",
            "cid": self.cid,
            "name": self.name,
            "call": self.call,
            "scheduled_at": iso_json(self.scheduled_at),
            "status": self.status,
            "attempts": [attempt.as_json() for attempt in self.attempts],
        }


@attrs.define
class _Sleep:
    cid: int
    created_at: float
    wake_at: float | None
    fired_at: float | None = None
    status: str = "pending"

    def as_json(self) -> dict[str, object]:
        return {
            "type": "sleep",
            "cid": self.cid,
            "created_at": iso_json(self.created_at),
            "wake_at": iso_json(self.wake_at),
            "fired_at": iso_json(self.fired_at),
            "status": self.status,
        }


@attrs.frozen
class _Mark:
    """A run-level event (created, completed, ...), or an event kind this CLI does not know."""

    kind: str
    at: float
    #: What else the event says: a deadline's time, a cancel's reason.
    detail: str | None = None

    def as_json(self) -> dict[str, object]:
        extra = {} if self.detail is None else {"detail": self.detail}
        if self.kind.startswith("run_"):
            return {
                "type": "run",
                "event": self.kind.removeprefix("run_"),
                "at": iso_json(self.at),
                **extra,
            }
        return {"type": "event", "kind": self.kind, "at": iso_json(self.at), **extra}


@attrs.define
class _Streamed:
    """Appends to one stream that follow each other in the timeline, or its close."""

    name: str
    at: float
    first: int
    last: int
    closed: bool = False

    def as_json(self) -> dict[str, object]:
        if self.closed:
            return {"type": "stream", "name": self.name, "closed": True, "at": iso_json(self.at)}
        return {
            "type": "stream",
            "name": self.name,
            "chunks": [self.first, self.last],
            "at": iso_json(self.at),
        }


_Entry = _Step | _Sleep | _Mark | _Streamed


@attrs.frozen
class RunView:
    row: RunRow
    args: str
    result: str | None
    error: ErrorInfo | None
    problem: tuple[str, str, float] | None
    timeline: list[_Entry]
    #: What ``rw.set_attribute`` set: the latest text form of each key.
    attributes: dict[str, str] = attrs.field(factory=dict)

    def as_json(self) -> dict[str, object]:
        summary = summary_json(self.row, self.problem)
        del summary["error_type"], summary["error_message"]
        args, kwargs = _call_json(self.row.args)
        result = None
        if self.row.status == "completed":
            result = payload_json(self.row.outcome, SHOW_LIMIT)
        return {
            **summary,
            "args": args,
            "kwargs": kwargs,
            "result": result,
            "error": None if self.error is None else self.error.as_json(),
            "attributes": self.attributes,
            "timeline": [entry.as_json() for entry in self.timeline],
        }


def _call_json(data: bytes) -> tuple[object, object]:
    """A run's arguments in the JSON form: the positional ones as a list, and a dict."""
    form = payload_json(data, SHOW_LIMIT)  # the tuple (args, kwargs); args a tuple or a list
    call = _untuple(form)
    if isinstance(call, list) and len(call) == 2:
        positional = _untuple(call[0])
        if isinstance(positional, list) and isinstance(call[1], dict):
            return positional, call[1]
    return form, {}


def _untuple(form: object) -> object:
    if isinstance(form, dict) and list(form) == ["$t"]:
        return form["$t"]
    return form


def build_view(
    row: RunRow,
    events: list[Event],
    retry_at: dict[int, float | None],
    problem: tuple[str, str, float] | None,
    codec: DefaultCodec,
) -> RunView:
    timeline: list[_Entry] = []
    steps: dict[int, _Step] = {}
    sleeps: dict[int, _Sleep] = {}

    def step_of(event: Event) -> _Step:
        assert event.cid is not None
        step = steps.get(event.cid)
        if step is None:
            step = steps[event.cid] = _Step(
                event.cid, event.name or "?", event.name or "?", event.at
            )
            timeline.append(step)
        return step

    for event in events:
        kind = event.kind
        if kind == Kind.STEP_SCHEDULED and event.cid is not None:
            step = step_of(event)
            step.call = call(step.name, peek(codec, event.payload))
            if event.attempt is not None:  # its first attempt was claimed with it
                step.attempt(event.attempt).started_at = event.at
        elif kind == Kind.STEP_STARTED and event.cid is not None and event.attempt is not None:
            step = step_of(event)
            for earlier in step.attempts:
                if earlier.outcome == "running":
                    earlier.outcome = "interrupted"
            step.attempt(event.attempt).started_at = event.at
        elif (
            kind in (Kind.STEP_RETRYING, Kind.STEP_COMPLETED, Kind.STEP_FAILED)
            and event.cid is not None
            and event.attempt is not None
        ):
            attempt = step_of(event).attempt(event.attempt)
            attempt.ended_at = event.at
            if kind == Kind.STEP_COMPLETED:
                attempt.outcome = "ok"
            else:
                attempt.outcome = "retrying" if kind == Kind.STEP_RETRYING else "failed"
                attempt.error = error_info(codec, event.payload)
        elif kind == Kind.STEP_CANCELLED and event.cid is not None:
            step = step_of(event)
            step.cancelled = True
            if event.attempt:
                attempt = step.attempt(event.attempt)
                attempt.ended_at, attempt.outcome = event.at, "cancelled"
        elif kind == Kind.WAIT_CANCELLED and event.cid in sleeps:
            sleeps[event.cid].status = "cancelled"
        elif kind == Kind.RUN_DEADLINE:
            deadline = decode(codec, event.payload)
            when = iso(deadline) if isinstance(deadline, float) else None
            timeline.append(_Mark(kind, event.at, when))
        elif kind in _NAMED_MARKS:
            # The reason, patch id, token or attribute key.
            timeline.append(_Mark(kind, event.at, event.name))
        elif kind == Kind.CHILD_STARTED:
            child = (event.payload or b"").decode("utf-8", "replace")
            timeline.append(_Mark(kind, event.at, f"{child} ({event.name})"))
        elif kind in (Kind.CHILD_COMPLETED, Kind.CHILD_CANCELLED):
            timeline.append(_Mark(kind, event.at, f"#{event.cid}: {event.name}"))
        elif kind == Kind.WAIT_CREATED and event.cid is not None:
            wake_at = decode(codec, event.payload)
            sleep = _Sleep(event.cid, event.at, wake_at if isinstance(wake_at, float) else None)
            sleeps[event.cid] = sleep
            timeline.append(sleep)
        elif kind == Kind.WAIT_COMPLETED and event.cid in sleeps:
            sleeps[event.cid].fired_at = event.at
            sleeps[event.cid].status = "fired"
        elif kind == Kind.STREAM_APPENDED:
            first, _, last = (event.payload or b"").decode().partition("-")
            if not (first.isdigit() and last.isdigit()):
                timeline.append(_Mark(kind, event.at))
                continue
            previous = timeline[-1] if timeline else None
            if (
                isinstance(previous, _Streamed)
                and previous.name == event.name
                and not previous.closed
                and previous.last + 1 == int(first)
            ):
                previous.last = int(last)
            else:
                timeline.append(_Streamed(event.name or "?", event.at, int(first), int(last)))
        elif kind == Kind.STREAM_CLOSED:
            timeline.append(_Streamed(event.name or "?", event.at, 0, -1, closed=True))
        elif kind not in (Kind.STEP_SCHEDULED, Kind.TRACE_CONTEXT):  # not a moment of the run
            timeline.append(_Mark(kind, event.at))

    ended = row.status in _TERMINAL
    for step in steps.values():
        for attempt in step.attempts:
            if attempt.outcome == "running" and ended:
                attempt.outcome = "cancelled" if row.status == "cancelled" else "unfinished"
        if step.attempts and step.attempts[-1].outcome == "retrying":
            step.attempts[-1].retry_at = retry_at.get(step.cid)
    for sleep in sleeps.values():
        if sleep.status == "pending" and ended:
            sleep.status = "cancelled"

    result = error = None
    if row.status == "completed" and row.outcome is not None:
        result = shorten(safe_repr(peek(codec, row.outcome)))
    elif row.status == "failed":
        if row.outcome is not None:
            error = error_info(codec, row.outcome)
        else:
            error = ErrorInfo(row.error_type or "?", row.error_message or "", "")
    args = arguments(peek(codec, row.args))
    return RunView(row, args, result, error, problem, timeline)


def print_view(view: RunView) -> None:
    row = view.row
    fields = [
        ("run", row.run_id),
        ("workflow", row.workflow),
        ("status", row.status),
        ("key", row.key if row.key is not None else "-"),
        ("created", iso(row.created_at)),
        ("finished", iso(row.finished_at)),
        ("args", view.args),
    ]
    if view.attributes:
        shown = ", ".join(f"{key}={value}" for key, value in view.attributes.items())
        fields.append(("attrs", shorten(shown, 500)))
    if view.result is not None:
        fields.append(("result", view.result))
    if view.error is not None:
        fields.append(("error", view.error.summary()))
    if row.status == "cancelled" and row.error_message:
        fields.append(("reason", row.error_message))
    for label, value in fields:
        print(f"{label:<9} {value}")
    if view.problem is not None:
        kind, message, at = view.problem
        print()
        print(f"PROBLEM: {kind}: {message}")
        print(f"         (recorded {iso(at)}; the run cannot advance until this is fixed)")
    print()
    print("timeline")
    for line in timeline_lines(view.timeline):
        print(f"  {line}")
    if view.error is not None and view.error.traceback:
        print()
        print("traceback of the run's error")
        for line in view.error.traceback.rstrip().splitlines():
            print(f"  {line}")


@attrs.frozen
class _Line:
    at: float | None
    text: str
    #: The step or sleep a follow-up line (an attempt, a firing) belongs to, and how
    #: the line reads when it is not right under that entry's other lines.
    owner: str | None = None
    apart: str = ""
    #: The step or sleep a leading line starts (its follow-up lines name it as owner).
    starts: str | None = None


def timeline_lines(timeline: list[_Entry]) -> list[str]:
    """The timeline's rows in time order (the journal's order among equal times).

    An attempt comes right under its step, and a sleep's firing under the sleep,
    when nothing happened between them; otherwise it names its step or sleep.
    """
    lines: list[_Line] = []
    for entry in timeline:
        lines.extend(_entry_lines(entry))
    known = [line.at for line in lines if line.at is not None]
    last = known[0] if known else 0.0
    keyed = []
    for line in lines:
        last = line.at if line.at is not None else last
        keyed.append((last, line))
    rows: list[str] = []
    previous_owner: str | None = None
    for _, line in sorted(keyed, key=lambda pair: pair[0]):
        text = line.text
        if line.owner is not None and line.owner != previous_owner:
            text = line.apart
        rows.append(_row(line.at, text))
        previous_owner = line.owner if line.owner is not None else line.starts
    return rows


def _entry_lines(entry: _Entry) -> list[_Line]:
    """An entry's rows: a time, then what happened (attempts follow their step)."""
    if isinstance(entry, _Mark):
        what = entry.kind.replace("_", " ") if entry.kind.startswith("run_") else entry.kind
        return [_Line(entry.at, what if entry.detail is None else f"{what}: {entry.detail}")]
    if isinstance(entry, _Streamed):
        if entry.closed:
            return [_Line(entry.at, f"stream {entry.name!r} closed")]
        span = (
            f"chunk {entry.first}"
            if entry.first == entry.last
            else f"chunks {entry.first}-{entry.last}"
        )
        return [_Line(entry.at, f"stream {entry.name!r}: {span}")]
    if isinstance(entry, _Sleep):
        until = f"sleep #{entry.cid} until {iso(entry.wake_at)}"
        if entry.status == "fired":
            owner = f"sleep #{entry.cid}"
            fired = _Line(entry.fired_at, "  fired", owner, f"  {owner} fired")
            return [_Line(entry.created_at, until, starts=owner), fired]
        return [_Line(entry.created_at, f"{until} ({entry.status})")]
    owner = f"step #{entry.cid}"
    lines = [_Line(entry.scheduled_at, f"{owner} {entry.call}: {entry.status}", starts=owner)]
    for attempt in entry.attempts:
        duration = "-" if attempt.duration_ms is None else f"{attempt.duration_ms:.1f} ms"
        outcome = attempt.outcome
        if attempt.error is not None:
            outcome = f"error {attempt.error.summary()}"
        if attempt.outcome == "retrying":
            later = [a.started_at for a in entry.attempts if a.number > attempt.number]
            if later and later[0] is not None:
                outcome += f"; retried at {iso(later[0])}"
            elif attempt.retry_at is not None:
                outcome += f"; retry at {iso(attempt.retry_at)}"
        what = f"attempt {attempt.number}  {duration:>9}  {outcome}"
        lines.append(_Line(attempt.started_at, f"  {what}", owner, f"  {owner} {what}"))
    return lines


def _row(at: float | None, text: str) -> str:
    return f"{iso(at):<24}  {text}"
