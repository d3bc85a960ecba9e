"""``rw.set_attribute``: set in a workflow body or a step, journaled once, kept in
``run_attributes`` (latest value per key) and shown by ``runs show``."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from conftest import query_journal

import runwright as rw
from runwright._cli import main
from runwright.journal.postgres._schema import SCHEMA_VERSION as PG_VERSION
from runwright.journal.sqlite._schema import SCHEMA_VERSION as SQLITE_VERSION
from runwright.testing import ReplayDivergence, replay

pytestmark = pytest.mark.anyio


@rw.step(retries=2, backoff=rw.Backoff(initial=0.0))
async def charge(order: str, fail_first: bool) -> str:
    attempt = rw.step_info().attempt
    rw.set_attribute("charge_attempt", attempt)
    if fail_first and attempt == 1:
        raise RuntimeError("card declined")
    rw.set_attribute("paid", True)
    return f"receipt-{order}"


@rw.step
def ship(order: str) -> str:  # a sync step: it runs in a thread
    rw.set_attribute("carrier", "dhl")
    return order


@rw.workflow
async def order_flow(order: str, fail_first: bool = False) -> str:
    rw.set_attribute("customer", "c-17")
    rw.set_attribute("amount", 12.5)
    receipt = await charge(order, fail_first)
    await ship(order)
    rw.set_attribute("customer", "c-18")  # a key set again takes its latest value
    return receipt


async def test_attributes_from_the_workflow_and_its_steps_are_journaled_once(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime() as runtime:
        run = await runtime.start(order_flow, "o-1", fail_first=True)
        assert await run.result(timeout=10, raise_on_problem=True) == "receipt-o-1"
    rows = query_journal(
        db_path,
        "SELECT key, value, type FROM run_attributes WHERE run_id = ? ORDER BY key",
        (run.id,),
    )
    assert rows == [
        ("amount", "12.5", "float"),
        ("carrier", "dhl", "str"),
        ("charge_attempt", "2", "int"),
        ("customer", "c-18", "str"),
        ("paid", "true", "bool"),
    ]
    events = query_journal(
        db_path,
        "SELECT kind, name, attempt FROM events WHERE run_id = ? "
        "AND kind IN ('attribute_set', 'step_attribute_set') ORDER BY seq",
        (run.id,),
    )
    # Once each, however often the body was replayed (cache_runs=0 replays every step);
    # the failed first attempt's attribute is journaled with its retry.
    assert events == [
        ("attribute_set", "customer", None),
        ("attribute_set", "amount", None),
        ("step_attribute_set", "charge_attempt", 1),
        ("step_attribute_set", "charge_attempt", 2),
        ("step_attribute_set", "paid", 2),
        ("step_attribute_set", "carrier", 1),
        ("attribute_set", "customer", None),
    ]


#: What the code of ``sets_or_not`` does today (a test changes it as a deploy would).
CODE = {"sets": True}


@rw.workflow
async def sets_or_not() -> str:
    if CODE["sets"]:
        rw.set_attribute("flag", "on")
    await charge("x", False)
    return "done"


async def test_a_body_that_stops_setting_an_attribute_is_non_deterministic(
    make_runtime: Callable[..., rw.Runtime],
):
    """An attribute takes a position, like any command: replayed code that no longer
    sets it where the journal says it did is reported, not silently skipped."""
    async with make_runtime() as runtime:
        run = await runtime.start(sets_or_not)
        await run.result(timeout=10)
        CODE["sets"] = False
        try:
            with pytest.raises(ReplayDivergence, match=r"rw\.set_attribute\('flag'\)"):
                await replay([run])
        finally:
            CODE["sets"] = True


@pytest.mark.parametrize(
    ("key", "value", "error", "match"),
    [
        (1, "x", TypeError, r"needs a str key, got int"),
        ("", "x", ValueError, r"non-empty key"),
        ("k" * 129, "x", ValueError, r"129 characters long; at most 128"),
        ("k", [1], TypeError, r"str, int, float or bool, got list"),
        ("k", None, TypeError, r"got NoneType"),
        ("k", "v" * 1025, ValueError, r"1025 characters long; at most 1024"),
        ("k", float("nan"), ValueError, r"must be finite"),
        ("k", 10**1100, ValueError, r"characters long; at most 1024"),
    ],
)
def test_bad_attributes_are_refused_where_they_are_set(
    key: object, value: object, error: type[Exception], match: str
):
    with pytest.raises(error, match=match):
        rw.set_attribute(key, value)  # type: ignore[arg-type]


def test_an_attribute_outside_a_run_is_refused():
    with pytest.raises(rw.RunwrightError, match=r"inside a workflow body or a step"):
        rw.set_attribute("k", "v")


@rw.workflow
async def sets_a_bad_one() -> str:
    try:
        rw.set_attribute("k", object())  # type: ignore[arg-type]
    except TypeError as exc:
        return str(exc)
    return "no error"


async def test_a_bad_attribute_in_a_workflow_raises_there(
    make_runtime: Callable[..., rw.Runtime],
):
    async with make_runtime() as runtime:
        run = await runtime.start(sets_a_bad_one)
        assert "got object" in await run.result(timeout=10)


async def test_runs_show_prints_the_attributes(
    make_runtime: Callable[..., rw.Runtime],
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    async with make_runtime() as runtime:
        run = await runtime.start(order_flow, "o-2")
        await run.result(timeout=10)

    def show(*extra: str) -> str:
        assert main(["runs", "show", run.id, "--db", str(db_path), *extra]) == 0
        return capsys.readouterr().out

    text = await anyio.to_thread.run_sync(show)
    assert "attrs     amount=12.5, carrier=dhl, charge_attempt=1, customer=c-18, paid=true" in text
    shown = json.loads(await anyio.to_thread.run_sync(show, "--json"))
    assert shown["attributes"]["customer"] == "c-18"


def as_version_4(db: Path | str) -> None:
    """Make the journal look as version 4 left it: no run attributes, version 4."""
    drop = ("DROP TABLE run_attributes", "DROP INDEX runs_by_created")
    if isinstance(db, Path):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            for statement in drop:
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 4")
            conn.commit()
        return
    import psycopg

    from runwright.journal.postgres._url import PgTarget

    target = PgTarget(db)
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{target.schema}"')
        for statement in drop:
            conn.execute(statement)
        conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def current_version(db: Path | str) -> int:
    """This runwright's schema version for *db*'s backend (SQLite's 6 added blob files)."""
    return SQLITE_VERSION if isinstance(db, Path) else PG_VERSION


async def test_a_version_4_journal_gains_run_attributes(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
):
    async with make_runtime():
        pass
    await anyio.to_thread.run_sync(as_version_4, db_path)
    async with make_runtime() as runtime:
        run = await runtime.start(order_flow, "o-3")
        await run.result(timeout=10)
    version_sql = (
        "PRAGMA user_version"
        if isinstance(db_path, Path)
        else "SELECT value FROM meta WHERE key = 'schema_version'"
    )
    assert int(query_journal(db_path, version_sql)[0][0]) == current_version(db_path)
    assert ("customer", "c-18") in query_journal(
        db_path, "SELECT key, value FROM run_attributes WHERE run_id = ?", (run.id,)
    )


async def test_runs_show_reads_a_version_4_journal_without_attributes(
    make_runtime: Callable[..., rw.Runtime],
    db_path: Path | str,
    capsys: pytest.CaptureFixture[str],
):
    async with make_runtime() as runtime:
        run = await runtime.start(sets_or_not)
        await run.result(timeout=10)
    await anyio.to_thread.run_sync(as_version_4, db_path)

    def show() -> str:
        assert main(["runs", "show", run.id, "--db", str(db_path)]) == 0
        return capsys.readouterr().out

    text = await anyio.to_thread.run_sync(show)  # read-only: nothing is upgraded
    assert "status    completed" in text
    assert "attrs" not in text
