"""Large payloads of an SQLite journal, in files beside it.

Theory of operation
-------------------
SQLite copies a value it stores three times (the bound parameter, the
record, the pages) and writes it to the WAL in 4 KiB frames: 160-200 ms for
50 MB, where writing the same bytes to a file and fsyncing it takes 30-40 ms
(docs/decisions/0015). So an encoded payload longer than ``BLOB_FROM``
bytes is not stored in ``events.payload``: the writer puts it in a file of
its own in the journal's blob directory (``orders.db-blobs/`` beside
``orders.db``), fsyncs it, and stores a *reference* in the column instead, as
TEXT. Every payload is bound as ``bytes`` (a BLOB), so a TEXT value in
``events.payload`` is a reference and nothing else; no payload is ever
mistaken for one, whatever the codec writes.

A reference is ``"<name> <size> <check>"``: the file's name (32 random hex
digits, unique without any coordination between processes), the payload's
length, and a BLAKE2b digest of the length and of ``CHECK_SLICES`` slices of
``CHECK_BYTES`` spread over the payload, first and last included. A file
that is missing, of another length or with other bytes in the sampled slices
is reported as :class:`PayloadFileCorrupt`, naming the file; hashing all
50 MB would cost 70 ms a write and as much a read (SQLite does not checksum
its pages either).

Ordering, which makes a crash harmless:

1. the file is written and fsynced inside the write transaction that
   references it (the writer holds SQLite's write lock), and its directory
   is fsynced once before ``COMMIT``; a row in ``blobs`` (name, run) is
   inserted in the same transaction;
2. a transaction that rolls back removes the files it wrote; one that
   crashed before ``COMMIT`` leaves them as orphans, files no ``blobs`` row
   names;
3. pruning a run deletes its ``blobs`` rows with the run, and its files after
   that ``COMMIT`` (a crash in between leaves orphans again).

:func:`sweep` removes orphans: at open and by ``runwright db vacuum``, each
time inside a write transaction (``BEGIN IMMEDIATE``). A file is written only
by a process that holds the write lock, so while the sweep holds it no other
process is between writing a file and committing its row: every unnamed
file is an orphan, however young.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Iterable
from typing import Any

from ..._exceptions import PayloadFileCorrupt
from .._codec import human_size

__all__ = [
    "BLOB_FROM",
    "BlobWriter",
    "blob_dir",
    "blob_usage",
    "read_reference",
    "sweep",
]

#: An encoded payload longer than this (1 MiB) is stored in a file of its own.
BLOB_FROM = 1024 * 1024
#: The integrity check hashes the length and this many slices of this many bytes.
CHECK_SLICES = 16
CHECK_BYTES = 4096
_NAME = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger("runwright")


def blob_dir(path: str) -> str:
    """The directory that holds the large payloads of the journal at *path*."""
    return f"{path}-blobs"


def _check(data: bytes | memoryview) -> str:
    """A digest of *data*'s length and of ``CHECK_SLICES`` slices spread over it."""
    view = memoryview(data)
    size = len(view)
    digest = hashlib.blake2b(size.to_bytes(8, "big"), digest_size=8)
    if size <= CHECK_SLICES * CHECK_BYTES:
        digest.update(view)
    else:
        step = (size - CHECK_BYTES) // (CHECK_SLICES - 1)
        for i in range(CHECK_SLICES):
            digest.update(view[i * step : i * step + CHECK_BYTES])
    return digest.hexdigest()


class BlobWriter:
    """The blob files of the journal at *path*'s write transactions (writer thread only)."""

    def __init__(self, path: str, *, sync: bool) -> None:
        self.path = path
        # Absolute: SQLite keeps the database open, whatever the working directory becomes.
        self.directory = blob_dir(os.path.abspath(path))
        self._sync = sync
        self._ready = False
        #: Files written in the open transaction.
        self._written: list[str] = []
        #: Files of pruned runs, removed once the transaction commits.
        self._doomed: list[str] = []

    def put(self, conn: Any, run_id: str, payload: bytes) -> str:
        """Store *payload* in a new file, durably; record it in ``blobs``; return the
        reference to store in its place."""
        if not self._ready:
            self._make_directory()
        name = uuid.uuid4().hex
        file = os.path.join(self.directory, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(file, flags, 0o644)
        except FileNotFoundError:  # the directory was removed since
            self._make_directory()
            fd = os.open(file, flags, 0o644)
        self._written.append(name)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if self._sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        conn.execute(
            "INSERT INTO blobs (name, run_id, size) VALUES (?, ?, ?)",
            (name, run_id, len(payload)),
        )
        return f"{name} {len(payload)} {_check(payload)}"

    def forget_runs(self, conn: Any, run_ids: list[str], marks: str) -> None:
        """Delete the ``blobs`` rows of *run_ids* (pruned); their files go after commit."""
        rows = conn.execute(f"SELECT name FROM blobs WHERE run_id IN ({marks})", run_ids)
        names = [str(row[0]) for row in rows]
        if names:
            conn.execute(f"DELETE FROM blobs WHERE run_id IN ({marks})", run_ids)
            self._doomed += names

    def before_commit(self) -> None:
        """Make the new files' names durable (one fsync of the directory)."""
        if self._written and self._sync:
            _fsync_directory(self.directory)

    def committed(self) -> None:
        self._written.clear()
        doomed, self._doomed = self._doomed, []
        _remove(self.directory, doomed)

    def rolled_back(self) -> None:
        """The transaction did not commit: its files are nobody's."""
        written, self._written = self._written, []
        self._doomed.clear()
        _remove(self.directory, written)

    def _make_directory(self) -> None:
        try:
            os.mkdir(self.directory, 0o755)
        except FileExistsError:
            pass
        else:
            if self._sync:
                _fsync_directory(os.path.dirname(os.path.abspath(self.directory)))
        self._ready = True


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(directory: str, names: Iterable[str]) -> int:
    """Remove the files *names* of *directory*; how many it could (a file it cannot
    remove stays an orphan, left for the next sweep, and is logged)."""
    removed = 0
    for name in names:
        file = os.path.join(directory, name)
        try:
            os.unlink(file)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("runwright: cannot remove %s, which no run uses: %s", file, exc)
            continue
        removed += 1
    return removed


def _journal_path(conn: sqlite3.Connection) -> str:
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return str(row[2])
    raise AssertionError("an SQLite connection without a main database")  # pragma: no cover


def read_reference(conn: Any, reference: str) -> bytes:
    """The payload *reference* (a TEXT ``events.payload``) stands for, read from its file
    in the blob directory of *conn*'s journal; :class:`PayloadFileCorrupt` if the file
    is missing or is not what was stored."""
    journal = _journal_path(conn)
    try:
        name, size_text, check = reference.split(" ")
        size = int(size_text)
    except ValueError:
        raise PayloadFileCorrupt(
            journal, journal, f"holds a malformed payload reference: {reference[:100]!r}"
        ) from None
    file = os.path.join(blob_dir(journal), name)
    what = f"a {human_size(size)} payload ({size:,} bytes)"
    try:
        with open(file, "rb", buffering=0) as f:
            found = os.fstat(f.fileno()).st_size
            if found != size:
                raise PayloadFileCorrupt(
                    journal, file, f"holds {found:,} bytes, not the {size:,} of {what}"
                )
            data = f.read(size)
    except FileNotFoundError:
        raise PayloadFileCorrupt(journal, file, f"is missing (it held {what})") from None
    except OSError as exc:
        detail = f"cannot be opened or read ({exc.strerror or exc}; it holds {what})"
        raise PayloadFileCorrupt(journal, file, detail) from None
    if len(data) != size or _check(data) != check:
        raise PayloadFileCorrupt(journal, file, f"does not hold the bytes of {what} stored")
    return data


def sweep(conn: sqlite3.Connection, path: str) -> int:
    """Remove the orphans of the journal at *path*'s blob directory: files no ``blobs``
    row names. *conn* must hold the write lock (inside ``BEGIN IMMEDIATE``): then no
    other process is between writing a file and committing its row. Returns how many."""
    directory = blob_dir(path)
    try:
        listed = [entry for entry in os.listdir(directory) if _NAME.fullmatch(entry)]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    if not listed:
        return 0
    known = {str(row[0]) for row in conn.execute("SELECT name FROM blobs")}
    return _remove(directory, [name for name in listed if name not in known])


def blob_usage(path: str) -> tuple[int, int]:
    """How many files the blob directory of the journal at *path* holds, and their bytes."""
    count = size = 0
    try:
        entries = list(os.scandir(blob_dir(path)))
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0
    for entry in entries:
        if _NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                size += entry.stat(follow_symlinks=False).st_size
                count += 1
    return count, size
