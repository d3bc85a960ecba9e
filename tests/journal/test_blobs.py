"""Payloads over 1 MiB on the SQLite journal: each in a file of the journal's blob
directory, written and fsynced before the row that names it commits, removed with its
run, and swept when a crash left it behind; a missing or damaged file is reported.

SQLite only: PostgreSQL stores every payload in its own tables (the server's write
path is the floor there). That a large value round-trips on both backends is tested
in ``tests/test_payloads.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from conftest import query_journal

import runwright as rw
from runwright._cli import main
from runwright.journal import sqlite as sqlite_journal
from runwright.journal._tx import Tx
from runwright.journal.sqlite._blobs import BLOB_FROM, CHECK_BYTES
from runwright.journal.sqlite._schema import SCHEMA_VERSION as SQLITE_VERSION
from runwright.testing import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_only("blob files are SQLite's")]

WORKER = Path(__file__).parent.parent / "blob_crash_worker.py"


@rw.workflow
async def echo(data: bytes) -> bytes:
    return data


@rw.workflow
async def length(data: bytes) -> int:
    return len(data)


def blob_files(db: Path) -> list[str]:
    folder = Path(f"{db}-blobs")
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def files_of(db: Path) -> list[str]:
    return await anyio.to_thread.run_sync(blob_files, db)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def payload_types(db: Path, run_id: str) -> dict[str, str]:
    rows = query_journal(
        db, "SELECT kind, typeof(payload) FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
    )
    return {str(kind): str(kind_of) for kind, kind_of in rows}


async def test_a_large_value_is_a_file_and_reads_back_everywhere(
    db_path: Path, make_runtime: Callable[..., rw.Runtime], capsys: pytest.CaptureFixture[str]
) -> None:
    data = os.urandom(2 * BLOB_FROM)
    async with make_runtime() as runtime:
        run = await runtime.start(echo, data)
        assert await run.result() == data
    # The arguments and the result: one file each, a reference in the row.
    types = payload_types(db_path, run.id)
    assert (types["run_created"], types["run_completed"]) == ("text", "text")
    assert len(await files_of(db_path)) == 2
    assert query_journal(
        db_path, "SELECT count(*), sum(size) > 4 * ? FROM blobs", (BLOB_FROM,)
    ) == [(2, 1)]
    assert (await anyio.Path(db_path).stat()).st_size < BLOB_FROM  # nothing of them in it

    async with make_runtime(execute=False) as client:  # reads them back from the files
        assert await client.get_run(run.id).result() == data
        [checked] = await rw.testing.replay([client.get_run(run.id)])
        assert checked.ok

    status, out, err = await anyio.to_thread.run_sync(
        cli, capsys, "runs", "show", run.id, "--db", str(db_path), "--json"
    )
    assert (status, err) == (0, "")
    assert json.loads(out)["result"] == {"$omitted": {"type": "bytes", "size": len(data)}}
    status, out, err = await anyio.to_thread.run_sync(
        cli, capsys, "replay", "tests.journal.test_blobs", "--db", str(db_path)
    )
    assert (status, out.split()[:2]) == (0, ["ok", run.id]), err


async def test_a_value_up_to_the_threshold_stays_in_the_database(
    db_path: Path, make_runtime: Callable[..., rw.Runtime]
) -> None:
    async with make_runtime() as runtime:
        written: list[int] = []

        def append(tx: Tx) -> None:
            event = tx.append("r", "message_sent", 0.0, name="t", payload=b"\x03" * BLOB_FROM)
            written.append(event.seq)

        await runtime.journal.write(append)
        run = await runtime.start(length, b"small")
        assert await run.result() == 5
    assert query_journal(
        db_path, "SELECT typeof(payload), length(payload) FROM events WHERE seq = ?", (written[0],)
    ) == [("blob", BLOB_FROM)]
    assert not await anyio.Path(f"{db_path}-blobs").exists()


async def test_db_info_shows_the_blob_directory(
    db_path: Path, make_runtime: Callable[..., rw.Runtime], capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_runtime() as runtime:
        await (await runtime.start(length, os.urandom(3_000_000))).result()
    status, out, _ = await anyio.to_thread.run_sync(
        cli, capsys, "db", "info", "--db", str(db_path), "--json"
    )
    assert status == 0
    blobs = json.loads(out)["blobs"]
    assert blobs["directory"] == f"{db_path}-blobs"
    assert blobs["files"] == 1
    assert 3_000_000 < blobs["bytes"] < 3_000_100
    status, out, _ = await anyio.to_thread.run_sync(cli, capsys, "db", "info", "--db", str(db_path))
    assert f"\nblobs    1 file, 3.0 MB, in {db_path}-blobs\n" in out


async def spoiled_run(
    db_path: Path, make_runtime: Callable[..., rw.Runtime], spoil: Callable[[Path], object]
) -> tuple[str, Path]:
    """A run whose 2 MiB result file is then spoiled: (run id, the file)."""
    async with make_runtime() as runtime:
        run = await runtime.start(echo, os.urandom(2 * BLOB_FROM))
        await run.result()
    [(reference,)] = query_journal(
        db_path, "SELECT payload FROM events WHERE run_id = ? AND kind = 'run_completed'", (run.id,)
    )
    file = Path(f"{db_path}-blobs") / str(reference).split()[0]
    await anyio.to_thread.run_sync(spoil, file)
    return run.id, file


def truncate(file: Path) -> None:
    os.truncate(file, 1000)


def overwrite_a_sampled_slice(file: Path) -> None:
    with open(file, "r+b") as f:
        f.seek(os.path.getsize(file) - CHECK_BYTES)  # the last slice is always sampled
        f.write(b"\x00" * 16)


@pytest.mark.parametrize(
    ("spoil", "says"),
    [
        (Path.unlink, "is missing (it held a 2.1 MB payload (2,097,"),
        (truncate, "holds 1,000 bytes, not the 2,097,"),
        (overwrite_a_sampled_slice, "does not hold the bytes of a 2.1 MB payload"),
    ],
    ids=["missing", "truncated", "overwritten"],
)
async def test_a_missing_or_damaged_file_is_reported_by_name(
    db_path: Path,
    make_runtime: Callable[..., rw.Runtime],
    capsys: pytest.CaptureFixture[str],
    spoil: Callable[[Path], object],
    says: str,
) -> None:
    run_id, file = await spoiled_run(db_path, make_runtime, spoil)
    async with make_runtime(execute=False) as client:
        with pytest.raises(rw.PayloadFileCorrupt) as caught:
            await client.get_run(run_id).result()
    assert caught.value.file == str(file)
    assert isinstance(caught.value, rw.JournalCorrupt)
    message = str(caught.value)
    assert message.startswith(f"{db_path}: a payload of this journal cannot be read from {file}")
    assert says in message
    assert message.endswith("Restore the journal and its -blobs directory together from a backup")
    status, out, err = await anyio.to_thread.run_sync(
        cli, capsys, "runs", "show", run_id, "--db", str(db_path)
    )
    assert (status, out) == (1, "")
    assert str(file) in err
    assert says in err


async def test_a_run_whose_arguments_file_is_missing_is_stuck(
    db_path: Path, make_runtime: Callable[..., rw.Runtime]
) -> None:
    async with make_runtime(execute=False) as client:
        run = await client.start(length, os.urandom(2 * BLOB_FROM))
    [name] = await files_of(db_path)
    await anyio.Path(f"{db_path}-blobs/{name}").unlink()
    async with make_runtime() as runtime:  # claims the run: cannot read its arguments
        with pytest.raises(rw.RunStuck) as caught:
            await runtime.get_run(run.id).result(timeout=10, raise_on_problem=True)
    assert caught.value.kind == "undecodable_payload"
    assert name in str(caught.value)


def run_worker(db: Path, mode: str) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(WORKER), str(db), mode],
        capture_output=True,
        timeout=60,
        env=env,
    )
    return done.returncode


async def test_a_crash_before_commit_leaves_an_orphan_that_the_next_open_removes(
    db_path: Path, make_runtime: Callable[..., rw.Runtime]
) -> None:
    async with make_runtime() as runtime:
        kept = await runtime.start(echo, os.urandom(2 * BLOB_FROM))
        await kept.result()
    before = await files_of(db_path)
    assert len(before) == 2
    assert await anyio.to_thread.run_sync(run_worker, db_path, "write") == -9
    after = await files_of(db_path)
    [orphan] = set(after) - set(before)
    assert query_journal(db_path, "SELECT count(*) FROM runs") == [(1,)]  # not committed
    async with make_runtime(execute=False) as client:  # opening sweeps
        assert await client.get_run(kept.id).result() is not None
    assert await files_of(db_path) == before
    assert orphan not in before


async def test_pruning_removes_the_files_and_a_crash_in_between_is_swept(
    db_path: Path, make_runtime: Callable[..., rw.Runtime], clock: FakeClock
) -> None:
    async with make_runtime() as runtime:
        first = await runtime.start(echo, os.urandom(2 * BLOB_FROM))
        await first.result()
        assert len(await files_of(db_path)) == 2
        clock.advance(10)
        assert await runtime.prune(1) == 1
        assert await files_of(db_path) == []  # removed after the commit
    async with rw.Runtime(db_path, synchronous="NORMAL") as runtime:  # the worker's clock
        second = await runtime.start(echo, os.urandom(2 * BLOB_FROM))
        await second.result()
    # Killed after the prune committed, before its files were removed: orphans.
    assert await anyio.to_thread.run_sync(run_worker, db_path, "prune") == -9
    assert query_journal(db_path, "SELECT count(*) FROM runs") == [(0,)]
    assert len(await files_of(db_path)) == 2
    async with make_runtime():
        pass
    assert await files_of(db_path) == []


async def test_db_vacuum_sweeps_orphans_and_nothing_else(
    db_path: Path, make_runtime: Callable[..., rw.Runtime], capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(echo, os.urandom(2 * BLOB_FROM))
        await run.result()
    kept = await files_of(db_path)
    folder = anyio.Path(f"{db_path}-blobs")
    await (folder / ("ab" * 16)).write_bytes(b"left by a crash")
    await (folder / "notes.txt").write_bytes(b"not runwright's")
    status, out, _ = await anyio.to_thread.run_sync(
        cli, capsys, "db", "vacuum", "--db", str(db_path)
    )
    assert status == 0, out
    assert await files_of(db_path) == sorted([*kept, "notes.txt"])
    async with make_runtime(execute=False) as client:
        assert len(await client.get_run(run.id).result()) == 2 * BLOB_FROM


async def test_a_transaction_that_rolls_back_removes_its_files(
    db_path: Path, make_runtime: Callable[..., rw.Runtime]
) -> None:
    def append_then_break(tx: Tx) -> None:
        tx.append("r", "message_sent", 0.0, name="t", payload=os.urandom(2 * BLOB_FROM))
        tx.conn.execute("INSERT INTO no_such_table VALUES (1)")

    async with make_runtime() as runtime:
        with pytest.raises(rw.JournalError, match="no such table"):
            await runtime.journal.write(append_then_break)
        assert await files_of(db_path) == []
        assert query_journal(db_path, "SELECT count(*) FROM blobs") == [(0,)]


async def test_a_blob_directory_that_cannot_be_written_is_a_journal_error(
    db_path: Path, make_runtime: Callable[..., rw.Runtime]
) -> None:
    await anyio.Path(f"{db_path}-blobs").write_bytes(b"a file where the directory goes")
    async with make_runtime() as runtime:
        with anyio.fail_after(10), pytest.raises(rw.JournalError, match="-blobs"):
            await runtime.start(length, os.urandom(2 * BLOB_FROM))
        assert await (await runtime.start(length, b"small")).result() == 5


async def test_a_version_4_journal_gains_the_blobs_table(db_path: Path) -> None:
    async with rw.Runtime(db_path, synchronous="NORMAL"):
        pass

    def as_version_4() -> None:
        conn = sqlite3.connect(db_path)
        try:
            conn.execute("DROP TABLE blobs")
            conn.execute("PRAGMA user_version = 4")
            conn.commit()
        finally:
            conn.close()

    await anyio.to_thread.run_sync(as_version_4)
    async with rw.Runtime(db_path, synchronous="NORMAL") as runtime:
        run = await runtime.start(echo, os.urandom(2 * BLOB_FROM))
        assert len(await run.result()) == 2 * BLOB_FROM
    assert query_journal(db_path, "PRAGMA user_version") == [(SQLITE_VERSION,)]
    assert query_journal(db_path, "SELECT count(*) FROM blobs") == [(2,)]


async def test_a_full_disk_while_writing_a_file_is_journal_full_and_leaves_nothing(
    small_mount: Path,
) -> None:
    db = small_mount / "journal.db"  # a 16 MB tmpfs: the file does not fit
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        with anyio.fail_after(10), pytest.raises(rw.JournalFull, match="-blobs"):
            await runtime.start(length, os.urandom(20_000_000))
        assert await files_of(db) == []  # the partial file was removed
        assert await (await runtime.start(length, os.urandom(3_000_000))).result() == 3_000_000
    assert query_journal(db, "SELECT count(*) FROM runs") == [(1,)]


async def test_a_file_written_under_another_writers_lock_is_never_swept(
    db_path: Path, make_runtime: Callable[..., rw.Runtime]
) -> None:
    async with make_runtime() as runtime:
        await (await runtime.start(length, os.urandom(2 * BLOB_FROM))).result()
    name = "cd" * 16

    def in_flight() -> None:
        # Another process's transaction, between writing its file and committing.
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            Path(f"{db_path}-blobs", name).write_bytes(b"being written")
            with pytest.raises(rw.JournalError, match="cannot vacuum"):
                sqlite_journal.vacuum(str(db_path), busy_timeout=0.2)  # waits for the lock
            assert name in blob_files(db_path)
            other.execute("INSERT INTO blobs (name, run_id, size) VALUES (?, 'r', 13)", (name,))
            other.execute("COMMIT")
        finally:
            other.close()
        sqlite_journal.vacuum(str(db_path))
        assert name in blob_files(db_path)  # named by a committed row: kept

    await anyio.to_thread.run_sync(in_flight)
