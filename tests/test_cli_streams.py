"""``runwright streams tail`` and ``runwright streams list``, run as real subprocesses,
on both backends.

Runs are made by a runtime in the test process; the command is a separate
process reading the same journal (file or PostgreSQL schema), as it would be
from a shell.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import runwright as rw
from runwright._cli import main
from runwright.journal import describe
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

gates: dict[str, anyio.Event] = {}
failures: dict[str, int] = {}


@dataclasses.dataclass(frozen=True)
class Token:
    """A value of a class the command cannot decode: its module exists in this process only."""

    text: str


_only_here = types.ModuleType("tests_cli_streams_only_here")
Token.__module__ = _only_here.__name__
_only_here.Token = Token  # type: ignore[attr-defined]
sys.modules[_only_here.__name__] = _only_here


@rw.step
async def write_parts(parts: list[Any], close: bool) -> int:
    async with rw.writable() as out:
        for part in parts:
            await out.write(part)
        if close:
            await out.close()
    return len(parts)


@rw.workflow
async def parts_flow(parts: list[Any], close: bool = False) -> int:
    return await write_parts(parts, close)


@rw.step
async def write_gated(gate: str, lines: int) -> int:
    async with rw.writable() as out:
        for i in range(lines):
            await out.write(f"line {i}\n")
            if i == lines // 2 - 1:
                await out.flush()
                await gates[gate].wait()
    return lines


@rw.workflow
async def gated_flow(gate: str, lines: int) -> int:
    # The stream is never closed: the command ends because the run does.
    return await write_gated(gate, lines)


@rw.step(retries=1, backoff=0)
async def flaky_writer(key: str) -> str:
    attempt = rw.step_info().attempt
    async with rw.writable() as out:
        await out.write(f"attempt {attempt}")
        if failures.get(key, 0) > 0:
            failures[key] -= 1
            raise ConnectionError("the model hung up")
        await out.write(b"\x00\x01\xfe\xff")
        await out.write({"tokens": 2, "pair": (1, "x"), "raw": b"hi"})
    return "ok"


@rw.workflow
async def flaky_flow(key: str) -> str:
    return await flaky_writer(key)


@rw.step
async def write_two_streams() -> None:
    async with rw.writable("story") as story:
        await story.write("once upon")
        await story.close()
    async with rw.writable("notes") as notes:
        await notes.write(b"n1")
        await notes.write("n2")


@rw.workflow
async def two_streams(seconds: float) -> str:
    await write_two_streams()
    await rw.sleep(seconds)
    return "done"


@rw.workflow
async def silent() -> str:
    return "quiet"


Cli = Callable[..., Awaitable[subprocess.CompletedProcess[bytes]]]


@pytest.fixture
def db(db_path: Path | str) -> Path | str:
    """The test's journal: an SQLite file, or a fresh PostgreSQL schema (see conftest)."""
    return db_path


def runtime(db: Path | str, clock: FakeClock | None = None) -> rw.Runtime:
    return rw.Runtime(db, clock=clock, synchronous="NORMAL")


def command(db: Path | str, *argv: str) -> list[str]:
    return [sys.executable, "-m", "runwright._cli", *argv, "--db", str(db)]


def environment() -> dict[str, str]:
    # Text goes out as UTF-8 whatever the machine's locale.
    return {**os.environ, "PYTHONIOENCODING": "utf-8"}


@pytest.fixture
def cli(db: Path | str, tmp_path: Path) -> Cli:
    """The command on the test's journal, as a subprocess in the test's directory."""

    async def run(*argv: str) -> subprocess.CompletedProcess[bytes]:
        with anyio.fail_after(30):
            return await anyio.run_process(
                command(db, *argv), check=False, cwd=tmp_path, env=environment()
            )

    return run


# -- streams tail ------------------------------------------------------------------------


async def test_tail_prints_a_finished_runs_stream_whole(db: Path | str, cli: Cli) -> None:
    parts: list[Any] = [
        "once ",
        "upon\n",
        b"\x00\xff\xfe",
        {"n": 1, "pair": (1, 2)},
        "a time ✓",
        Token("lost here"),
        "\nthe end",
    ]
    async with runtime(db) as rt:
        run = await rt.start(parts_flow, parts)
        assert await run.result() == len(parts)

    done = await cli("streams", "tail", run.id)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    # Text as is (no newline added), bytes raw, any other value as one JSON line.
    before = b'once upon\n\x00\xff\xfe{"n": 1, "pair": {"$t": [1, 2]}}\n' + "a time ✓".encode()
    after = b"\n\nthe end"
    assert done.stdout.startswith(before)
    assert done.stdout.endswith(after)
    # A value whose class cannot be imported here is shown, and the tail goes on.
    shown = json.loads(done.stdout[len(before) : -len(after)])
    assert list(shown) == ["$undecodable"]
    assert "Token" in shown["$undecodable"]


async def test_tail_follows_a_run_while_it_writes_and_exits_when_it_ends(
    db: Path | str, tmp_path: Path
) -> None:
    gates["live"] = anyio.Event()
    lines = 10
    expected = "".join(f"line {i}\n" for i in range(lines)).encode()
    first_half = expected[: expected.index(b"line 5")]
    async with runtime(db) as rt:
        run = await rt.start(gated_flow, "live", lines)
        async with await anyio.open_process(
            command(db, "streams", "tail", run.id),
            cwd=tmp_path,
            env=environment(),
            stdin=subprocess.DEVNULL,
        ) as proc:
            assert proc.stdout is not None
            assert proc.stderr is not None
            try:
                seen = b""
                with anyio.fail_after(30):
                    while seen != first_half:
                        seen += await proc.stdout.receive()
                        assert first_half.startswith(seen), seen
                # The command printed half of the stream; the run is still writing it.
                assert proc.returncode is None
                assert await run.status() == rw.RunStatus.RUNNING
                gates["live"].set()
                assert await run.result() == lines
                with anyio.fail_after(30):
                    async for data in proc.stdout:
                        seen += data
                    assert await proc.wait() == 0
                    errors = b"".join([data async for data in proc.stderr])
            finally:
                if proc.returncode is None:  # a check failed: don't wait for it forever
                    proc.kill()
    assert seen == expected
    assert errors == b""


async def test_tail_from_the_end(db: Path | str, cli: Cli) -> None:
    async with runtime(db) as rt:
        run = await rt.start(parts_flow, [f"c{i}\n" for i in range(10)], close=True)
        await run.result()
    done = await cli("streams", "tail", run.id, "--start", "-3")
    assert (done.returncode, done.stdout) == (0, b"c7\nc8\nc9\n")
    done = await cli("streams", "tail", run.id, "--start=-30")  # before the first
    assert done.stdout == b"".join(f"c{i}\n".encode() for i in range(10))
    done = await cli("streams", "tail", run.id, "--start", "10")  # past the last
    assert (done.returncode, done.stdout) == (0, b"")


async def test_tail_json(db: Path | str, cli: Cli) -> None:
    failures["json"] = 1
    async with runtime(db) as rt:
        run = await rt.start(flaky_flow, "json")
        assert await run.result() == "ok"
    done = await cli("streams", "tail", run.id, "--json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.decode("ascii").splitlines()]
    writer = f"{run.id}:0"
    assert records == [
        {"index": 0, "writer": writer, "attempt": 1, "data": "attempt 1"},
        {"index": 1, "writer": writer, "attempt": 2, "data": "attempt 2"},
        {
            "index": 2,
            "writer": writer,
            "attempt": 2,
            "data": {"$b": base64.b64encode(b"\x00\x01\xfe\xff").decode()},
        },
        {
            "index": 3,
            "writer": writer,
            "attempt": 2,
            "data": {"tokens": 2, "pair": {"$t": [1, "x"]}, "raw": {"$b": "aGk="}},
        },
    ]


async def test_an_unknown_run(db: Path | str, cli: Cli) -> None:
    async with runtime(db):
        pass
    for argv in (["streams", "tail", "nope"], ["streams", "list", "nope"]):
        done = await cli(*argv)
        assert done.returncode == 1
        assert done.stdout == b""
        assert done.stderr == b"runwright: error: no run with id 'nope' in this journal\n"


async def _until_end(stream: Any) -> bytes:
    data = b""
    with contextlib.suppress(anyio.EndOfStream):
        while True:
            data += await stream.receive()
    return data


async def test_tail_of_a_stream_the_run_does_not_have(
    db: Path | str, cli: Cli, tmp_path: Path
) -> None:
    clock = FakeClock()
    async with runtime(db, clock) as rt:
        run = await rt.start(two_streams, 3600)
        await clock.wait_for_sleeper()  # both streams are written, the run sleeps
        tail = command(db, "streams", "tail", run.id)
        with anyio.fail_after(30):
            async with await anyio.open_process(tail, cwd=tmp_path, env=environment()) as proc:
                assert proc.stdout is not None
                assert proc.stderr is not None
                err = b""
                while b"waiting for it" not in err:  # the tail waits for the stream
                    err += await proc.stderr.receive()
                await clock.jump()  # the run ends without writing it
                out = await _until_end(proc.stdout)
                err += await _until_end(proc.stderr)
                returncode = await proc.wait()
        assert await run.result() == "done"
    done = subprocess.CompletedProcess(tail, returncode, out, err)
    assert done.returncode == 1
    assert done.stdout == b""
    going = "its streams: 'notes' (2 chunks), 'story' (1 chunk, closed)"
    streams = "its streams: 'notes' (2 chunks, closed), 'story' (1 chunk, closed)"
    assert done.stderr.decode() == (
        f"runwright: run {run.id} has no stream 'default' yet ({going}); waiting for it\n"
        f"runwright: error: run {run.id} ended without a stream 'default'; {streams}\n"
    )
    done = await cli("streams", "tail", run.id, "nope")  # the run has ended: at once
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"runwright: error: run {run.id} has no stream 'nope'; {streams}\n"
    )


# -- streams list ------------------------------------------------------------------------


async def test_list(db: Path | str, cli: Cli) -> None:
    clock = FakeClock()
    async with runtime(db, clock) as rt:
        run = await rt.start(two_streams, 60)
        quiet = await rt.start(silent)
        assert await quiet.result() == "quiet"
        await clock.wait_for_sleeper()

        # Oldest first; these two were created at the same (fake) moment, so by name.
        done = await cli("streams", "list", run.id)
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode().splitlines() == [
            "NAME   CHUNKS  BYTES  CLOSED",
            "notes  2       4      no",
            "story  1       9      yes",
        ]
        done = await cli("streams", "list", run.id, "--json")
        assert list(map(json.loads, done.stdout.splitlines())) == [
            {"name": "notes", "chunks": 2, "bytes": 4, "closed": False},
            {"name": "story", "chunks": 1, "bytes": 9, "closed": True},
        ]

        clock.advance(60)
        assert await run.result() == "done"
    # Once the run has ended, every stream of it is closed.
    done = await cli("streams", "list", run.id, "--json")
    assert [(s["name"], s["closed"]) for s in map(json.loads, done.stdout.splitlines())] == [
        ("notes", True),
        ("story", True),
    ]
    done = await cli("streams", "list", quiet.id)
    assert (done.returncode, done.stdout) == (0, b"no streams\n")
    done = await cli("streams", "list", quiet.id, "--json")
    assert done.stdout == b""


# -- usage -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["streams"], ["streams", "tail"], ["streams", "tail", "r", "--start", "x"], ["streams", "x"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: runwright streams" in capsys.readouterr().err


@pytest.mark.sqlite_only("a missing file; test_a_schema_with_no_journal is PostgreSQL's case")
@pytest.mark.parametrize("action", ["tail", "list"])
def test_missing_database(
    action: str, db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["streams", action, "r", "--db", str(db_path)]) == 1
    assert capsys.readouterr().err == f"runwright: error: no runwright database at {db_path}\n"
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.postgres_only("a schema with no journal is PostgreSQL's missing file")
@pytest.mark.parametrize("action", ["tail", "list"])
def test_a_schema_with_no_journal(
    action: str, db_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["streams", action, "r", "--db", db_path]) == 1
    assert capsys.readouterr().err == (
        f"runwright: error: {describe(db_path)} holds no runwright journal; "
        "create it with `runwright db migrate`\n"
    )


async def test_runs_show_puts_a_streams_appends_and_close_in_the_timeline(
    db: Path | str, cli: Cli
) -> None:
    async with runtime(db) as rt:
        run = await rt.start(parts_flow, ["a", "b", "c"], True)
        await run.result()
    done = await cli("runs", "show", run.id)
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert "stream 'default': chunks 0-2" in text
    assert "stream 'default' closed" in text
    assert "stream_appended" not in text
    shown = await cli("runs", "show", run.id, "--json")
    entries = [e for e in json.loads(shown.stdout)["timeline"] if e["type"] == "stream"]
    assert [(e["name"], e.get("chunks"), e.get("closed")) for e in entries] == [
        ("default", [0, 2], None),
        ("default", None, True),
    ]
