"""Fault injection for journal tests: make chosen write transactions fail.

:class:`FaultPlan` counts every write transaction the journals of one
backend attempt in this process (it wraps the backend's ``_commit``) and
fails the ones it is told to, before anything of them reaches the database, as a
transaction that rolled back: each write of the batch gets
:class:`rw.JournalFull`. Worker processes install one from the environment
(``RW_FAULT_FROM=N``: every transaction from the N-th on fails, of journals
like ``RW_FAULT_DB``) with :func:`install_from_environment`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import runwright as rw
from runwright.journal._journal import Journal, _Request


class FaultPlan:
    """Which write transactions fail: from the *first* (1-based), *count* of them
    (``None``: until :meth:`clear`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.transactions = 0
        self.failed = 0
        self._first = 0
        self._count: int | None = 0

    def fail(self, first: int, count: int | None = 1) -> None:
        with self._lock:
            self._first, self._count = first, count

    def clear(self) -> None:
        with self._lock:
            self._count = 0

    def _next_fails(self) -> bool:
        with self._lock:
            self.transactions += 1
            n = self.transactions
            if self._count == 0 or n < self._first:
                return False
            if self._count is not None and n >= self._first + self._count:
                return False
            self.failed += 1
            return True

    def wrap(self, commit: Callable[..., None]) -> Callable[..., None]:
        def failing_commit(journal: Journal, batch: Sequence[_Request], **options: Any) -> None:
            if self._next_fails():
                why = f"injected fault, transaction {self.transactions}"
                error = rw.JournalFull(journal.path, why)
                for request in batch:
                    request.result, request.error = None, error
                return
            commit(journal, batch, **options)

        return failing_commit


def _backend(db: str | os.PathLike[str]) -> type[Journal]:
    if str(db).startswith("postgresql://"):
        from runwright.journal.postgres._journal import PostgresJournal

        return PostgresJournal
    from runwright.journal.sqlite import SqliteJournal

    return SqliteJournal


@contextmanager
def injected(plan: FaultPlan, db: str | os.PathLike[str]) -> Iterator[FaultPlan]:
    """Route the write transactions of journals like *db*'s through *plan* in the block."""
    originals = {cls: cls.__dict__["_commit"] for cls in [_backend(db)]}
    try:
        for cls, commit in originals.items():
            cls._commit = plan.wrap(commit)  # type: ignore[method-assign]
        yield plan
    finally:
        for cls, commit in originals.items():
            cls._commit = commit  # type: ignore[method-assign]


def install_from_environment() -> FaultPlan | None:
    """In a worker process: fail every write transaction from ``$RW_FAULT_FROM`` on,
    of journals like ``$RW_FAULT_DB`` (its path or URL)."""
    first = os.environ.get("RW_FAULT_FROM")
    if not first:
        return None
    plan = FaultPlan()
    plan.fail(int(first), None)
    cls = _backend(os.environ["RW_FAULT_DB"])
    cls._commit = plan.wrap(cls.__dict__["_commit"])  # type: ignore[method-assign]
    return plan
