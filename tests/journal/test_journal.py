"""The journal contract on both backends: group commit, savepoint isolation,
conditional claims, leases by the journal's clock, the watcher."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from runwright.journal import Journal, open_journal
from runwright.journal._events import Kind
from runwright.journal._queries import claimable_runs, events_of, steps_of
from runwright.journal._tx import Tx
from runwright.journal.sqlite import SqliteJournal

pytestmark = pytest.mark.anyio


async def open_serving(path: Path | str, tg: anyio.abc.TaskGroup, **options: Any) -> Journal:
    journal = await open_journal(path, **options)
    await tg.start(journal.serve)
    return journal


async def count(journal: Journal, sql: str) -> Any:
    return await journal.read(lambda c: c.execute(sql).fetchone()[0])


@pytest.mark.sqlite_only("WAL and synchronous are SQLite's settings")
async def test_wal_mode_and_synchronous_setting(db_path: Path):
    for setting, expected in (("FULL", 2), ("NORMAL", 1)):
        journal = await SqliteJournal.open(db_path, synchronous=setting)  # type: ignore[arg-type]
        assert journal._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._writer.execute("PRAGMA synchronous").fetchone()[0] == expected
        await journal.close()
    with pytest.raises(ValueError, match="synchronous"):
        await SqliteJournal.open(db_path, synchronous="SOMETIMES")  # type: ignore[arg-type]


async def test_concurrent_writes_share_transactions(db_path: Path):
    async with anyio.create_task_group() as tg:
        journal = await open_serving(db_path, tg)

        async def create(i: int) -> None:
            await journal.write(
                lambda tx: tx.create_run(
                    f"r{i}", "wf", b"", 1.0, key=None, owner="me", lease_seconds=30
                )
            )

        async with anyio.create_task_group() as writers:
            for i in range(200):
                writers.start_soon(create, i)
        journal.stop_writing()
    assert journal.writes == 200
    assert journal.batches < 200 / 4
    assert await count(journal, "SELECT count(*) FROM runs") == 200
    await journal.close()


async def test_a_failing_write_rolls_back_alone(db_path: Path):
    def good(name: str):
        def write(tx: Tx) -> None:
            tx.create_run(name, "wf", b"", 1.0, key=None, owner=None, lease_seconds=30)

        return write

    def bad(tx: Tx) -> None:
        tx.create_run("bad", "wf", b"", 1.0, key=None, owner=None, lease_seconds=30)
        raise KeyError("boom")

    async with anyio.create_task_group() as tg:
        journal = await open_serving(db_path, tg)
        results: dict[str, object] = {}

        async def attempt(name: str, fn: object) -> None:
            try:
                await journal.write(fn)  # type: ignore[arg-type]
                results[name] = "ok"
            except KeyError as exc:
                results[name] = exc

        async with anyio.create_task_group() as writers:
            writers.start_soon(attempt, "a", good("a"))
            writers.start_soon(attempt, "bad", bad)
            writers.start_soon(attempt, "b", good("b"))
        journal.stop_writing()
    assert results["a"] == results["b"] == "ok"
    assert isinstance(results["bad"], KeyError)
    ids = {r[0] for r in await journal.read(lambda c: c.execute("SELECT run_id FROM runs"))}
    assert ids == {"a", "b"}
    assert not await journal.read(lambda c: events_of(c, "bad"))
    await journal.close()


async def test_step_claims_have_one_winner_and_a_silent_loser(db_path: Path):
    async with anyio.create_task_group() as tg:
        journal = await open_serving(db_path, tg)

        def setup(tx: Tx) -> None:
            tx.create_run("r", "wf", b"", 1.0, key=None, owner="me", lease_seconds=30)
            tx.schedule_step("r", 0, "s", b"", 1.0, start=False)

        await journal.write(setup)
        claims = [journal.write(lambda tx: tx.start_attempt("r", 0, "s", 1, 2.0)) for _ in "ab"]
        won = [await claim for claim in claims]
        assert sorted(won) == [False, True]
        first = await journal.write(lambda tx: tx.complete_step("r", 0, "s", 1, b"x", 3.0))
        second = await journal.write(lambda tx: tx.complete_step("r", 0, "s", 1, b"y", 4.0))
        assert first is not None
        assert second is None
        stale = await journal.write(lambda tx: tx.start_attempt("r", 0, "s", 1, 5.0))
        assert stale is False
        journal.stop_writing()
    kinds = [e.kind for e in await journal.read(lambda c: events_of(c, "r"))]
    assert kinds == [Kind.RUN_CREATED, Kind.STEP_SCHEDULED, Kind.STEP_STARTED, Kind.STEP_COMPLETED]
    assert [s.status for s in await journal.read(lambda c: steps_of(c, "r"))] == ["completed"]
    await journal.close()


async def test_run_claims_respect_live_leases_by_the_journals_clock(db_path: Path):
    async with anyio.create_task_group() as tg:
        journal = await open_serving(db_path, tg)
        await journal.write(
            lambda tx: tx.create_run("r", "wf", b"", 1.0, key=None, owner="alive", lease_seconds=60)
        )
        assert not await journal.write(lambda tx: tx.claim_run("r", "other", 30))
        assert await journal.read(lambda c: claimable_runs(c, "other", 10)) == []
        # A lease renewed into the past has expired by the journal's clock.
        assert await journal.write(lambda tx: tx.renew_leases("alive", -1)) == {"r"}
        assert await journal.read(lambda c: claimable_runs(c, "other", 10)) == [
            ("r", "alive", True)
        ]
        assert await journal.write(lambda tx: tx.claim_run("r", "other", 30))
        assert await journal.write(lambda tx: tx.renew_leases("alive", 30)) == set()
        assert not await journal.write(lambda tx: tx.claim_run("r", "third", 30))
        assert await journal.write(lambda tx: tx.release_runs("other")) == 1
        assert await journal.write(lambda tx: tx.claim_run("r", "third", 30))
        journal.stop_writing()
    await journal.close()


async def test_a_repeated_create_is_harmless(db_path: Path):
    """A retried start whose first commit went unseen finds its own run, not a second."""
    async with anyio.create_task_group() as tg:
        journal = await open_serving(db_path, tg)

        def create(tx: Tx) -> tuple[str, str, bytes] | None:
            return tx.create_run("r", "wf", b"", 1.0, key="k", owner="me", lease_seconds=30)

        assert await journal.write(create) is None
        assert await journal.write(create) == ("r", "wf", b"")
        journal.stop_writing()
    assert [e.kind for e in await journal.read(lambda c: events_of(c, "r"))] == [Kind.RUN_CREATED]
    await journal.close()


@pytest.mark.sqlite_only("reads the file with sqlite3 directly")
async def test_the_writer_keeps_writes_durable_in_a_real_file(db_path: Path):
    async with anyio.create_task_group() as tg:
        journal = await open_serving(db_path, tg)
        await journal.write(
            lambda tx: tx.create_run("r", "wf", b"a", 1.0, key="k", owner=None, lease_seconds=30)
        )
        journal.stop_writing()
    await journal.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT key, status FROM runs").fetchall() == [("k", "pending")]


async def test_the_watcher_reports_other_writers_events_only(db_path: Path):
    seen: list[tuple[int, str, str]] = []
    got_foreign = anyio.Event()

    def on_events(events: list[tuple[int, str, str]]) -> None:
        seen.extend(events)
        got_foreign.set()

    def create(run_id: str):
        def write(tx: Tx) -> None:
            tx.create_run(run_id, "wf", b"", 1.0, key=None, owner=None, lease_seconds=30)

        return write

    async with anyio.create_task_group() as tg:
        mine = await open_journal(db_path)
        mine.watch(on_events)
        await tg.start(mine.serve)
        other = await open_serving(db_path, tg)
        for i in range(5):
            await mine.write(create(f"mine-{i}"))
        await other.write(create("theirs"))
        with anyio.fail_after(5):
            await got_foreign.wait()
        await mine.write(create("mine-late"))
        await anyio.sleep(0.05)
        mine.stop_writing()
        other.stop_writing()
    assert [(run_id, kind) for _, run_id, kind in seen] == [("theirs", Kind.RUN_CREATED)]
    await mine.close()
    await other.close()
