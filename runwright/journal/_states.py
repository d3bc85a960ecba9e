"""Every lifecycle in one place: runs, steps and durable waits.

Each table maps a state to the states it may move to. The journal turns a
table into the ``WHERE status IN (...)`` of a conditional UPDATE, so an
illegal or stale transition simply matches no row: that is how a lost claim
looks, and it is silent by design.

Runs::

    pending ──► running ──► completed | failed | cancelled
       └──────────────────► cancelled

Steps (``running ──► running`` is a new attempt after an interrupted one;
a step the workflow stopped waiting for is cancelled from any live state)::

    scheduled ──► running ──► completed | failed
                    ▲  │
                    │  ▼
                  retrying          scheduled | running | retrying ──► cancelled

Waits::

    pending ──► fired | cancelled
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = [
    "RUN_TRANSITIONS",
    "STEP_TRANSITIONS",
    "WAIT_TRANSITIONS",
    "RunStatus",
    "sources",
]


class RunStatus(enum.Enum):
    """Where a run is in its life. Terminal: COMPLETED, FAILED, CANCELLED."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})

RUN_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "pending": frozenset({"running", "cancelled"}),
    "running": frozenset({"completed", "failed", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

STEP_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "scheduled": frozenset({"running", "cancelled"}),
    "running": frozenset({"running", "retrying", "completed", "failed", "cancelled"}),
    "retrying": frozenset({"running", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}

WAIT_TRANSITIONS: Mapping[str, frozenset[str]] = {
    "pending": frozenset({"fired", "cancelled"}),
    "fired": frozenset(),
    "cancelled": frozenset(),
}


def sources(table: Mapping[str, frozenset[str]], target: str) -> tuple[str, ...]:
    """The states from which *table* allows a move to *target*, sorted."""
    return tuple(sorted(state for state, nexts in table.items() if target in nexts))
