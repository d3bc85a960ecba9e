"""The SQLite journal: one file, a writer thread, a reader, a ``data_version`` watcher.

The writer's transactions start with ``BEGIN IMMEDIATE``, so they are
serialized by SQLite's write lock and commit in ``seq`` order. ``rw_now()``
is the host's clock: every process that opens the file runs on this host.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import anyio

from ..._exceptions import (
    DatabaseLocked,
    JournalCorrupt,
    JournalError,
    JournalFull,
    JournalReadOnly,
    NotARunwrightDatabase,
    SchemaVersionError,
)
from .._journal import Journal, _Request
from .._tx import Tx
from ._blobs import BLOB_FROM, BlobWriter, blob_dir, blob_usage, sweep
from ._checkpoint import Checkpointer
from ._schema import APPLICATION_ID, SCHEMA_VERSION, check_file, ensure_schema

__all__ = ["SqliteJournal", "Synchronous", "connect_read_only", "vacuum"]

T = TypeVar("T")
log = logging.getLogger("runwright")
Synchronous = Literal["FULL", "NORMAL", "EXTRA", "OFF"]

#: Seconds between ``data_version`` polls while the database changes, and at most when idle.
_WATCH_BUSY = 0.001
_WATCH_IDLE = 0.004
#: Seconds the poll stays at ``_WATCH_BUSY`` after another process's last change.
_WATCH_HOLD = 0.05


class _SqliteTx(Tx):
    #: The journal's blob files (set on a subclass per journal: see ``_tx_class``).
    _blobs: BlobWriter

    def _insert_event(self, values: tuple[Any, ...]) -> int:
        payload = values[5]
        if payload is not None and len(payload) > BLOB_FROM:
            reference = self._blobs.put(self._conn, values[0], payload)
            values = (*values[:5], reference, values[6])
        cur: sqlite3.Cursor = self._conn.execute(  # type: ignore[assignment]
            "INSERT INTO events (run_id, kind, cid, attempt, name, payload, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        seq = cur.lastrowid
        assert seq is not None
        return int(seq)

    def _forget_runs(self, run_ids: list[str], marks: str) -> None:
        self._blobs.forget_runs(self._conn, run_ids, marks)


def _tx_class(blobs: BlobWriter) -> type[_SqliteTx]:
    """The transactions of one journal, which put its large payloads in *blobs* (a class
    attribute: a transaction is made per write, and this costs it nothing)."""

    class _JournalTx(_SqliteTx):
        _blobs = blobs

    return _JournalTx


def _add_functions(conn: sqlite3.Connection) -> None:
    """``rw_now()``: the clock leases are judged by (this host's: one file, one host)."""
    conn.create_function("rw_now", 0, time.time)


def _connect(path: str, busy_timeout: float, synchronous: Synchronous) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError(f"{path}: could not switch the journal to WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        _add_functions(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _translate(exc, path, busy_timeout) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _translate(exc: sqlite3.Error | OSError, path: str, busy_timeout: float) -> JournalError:
    """The journal error that says what *exc*, SQLite's, means for the file at *path*
    (or an OSError, of writing a payload's file into its blob directory)."""
    if isinstance(exc, OSError):
        return _blob_write_error(exc, path)
    name = getattr(exc, "sqlite_errorname", "")
    message = str(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or (
        not name and ("locked" in message or "busy" in message)
    ):
        return DatabaseLocked(path, busy_timeout)
    if name.startswith("SQLITE_READONLY"):
        return JournalReadOnly(path, why_read_only(path))
    if name == "SQLITE_FULL":
        return JournalFull(path, message)
    if name.startswith("SQLITE_CORRUPT"):
        return JournalCorrupt(path, message, integrity_check(path))
    if name.startswith("SQLITE_NOTADB") or "not a database" in message:
        return NotARunwrightDatabase(path, message)
    if name.startswith("SQLITE_CANTOPEN") and why_read_only(path, default="") != "":
        return JournalReadOnly(path, why_read_only(path))
    if name.startswith("SQLITE_IOERR") and _no_space_left(path):
        # SQLite says I/O error where it could not grow its -wal or -shm file.
        return JournalFull(path, f"{message}; no space is left on the disk")
    if name.startswith("SQLITE_IOERR"):
        return JournalError(f"{path}: the disk reported an I/O error ({message})")
    return JournalError(f"{path}: {message}")


def _blob_write_error(exc: OSError, path: str) -> JournalError:
    where = f"writing a payload file into {blob_dir(path)}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return JournalFull(path, where)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return JournalReadOnly(path, f"read-only blob directory ({where})")
    return JournalError(f"{path}: {where}")


def why_read_only(path: str, default: str = "read-only database") -> str:
    """Why the journal at *path* cannot be written, as far as the file system tells."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    if os.path.exists(path) and not _may_write(path):
        return "read-only file"
    if not _may_write(folder):
        return "read-only directory (SQLite creates the -wal and -shm files beside the journal)"
    for extra in (f"{path}-wal", f"{path}-shm"):
        if os.path.exists(extra) and not _may_write(extra):
            return f"read-only file {os.path.basename(extra)}"
    return default


def _no_space_left(path: str) -> bool:
    """Whether the disk holding *path* has (about) no space left for this user."""
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 64 * 1024


def _may_write(path: str) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK, effective_ids=effective)


def integrity_check(path: str, limit: int = 3) -> str:
    """The first *limit* lines ``PRAGMA integrity_check`` reports for *path* (read-only)."""
    try:
        uri = pathlib.Path(path).absolute().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=1.0)
        try:
            rows = conn.execute(f"PRAGMA integrity_check({limit})").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return str(exc)
    return "; ".join(str(row[0]) for row in rows)


def _check_writable(conn: sqlite3.Connection) -> None:
    """Raise SQLite's SQLITE_READONLY now if the file opened read-only (SQLite opens a
    file it may not write without a word, and fails only at the first write)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE runs SET status = status WHERE 0")
    finally:
        conn.execute("ROLLBACK")


def _sweep_blobs(conn: sqlite3.Connection, path: str) -> None:
    """Remove what crashes left in the journal's blob directory (see ``_blobs``), under
    the write lock: no other process is between writing a file and committing it."""
    if not os.path.isdir(blob_dir(path)):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        removed = sweep(conn, path)
    finally:
        conn.execute("COMMIT")
    if removed:
        log.info("%s: removed %d payload file(s) no run uses", path, removed)


class SqliteJournal(Journal):
    """A runwright journal in one SQLite file."""

    backend = "sqlite"

    def __init__(
        self,
        path: str,
        writer: sqlite3.Connection,
        reader: sqlite3.Connection,
        busy_timeout: float,
        synchronous: Synchronous = "FULL",
    ) -> None:
        super().__init__(path)
        self.busy_timeout = busy_timeout
        self._writer = writer
        self._reader = reader
        self._reader_lock = threading.Lock()
        self._checkpointer = Checkpointer(path, writer)
        #: Payloads over ``BLOB_FROM`` bytes, in files beside the journal (see ``_blobs``).
        self.blobs = BlobWriter(path, sync=synchronous != "OFF")
        self._tx_class = _tx_class(self.blobs)

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 5.0,
    ) -> SqliteJournal:
        return await anyio.to_thread.run_sync(
            cls._open_sync, os.fspath(path), synchronous, busy_timeout
        )

    @classmethod
    def _open_sync(cls, path: str, synchronous: Synchronous, busy_timeout: float) -> SqliteJournal:
        if synchronous not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(
                f"synchronous must be 'FULL', 'NORMAL', 'EXTRA' or 'OFF', not {synchronous!r}"
            )
        check_file(path)
        # Switching a new file to WAL needs a lock SQLite does not wait for:
        # processes opening one new journal together retry until busy_timeout.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                return cls._open_once(path, synchronous, busy_timeout)
            except DatabaseLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    @classmethod
    def _open_once(cls, path: str, synchronous: Synchronous, busy_timeout: float) -> SqliteJournal:
        writer = _connect(path, busy_timeout, synchronous)
        try:
            ensure_schema(writer, path)
            _check_writable(writer)
            _sweep_blobs(writer, path)
            # The writer waits for other processes' write locks itself (see _begin).
            writer.execute("PRAGMA busy_timeout = 0")
            reader = _connect(path, busy_timeout, synchronous)
        except sqlite3.Error as exc:
            writer.close()
            raise _translate(exc, path, busy_timeout) from exc
        except BaseException:
            writer.close()
            raise
        return cls(path, writer, reader, busy_timeout, synchronous)

    def _watch_loop(
        self,
        call_soon: Callable[[Callable[[], object]], object],
        stop: threading.Event,
        started: threading.Event,
    ) -> None:
        """The watcher thread: notice other processes' commits and read their events.

        ``PRAGMA data_version`` changes whenever another connection commits;
        polling it costs a few microseconds. The poll runs every millisecond
        while other processes write, and for ``_WATCH_HOLD`` after they last
        did (a stream's next chunk, a reply to a hook, usually follows soon),
        then backs off to ``_WATCH_IDLE`` (this process's own commits do not
        speed it up). Events
        inside the writer's own seq ranges are this process's and are not
        reported.
        """
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, check_same_thread=False)
        except sqlite3.Error:
            started.set()
            log.exception("%s: the watcher could not start", self.path)
            return
        try:
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                (last,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            finally:
                started.set()
            delay = _WATCH_BUSY
            hold_until = 0.0
            while not stop.wait(delay):
                current = conn.execute("PRAGMA data_version").fetchone()[0]
                if current == version:
                    if time.monotonic() >= hold_until:
                        delay = min(delay * 2, _WATCH_IDLE)
                    continue
                version = current
                last, foreign, others = self._look(conn, last)
                if not others:
                    # Only this process wrote since: no reason to look sooner than when idle.
                    delay = min(delay * 2, _WATCH_IDLE)
                    continue
                delay = _WATCH_BUSY
                hold_until = time.monotonic() + _WATCH_HOLD
                self._report(call_soon, foreign)
        except sqlite3.Error:
            log.exception(
                "%s: the watcher stopped; other processes' changes go unnoticed", self.path
            )
        finally:
            conn.close()

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting up to busy_timeout for another process's write lock.

        SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries; when
        several processes commit often, those sleeps dominate. This one
        retries after 50 us, doubling to at most 1 ms.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.00005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if "locked" not in message and "busy" not in message:
                    raise
                if time.monotonic() >= deadline or self._closed:
                    raise  # closing: the writes left fail now rather than wait
            time.sleep(delay)
            delay = min(delay * 2, 0.001)

    def _commit(self, batch: Sequence[_Request]) -> None:
        conn = self._writer
        try:
            self._begin(conn)
        except sqlite3.Error as exc:
            error = _translate(exc, self.path, self.busy_timeout)
            for request in batch:
                request.error = error
            return
        try:
            # A request alone in its transaction needs no savepoint: its own error
            # rolls back the transaction (below), which holds nothing else.
            blobs, tx_class = self.blobs, self._tx_class
            lo, hi = self._run_requests(
                conn,
                batch,
                lambda: tx_class(conn),
                savepoints=len(batch) > 1,
                abort_on=(sqlite3.Error, OSError),
            )
            blobs.before_commit()
            self._checkpointer.before_commit()
            # The watcher must not see these events before they are known as ours.
            with self._own_lock:
                conn.execute("COMMIT")
                self._mark_own(lo, hi)
            blobs.committed()
            self._checkpointer.after_commit()
        except (sqlite3.Error, OSError) as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # SQLite rolled back already
                    conn.execute("ROLLBACK")
            self.blobs.rolled_back()
            if len(batch) > 1:
                # Which request caused it is not known (a full disk fails them all;
                # a broken statement, one): each again, alone.
                for request in batch:
                    request.result, request.error = None, None
                    self._commit([request])
                return
            error = _translate(exc, self.path, self.busy_timeout)
            for request in batch:
                request.result = None
                request.error = error
        except Exception as exc:
            # The error of a request run alone, without a savepoint: its own. (A
            # request among others has its savepoint, and keeps its error there.)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.blobs.rolled_back()
            for request in batch:
                request.result, request.error = None, exc

    def _read_sync(self, fn: Callable[[Any], T]) -> T:
        # One read transaction: everything *fn* reads comes from one snapshot.
        with self._reader_lock:
            conn = self._reader
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _translate(exc, self.path, self.busy_timeout) from exc

    def _close_sync(self) -> None:
        self._checkpointer.close()
        with self._reader_lock:
            self._reader.close()
        self._writer.close()


def connect_read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to an existing runwright journal file (for inspection).

    It works where the journal cannot be written: a read-only file, and a
    read-only directory or mount, where SQLite cannot create the ``-shm`` file
    a WAL database is read through (the file is opened immutable then: with no
    ``-wal`` file beside it, and no way to create one, nobody can be writing it).
    """
    check_file(path)
    if os.path.getsize(path) == 0:
        raise NotARunwrightDatabase(path, "the file is empty")
    try:
        return _open_read_only(path, immutable=False)
    except JournalReadOnly:
        wal = f"{path}-wal"
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            raise
        return _open_read_only(path, immutable=True)


def _open_read_only(path: str, *, immutable: bool) -> sqlite3.Connection:
    uri = pathlib.Path(path).absolute().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise _translate(exc, path, 5.0) from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        raise _translate(exc, path, 5.0) from None
    if app_id != APPLICATION_ID:
        conn.close()
        raise NotARunwrightDatabase(path, "an SQLite database that runwright did not create")
    if version > SCHEMA_VERSION:
        conn.close()
        raise SchemaVersionError(
            f"{path} has journal schema version {version}, newer than this runwright "
            f"understands ({SCHEMA_VERSION}); upgrade runwright"
        )
    _add_functions(conn)
    return conn


def vacuum(path: str, busy_timeout: float = 5.0) -> tuple[int, int]:
    """Rewrite the journal file at *path* without the pages pruning freed (``VACUUM``),
    and remove the orphans of its blob directory; return its size in bytes (blob
    files included) before and after. Writers wait while it runs."""
    read_only = connect_read_only(path)  # refuses what is not a runwright journal
    read_only.close()
    before = _size(path)
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            sweep(conn, path)  # under the write lock: every file no row names is an orphan
            conn.execute("COMMIT")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise JournalError(f"{path}: cannot vacuum it: {exc}") from None
    return before, _size(path)


def _size(path: str) -> int:
    files = sum(os.path.getsize(name) for name in (path, f"{path}-wal") if os.path.exists(name))
    return files + blob_usage(path)[1]
