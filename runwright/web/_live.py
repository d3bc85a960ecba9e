"""Live updates: which runs changed, pushed to the pages over Server-Sent Events.

Theory of operation
-------------------
One :class:`ChangeFeed` per application follows the journal's ``events``
table from the newest ``seq`` it saw (read by primary key: cheap however
long the journal). It reads when the journal's watcher reports other
processes' commits (SQLite's ``data_version`` poll, PostgreSQL's
LISTEN/NOTIFY), and at least every ``TICK`` seconds while a page listens:
the watcher reports neither this process's own commits (an application
mounted in a service that runs workflows) nor, on PostgreSQL, the commits
that wake nobody (a step's completion), so the tick bounds the delay from a
write to the page at about ``TICK`` plus a read. Nothing runs while no page
listens. The page never polls: it refreshes what it shows when told.

Each listening response gets, per read, one ``change`` event naming the runs
whose events were written (or ``"all": true`` past ``_MAX_NAMED`` runs); the
run page listens for its own run only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from ..journal._journal import Journal
from ..journal._tx import Connection

__all__ = ["TICK", "ChangeFeed", "Listener"]

#: Seconds between reads of the journal while a page listens, when nothing wakes it sooner.
TICK = 0.25
_MAX_NAMED = 200
_BATCH = 5000


class Listener:
    """One listening response: the runs that changed since it last took them."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.runs: set[str] = set()
        self.everything = False
        self.ready = anyio.Event()

    def take(self) -> tuple[set[str], bool]:
        runs, everything = self.runs, self.everything
        self.runs, self.everything = set(), False
        self.ready = anyio.Event()
        return runs, everything

    def offer(self, runs: set[str], everything: bool) -> None:
        if self.run_id is not None:
            if everything or self.run_id in runs:
                self.runs.add(self.run_id)
                self.ready.set()
            return
        self.runs |= runs
        self.everything = self.everything or everything
        if self.runs or self.everything:
            self.ready.set()


class ChangeFeed:
    """Follows the journal's events for the listening pages of one application."""

    def __init__(self, journal: Journal, watch: bool) -> None:
        self._journal = journal
        self._listeners: set[Listener] = set()
        self._last: int | None = None
        self._wake = anyio.Event()
        self._reading = anyio.Lock()
        self._read_at = 0.0
        if watch:
            journal.watch(self._on_foreign)

    def _on_foreign(self, events: list[tuple[int, str, str]]) -> None:
        self._wake.set()

    def poke(self) -> None:
        """Read soon: this process just wrote (an action)."""
        self._wake.set()

    def add(self, run_id: str | None) -> Listener:
        listener = Listener(run_id)
        self._listeners.add(listener)
        return listener

    def remove(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    async def follow(self, until: Callable[[], bool]) -> None:
        """Read new events whenever woken or every ``TICK``, until *until()* says stop.

        Every listening response calls it; one reads at a time, and a response
        that finds another read just done takes that read's news.
        """
        while not until():
            with anyio.move_on_after(TICK):
                await self._wake.wait()
            woken = self._wake.is_set()
            if woken or time.monotonic() - self._read_at >= TICK / 2:
                await self.read()

    async def read(self) -> None:
        """Read the events written since the last read and tell the listeners."""
        if self._reading.locked():
            async with self._reading:  # another response reads: its news is ours too
                return
        async with self._reading:
            self._wake = anyio.Event()
            self._read_at = time.monotonic()
            last = self._last
            if last is None:
                self._last = await self._journal.read(_newest)
                return
            rows = await self._journal.read(lambda c: _since(c, last))
            if not rows:
                return
            self._last = int(rows[-1][0])
            runs = {str(row[1]) for row in rows}
            everything = len(runs) > _MAX_NAMED
            for listener in list(self._listeners):
                listener.offer(set() if everything else runs, everything)


def _newest(conn: Connection) -> int:
    (seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    return int(seq)


def _since(conn: Connection, last: int) -> list[Any]:
    return list(
        conn.execute(
            "SELECT seq, run_id FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (last, _BATCH)
        ).fetchall()
    )
