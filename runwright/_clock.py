"""Clocks: where durable timers and retry delays read the time.

Timestamps are seconds since the epoch (floats), as stored in the journal. A
runtime takes any object with ``now()`` and ``sleep_until(deadline)``; tests
pass :class:`runwright.testing.FakeClock` instead of sleeping for real.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (cancellable)."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - time.time()))
