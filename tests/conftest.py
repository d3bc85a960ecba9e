"""Shared fixtures: every async test runs on asyncio and trio, every runtime test
runs with hot interpreters and with ``cache_runs=0`` (every step by replay), and
every test that takes ``db_path`` runs on both journal backends: an SQLite file,
and a fresh schema of the PostgreSQL database at ``$RUNWRIGHT_TEST_PG`` (default:
the local server's ``test`` database). ``--backend sqlite`` or ``--backend
postgresql`` runs one. A test marked ``sqlite_only`` or ``postgres_only`` says why.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from blockbuster import blockbuster_ctx

import runwright as rw
from runwright.testing import FakeClock

PG_URL = os.environ.get("RUNWRIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")

# Test modules import the helpers below as ``from conftest import query_journal``.
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        choices=(*BACKENDS, "all"),
        default="all",
        help="which journal backends the db_path tests run on (default: all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): runs on the SQLite journal only")
    config.addinivalue_line("markers", "postgres_only(reason): runs on the PostgreSQL journal only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "journal_backend" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("--backend")
    backends = [b for b in BACKENDS if chosen in ("all", b)]
    if metafunc.definition.get_closest_marker("sqlite_only"):
        backends = [b for b in backends if b == "sqlite"]
    if metafunc.definition.get_closest_marker("postgres_only"):
        backends = [b for b in backends if b == "postgresql"]
    metafunc.parametrize("journal_backend", backends, scope="function")


def new_pg_schema() -> tuple[str, Callable[[], None]]:
    """A URL naming a fresh schema of the test database, and what drops it."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"

    def drop() -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return f"{PG_URL}?schema={schema}", drop


def query_journal(db: Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of *sql* (``?`` placeholders) read straight from the journal at *db*, on
    either backend, outside any runtime: what a test checks was really stored."""
    target = os.fspath(db)
    if not target.startswith("postgresql://"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(target)) as conn:
            return [tuple(row) for row in conn.execute(sql, params)]
    import psycopg

    from runwright.journal.postgres._url import PgTarget

    parsed = PgTarget(target)
    with psycopg.connect(parsed.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{parsed.schema}"')
        return [tuple(row) for row in conn.execute(sql.replace("?", "%s"), params or None)]


async def resume_when_live(runtime: rw.Runtime, token: str, payload: Any = None) -> None:
    """Resume hook *token* as soon as its run has created it (within 10 s)."""
    with anyio.fail_after(10):
        while True:
            try:
                await runtime.resume_hook(token, payload)
                return
            except rw.HookNotFound:
                await anyio.sleep(0.001)


def wait_for_sessions_to_end(db: Path | str, session: str, timeout: float = 20.0) -> None:
    """Wait until the server has ended every session named *session* (whatever a dead
    worker's last transaction did, it is done: committed or rolled back)."""
    deadline = time.monotonic() + timeout
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = ?"
    while query_journal(db, sql, (session,)) != [(0,)]:
        assert time.monotonic() < deadline, f"the server kept {session}'s sessions"
        time.sleep(0.005)


@pytest.fixture
def db_path(journal_backend: str, tmp_path: Path) -> Iterator[Path | str]:
    """The test's journal: a file path on SQLite, a URL with its own schema on PostgreSQL."""
    if journal_backend == "sqlite":
        yield tmp_path / "journal.db"
        return
    _require_postgres()
    url, drop = new_pg_schema()
    yield url
    drop()


@functools.cache
def _postgres_problem() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except Exception as exc:
        return f"no PostgreSQL at {PG_URL} ({exc}); set RUNWRIGHT_TEST_PG or --backend sqlite"


def _require_postgres() -> None:
    """Skip a PostgreSQL test where no server runs; in CI, where one must, fail it."""
    problem = _postgres_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_blocking_calls_on_the_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any blocking call runwright makes on the event loop thread (asyncio only:
    blockbuster cannot see trio's loop). Test code itself may block."""
    if (
        "anyio_backend" in request.fixturenames
        and request.getfixturevalue("anyio_backend") == "asyncio"
    ):
        with blockbuster_ctx("runwright"):
            yield
    else:
        yield


@pytest.fixture(params=[1000, 0], ids=["hot", "replay"])
def cache_runs(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_runtime(
    db_path: Path | str, clock: FakeClock, cache_runs: int
) -> Callable[..., rw.Runtime]:
    """A Runtime on the test's database file and fake clock; keywords override."""

    def make(**overrides: Any) -> rw.Runtime:
        options: dict[str, Any] = {
            "clock": clock,
            "cache_runs": cache_runs,
            "synchronous": "NORMAL",
        }
        options.update(overrides)
        return rw.Runtime(db_path, **options)

    return make


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside pytest's private temp tree, which the user can reach."""
    path = Path(tempfile.mkdtemp(prefix="rw-read-only-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        path.chmod(0o755)
        shutil.rmtree(path)


def mount(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *argv], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_mount(shared_dir: Path) -> Iterator[Path]:
    """A tmpfs mounted on *shared_dir* (root only; skipped where mounting is not allowed)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a file system needs root and mount(8)")
    mounted = mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", str(shared_dir))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield shared_dir
    finally:
        subprocess.run(["umount", str(shared_dir)], capture_output=True, timeout=30)
