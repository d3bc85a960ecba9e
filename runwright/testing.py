"""Helpers for testing code that uses runwright: a fake clock.

``FakeClock`` never moves on its own. ``advance(seconds)`` moves it and wakes
every sleeper whose deadline has passed; ``await jump()`` waits until
something sleeps on the clock with a deadline and moves time straight there,
so a test of a 30-day durable sleep takes milliseconds.
"""

from __future__ import annotations

import math

import anyio
import attrs

__all__ = ["FakeClock"]


@attrs.define(eq=False)
class _Sleeper:
    deadline: float
    event: anyio.Event


class FakeClock:
    """A clock for tests: time moves only when the test moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[_Sleeper] = []
        self._changed: anyio.Event | None = None

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(deadline, anyio.Event())
        self._sleepers.append(sleeper)
        self._notify()
        try:
            await sleeper.event.wait()
        finally:
            if sleeper in self._sleepers:
                self._sleepers.remove(sleeper)

    def advance(self, seconds: float) -> None:
        """Move time forward by *seconds* and wake every sleeper that is due."""
        if seconds < 0:
            raise ValueError("a FakeClock only moves forward")
        self._now += seconds
        for sleeper in list(self._sleepers):
            if sleeper.deadline <= self._now:
                self._sleepers.remove(sleeper)
                sleeper.event.set()

    def next_deadline(self) -> float | None:
        """The earliest finite deadline anything sleeps until, if any."""
        deadlines = [s.deadline for s in self._sleepers if math.isfinite(s.deadline)]
        return min(deadlines) if deadlines else None

    async def wait_for_sleeper(self) -> float:
        """Wait until something sleeps on the clock with a deadline; return that deadline."""
        while (deadline := self.next_deadline()) is None:
            self._changed = self._changed or anyio.Event()
            await self._changed.wait()
        return deadline

    async def jump(self) -> float:
        """Wait until something sleeps with a deadline, move time there; return the new time."""
        deadline = await self.wait_for_sleeper()
        self.advance(max(0.0, deadline - self._now))
        return self._now

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
