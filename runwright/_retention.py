"""Retention: deleting ended runs, a bounded transaction at a time.

A run that ended before the cutoff goes with everything it holds (events,
steps, waits, hooks, streams and their chunks, a recorded problem), unless a
child of it or its parent is still going. Deletes are maintenance writes
(:meth:`Journal.maintain`): on SQLite they share the group-committed
transactions of the runs being written, so each batch is kept short (the
journal's ``maintenance_seconds``, 20 ms); on PostgreSQL they run on a
connection of their own and take no lock a run's write needs, so batches can
be longer. A short pause between batches lets writers in.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence

import anyio

from ._clock import Clock
from ._exceptions import JournalError
from .journal import Journal
from .journal._tx import Tx

log = logging.getLogger("runwright")

__all__ = ["ENDED", "prune", "prune_forever"]

#: The statuses of runs that can be pruned.
ENDED = ("completed", "failed", "cancelled")
_FIRST_BATCH = 100
_MIN_BATCH = 10
_MAX_BATCH = 2000
_PAUSE = 0.005


async def prune(
    journal: Journal, cutoff: float, statuses: Sequence[str] = ENDED, *, pause: float = _PAUSE
) -> int:
    """Delete the runs in *statuses* that ended before *cutoff* (epoch seconds); return
    how many. Each batch is one transaction; the batch doubles while one takes less
    than half the journal's ``maintenance_seconds``, and halves while one takes more
    than twice that."""
    unknown = sorted(set(statuses) - set(ENDED))
    if unknown:
        raise ValueError(
            f"only ended runs can be pruned ({', '.join(ENDED)}); not {', '.join(unknown)}"
        )
    pruned, batch, budget = 0, _FIRST_BATCH, journal.maintenance_seconds
    while True:
        started = time.perf_counter()
        count = await journal.maintain(
            functools.partial(Tx.prune_runs, cutoff=cutoff, statuses=statuses, limit=batch)
        )
        elapsed = time.perf_counter() - started
        pruned += count
        if count < batch:
            return pruned
        if elapsed < budget / 2:
            batch = min(_MAX_BATCH, batch * 2)
        elif elapsed > budget * 2:
            batch = max(_MIN_BATCH, batch // 2)
        await anyio.sleep(pause)


async def prune_forever(journal: Journal, clock: Clock, retention: float, every: float) -> None:
    """Every *every* seconds (on *clock*), prune what ended more than *retention* ago.

    A journal that cannot be written now is tried again next time.
    """
    while True:
        try:
            pruned = await prune(journal, clock.now() - retention)
        except JournalError as exc:
            log.warning("pruning ended runs failed; trying again later: %s", exc)
        else:
            if pruned:
                log.info("pruned %d run(s) that ended more than %gs ago", pruned, retention)
        await clock.sleep_until(clock.now() + every)
