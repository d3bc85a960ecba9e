"""Large payloads in a journal: each value stored once, ``max_payload_bytes`` refusing
what is too big before anything is written, and journals written before version 3."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal, resume_when_live

import runwright as rw
from runwright._cli import main
from runwright._cli._format import SHOW_LIMIT
from runwright.journal.postgres._schema import SCHEMA_VERSION as PG_VERSION
from runwright.journal.sqlite._schema import SCHEMA_VERSION as SQLITE_VERSION
from runwright.testing import replay

pytestmark = pytest.mark.anyio

LIMIT = 100_000
MiB = 1024 * 1024


def noise(size: int) -> bytes:
    """Incompressible bytes, the same every time (workflow bodies must be deterministic)."""
    return random.Random(size).randbytes(size)


@rw.step(retries=0)
async def size_of(data: bytes) -> int:
    return len(data)


@rw.step(retries=0)
async def make_bytes(size: int) -> bytes:
    return noise(size)


class HeavyError(Exception):
    pass


@rw.step(retries=0)
async def fail_heavily(size: int) -> None:
    raise HeavyError("too heavy to keep", noise(size))


@rw.workflow
async def echo(data: bytes) -> bytes:
    return data


@rw.workflow
async def pass_on(data: bytes) -> int:
    return await size_of(data)


@rw.workflow
async def send_big_step_args(size: int) -> str:
    try:
        await size_of(noise(size))
    except rw.EncodeError as exc:
        return f"refused: {exc}"
    return "sent"


@rw.workflow
async def step_returns(size: int) -> int:
    return len(await make_bytes(size))


@rw.workflow
async def returns(size: int) -> bytes:
    return noise(size)


@rw.workflow
async def publishes(size: int) -> str:
    try:
        rw.set_event("blob", noise(size))
    except rw.EncodeError as exc:
        return f"refused: {exc}"
    return "published"


@rw.workflow
async def waits_for(token: str) -> Any:
    return await rw.hook(token=token)


@rw.workflow
async def receives() -> Any:
    return await rw.receive("in")


@rw.workflow
async def fails_heavily(size: int) -> None:
    await fail_heavily(size)


def payloads_of(db: Path | str, run_id: str) -> dict[str, int]:
    """Stored payload bytes of the run's events, by kind."""
    rows = query_journal(
        db, "SELECT kind, length(payload) FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
    )
    sizes: dict[str, int] = {}
    for kind, size in rows:
        sizes[kind] = sizes.get(kind, 0) + (size or 0)
    return sizes


# -- stored once -------------------------------------------------------------------------


async def test_arguments_and_result_are_stored_once(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    data = os.urandom(300_000)
    async with make_runtime() as runtime:
        run = await runtime.start(echo, data)
        assert await run.result() == data
    assert query_journal(
        db_path, "SELECT length(args), outcome FROM runs WHERE run_id = ?", (run.id,)
    ) == [(0, None)]
    sizes = payloads_of(db_path, run.id)
    assert len(data) < sizes["run_created"] <= len(data) + 100  # raw, not base64
    assert len(data) < sizes["run_completed"] <= len(data) + 100
    assert sum(sizes.values()) <= 2 * len(data) + 200


async def test_a_run_reads_its_arguments_from_the_one_place(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    data = os.urandom(200_000)
    async with make_runtime(execute=False) as client:
        run = await client.start(pass_on, data, key="once")
        assert (await client.get_run(key="once")).id == run.id
        assert (await client.start(pass_on, data, key="once")).id == run.id  # same arguments
        with pytest.raises(rw.KeyConflict, match="other arguments"):
            await client.start(pass_on, data[:-1], key="once")
    async with make_runtime() as runtime:  # claims the pending run: decodes its arguments
        assert await runtime.get_run(run.id).result() == len(data)
        [checked] = await replay([runtime.get_run(run.id)])
        assert checked.ok
    sizes = payloads_of(db_path, run.id)
    assert sizes["run_created"] <= len(data) + 100
    assert sizes["step_scheduled"] <= len(data) + 100  # the step's own arguments
    assert sizes["run_completed"] < 100


async def test_the_result_of_a_run_that_ended_elsewhere(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    data = os.urandom(200_000)
    async with make_runtime() as runtime, make_runtime(execute=False) as client:
        run = await runtime.start(echo, data)
        assert await client.get_run(run.id).result() == data
        summary = await client.get_run(run.id).summary()
        assert summary.status == rw.RunStatus.COMPLETED


@rw.workflow
async def carries_large(data: bytes, token: str) -> tuple[int, int, bytes]:
    made = await make_bytes(len(data))
    rw.set_event("made", made)
    given: bytes = await rw.hook(token=token)
    return await size_of(data), len(made), given


async def test_large_values_round_trip(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    # Over 1 MiB: on SQLite each goes to a file of the blob directory (the files
    # themselves are tested in tests/journal/test_blobs.py); on PostgreSQL, to TOAST.
    data, reply = noise(3 * MiB), os.urandom(2 * MiB)
    expected = (len(data), len(data), reply)
    async with make_runtime() as runtime:
        run = await runtime.start(carries_large, data, "large-reply")
        await resume_when_live(runtime, "large-reply", reply)
        assert await run.result(timeout=30) == expected
    async with make_runtime(execute=False) as client:  # read back from the journal alone
        handle = client.get_run(run.id)
        assert await handle.result() == expected
        assert await handle.get_event("made") == noise(len(data))
        [checked] = await replay([handle])
        assert checked.ok


# -- max_payload_bytes --------------------------------------------------------------------


def count_rows(db: Path | str) -> tuple[int, int]:
    [(runs,)] = query_journal(db, "SELECT count(*) FROM runs")
    [(events,)] = query_journal(db, "SELECT count(*) FROM events")
    return runs, events


def test_max_payload_bytes_option(tmp_path: Path) -> None:
    assert rw.Runtime(tmp_path / "j.db").max_payload_bytes == 64 * MiB
    assert rw.Runtime(tmp_path / "j.db", max_payload_bytes=None).max_payload_bytes is None
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="max_payload_bytes must be a positive int"):
            rw.Runtime(tmp_path / "j.db", max_payload_bytes=bad)  # type: ignore[arg-type]


async def test_arguments_over_the_limit_are_refused_before_anything_is_written(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    async with make_runtime(max_payload_bytes=LIMIT) as runtime:
        before = count_rows(db_path)
        with pytest.raises(rw.EncodeError) as caught:
            await runtime.start(echo, os.urandom(LIMIT))
        message = str(caught.value)
        assert caught.value.argument == "data"
        assert "workflow" in message
        assert "argument 'data'" in message
        assert (
            "the encoded value is 100.0 KB (100,001 bytes), over max_payload_bytes=100,000"
            in message
        )
        assert "Runtime(max_payload_bytes=...)" in message
        assert count_rows(db_path) == before
        # Up to the limit is fine.
        run = await runtime.start(echo, bytes(LIMIT // 2))
        assert await run.result() == bytes(LIMIT // 2)


async def test_no_limit(make_runtime: Callable[..., rw.Runtime]) -> None:
    async with make_runtime(max_payload_bytes=None) as runtime:
        data = os.urandom(3 * LIMIT)
        assert await (await runtime.start(echo, data)).result() == data


async def test_step_arguments_over_the_limit_fail_at_the_call(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    async with make_runtime(max_payload_bytes=LIMIT) as runtime:
        run = await runtime.start(send_big_step_args, 2 * LIMIT)
        message = await run.result()
    assert message.startswith("refused: step 'tests.test_payloads.size_of', argument 'data'")
    assert "over max_payload_bytes=100,000" in message
    assert "step_scheduled" not in payloads_of(db_path, run.id)


async def test_results_over_the_limit_fail_the_step_or_the_run(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    async with make_runtime(max_payload_bytes=LIMIT) as runtime:
        step_run = await runtime.start(step_returns, 2 * LIMIT)
        with pytest.raises(rw.RunFailed) as caught:
            await step_run.result()
        assert "return value" in str(caught.value)
        assert "over max_payload_bytes=100,000" in str(caught.value)
        sizes = payloads_of(db_path, step_run.id)
        assert "step_completed" not in sizes
        assert sizes["step_failed"] < LIMIT

        run = await runtime.start(returns, 2 * LIMIT)
        with pytest.raises(rw.RunFailed, match="over max_payload_bytes=100,000"):
            await run.result()
        assert payloads_of(db_path, run.id)["run_failed"] < LIMIT


async def test_an_error_over_the_limit_is_kept_without_its_values(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    async with make_runtime(max_payload_bytes=LIMIT) as runtime:
        run = await runtime.start(fails_heavily, 2 * LIMIT)
        with pytest.raises(rw.RunFailed) as caught:
            await run.result()
    assert "HeavyError" in str(caught.value)
    assert "too heavy to keep" in str(caught.value)
    sizes = payloads_of(db_path, run.id)
    assert sizes["step_failed"] < LIMIT
    assert sizes["run_failed"] < LIMIT


async def test_hook_payloads_messages_and_events_over_the_limit(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    async with make_runtime(max_payload_bytes=LIMIT) as runtime:
        hooked = await runtime.start(waits_for, "big-hook")
        await resume_when_live(runtime, "big-hook", "small")  # the hook exists
        assert await hooked.result() == "small"

        waiting = await runtime.start(waits_for, "big-hook-2")
        before = count_rows(db_path)
        with pytest.raises(rw.EncodeError, match="over max_payload_bytes=100,000"):
            await runtime.resume_hook("big-hook-2", noise(2 * LIMIT))
        assert count_rows(db_path) == before
        await resume_when_live(runtime, "big-hook-2", "fits")
        assert await waiting.result() == "fits"

        listening = await runtime.start(receives)
        before = count_rows(db_path)
        with pytest.raises(rw.EncodeError, match="over max_payload_bytes=100,000"):
            await listening.send("in", noise(2 * LIMIT))
        assert count_rows(db_path) == before
        await listening.send("in", "fits")
        assert await listening.result() == "fits"

        publishing = await runtime.start(publishes, 2 * LIMIT)
        message = await publishing.result()
        assert message.startswith("refused: argument 'value': rw.set_event('blob'): ")
        assert "over max_payload_bytes=100,000" in message
        assert "event_set" not in payloads_of(db_path, publishing.id)


# -- journals written before version 3 ----------------------------------------------------


def as_version_2(db: Path | str) -> None:
    """Make the journal look as version 2 left it: run arguments and outcomes copied
    into ``runs`` as well, the version number 2 (and, on PostgreSQL, payloads EXTENDED)."""
    copies = (
        "UPDATE runs SET args = (SELECT payload FROM events AS e WHERE e.run_id = runs.run_id "
        "AND e.kind = 'run_created'), outcome = (SELECT payload FROM events AS e "
        "WHERE e.run_id = runs.run_id AND e.kind IN ('run_completed', 'run_failed', "
        "'run_cancelled'))"
    )
    if isinstance(db, Path):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute(copies)
            conn.execute("PRAGMA user_version = 2")
            conn.commit()
        return
    import psycopg

    from runwright.journal.postgres._url import PgTarget

    target = PgTarget(db)
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{target.schema}"')
        conn.execute(copies)
        conn.execute("ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTENDED")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def current_version(db: Path | str) -> int:
    """This runwright's schema version for *db*'s backend (SQLite's 6 added blob files)."""
    return SQLITE_VERSION if isinstance(db, Path) else PG_VERSION


def version_of(db: Path | str) -> int:
    if isinstance(db, Path):
        return int(query_journal(db, "PRAGMA user_version")[0][0])
    return int(query_journal(db, "SELECT value FROM meta WHERE key = 'schema_version'")[0][0])


async def test_a_version_2_journal_opens_and_its_runs_resume(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    data = os.urandom(50_000)
    async with make_runtime(execute=False) as client:
        pending = await client.start(pass_on, data)
        ended = await client.start(echo, b"old")
    async with make_runtime() as runtime:
        assert await runtime.get_run(ended.id).result() == b"old"
    async with make_runtime(execute=False) as client:
        waiting = await client.start(pass_on, data[:10])
    as_version_2(db_path)
    [(args, outcome)] = query_journal(
        db_path, "SELECT args, outcome FROM runs WHERE run_id = ?", (ended.id,)
    )
    assert len(args) > 0  # the copies version 2 made
    assert outcome is not None
    assert version_of(db_path) == 2

    async with make_runtime() as runtime:
        assert version_of(db_path) == current_version(db_path)
        assert await runtime.get_run(pending.id).result() == len(data)
        assert await runtime.get_run(waiting.id).result() == 10
        assert await runtime.get_run(ended.id).result() == b"old"
    if not isinstance(db_path, Path):
        [(storage,)] = query_journal(
            db_path,
            "SELECT attstorage FROM pg_attribute WHERE attrelid = 'events'::regclass "
            "AND attname = 'payload'",
        )
        assert storage == "e"  # EXTERNAL


@pytest.mark.postgres_only("an SQLite journal is upgraded by whoever opens it")
async def test_a_runtime_told_not_to_migrate_refuses_a_version_2_schema(
    make_runtime: Callable[..., rw.Runtime], db_path: str
) -> None:
    async with make_runtime():
        pass
    as_version_2(db_path)
    with pytest.raises(rw.SchemaVersionError, match=r"older than this runwright's \(5\); upgrade"):
        async with make_runtime(migrate=False):
            pass
    assert version_of(db_path) == 2
    with anyio.fail_after(30):
        async with make_runtime():
            pass
    assert version_of(db_path) == current_version(db_path)


# -- runs show ----------------------------------------------------------------------------


@rw.workflow
async def big_call(data: bytes, tag: bytes) -> bytes:
    await size_of(data)
    return data[: len(data) // 2]


def show(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status = main(["runs", "show", *argv])
    captured = capsys.readouterr()
    assert (status, captured.err) == (0, "")
    return captured.out


async def test_runs_show_gives_the_size_of_large_values_without_reading_them(
    db_path: Path | str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * SHOW_LIMIT)
    async with rw.Runtime(db_path, synchronous="NORMAL") as runtime:
        run = await runtime.start(big_call, data, tag=b"small")
        assert len(await run.result()) == len(data) // 2

    def refuse_large(self: rw.DefaultCodec, payload: bytes) -> object:
        assert len(payload) <= SHOW_LIMIT, "runs show decoded a large payload"
        return decode(self, payload)

    decode = rw.DefaultCodec.decode
    monkeypatch.setattr(rw.DefaultCodec, "decode", refuse_large)
    text = await anyio.to_thread.run_sync(show, capsys, run.id, "--db", str(db_path))
    assert "args      <3.1 MB bytes>, tag=b'small'\n" in text
    assert "result    <1.6 MB bytes>\n" in text
    assert "step #0 tests.test_payloads.size_of(<3.1 MB bytes>): completed" in text

    shown = json.loads(
        await anyio.to_thread.run_sync(show, capsys, run.id, "--db", str(db_path), "--json")
    )
    assert shown["args"] == [{"$omitted": {"type": "bytes", "size": len(data)}}]
    assert shown["kwargs"] == {"tag": {"$b": "c21hbGw="}}
    assert shown["result"] == {"$omitted": {"type": "bytes", "size": len(data) // 2}}
    assert shown["timeline"][1]["call"] == "tests.test_payloads.size_of(<3.1 MB bytes>)"
