"""Helpers for testing code that uses runwright: a fake clock, and the replay check.

``FakeClock`` never moves on its own. ``advance(seconds)`` moves it and wakes
every sleeper whose deadline has passed; ``await jump()`` waits until
something sleeps on the clock with a deadline and moves time straight there,
so a test of a 30-day durable sleep takes milliseconds.

``async with skip_time(runtime):`` jumps the runtime's fake clock to the
next timer whenever nothing in the runtime is running (no step, no actor
applying outcomes), as Temporal's time-skipping test environment does: a
test awaits ``run.result()`` and month-long sleeps pass at once, while time
stands still as long as a step runs.

``await replay(journal_or_runs, *modules)`` does what ``runwright replay``
does: it replays recorded runs against the code loaded now, writing nothing,
and raises :class:`ReplayDivergence` if any run does not replay.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
from collections.abc import AsyncIterator, Iterable
from types import ModuleType
from typing import Any

import anyio
import attrs

from ._runtime import RunHandle, Runtime
from .actors._check import ReplayResult, check_journal

__all__ = ["FakeClock", "ReplayDivergence", "ReplayResult", "replay", "skip_time"]


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

    def sleeping(self, until: float | None = None) -> int:
        """How many tasks sleep on the clock (only those until *until*, if given)."""
        return sum(1 for s in self._sleepers if until is None or s.deadline == until)

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


class ReplayDivergence(AssertionError):
    """Some runs do not replay against the loaded code; ``results`` holds every run's."""

    def __init__(self, results: list[ReplayResult]) -> None:
        self.results = results
        bad = [r for r in results if not r.ok]
        lines = [f"  {r.run_id} ({r.workflow}, {r.status}): {r.problem}" for r in bad]
        super().__init__(f"{len(bad)} of {len(results)} run(s) do not replay:\n" + "\n".join(lines))


async def replay(
    journal_or_runs: Runtime | str | os.PathLike[str] | Iterable[RunHandle[Any]],
    *modules: str | ModuleType,
    status: str | Iterable[str] = (),
) -> list[ReplayResult]:
    """Replay recorded runs against the code loaded now, as ``runwright replay`` does.

    *journal_or_runs* is a runtime (every run of its journal), a journal's
    path or URL, or run handles (those runs). *modules* are imported first
    (names) to register their workflows. Returns every run's result; raises
    :class:`ReplayDivergence` if any run diverged or could not be replayed.
    Nothing is written and no step runs.
    """
    for module in modules:
        if isinstance(module, str):
            importlib.import_module(module)
    statuses = [status] if isinstance(status, str) else list(status)
    run_ids: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(journal_or_runs, Runtime):
            runtime = journal_or_runs
        elif isinstance(journal_or_runs, str | os.PathLike):
            client = Runtime(os.fspath(journal_or_runs), execute=False, migrate=False)
            runtime = await stack.enter_async_context(client)
        else:
            handles = list(journal_or_runs)
            if not handles:
                return []
            runtime = handles[0]._runtime
            run_ids = [handle.id for handle in handles]
        codec = runtime.codec
        results = await runtime.journal.read(
            lambda c: list(check_journal(c, codec, run_ids=run_ids, statuses=statuses))
        )
    if any(not result.ok for result in results):
        raise ReplayDivergence(results)
    return results


@contextlib.asynccontextmanager
async def skip_time(runtime: Runtime, *, settle: float = 0.005) -> AsyncIterator[FakeClock]:
    """Jump *runtime*'s :class:`FakeClock` to the next timer whenever the runtime is idle.

    Idle means no step is running and no run's actor is applying outcomes:
    every run waits for a timer (a durable sleep, a retry's backoff, a
    deadline), a hook or another process. The runtime must have been opened
    with a FakeClock. *settle* (real seconds) is how long the runtime must stay
    idle before a jump, so that work just handed to it gets going first.
    """
    clock = runtime.clock
    if not isinstance(clock, FakeClock):
        raise TypeError("skip_time() needs a runtime opened with clock=FakeClock()")
    supervisor = runtime.supervisor

    async def skip() -> None:
        while True:
            deadline = await clock.wait_for_sleeper()
            await anyio.sleep(settle)
            if supervisor.idle() and clock.next_deadline() == deadline:
                clock.advance(max(0.0, deadline - clock.now()))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(skip)
        try:
            yield clock
        finally:
            tasks.cancel_scope.cancel()
