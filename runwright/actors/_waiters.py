"""Waiting for runs to end, in this process or another.

A waiter for a run that this process drives is woken directly when the run
ends here (or is let go, when another process takes it over). A waiter for
a run driven elsewhere is woken by the journal's watcher (``poke``) and also
looks at the journal now and then, as a safety net. The ends of the most
recent runs are kept, so a result asked for just after the end needs no
read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import anyio
import attrs

from .._exceptions import JournalError, PayloadFileCorrupt, RunNotFound, RunStuck, RunTimeout
from ..journal._journal import Journal
from ..journal._queries import problem_of, run_row
from ..journal._rows import RunRow
from ._messages import RunEnd

__all__ = ["Waiters"]

#: How many ended runs' outcomes stay in memory, so that result() right after
#: the end needs no journal read.
_RECENT_ENDS = 1024
_TERMINAL = frozenset({"completed", "failed", "cancelled"})


@attrs.define(eq=False)
class _Waiter:
    event: anyio.Event = attrs.field(factory=anyio.Event)
    end: RunEnd | None = None
    count: int = 0


class Waiters:
    """Who waits for which run; *driven_here* says whether this process drives a run."""

    def __init__(self, journal: Journal, driven_here: Callable[[str], bool]) -> None:
        self._journal = journal
        self._driven_here = driven_here
        self._waiters: dict[str, _Waiter] = {}
        self._recent_ends: OrderedDict[str, RunEnd] = OrderedDict()

    def poke(self, run_id: str) -> None:
        """Make whoever waits for *run_id* look again (it is no longer driven here)."""
        waiter = self._waiters.get(run_id)
        if waiter is not None and waiter.end is None:
            woken, waiter.event = waiter.event, anyio.Event()
            woken.set()

    def ended(self, run_id: str, end: RunEnd) -> None:
        """The run ended here: wake its waiters, and remember the end for a while."""
        self._recent_ends[run_id] = end
        if len(self._recent_ends) > _RECENT_ENDS:
            self._recent_ends.popitem(last=False)
        waiter = self._waiters.get(run_id)
        if waiter is not None:
            waiter.end = end
            waiter.event.set()

    async def wait(
        self, run_id: str, timeout: float | None, *, raise_on_problem: bool = False
    ) -> RunEnd:
        """Wait for a run to end; RunTimeout after *timeout* seconds (saying why the run
        cannot advance, if it cannot).

        With *raise_on_problem*, a run that cannot advance raises RunStuck.
        """
        recent = self._recent_ends.get(run_id)
        if recent is not None:
            return recent
        waiter = self._waiters.get(run_id)
        if waiter is None:
            waiter = self._waiters[run_id] = _Waiter()
        waiter.count += 1
        try:
            if timeout is None:
                return await self._wait(run_id, waiter, raise_on_problem)
            with anyio.fail_after(timeout):
                return await self._wait(run_id, waiter, raise_on_problem)
        except TimeoutError:
            assert timeout is not None
            try:
                problem = await self._journal.read(lambda c: problem_of(c, run_id))
            except JournalError:
                problem = None  # the journal cannot be read now: say only that time is up
            why = None if problem is None else f"{problem[0]}: {problem[1]}"
            raise RunTimeout(run_id, timeout, why) from None
        finally:
            waiter.count -= 1
            if waiter.count == 0:
                self._waiters.pop(run_id, None)

    async def _wait(self, run_id: str, waiter: _Waiter, raise_on_problem: bool) -> RunEnd:
        # A run that ends in another process wakes the waiter through the
        # journal's watcher (poke); the look here is only a safety net.
        delay = 0.01
        while True:
            if waiter.end is not None:
                return waiter.end
            recent = self._recent_ends.get(run_id)
            if recent is not None:
                return recent
            if self._driven_here(run_id):
                await waiter.event.wait()  # set when it ends here, or is let go
                continue
            woken = waiter.event  # a poke during the read below must not be missed
            try:
                row, problem = await self._journal.read(
                    lambda c: (
                        run_row(c, run_id, with_args=False),
                        problem_of(c, run_id) if raise_on_problem else None,
                    )
                )
            except PayloadFileCorrupt:
                raise  # a file of the journal is missing or damaged: waiting will not help
            except JournalError:
                # The journal cannot be read now (its server is away): the run goes on
                # when it is back; look again later.
                with anyio.move_on_after(delay):
                    await woken.wait()
                delay = min(delay * 2, 1.0)
                continue
            if row is None:
                raise RunNotFound(run_id)
            if row.status in _TERMINAL:
                return _end_of(row)
            if problem is not None:
                raise RunStuck(run_id, problem[0], problem[1])
            with anyio.move_on_after(delay):
                await woken.wait()
            delay = min(delay * 2, 1.0)


def _end_of(row: RunRow) -> RunEnd:
    status = row.status
    assert status in _TERMINAL
    return RunEnd(status, row.outcome, row.error_type, row.error_message)  # type: ignore[arg-type]
