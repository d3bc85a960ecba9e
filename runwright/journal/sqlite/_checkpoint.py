"""Checkpoints of the write-ahead log after a large commit, in a thread of their own.

Theory of operation
-------------------
SQLite's automatic checkpoint runs inside ``COMMIT``, in the connection that
commits, once the WAL holds 1,000 pages: the commit that crosses the line
also copies every page of the WAL into the database file and fsyncs it
before it returns. For the small commits of steps that is the right place:
one commit in a thousand pages pays a few milliseconds, and nothing else
competes with the commits for the disk (a checkpoint thread running beside
them made 50 sequential steps 15-20 % slower, measured). For a 50 MB argument
it is a second 50 MB write and a second fsync inside ``start()`` (114 ms of
282 ms, measured), and the WAL file keeps its 50 MB afterwards.

So the writer asks :meth:`Checkpointer.before_commit` just before each
``COMMIT``. SQLite writes a large transaction's pages to the WAL as its page
cache fills, before the commit: if the WAL file is already past
``2 * CHECKPOINT_BYTES`` then, this commit goes without the automatic
checkpoint (``wal_autocheckpoint = 0``), and :meth:`after_commit` wakes this
thread, whose own connection does a ``PASSIVE`` checkpoint (no write lock)
and then a ``TRUNCATE`` that empties the file (holding the write lock for
what the first pass left, waiting ``_TRUNCATE_WAIT`` at most for readers and
the writer). The next commit checkpoints inline again. One ``stat`` per
commit decides.

``journal_size_limit`` is set to ``CHECKPOINT_BYTES``: a WAL that grew past
it for another reason (a transaction of a few MB, a reader that held the
log) is cut back at the first commit after a complete checkpoint. So a
runtime keeps at most ``2 * CHECKPOINT_BYTES`` of WAL once a checkpoint has
run; closing the last connection checkpoints and removes it, as SQLite
always does.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

__all__ = ["CHECKPOINT_BYTES", "Checkpointer"]

log = logging.getLogger("runwright")

#: SQLite's automatic checkpoint threshold (1,000 pages of 4 KiB), and the WAL size the
#: file is cut back to.
CHECKPOINT_BYTES = 4 * 1024 * 1024
#: Seconds ``TRUNCATE`` may wait for the write lock and for readers to move on.
_TRUNCATE_WAIT = 0.1


class Checkpointer:
    """Checkpoints the journal at *path* in a thread after a large commit of *writer*.

    The thread starts on the first such commit and ends with :meth:`close`.
    """

    def __init__(self, path: str, writer: sqlite3.Connection) -> None:
        self._path = path
        self._wal = f"{path}-wal"
        self._writer = writer
        writer.execute(f"PRAGMA journal_size_limit = {CHECKPOINT_BYTES}")
        self._inline = int(writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        self._deferring = False
        self._wanted = threading.Event()
        self._closing = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: Checkpoints this thread ran (for tests and benchmarks).
        self.checkpoints = 0

    def before_commit(self) -> None:
        """Called by the writer before ``COMMIT``: a transaction that already put more
        than ``2 * CHECKPOINT_BYTES`` in the WAL commits without the inline checkpoint."""
        try:
            large = os.stat(self._wal).st_size > 2 * CHECKPOINT_BYTES
        except OSError:
            large = False
        if large != self._deferring:
            self._writer.execute(f"PRAGMA wal_autocheckpoint = {0 if large else self._inline}")
            self._deferring = large

    def after_commit(self) -> None:
        """Called by the writer after ``COMMIT``: checkpoint what it did not, in the thread."""
        if not self._deferring:
            return
        with self._lock:
            if self._closing:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="runwright-checkpoint", daemon=True
                )
                self._thread.start()
        self._wanted.set()

    def close(self) -> None:
        with self._lock:
            self._closing = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        try:
            conn = sqlite3.connect(
                self._path, timeout=_TRUNCATE_WAIT, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error:
            log.exception("%s: cannot checkpoint in the background", self._path)
            return
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._closing:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                except sqlite3.Error as exc:
                    log.debug("%s: checkpoint: %s", self._path, exc)
                self.checkpoints += 1
        finally:
            conn.close()
