"""What the web view shows of a run, read from the journal in one snapshot.

The run page's waterfall is built from ``runs show``'s reading of a run's
history (:func:`runwright._cli._timeline.build_view`): steps with their
attempts, sleeps, stream appends and run-level marks. Hooks and children,
which that view shows as single marks, become spans here (from creation to
their payload, disposal or end). Times are epoch seconds; the page draws
them to scale. Values are shown in runwright's JSON form (read without
importing the classes they name), and one over ``VALUE_LIMIT`` bytes is
given by its type and size instead of read.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from .._cli._format import error_info, iso_json
from .._cli._timeline import RunView, _call_json, _Mark, _Sleep, _Step, _Streamed, build_view
from ..journal._attributes import attributes_of
from ..journal._browse import children_of
from ..journal._codec import DefaultCodec
from ..journal._events import Event, Kind
from ..journal._json import payload_json
from ..journal._queries import events_of, live_hooks, problem_of, run_row, steps_of, streams_of
from ..journal._tx import Connection

__all__ = ["TEXT_LIMIT", "VALUE_LIMIT", "run_page_data", "step_detail"]

#: Values over this many bytes (encoded) are shown by their type and size, not read.
VALUE_LIMIT = 256 * 1024
#: A value's JSON text is cut after this many characters (and says how long it was).
TEXT_LIMIT = 20_000

_ENDS = {Kind.RUN_COMPLETED, Kind.RUN_FAILED, Kind.RUN_CANCELLED}


def value_text(data: bytes | None) -> str | None:
    """A stored payload as indented JSON text, cut at ``TEXT_LIMIT`` characters."""
    if data is None:
        return None
    return _cut(json.dumps(payload_json(data, VALUE_LIMIT), indent=2, ensure_ascii=False), data)


def call_text(data: bytes | None) -> str:
    """Encoded call arguments as ``{"args": [...], "kwargs": {...}}`` JSON text, cut."""
    args, kwargs = _call_json(data or b"")
    return _cut(json.dumps({"args": args, "kwargs": kwargs}, indent=2, ensure_ascii=False), data)


def _cut(text: str, data: bytes | None) -> str:
    if len(text) <= TEXT_LIMIT:
        return text
    size = f", {len(data):,} bytes stored" if data is not None else ""
    return f"{text[:TEXT_LIMIT]}\n... (cut: {len(text):,} characters{size})"


def run_page_data(conn: Connection, run_id: str, codec: DefaultCodec) -> dict[str, Any] | None:
    """Everything the run page draws (None if there is no such run)."""
    row = run_row(conn, run_id, with_args=False)
    if row is None:
        return None
    events = events_of(conn, run_id)
    created = next((e.payload for e in events if e.kind == Kind.RUN_CREATED), None)
    row = attrs.evolve(row, args=created or b"")
    retry_at = {s.cid: s.retry_at for s in steps_of(conn, run_id) if s.status == "retrying"}
    problem = problem_of(conn, run_id)
    view = build_view(row, events, retry_at, problem, codec)
    children = {child: (workflow, status) for child, workflow, status in children_of(conn, run_id)}
    streams = [
        {"name": s.name, "chunks": s.chunks, "bytes": s.bytes, "closed": s.closed_at is not None}
        for s in streams_of(conn, run_id)
    ]
    hooks = [{"token": token, "cid": cid} for token, _, cid in live_hooks(conn, run_id)]
    attributes = attributes_of(conn, [run_id])[run_id]
    lanes, marks = _lanes(view, events, children)
    ended = row.finished_at
    return {
        "run": {
            "id": row.run_id,
            "workflow": row.workflow,
            "status": row.status,
            "key": row.key,
            "created_at": row.created_at,
            "finished_at": ended,
            "created": iso_json(row.created_at),
            "finished": iso_json(ended),
            "duration": None if ended is None else ended - row.created_at,
            "args": call_text(created),
            "result": value_text(row.outcome) if row.status == "completed" else None,
            "error": None if view.error is None else view.error.as_json(),
            "reason": row.error_message if row.status == "cancelled" else None,
            "problem": None
            if problem is None
            else {"kind": problem[0], "message": problem[1], "since": iso_json(problem[2])},
            "attributes": attributes,
        },
        "lanes": lanes,
        "marks": marks,
        "streams": streams,
        "hooks": hooks,
        "last_seq": events[-1].seq if events else 0,
    }


def _lanes(
    view: RunView, events: list[Event], children: dict[str, tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The waterfall's rows (each with its spans) and the run's point-in-time marks."""
    lanes: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    end = next((e.at for e in reversed(events) if e.kind in _ENDS), None)
    for entry in view.timeline:
        if isinstance(entry, _Step):
            spans = [
                {
                    "kind": "step",
                    "cid": entry.cid,
                    "attempt": a.number,
                    "start": a.started_at if a.started_at is not None else entry.scheduled_at,
                    "end": a.ended_at,
                    "outcome": a.outcome,
                    "error": None if a.error is None else a.error.summary(),
                }
                for a in entry.attempts
            ]
            lanes.append(
                {
                    "kind": "step",
                    "cid": entry.cid,
                    "label": f"#{entry.cid} {entry.call}",
                    "status": entry.status,
                    "start": entry.scheduled_at,
                    "spans": spans,
                }
            )
        elif isinstance(entry, _Sleep):
            stop = entry.fired_at if entry.fired_at is not None else None
            lanes.append(
                {
                    "kind": "sleep",
                    "cid": entry.cid,
                    "label": f"#{entry.cid} sleep",
                    "status": entry.status,
                    "start": entry.created_at,
                    "spans": [
                        {
                            "kind": "sleep",
                            "cid": entry.cid,
                            "start": entry.created_at,
                            "end": stop,
                            "until": entry.wake_at,
                            "outcome": entry.status,
                        }
                    ],
                }
            )
        elif isinstance(entry, _Streamed):
            what = "closed" if entry.closed else f"chunks {entry.first}-{entry.last}"
            marks.append({"kind": "stream", "at": entry.at, "label": f"{entry.name}: {what}"})
        elif isinstance(entry, _Mark) and entry.kind not in (
            Kind.HOOK_CREATED,
            Kind.HOOK_RECEIVED,
            Kind.CHILD_STARTED,
            Kind.CHILD_COMPLETED,
            Kind.CHILD_CANCELLED,
        ):
            label = entry.kind.replace("_", " ")
            if entry.detail is not None:
                label += f": {entry.detail}"
            marks.append({"kind": entry.kind, "at": entry.at, "label": label})
    lanes += _hooks_and_children(events, children, end)
    lanes.sort(key=lambda lane: (lane["start"], lane.get("cid", 0)))
    marks.sort(key=lambda mark: mark["at"])
    return lanes, marks


def _hooks_and_children(
    events: list[Event], children: dict[str, tuple[str, str]], end: float | None
) -> list[dict[str, Any]]:
    lanes: dict[int, dict[str, Any]] = {}
    for event in events:
        cid = event.cid
        if cid is None:
            continue
        if event.kind == Kind.HOOK_CREATED:
            lanes[cid] = {
                "kind": "hook",
                "cid": cid,
                "label": f"#{cid} hook {event.name}",
                "token": event.name,
                "status": "waiting",
                "start": event.at,
                "spans": [{"kind": "hook", "cid": cid, "start": event.at, "end": end}],
                "received": [],
            }
        elif event.kind in (Kind.HOOK_RECEIVED, Kind.HOOK_DISPOSED, Kind.HOOK_CONFLICT):
            lane = lanes.get(cid)
            if lane is None:
                continue
            if event.kind == Kind.HOOK_RECEIVED:
                lane["received"].append({"at": event.at, "payload": value_text(event.payload)})
                lane["status"] = f"{len(lane['received'])} received"
            else:
                lane["spans"][0]["end"] = event.at
                lane["status"] = event.kind.removeprefix("hook_")
        elif event.kind == Kind.CHILD_STARTED:
            child = (event.payload or b"").decode("utf-8", "replace")
            workflow, status = children.get(child, (event.name or "?", "?"))
            lanes[cid] = {
                "kind": "child",
                "cid": cid,
                "label": f"#{cid} child {workflow}",
                "child": child,
                "status": status,
                "start": event.at,
                "spans": [{"kind": "child", "cid": cid, "start": event.at, "end": None}],
            }
        elif event.kind in (Kind.CHILD_COMPLETED, Kind.CHILD_CANCELLED) and cid in lanes:
            lanes[cid]["spans"][0]["end"] = event.at
            lanes[cid]["status"] = event.name or event.kind.removeprefix("child_")
    for lane in lanes.values():
        for span in lane["spans"]:
            span["outcome"] = lane["status"]
    return list(lanes.values())


def step_detail(
    conn: Connection, run_id: str, cid: int, codec: DefaultCodec
) -> dict[str, Any] | None:
    """A step's arguments, and each attempt's result or error with its traceback."""
    events = [e for e in events_of(conn, run_id) if e.cid == cid]
    scheduled = next((e for e in events if e.kind == Kind.STEP_SCHEDULED), None)
    if scheduled is None:
        return None
    attempts: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.attempt is None:
            continue
        attempt = attempts.setdefault(
            event.attempt,
            {"attempt": event.attempt, "started": None, "ended": None, "result": None,
             "error": None, "attributes": {}},
        )  # fmt: skip
        if event.kind in (Kind.STEP_STARTED, Kind.STEP_SCHEDULED):
            # A first attempt claimed with its step is told by step_scheduled's attempt.
            attempt["started"] = iso_json(event.at)
        elif event.kind == Kind.STEP_COMPLETED:
            attempt["ended"] = iso_json(event.at)
            attempt["result"] = value_text(event.payload)
        elif event.kind in (Kind.STEP_FAILED, Kind.STEP_RETRYING, Kind.STEP_CANCELLED):
            attempt["ended"] = iso_json(event.at)
            attempt["outcome"] = event.kind.removeprefix("step_")
            if event.payload is not None and event.kind != Kind.STEP_CANCELLED:
                attempt["error"] = error_info(codec, event.payload).as_json()
        elif event.kind == Kind.STEP_ATTRIBUTE_SET and event.name is not None:
            attempt["attributes"][event.name] = value_text(event.payload)
    return {
        "cid": cid,
        "name": scheduled.name,
        "args": call_text(scheduled.payload),
        "attempts": [attempts[n] for n in sorted(attempts)],
    }
