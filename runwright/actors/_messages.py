"""What reaches a run actor, and what the end of a run is.

Messages are handed to an actor with ``deliver`` (see :mod:`._actor`): a
step's final outcome, a timer that is due, a cancel, news that another
process wrote the run's events, hook tokens found taken. :class:`RunEnd` is
how a run ended, as waiters and parents learn it.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import attrs

from ..journal._codec import Codec
from ..journal._events import Event

__all__ = [
    "CancelRequested",
    "HooksConflicted",
    "JournalChanged",
    "Message",
    "RunContext",
    "RunEnd",
    "StepDone",
    "TimerDue",
]


@attrs.frozen
class StepDone:
    cid: int
    name: str
    attempt: int
    ok: bool
    payload: bytes
    #: What ``rw.set_attribute`` set in the attempt: (key, text, type name, payload).
    attributes: tuple[tuple[str, str, str, bytes], ...] = ()


@attrs.frozen
class TimerDue:
    cid: int


@attrs.frozen
class CancelRequested:
    pass


@attrs.frozen
class JournalChanged:
    """Another process wrote events of this run."""


@attrs.frozen
class HooksConflicted:
    """The write that started the run found some of its hooks' tokens taken."""

    events: tuple[Event, ...]


Message = StepDone | TimerDue | CancelRequested | JournalChanged | HooksConflicted


@attrs.frozen
class RunContext:
    """What a workflow body can learn about its run (``rw.run_info()``)."""

    run_id: str
    workflow: str
    started_at: dt.datetime
    codec: Codec


@attrs.frozen
class RunEnd:
    status: Literal["completed", "failed", "cancelled"]
    outcome: bytes | None
    error_type: str | None = None
    error_message: str | None = None
