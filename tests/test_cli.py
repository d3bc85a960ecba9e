"""The command line (``runwright runs ...``) against journals written by a real runtime,
on both backends: an SQLite file and a PostgreSQL schema.

Runs are made in-process on a fake clock; the CLI runs in a worker thread,
as it does blocking reads (and ``runs cancel`` starts its own event loop).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from conftest import PG_URL, query_journal

import runwright as rw
from runwright._cli import main
from runwright._cli._common import Target, read_only
from runwright.journal import describe, driver_errors
from runwright.journal.postgres import PgTarget
from runwright.testing import FakeClock

START = 1_800_000_000.0  # FakeClock's default start
START_ISO = "2027-01-15T08:00:00.000Z"

charges: list[int] = []
step_clock: list[FakeClock] = []


@pytest.fixture(autouse=True)
def _reset() -> None:
    charges.clear()
    step_clock.clear()


@rw.step(retries=3, backoff=0)
async def flaky_charge(amount: int) -> str:
    charges.append(amount)
    if step_clock:
        step_clock[0].advance(0.0125)  # every attempt takes 12.5 ms of fake time
    if len(charges) < 3:
        raise ConnectionError(f"gateway timeout {len(charges)}")
    return f"charged {amount}"


@rw.step(retries=0)
async def refuse(reason: str) -> None:
    raise ValueError(reason)


@rw.workflow
async def checkout(amount: int, *, currency: str = "EUR") -> str:
    charged = await flaky_charge(amount)
    return f"{charged} {currency}"


@rw.workflow
async def doomed(reason: str) -> None:
    await refuse(reason)


@rw.workflow
async def reminder(seconds: float) -> str:
    await rw.sleep(seconds)
    return "reminded"


@rw.step
async def hangs() -> None:
    await anyio.sleep_forever()


@rw.workflow
async def times_out() -> str:
    await rw.race(hangs(), rw.sleep(60))
    return "gave up"


@rw.workflow
async def awaits_approval() -> str:
    return await rw.hook("cli-approval")


@rw.workflow
async def child_flow() -> str:
    return "child done"


@rw.workflow
async def cancelled_mid_step(order: str) -> None:
    approval = rw.hook(f"ok:{order}")
    child = await rw.start_child(child_flow)
    await child.result()
    await rw.gather(hangs(), approval)


@rw.step(retries=0, timeout=0.01)
async def too_slow() -> None:
    await anyio.sleep_forever()


@rw.workflow
async def step_timed_out() -> None:
    await too_slow()


async def _ghost_body() -> None:
    """The body of a workflow that is never registered (see the problem test)."""


ghost = rw.WorkflowDefinition(_ghost_body, name="tests.test_cli.ghost")


#: Every table of a journal, for comparing its contents before and after a command.
TABLES = ("events", "runs", "steps", "waits", "hooks", "run_problems", "streams", "stream_chunks")


@pytest.fixture
def db(db_path: Path | str) -> Path | str:
    """The test's journal: an SQLite file, or a fresh PostgreSQL schema (see conftest)."""
    return db_path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def runtime(db: Path | str, clock: FakeClock, **options: Any) -> rw.Runtime:
    return rw.Runtime(db, clock=clock, synchronous="NORMAL", **options)


async def cli(*argv: str) -> int:
    """``main(argv)`` in a worker thread, as the CLI blocks on SQLite."""
    return await anyio.to_thread.run_sync(main, list(argv))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def contents(db: Path | str) -> object:
    """What the journal at *db* holds: its file's bytes, or every row of every table."""
    if isinstance(db, Path):
        return digest(db)
    return {
        table: sorted(map(repr, query_journal(db, f"SELECT * FROM {table}"))) for table in TABLES
    }


# -- runs list ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_list_newest_first_with_filters(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        first = await rt.start(checkout, 42)
        await first.result()
        clock.advance(60)
        second = await rt.start(doomed, "card declined", key="order-7")
        with pytest.raises(rw.RunFailed):
            await second.result()
    before = contents(db)

    assert await cli("runs", "list", "--db", str(db)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RUN", "ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED", "ERROR"]
    assert lines[1].split() == [
        second.id,
        doomed.name,
        "failed",
        "2027-01-15T08:01:00Z",
        "2027-01-15T08:01:00Z",
        "ValueError",
    ]
    assert lines[2].split() == [
        first.id,
        checkout.name,
        "completed",
        "2027-01-15T08:00:00Z",
        "2027-01-15T08:00:00Z",
        "-",
    ]
    assert len(lines) == 3

    assert await cli("runs", "list", "--db", str(db), "--status", "completed") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [first.id]
    assert await cli("runs", "list", "--db", str(db), "--workflow", doomed.name) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [second.id]
    assert await cli("runs", "list", "--db", str(db), "--status", "cancelled") == 0
    assert capsys.readouterr().out == "no runs\n"

    assert await cli("runs", "list", "--db", str(db), "--limit", "1", "--json") == 0
    assert list(map(json.loads, capsys.readouterr().out.splitlines())) == [
        {
            "id": second.id,
            "workflow": doomed.name,
            "status": "failed",
            "key": "order-7",
            "created_at": "2027-01-15T08:01:00.000000Z",
            "finished_at": "2027-01-15T08:01:00.000000Z",
            "error_type": "builtins:ValueError",
            "error_message": "card declined",
            "problem": None,
            "attributes": {},
        }
    ]
    assert contents(db) == before  # reading never changes the journal


# -- runs show ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_show_completed_run_lists_every_attempt(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    step_clock.append(clock)
    async with runtime(db, clock) as rt:
        handle = await rt.start(checkout, 42, currency="CHF")
        assert await handle.result() == "charged 42 CHF"

    assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    step = flaky_charge.name
    ended = "2027-01-15T08:00:00.037Z"
    expected = f"""\
run       {handle.id}
workflow  {checkout.name}
status    completed
key       -
created   {START_ISO}
finished  {ended}
args      42, currency='CHF'
result    'charged 42 CHF'

timeline
  {START_ISO}  run created
  {START_ISO}  step #0 {step}(42): completed
  {START_ISO}    attempt 1    12.5 ms  error ConnectionError: gateway timeout 1; \
retried at 2027-01-15T08:00:00.012Z
  2027-01-15T08:00:00.012Z    attempt 2    12.5 ms  error ConnectionError: gateway timeout 2; \
retried at 2027-01-15T08:00:00.025Z
  2027-01-15T08:00:00.025Z    attempt 3    12.5 ms  ok
  {ended}  run completed
"""
    assert out == expected

    assert await cli("runs", "show", handle.id, "--db", str(db), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "completed"
    assert shown["result"] == "charged 42 CHF"  # values in the JSON form, not reprs
    assert shown["args"] == [42]
    assert shown["kwargs"] == {"currency": "CHF"}
    assert shown["error"] is None
    assert shown["problem"] is None
    kinds = [(entry["type"], entry.get("event")) for entry in shown["timeline"]]
    assert kinds == [("run", "created"), ("step", None), ("run", "completed")]
    attempts = shown["timeline"][1]["attempts"]
    assert [a["outcome"] for a in attempts] == ["retrying", "retrying", "ok"]
    assert [a["duration_ms"] for a in attempts] == [12.5, 12.5, 12.5]
    assert attempts[0]["error"]["type"] == "builtins:ConnectionError"
    assert attempts[0]["error"]["message"] == "gateway timeout 1"
    assert "Traceback (most recent call last)" in attempts[0]["error"]["traceback"]
    assert attempts[2]["error"] is None


@pytest.mark.anyio
async def test_show_failed_run_prints_its_traceback(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        handle = await rt.start(doomed, "card declined")
        with pytest.raises(rw.RunFailed):
            await handle.result()

    assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "status    failed\n" in out
    assert "error     ValueError: card declined\n" in out
    assert f"step #0 {refuse.name}('card declined'): failed\n" in out
    assert "attempt 1     0.0 ms  error ValueError: card declined\n" in out
    assert f"{START_ISO}  run failed\n" in out
    traceback = out.split("traceback of the run's error\n", 1)[1]
    assert "Traceback (most recent call last)" in traceback
    assert "raise ValueError(reason)" in traceback  # the step's own frame
    assert "ValueError: card declined" in traceback

    assert await cli("runs", "show", handle.id, "--db", str(db), "--json") == 0
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "builtins:ValueError"
    assert error["message"] == "card declined"
    assert "raise ValueError(reason)" in error["traceback"]


@pytest.mark.anyio
async def test_show_run_with_a_sleep(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        handle = await rt.start(reminder, 3600)
        assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
        assert "sleep #0 until 2027-01-15T09:00:00.000Z (pending)\n" in capsys.readouterr().out
        assert await clock.jump() == START + 3600
        assert await handle.result() == "reminded"

    assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert out.endswith(
        f"""\
timeline
  {START_ISO}  run created
  {START_ISO}  sleep #0 until 2027-01-15T09:00:00.000Z
  2027-01-15T09:00:00.000Z    fired
  2027-01-15T09:00:00.000Z  run completed
"""
    )
    assert await cli("runs", "show", handle.id, "--db", str(db), "--json") == 0
    [sleep] = [e for e in json.loads(capsys.readouterr().out)["timeline"] if e["type"] == "sleep"]
    assert sleep == {
        "type": "sleep",
        "cid": 0,
        "created_at": "2027-01-15T08:00:00.000000Z",
        "wake_at": "2027-01-15T09:00:00.000000Z",
        "fired_at": "2027-01-15T09:00:00.000000Z",
        "status": "fired",
    }


@pytest.mark.anyio
async def test_show_a_race_whose_losing_step_was_cancelled(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        handle = await rt.start(times_out)
        await clock.jump()
        assert await handle.result() == "gave up"

    assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    fired = "2027-01-15T08:01:00.000Z"
    assert (
        f"""\
  {START_ISO}  step #0 {hangs.name}(): cancelled
  {START_ISO}    attempt 1  60000.0 ms  cancelled
  {START_ISO}  sleep #1 until {fired}
  {fired}    fired
  {fired}  run completed
"""
        in out
    )
    assert await cli("runs", "show", handle.id, "--db", str(db), "--json") == 0
    [step] = [e for e in json.loads(capsys.readouterr().out)["timeline"] if e["type"] == "step"]
    assert step["status"] == "cancelled"
    assert [a["outcome"] for a in step["attempts"]] == ["cancelled"]


@pytest.mark.anyio
async def test_show_a_step_that_timed_out(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        handle = await rt.start(step_timed_out)
        with pytest.raises(rw.RunFailed):
            await handle.result()

    assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    message = f"rw.StepTimeout: step {too_slow.name!r} attempt 1 timed out after 0.01s"
    assert f"step #0 {too_slow.name}(): failed\n" in out
    assert f"error {message}\n" in out


@pytest.mark.anyio
async def test_show_a_run_that_timed_out(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        handle = await rt.start(awaits_approval, timeout=90)
        await clock.jump()
        with pytest.raises(rw.RunCancelled):
            await handle.result()

    assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    ended = "2027-01-15T08:01:30.000Z"
    assert "status    cancelled\n" in out
    assert "reason    timed out\n" in out
    assert f"  {START_ISO}  run deadline: {ended}\n" in out
    assert f"  {ended}  cancel_requested: timed out\n" in out
    assert f"  {ended}  run cancelled\n" in out
    assert await cli("runs", "show", handle.id, "--db", str(db), "--json") == 0
    timeline = json.loads(capsys.readouterr().out)["timeline"]
    assert {"type": "run", "event": "deadline", "at": "2027-01-15T08:00:00.000000Z",
            "detail": ended} in timeline  # fmt: skip


@pytest.mark.anyio
async def test_show_names_tokens_and_children_and_a_cancelled_runs_step(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        handle = await rt.start(cancelled_mid_step, "o0")
        with anyio.fail_after(10):
            while "running" not in [  # noqa: ASYNC110 (polls the journal)
                status
                for (status,) in query_journal(
                    db, "SELECT status FROM steps WHERE run_id = ?", (handle.id,)
                )
            ]:
                await anyio.sleep(0.001)
        await handle.cancel()
        with pytest.raises(rw.RunCancelled):
            await handle.result()

    assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "args      'o0'\n" in out  # one argument, not ('o0')
    assert "  hook_created: ok:o0\n" in out
    assert f"  child_started: {handle.id}.1 ({child_flow.name})\n" in out
    assert "  child_completed: #1: completed\n" in out
    assert f"step #2 {hangs.name}(): cancelled\n" in out
    assert "  attempt 1 " in out
    assert out.count("cancelled") >= 3  # the step, its attempt, the run


@pytest.mark.anyio
async def test_show_reports_a_run_that_cannot_advance(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock, execute=False) as client:
        handle = await client.start(ghost)
    async with runtime(db, clock):  # resuming it finds no workflow of that name
        pass

    assert await cli("runs", "show", handle.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "\nPROBLEM: unknown_workflow: no workflow named 'tests.test_cli.ghost'" in out
    assert await cli("runs", "show", handle.id, "--db", str(db), "--json") == 0
    problem = json.loads(capsys.readouterr().out)["problem"]
    assert problem["kind"] == "unknown_workflow"
    assert "tests.test_cli.ghost" in problem["message"]


# -- runs cancel -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancel(db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    async with runtime(db, clock) as rt:
        waiting = await rt.start(reminder, 86400)
        done = await rt.start(reminder, 0)
        assert await done.result() == "reminded"
    # The runtime has stopped; the first run is still running, asleep in the journal.

    assert await cli("runs", "cancel", waiting.id, "--db", str(db)) == 0
    assert capsys.readouterr().out.startswith(f"{waiting.id} cancel requested")
    # Nobody drives the run: the next runtime with its workflow finishes the cancel.
    async with runtime(db, clock) as rt:
        with pytest.raises(rw.RunCancelled):
            await rt.get_run(waiting.id).result(timeout=10)
    assert await cli("runs", "cancel", done.id, "--db", str(db)) == 0
    assert "completed (it had already ended" in capsys.readouterr().out

    assert await cli("runs", "show", waiting.id, "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "status    cancelled\n" in out
    assert "sleep #0 until 2027-01-16T08:00:00.000Z (cancelled)\n" in out
    assert "  run cancelled\n" in out

    assert await cli("runs", "cancel", "no-such-run", "--db", str(db)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no run with id 'no-such-run'" in captured.err


# -- errors ------------------------------------------------------------------------------


#: Every command that needs an existing journal, with the arguments it takes.
NEEDS_A_JOURNAL = [
    ["runs", "list"],
    ["runs", "show", "abc"],
    ["runs", "cancel", "abc"],
    ["streams", "list", "abc"],
    ["streams", "tail", "abc"],
    ["hooks", "resume", "token"],
    ["db", "info"],
]


@pytest.mark.sqlite_only("a missing file; test_a_schema_with_no_journal is PostgreSQL's case")
@pytest.mark.parametrize(
    "argv",
    [["runs", "list"], ["runs", "show", "abc"], ["runs", "cancel", "abc"], ["db", "info"]],
)
def test_missing_database(
    argv: list[str], db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--db", str(db_path)]) == 1
    assert capsys.readouterr().err == f"runwright: error: no runwright database at {db_path}\n"
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.postgres_only("a schema with no journal is PostgreSQL's missing file")
def test_a_schema_with_no_journal(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    schema = PgTarget(db_path).schema
    for argv in NEEDS_A_JOURNAL:
        assert main([*argv, "--db", db_path]) == 1, argv
        assert capsys.readouterr().err == (
            f"runwright: error: {describe(db_path)} holds no runwright journal; "
            "create it with `runwright db migrate`\n"
        )
    created = query_journal(
        db_path, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", (schema,)
    )
    assert created == [(0,)]  # nothing was created


@pytest.mark.postgres_only("a server that cannot be reached")
def test_an_unreachable_server(journal_backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://postgres@127.0.0.1:1/test?schema=nowhere"
    for argv in [*NEEDS_A_JOURNAL, ["db", "migrate"]]:
        assert main([*argv, "--db", url]) == 1, argv
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(
            "runwright: error: postgresql://postgres@127.0.0.1:1/test (schema nowhere): "
            "cannot connect: "
        ), captured.err
        assert "Traceback" not in captured.err
        assert captured.err.count("\n") == 1


def test_db_defaults_to_environment_then_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNWRIGHT_DB", raising=False)
    assert main(["runs", "list"]) == 1
    assert "no runwright database at runwright.db\n" in capsys.readouterr().err
    monkeypatch.setenv("RUNWRIGHT_DB", str(tmp_path / "env.db"))
    assert main(["runs", "list"]) == 1
    assert f"no runwright database at {tmp_path / 'env.db'}\n" in capsys.readouterr().err


@pytest.mark.sqlite_only("files that are not SQLite journals; PostgreSQL's case follows")
@pytest.mark.parametrize("kind", ["text", "empty", "other-sqlite", "directory"])
def test_not_a_runwright_database(
    kind: str, db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = db_path
    if kind == "text":
        path.write_text("hello, not a database\n")
    elif kind == "empty":
        path.touch()
    elif kind == "other-sqlite":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE runs (id TEXT)")
        conn.commit()
        conn.close()
    else:
        path.mkdir()
    before = None if path.is_dir() else digest(path)
    for argv in (["runs", "list"], ["runs", "show", "abc"], ["runs", "cancel", "abc"]):
        assert main([*argv, "--db", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"runwright: error: {path} is not a runwright journal (")
    if before is not None:
        assert digest(path) == before


@pytest.mark.postgres_only("a schema of tables runwright did not create")
def test_a_schema_of_other_tables(db_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    schema = PgTarget(db_path).schema
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".runs (id TEXT)')
    for argv in [*NEEDS_A_JOURNAL, ["db", "migrate"]]:
        assert main([*argv, "--db", db_path]) == 1, argv
        assert capsys.readouterr().err.startswith(
            f"runwright: error: schema {schema} is not a runwright journal "
            "(it holds tables that runwright did not create)"
        )
    assert query_journal(
        db_path, "SELECT count(*) FROM information_schema.tables WHERE table_schema = ?", (schema,)
    ) == [(1,)]


@pytest.mark.sqlite_only("an SQLite file has no schemas")
def test_schema_is_for_postgresql(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "migrate", "--db", str(db_path), "--schema", "app"]) == 1
    assert capsys.readouterr().err == (
        f"runwright: error: --schema is for a PostgreSQL journal; {db_path} is an SQLite "
        "file, which has no schemas\n"
    )
    assert not db_path.exists()


@pytest.mark.anyio
async def test_reads_cannot_write(db: Path | str, clock: FakeClock) -> None:
    async with runtime(db, clock) as rt:
        assert await (await rt.start(reminder, 0)).result() == "reminded"

    def write() -> None:
        with read_only(Target(str(db))) as conn:
            conn.execute("UPDATE runs SET status = 'failed'")

    with pytest.raises(driver_errors(), match=r"read-only|readonly"):
        await anyio.to_thread.run_sync(write)
    assert query_journal(db, "SELECT status FROM runs") == [("completed",)]


@pytest.mark.anyio
async def test_unknown_run_id(
    db: Path | str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock):
        pass
    assert await cli("runs", "show", "nope", "--db", str(db)) == 1
    assert await cli("runs", "show", "nope", "--db", str(db), "--json") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "runwright: error: no run with id 'nope' in this journal\n" * 2


@pytest.mark.parametrize(
    "argv",
    [[], ["runs"], ["runs", "show"], ["runs", "list", "--limit", "0"], ["runs", "list", "-x"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: runwright" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "show", "--help"]) == 0
    assert "RUN_ID" in capsys.readouterr().out


# -- the real command --------------------------------------------------------------------


@pytest.mark.anyio
async def test_as_a_subprocess(db: Path | str, clock: FakeClock) -> None:
    async with runtime(db, clock) as rt:
        handle = await rt.start(doomed, "out of stock")
        with pytest.raises(rw.RunFailed):
            await handle.result()
    env = {**os.environ, "RUNWRIGHT_DB": str(db)}

    listed = await anyio.run_process(
        [sys.executable, "-m", "runwright._cli", "runs", "list", "--json"], env=env
    )
    [row] = map(json.loads, listed.stdout.splitlines())
    assert (row["id"], row["status"]) == (handle.id, "failed")

    shown = await anyio.run_process(
        [sys.executable, "-m", "runwright._cli", "runs", "show", handle.id], env=env
    )
    assert "ValueError: out of stock" in shown.stdout.decode()

    missing = await anyio.run_process(
        [sys.executable, "-m", "runwright._cli", "runs", "show", "nope"], env=env, check=False
    )
    assert missing.returncode == 1
    assert missing.stderr.decode() == "runwright: error: no run with id 'nope' in this journal\n"
    assert missing.stdout == b""


def test_module_entry_point_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runwright._cli", "runs", "frobnicate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_the_timeline_is_in_time_order_and_names_what_it_separates() -> None:
    from runwright._cli._timeline import _Attempt, _Mark, _Sleep, _Step, timeline_lines

    t = START
    step = _Step(0, "charge", "charge(1)", t)
    step.attempts = [_Attempt(1, t, t + 0.5, "retrying"), _Attempt(2, t + 10, t + 11, "ok")]
    sleep = _Sleep(1, t + 1, t + 5, t + 5, "fired")
    lines = timeline_lines([_Mark("run_created", t), step, sleep, _Mark("run_completed", t + 11)])
    texts = [line[26:] for line in lines]
    assert texts == [
        "run created",
        "step #0 charge(1): completed",
        "  attempt 1   500.0 ms  retrying; retried at 2027-01-15T08:00:10.000Z",
        "sleep #1 until 2027-01-15T08:00:05.000Z",
        "  fired",
        "  step #0 attempt 2  1000.0 ms  ok",
        "run completed",
    ]
    times = [line[:24].strip() for line in lines]
    assert times == sorted(times)
