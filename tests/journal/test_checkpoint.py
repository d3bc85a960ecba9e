"""The SQLite journal's WAL: small commits are checkpointed by SQLite inside COMMIT, a
large one in a thread of its own (its commit does not wait for it), and a large commit
does not leave a large ``-wal`` file behind."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

import runwright as rw
from runwright.journal._tx import Tx
from runwright.journal.sqlite._blobs import BLOB_FROM
from runwright.journal.sqlite._checkpoint import CHECKPOINT_BYTES

pytestmark = pytest.mark.anyio


@rw.workflow
async def keep(data: bytes) -> int:
    return len(data)


def files_size(db: Path, *, wal: bool = True) -> int:
    files = (db, Path(f"{db}-wal")) if wal else (db,)
    return sum(os.path.getsize(p) for p in files if p.exists())


async def wal_size_below(db: Path, limit: int, timeout: float = 10.0) -> int:
    wal = anyio.Path(f"{db}-wal")
    with anyio.fail_after(timeout):
        while True:
            size = (await wal.stat()).st_size if await wal.exists() else 0
            if size <= limit:
                return size
            await anyio.sleep(0.005)


async def write_large(runtime: rw.Runtime, size: int) -> int:
    """One transaction of *size* bytes of payloads, each small enough to stay in the
    database (a larger one goes to a file of the blob directory, never to the WAL)."""
    values = [os.urandom(BLOB_FROM) for _ in range(size // BLOB_FROM)]

    def write_all(tx: Tx) -> None:
        for value in values:
            tx.append("run", "message_sent", 0.0, name="topic", payload=value)

    await runtime.journal.write(write_all)
    return len(values) * BLOB_FROM


async def test_the_writer_checkpoints_small_commits_itself(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        writer: sqlite3.Connection = runtime.journal._writer  # type: ignore[attr-defined]
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert writer.execute("PRAGMA journal_size_limit").fetchone()[0] == CHECKPOINT_BYTES
        for _ in range(40):
            await (await runtime.start(keep, os.urandom(200_000))).result()
        checkpointer = runtime.journal._checkpointer  # type: ignore[attr-defined]
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    assert checkpointer.checkpoints == 0  # SQLite's own, inside COMMIT


async def test_a_large_commit_leaves_no_large_wal(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        await (await runtime.start(keep, b"x")).result()
        before = files_size(db)
        written = await write_large(runtime, 3 * CHECKPOINT_BYTES)
        await wal_size_below(db, CHECKPOINT_BYTES)
        assert files_size(db) - before <= 1.05 * written
        assert not await anyio.Path(f"{db}-blobs").exists()
        checkpointer = runtime.journal._checkpointer  # type: ignore[attr-defined]
        await (await runtime.start(keep, b"y")).result()  # small again: checkpoints inline
        writer: sqlite3.Connection = runtime.journal._writer  # type: ignore[attr-defined]
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    assert checkpointer.checkpoints >= 1
    assert not [t for t in threading.enumerate() if t.name == "runwright-checkpoint"]
    assert not await anyio.Path(f"{db}-wal").exists()  # closing checkpoints it


async def test_many_small_commits_keep_the_wal_bounded(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        largest = 0
        for _ in range(60):
            await (await runtime.start(keep, os.urandom(200_000))).result()
            largest = max(largest, files_size(db) - files_size(db, wal=False))
        # The file is reused from its start after each checkpoint, and cut back to
        # CHECKPOINT_BYTES then; it outgrows that by what is written while a checkpoint
        # runs, and is emptied once that passes 2 * CHECKPOINT_BYTES.
        assert CHECKPOINT_BYTES < largest < 3 * CHECKPOINT_BYTES
        await wal_size_below(db, 2 * CHECKPOINT_BYTES)
        [(count,)] = runtime.journal._writer.execute(  # type: ignore[attr-defined]
            "SELECT count(*) FROM runs"
        ).fetchall()
        assert count == 60


async def test_a_reader_that_holds_the_wal_only_delays_the_truncation(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        await (await runtime.start(keep, b"x")).result()
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchall()  # holds a snapshot
        try:
            await write_large(runtime, 2 * CHECKPOINT_BYTES)
            await anyio.sleep(0.3)
        finally:
            reader.execute("COMMIT")
            reader.close()
        await (await runtime.start(keep, b"y")).result()  # the next commit wakes it again
        await wal_size_below(db, CHECKPOINT_BYTES)
