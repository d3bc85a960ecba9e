"""Step slots: a FIFO counting limiter that costs nothing while slots are free.

anyio's CapacityLimiter passes through the scheduler on every acquire, even
when a token is free, and keeps per-borrower bookkeeping we do not need. This
limiter only suspends when every slot is taken, and hands a released slot
straight to the longest waiter.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType

import anyio

__all__ = ["StepSlots"]


class StepSlots:
    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"the number of step slots must be >= 1, got {total}")
        self.total = total
        self.used = 0
        self._waiters: deque[anyio.Event] = deque()

    async def acquire(self) -> None:
        if self.used < self.total and not self._waiters:
            self.used += 1
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # a slot was handed over as we were cancelled: pass it on
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self.used -= 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
