"""A PostgreSQL URL's password is never shown, and a schema name is never SQL.

The test server trusts every local connection, so it accepts any password:
the tests put one in every URL and look for it everywhere it could leak:
what each command prints (on success and on failure), a runtime's ``repr``,
``path`` and log records, and the errors runwright raises. A schema name is
validated before anything is sent to the server.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import traceback
import urllib.parse
from pathlib import Path

import anyio
import pytest
from conftest import PG_URL, query_journal

import runwright as rw
from runwright._cli import main
from runwright.journal.postgres import PgTarget, connect_read_only, migrate
from runwright.journal.postgres._url import validate_schema

pytestmark = pytest.mark.postgres_only("a password and a schema belong to a PostgreSQL URL")

SECRET = "s3cr3t-pw"
#: Schema names that try to break out of the quoted identifier, or are not names at all.
INJECTIONS = [
    'x"; DROP SCHEMA public CASCADE; --',
    "public; DROP TABLE runs",
    "x'); SELECT pg_sleep(10); --",
    'a"."b',
    "two words",
    "Upper",
    "1starts_with_a_digit",
    "",
    "x" * 49,
]
SCHEMA_RULE = (
    "schema must be 1-48 characters of lowercase letters, digits and underscores, "
    "not starting with a digit; got "
)


@rw.step
async def say(text: str) -> None:
    async with rw.writable() as out:
        await out.write(text)


@rw.workflow
async def speak(text: str) -> str:
    await say(text)
    return text


def with_password(url: str, password: str = SECRET, *, port: int | None = None) -> str:
    """*url* (the test server's) with a password, and another port if given."""
    parts = urllib.parse.urlsplit(url)
    user = parts.username or "postgres"
    netloc = f"{user}:{password}@{parts.hostname}:{port or parts.port or 5432}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def shown(exc: BaseException) -> str:
    """Everything a traceback of *exc* would print."""
    return "".join(traceback.format_exception(exc))


# -- the command line --------------------------------------------------------------------


def test_no_command_shows_the_password(
    db_path: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = with_password(db_path)
    assert rw.run(speak, "hello", db=url, key="greeting") == "hello"
    [(run_id,)] = query_journal(db_path, "SELECT run_id FROM runs")

    def check(argv: list[str], db: str, expected: int, secret: str = SECRET) -> str:
        status = main([*argv, "--db", db])
        captured = capsys.readouterr()
        assert status == expected, (argv, captured.err)
        assert secret not in captured.out + captured.err, argv
        assert "Traceback" not in captured.err
        return captured.out + captured.err

    working = [
        (["db", "migrate"], 0),
        (["db", "info"], 0),
        (["db", "info", "--json"], 0),
        (["runs", "list"], 0),
        (["runs", "list", "--json"], 0),
        (["runs", "show", run_id], 0),
        (["runs", "show", run_id, "--json"], 0),
        (["runs", "show", "nope"], 1),
        (["runs", "cancel", run_id], 0),
        (["runs", "cancel", "nope"], 1),
        (["streams", "list", run_id], 0),
        (["streams", "list", "nope"], 1),
        (["streams", "tail", run_id], 0),
        (["streams", "tail", "nope"], 1),
        (["hooks", "resume", "nope"], 1),
        (["hooks", "resume", "nope", "--data", "{bad"], 1),
    ]
    for argv, expected in working:
        check(argv, url, expected)
    # The URL is shown, without its password.
    assert "target   postgresql://postgres:***@" in check(["db", "info"], url, 0)

    failing = {
        "refused": with_password(db_path, port=1),
        "no journal": with_password(f"{PG_URL}?schema=t_{secrets.token_hex(6)}"),
        "bad schema": with_password(f"{PG_URL}?schema=Not-A-Name"),
    }
    for problem, db in failing.items():
        for argv, _ in working:
            if argv != ["db", "migrate"] or problem != "no journal":  # that would create it
                check(argv, db, 1)
    # libpq quotes a token of the URL it cannot parse: here, the password itself.
    garbled = with_password(db_path, password=f"{SECRET}%zz")
    for argv in (["runs", "list"], ["db", "migrate"], ["runs", "cancel", run_id]):
        assert "invalid percent-encoded token" in check(argv, garbled, 1, secret="s3cr3t")

    assert SECRET not in caplog.text


def test_the_real_command_shows_no_password(db_path: str, tmp_path: Path) -> None:
    env = {**os.environ, "RUNWRIGHT_DB": with_password(db_path, port=1)}
    done = subprocess.run(
        [sys.executable, "-m", "runwright._cli", "runs", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("runwright: error: postgresql://postgres:***@127.0.0.1:1/")
    assert SECRET not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_shows_no_password(db_path: str, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    # Any module will do: this worker is only started and stopped.
    command = [sys.executable, "-m", "runwright._cli", "worker", "json"]
    with log.open("wb") as stderr:
        worker = subprocess.Popen(
            [*command, "--db", with_password(db_path)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "executing runs" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0
    text = log.read_text() + out.decode()
    assert f"executing runs from {PgTarget(with_password(db_path)).display}\n" in text
    assert SECRET not in text


# -- the runtime ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_runtime_shows_no_password(db_path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name = f"rw_secret_{secrets.token_hex(4)}"
    url = with_password(db_path) + f"&application_name={name}"
    runtime = rw.Runtime(url, synchronous="NORMAL")
    assert SECRET not in repr(runtime)
    assert SECRET not in runtime.path
    assert runtime.path.startswith("postgresql://postgres:***@")
    async with runtime:
        assert SECRET not in repr(runtime.journal)
        assert await (await runtime.start(speak, "one")).result() == "one"
        # Cut this runtime's connections (only its own: they carry its application name),
        # so that it logs the loss, with the journal's name, and reconnects.
        query_journal(
            db_path,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?",
            (name,),
        )
        with anyio.fail_after(30):
            while "lost its connection" not in caplog.text:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        lost: list[rw.JournalUnavailable] = []  # the write in flight when the link broke
        for _ in range(10):
            try:
                assert await (await runtime.start(speak, "two")).result(timeout=30) == "two"
                break
            except rw.JournalUnavailable as exc:
                lost.append(exc)
        else:
            pytest.fail(f"the runtime did not reconnect: {lost}")
    assert not [exc for exc in lost if SECRET in shown(exc)]
    assert any("postgres:***@" in record.getMessage() for record in caplog.records)
    assert SECRET not in caplog.text


@pytest.mark.anyio
async def test_errors_show_no_password(db_path: str) -> None:
    refused = with_password(db_path, port=1)
    with pytest.raises(rw.JournalUnavailable) as unavailable:
        async with rw.Runtime(refused, reconnect_timeout=0.2):
            pass
    assert "Connection refused" in str(unavailable.value)
    assert SECRET not in shown(unavailable.value)
    assert SECRET not in repr(unavailable.value)

    with pytest.raises(rw.JournalError, match="invalid percent-encoded") as garbled:
        async with rw.Runtime(with_password(db_path, password=f"{SECRET}%zz")):
            pass
    assert "s3cr3t" not in shown(garbled.value)

    with pytest.raises(ValueError, match="schema must be") as bad_schema:
        async with rw.Runtime(with_password(PG_URL), schema="Bad Name"):
            pass
    assert SECRET not in shown(bad_schema.value)

    for opener in (connect_read_only, migrate):
        with pytest.raises(rw.JournalError, match="cannot connect") as error:
            opener(refused)
        assert SECRET not in shown(error.value)
        with pytest.raises(rw.JournalError, match="invalid percent-encoded") as error:
            opener(with_password(db_path, password=f"{SECRET}%zz"))
        assert "s3cr3t" not in shown(error.value)


# -- schema names --------------------------------------------------------------------------


@pytest.mark.parametrize("schema", INJECTIONS)
def test_a_schema_name_is_never_sql(
    schema: str, journal_backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError) as refused:
        validate_schema(schema)
    assert str(refused.value) == SCHEMA_RULE + repr(schema)
    # Refused before connecting: with no server at the address the error would otherwise
    # be "cannot connect".
    nowhere = with_password(PG_URL, port=1)
    query = urllib.parse.urlencode({"schema": schema})
    for argv in (
        ["db", "migrate", "--db", nowhere, "--schema", schema],
        ["runs", "list", "--db", f"{nowhere}?{query}"],
    ):
        assert main(argv) == 1
        assert capsys.readouterr().err == f"runwright: error: {SCHEMA_RULE}{schema!r}\n"
    with pytest.raises(ValueError, match="schema must be"):
        connect_read_only(nowhere, schema)


@pytest.mark.anyio
async def test_an_injection_reaches_no_live_server(
    journal_backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = f"injected_{secrets.token_hex(6)}"
    schema = f'x"; CREATE SCHEMA "{canary}'
    status = await anyio.to_thread.run_sync(
        main, ["db", "migrate", "--db", PG_URL, "--schema", schema]
    )
    assert status == 1
    assert capsys.readouterr().err == f"runwright: error: {SCHEMA_RULE}{schema!r}\n"
    with pytest.raises(ValueError, match="schema must be"):
        async with rw.Runtime(PG_URL, schema=schema):
            pass
    found = query_journal(
        f"{PG_URL}?schema=public",
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name IN (?, ?)",
        (canary, "x"),
    )
    assert found == [(0,)]
