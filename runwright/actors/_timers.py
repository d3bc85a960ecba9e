"""The durable timers this process waits for: a heap of wake times, and one task that
sleeps on the runtime's clock until the earliest and hands every due timer on.

A timer is journaled before it is added here (a ``waits`` row); this is only
when to look. A timer earlier than the one the task sleeps for wakes the task
to sleep again, shorter. The clock may be a fake one (tests skip time).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import anyio

from .._clock import Clock

__all__ = ["Timers"]


class Timers:
    """Call *due* ``(run_id, cid)`` for each timer once *clock* reaches its wake time."""

    def __init__(self, clock: Clock, due: Callable[[str, int], object]) -> None:
        self._clock = clock
        self._due = due
        self._heap: list[tuple[float, str, int]] = []
        self._scope: anyio.CancelScope | None = None
        self._deadline = math.inf

    def add(self, wake_at: float, run_id: str, cid: int) -> None:
        heapq.heappush(self._heap, (wake_at, run_id, cid))
        if wake_at < self._deadline and self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        """Hand on due timers until cancelled."""
        while True:
            now = self._clock.now()
            while self._heap and self._heap[0][0] <= now:
                _, run_id, cid = heapq.heappop(self._heap)
                self._due(run_id, cid)
            self._deadline = self._heap[0][0] if self._heap else math.inf
            with anyio.CancelScope() as scope:
                self._scope = scope
                await self._clock.sleep_until(self._deadline)
            self._scope = None
