"""Event records and the names of every event kind.

An event is never rewritten. Kinds only grow; a reader that meets a kind it
does not know skips it rather than failing.
"""

from __future__ import annotations

import attrs

__all__ = [
    "AWAITED_KINDS",
    "CANCELLATION_KINDS",
    "DEADLINE_CID",
    "RESOLUTION_KINDS",
    "RUN_ARGS",
    "RUN_OUTCOME",
    "STREAM_KINDS",
    "Event",
    "Kind",
]


class Kind:
    RUN_CREATED = "run_created"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_DEADLINE = "run_deadline"
    #: A step the workflow asked for. Its attempt is 1 when its first attempt was
    #: claimed in the same write (no ``step_started`` is written for that attempt).
    STEP_SCHEDULED = "step_scheduled"
    STEP_STARTED = "step_started"
    STEP_RETRYING = "step_retrying"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_CANCELLED = "step_cancelled"
    WAIT_CREATED = "wait_created"
    WAIT_COMPLETED = "wait_completed"
    WAIT_CANCELLED = "wait_cancelled"
    HOOK_CREATED = "hook_created"
    HOOK_RECEIVED = "hook_received"
    HOOK_CONFLICT = "hook_conflict"
    HOOK_DISPOSED = "hook_disposed"
    CANCEL_REQUESTED = "cancel_requested"
    CHILD_STARTED = "child_started"
    CHILD_COMPLETED = "child_completed"
    CHILD_CANCELLED = "child_cancelled"
    PATCHED = "patched"
    MESSAGE_SENT = "message_sent"
    EVENT_SET = "event_set"
    STREAM_APPENDED = "stream_appended"
    STREAM_CLOSED = "stream_closed"
    #: ``rw.set_attribute`` in a workflow body: a command at position ``cid``.
    ATTRIBUTE_SET = "attribute_set"
    #: ``rw.set_attribute`` in a step: written with the attempt's end (``cid`` is the
    #: step's position, ``attempt`` the attempt's number).
    STEP_ATTRIBUTE_SET = "step_attribute_set"
    #: The OpenTelemetry context a run's spans continue (``name``: its W3C
    #: ``traceparent``, and ``tracestate`` after a newline), written with the run's
    #: creation when the process that started it traces (see ``runwright/_tracing.py``).
    TRACE_CONTEXT = "trace_context"


#: The ``waits`` position of a run's deadline (``timeout=``): never a command's.
DEADLINE_CID = -1

#: Events that deliver an outcome to a waiting workflow: their order is replay order.
RESOLUTION_KINDS = frozenset(
    {
        Kind.STEP_COMPLETED,
        Kind.STEP_FAILED,
        Kind.WAIT_COMPLETED,
        Kind.HOOK_RECEIVED,
        Kind.HOOK_CONFLICT,
        Kind.CANCEL_REQUESTED,
        Kind.CHILD_COMPLETED,
        Kind.MESSAGE_SENT,
    }
)

#: Work a run no longer waits for (a race's losers, a failed gather's others),
#: released in the same write as the outcome that settled it.
CANCELLATION_KINDS = frozenset({Kind.STEP_CANCELLED, Kind.WAIT_CANCELLED, Kind.CHILD_CANCELLED})

#: Events about a run's streams: they never move its workflow on.
STREAM_KINDS = frozenset({Kind.STREAM_APPENDED, Kind.STREAM_CLOSED})

#: Events another process may be waiting for: a run to claim, a payload or a
#: cancel for the run it drives, a child's or a run's end, a stream's chunks.
#: (What a run's own driver writes about its steps and timers is not among
#: them: nobody else waits for it.)
AWAITED_KINDS = frozenset(
    {
        Kind.RUN_CREATED,
        Kind.RUN_COMPLETED,
        Kind.RUN_FAILED,
        Kind.RUN_CANCELLED,
        Kind.HOOK_RECEIVED,
        Kind.MESSAGE_SENT,
        Kind.EVENT_SET,
        Kind.CANCEL_REQUESTED,
        Kind.CHILD_COMPLETED,
        Kind.STREAM_APPENDED,
        Kind.STREAM_CLOSED,
    }
)


#: A run's encoded arguments, as a column of a query on ``runs``: they are stored once,
#: in its ``run_created`` event (the row's ``args``, empty since schema version 3, is
#: read only if the event is missing).
RUN_ARGS = (
    "coalesce((SELECT e.payload FROM events AS e WHERE e.run_id = runs.run_id "
    "AND e.kind = 'run_created' ORDER BY e.seq LIMIT 1), runs.args)"
)
#: A run's encoded outcome (NULL until it ends), as a column of a query on ``runs``: the
#: payload of the event that ended it.
RUN_OUTCOME = (
    "CASE WHEN runs.status IN ('completed', 'failed', 'cancelled') THEN (SELECT e.payload "
    "FROM events AS e WHERE e.run_id = runs.run_id AND e.kind IN ('run_completed', "
    "'run_failed', 'run_cancelled') ORDER BY e.seq DESC LIMIT 1) END"
)


@attrs.frozen
class Event:
    """One row of the ``events`` table."""

    seq: int
    run_id: str
    kind: str
    cid: int | None
    attempt: int | None
    name: str | None
    payload: bytes | None
    at: float
