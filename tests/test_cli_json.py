"""The command line for machines: ``--json`` prints JSON Lines (one object per line for a
list, one line otherwise), and ``runs list`` filters by key, attribute, age and count.

On both backends; runs are made in-process on a fake clock set three days back, so
that ``--since 36h`` (an age back from the real now) falls between them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from conftest import PG_URL

import runwright as rw
from runwright._cli import _parser, main
from runwright.journal.postgres import PgTarget
from runwright.testing import FakeClock

DAY = 86400.0


@rw.workflow
async def tagged(customer: str, vip: bool) -> str:
    rw.set_attribute("customer", customer)
    rw.set_attribute("vip", vip)
    return customer


@rw.workflow
async def awaits_go(token: str) -> object:
    return await rw.hook(token)


@pytest.fixture
def db(db_path: Path | str) -> str:
    return str(db_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(int(time.time() - 3 * DAY)))


def runtime(db: str, clock: FakeClock) -> rw.Runtime:
    return rw.Runtime(db, clock=clock, synchronous="NORMAL")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in a worker thread, as the CLI blocks on the journal."""
    return await anyio.to_thread.run_sync(run_cli, capsys, *argv)


def lines(out: str) -> list[Any]:
    """JSON Lines: every line of *out* one JSON object."""
    found = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(value, dict) for value in found), out
    return found


def iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@pytest.mark.anyio
async def test_runs_list_filters_combine(
    db: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        first = await rt.start(tagged, "c-1", True, key="order-1")  # three days ago
        await first.result()
        clock.advance(DAY)
        second = await rt.start(tagged, "c-2", True)  # two days ago
        await second.result()
        clock.advance(DAY)
        third = await rt.start(tagged, "c-1", False, key="order-3")  # one day ago
        await third.result()
    start = first_created = clock.now() - 2 * DAY

    async def listed(*argv: str) -> list[str]:
        status, out, err = await cli(capsys, "runs", "list", "--db", db, "--json", *argv)
        assert (status, err) == (0, ""), argv
        return [row["id"] for row in lines(out)]

    status, out, err = await cli(capsys, "runs", "list", "--db", db, "--json")
    assert (status, err) == (0, "")
    rows = lines(out)
    assert [row["id"] for row in rows] == [third.id, second.id, first.id]
    assert rows[2] == {
        "id": first.id,
        "workflow": tagged.name,
        "status": "completed",
        "key": "order-1",
        "created_at": iso(first_created),
        "finished_at": iso(first_created),
        "error_type": None,
        "error_message": None,
        "problem": None,
        "attributes": {"customer": "c-1", "vip": "true"},
    }

    assert await listed("--attribute", "customer=c-1") == [third.id, first.id]
    assert await listed("--attribute", "vip=true") == [second.id, first.id]
    # Repeated, every attribute must hold; a key twice with two values matches nothing.
    assert await listed("--attribute", "customer=c-1", "--attribute", "vip=true") == [first.id]
    assert await listed("--attribute", "customer=c-1", "--attribute", "customer=c-2") == []
    assert await listed("--attribute", "customer=c-9") == []
    assert await listed("--attribute", "nope=c-1") == []

    assert await listed("--key", "order-3") == [third.id]
    assert await listed("--key", "order-3", "--attribute", "customer=c-2") == []
    assert await listed("--key", "order-1", "--attribute", "vip=true") == [first.id]

    # --since: an age back from now, or an ISO time (UTC when it names no zone).
    assert await listed("--since", "36h") == [third.id]
    assert await listed("--since", "60h", "--attribute", "vip=true") == [second.id]
    assert await listed("--since", "10m") == []
    assert await listed("--since", "4d") == [third.id, second.id, first.id]
    naive = dt.datetime.fromtimestamp(start + DAY, dt.UTC).replace(tzinfo=None).isoformat()
    assert await listed("--since", naive) == [third.id, second.id]
    assert await listed("--since", iso(start + 1), "--attribute", "customer=c-1") == [third.id]

    assert await listed("--status", "completed", "--workflow", tagged.name) == [
        third.id,
        second.id,
        first.id,
    ]
    assert await listed("--status", "failed", "--attribute", "customer=c-1") == []

    # A full page says on stderr how to ask for the next; pages follow with no gap.
    status, out, err = await cli(
        capsys, "runs", "list", "--db", db, "--json", "--limit", "1", "--attribute", "customer=c-1"
    )
    assert [row["id"] for row in lines(out)] == [third.id]
    assert err == f"runwright: more runs may follow: --after {third.id}\n"
    assert await listed("--limit", "5", "--after", third.id, "--attribute", "customer=c-1") == [
        first.id
    ]
    # The text output is the table it always was, with the same filters.
    status, out, _ = await cli(
        capsys, "runs", "list", "--db", db, "--attribute", "customer=c-2", "--since", "3d"
    )
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()] == ["RUN", second.id]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--attribute", "customer"], "an attribute filter is KEY=VALUE, got 'customer'"),
        (["--attribute", "=c-1"], "an attribute filter is KEY=VALUE, got '=c-1'"),
        (["--since", "5x"], "not a time or an age: '5x'"),
        (["--since", "2026-13-01"], "not a time or an age: '2026-13-01'"),
        (["--since=-2h"], "not a time or an age: '-2h'"),
        (["--since", "0m"], "not a time or an age: '0m'"),
        (["--limit", "0"], "must be at least 1, got 0"),
        (["--limit", "ten"], "not an integer: 'ten'"),
    ],
)
def test_runs_list_refuses_malformed_filters(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(capsys, "runs", "list", "--json", *argv)
    assert (status, out) == (2, "")
    assert message in err


@pytest.mark.anyio
async def test_single_object_commands(
    db: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        waiting = await rt.start(awaits_go, "json-go")
        stopped = await rt.start(awaits_go, "json-stop")
        with anyio.fail_after(10):
            while True:
                status, out, _ = await cli(capsys, "hooks", "list", "--db", db, "--json")
                if len(out.splitlines()) == 2:
                    break
                await anyio.sleep(0.01)
        assert status == 0
        assert sorted(lines(out), key=lambda hook: hook["token"]) == [
            {"token": "json-go", "run_id": waiting.id, "position": 0},
            {"token": "json-stop", "run_id": stopped.id, "position": 0},
        ]
        status, out, _ = await cli(
            capsys, "hooks", "resume", "json-go", "--data", '{"ok": 1}', "--db", db, "--json"
        )
        assert (status, lines(out)) == (0, [{"token": "json-go", "delivered": True}])
        assert await waiting.result(timeout=10) == {"ok": 1}

        status, out, _ = await cli(capsys, "runs", "cancel", stopped.id, "--db", db, "--json")
        [cancelled] = lines(out)
        assert status == 0
        assert cancelled["id"] == stopped.id
        assert cancelled["previous_status"] == "running"
        assert cancelled["cancel_requested"] is True
        with pytest.raises(rw.RunCancelled):
            await stopped.result(timeout=10)
    status, out, _ = await cli(capsys, "runs", "cancel", waiting.id, "--db", db, "--json")
    assert (status, lines(out)) == (
        0,
        [
            {
                "id": waiting.id,
                "previous_status": "completed",
                "status": "completed",
                "cancel_requested": False,
            }
        ],
    )
    status, out, _ = await cli(capsys, "hooks", "list", "--db", db, "--json")
    assert (status, out) == (0, "")  # an empty list is no line at all

    # Both runs ended three days ago (by the fake clock); the client prunes by the real one.
    before = time.time()
    status, out, _ = await cli(capsys, "runs", "prune", "--older-than", "1d", "--db", db, "--json")
    [pruned] = lines(out)
    assert (status, pruned["pruned"]) == (0, 2)
    cutoff = dt.datetime.fromisoformat(pruned["ended_before"]).timestamp()
    assert before - DAY - 1 <= cutoff <= time.time() - DAY
    assert pruned["ended_before"].endswith("Z")

    status, out, _ = await cli(capsys, "runs", "list", "--db", db, "--json")
    assert (status, out) == (0, "")


@pytest.mark.anyio
async def test_errors_stay_text_on_stderr(
    db: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock):
        pass
    for argv in (
        ["runs", "show", "nope"],
        ["runs", "cancel", "nope"],
        ["streams", "list", "nope"],
        ["hooks", "resume", "nope"],
        ["schedules", "pause", "nope"],
    ):
        status, out, err = await cli(capsys, *argv, "--db", db, "--json")
        assert (status, out) == (1, ""), argv
        assert err.startswith("runwright: error: "), argv
        assert len(err.splitlines()) == 1, argv


@pytest.mark.anyio
async def test_an_attribute_filter_on_a_journal_older_than_attributes(
    db: str, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    async with runtime(db, clock) as rt:
        await (await rt.start(tagged, "c-1", True)).result()
    # Make it a version 4 journal, as a runtime before run attributes left it.
    if PG_URL in db:
        target = PgTarget(db)
        with psycopg.connect(target.conninfo, autocommit=True) as pg:
            pg.execute(f'SET search_path TO "{target.schema}"')
            pg.execute("DROP TABLE run_attributes")
            pg.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    else:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("DROP TABLE run_attributes")
            conn.execute("PRAGMA user_version = 4")
    # Read-only, it is not upgraded: no run has attributes, so none matches.
    status, out, err = await cli(
        capsys, "runs", "list", "--db", db, "--json", "--attribute", "customer=c-1"
    )
    assert (status, out, err) == (0, "", "")
    status, out, err = await cli(capsys, "runs", "list", "--db", db, "--json")
    [row] = lines(out)
    assert (status, row["workflow"], row["attributes"]) == (0, tagged.name, {})


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


@pytest.mark.parametrize("group", ["runs", "hooks", "streams", "schedules"])
def test_every_command_of_the_machine_groups_takes_json(group: str) -> None:
    actions = _subcommands(_subcommands(_parser())[group])
    assert len(actions) >= 2
    for name, action in actions.items():
        flags = {flag for option in action._actions for flag in option.option_strings}
        assert "--json" in flags, (group, name)
