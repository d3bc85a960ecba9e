"""Where the benchmark scripts keep their journals, and the floor they are compared with.

A script takes ``--db``: without it, every scenario gets a fresh SQLite file
in its own temporary directory (under ``--dir``); with a ``postgresql://``
URL, every scenario gets a fresh schema of that database, named
``<base>_<scenario id>``, where ``<base>`` is the URL's ``schema`` parameter
or ``bench_<8 random hex digits>``. A schema that already exists is refused,
never reused or dropped; every schema a script made is dropped when its
scenario ends, unless ``--keep``. Connections carry ``application_name=<base>``
so the server's view of them (``pg_stat_activity``) can be told apart.

The floor is the least a journal can cost per sequential step on the same
backend: one transaction that updates a run's row and inserts two event
rows (the step's completion and the next step's scheduling), committed,
done with the plain driver (sqlite3 or psycopg) in a loop, nothing else
around it. On SQLite the file has the same settings as a journal's (WAL,
the benchmark's ``synchronous``); on PostgreSQL the whole transaction
(``BEGIN``, the three statements, ``COMMIT``) goes in one psycopg pipeline:
one round trip and one commit, the least the server can be asked for.

The burst floor is the least a burst of one-step runs can cost: four writes
per run (the run's row, its ``run_created`` and ``step_completed`` events,
the row's end), ``BURST_FLOOR_BATCH`` runs per transaction, as a group
commit would have them.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runwright.journal import describe, is_postgres_url
from runwright.journal.postgres._url import PgTarget, validate_schema

__all__ = ["FLOOR_ROUND_TRIPS", "Journals", "floor_samples", "server_info"]


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in params] + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class Journals:
    """Hands out one fresh journal per scenario (a file or a schema) and removes it after."""

    def __init__(self, db: str | None, *, parent: str | None = None, keep: bool = False) -> None:
        self.keep = keep
        self.parent = parent
        self.kept: list[str] = []
        if db is None:
            self.backend = "sqlite"
            self.url = ""
            self.base = ""
            self.application_name = ""
            return
        if not is_postgres_url(db):
            raise ValueError(
                f"--db takes a postgresql:// URL, not {db!r}; SQLite journals go in --dir"
            )
        self.backend = "postgresql"
        self._given = db
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(db).query)
        given = query.get("schema", [""])[-1]
        self.base = given or f"bench_{secrets.token_hex(4)}"
        self.application_name = query.get("application_name", [self.base])[-1]
        # What libpq gets (no schema), with the name the server shows for our sessions.
        parts = urllib.parse.urlsplit(db)
        rest = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "schema"]
        self.url = _with_query(
            urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest))),
            application_name=self.application_name,
        )

    def describe(self) -> str:
        """The journals, as the table header names them (a URL without its password)."""
        if self.backend == "sqlite":
            return "sqlite: a fresh file per scenario in a temporary directory"
        return (
            f"postgresql: {describe(self._given, self.base)}; "
            f"a fresh schema per scenario, {self.base}_<id>"
        )

    def check_name(self, longest: str) -> None:
        """Raise ValueError unless a scenario called *longest* gets a valid schema name."""
        if self.backend == "postgresql":
            name = f"{self.base}_{longest}"
            try:
                validate_schema(name)
            except ValueError as exc:
                raise ValueError(
                    f"schema {self.base!r} cannot prefix the journals: {exc}"
                ) from None

    def connect(self) -> Any:
        """A plain psycopg connection (autocommit) to the database the schemas live in."""
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    @contextlib.contextmanager
    def journal(self, name: str) -> Iterator[str]:
        """A fresh journal for scenario *name*: an SQLite path, or a URL naming a new schema."""
        if self.backend == "sqlite":
            directory = tempfile.mkdtemp(prefix=f"rwbench-{name}-", dir=self.parent)
            try:
                yield str(Path(directory) / "journal.db")
            finally:
                if self.keep:
                    self.kept.append(directory)
                else:
                    shutil.rmtree(directory, ignore_errors=True)
            return
        schema = f"{self.base}_{name}"
        with self.connect() as conn:
            # Fails if the schema exists: a benchmark never writes into, or drops, one it
            # did not make.
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield _with_query(self.url, schema=schema)
        finally:
            if self.keep:
                self.kept.append(f"schema {schema}")
            else:
                self._drop(schema)

    def _drop(self, schema: str) -> None:
        import psycopg

        try:
            with self.connect() as conn:
                conn.execute("SET lock_timeout = '10s'")
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except psycopg.Error as exc:
            print(f"could not drop schema {schema}: {exc}", file=sys.stderr)

    def report_kept(self) -> None:
        if self.kept:
            print("journals kept: " + ", ".join(self.kept), file=sys.stderr)


def server_info(journals: Journals) -> str:
    """The PostgreSQL server's version and the settings a commit's cost depends on."""
    with journals.connect() as conn:
        values = [
            str(conn.execute(f"SHOW {name}").fetchone()[0])
            for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
        ]
    version, sync_commit, fsync, method = values
    return (
        f"PostgreSQL {version}, synchronous_commit={sync_commit}, fsync={fsync}, "
        f"wal_sync_method={method}"
    )


# -- the floor ---------------------------------------------------------------------

#: Round trips of one floor transaction on PostgreSQL.
FLOOR_ROUND_TRIPS = 1

_FLOOR_SQLITE = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, step INTEGER NOT NULL,
                   updated_at REAL NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL,
                     cid INTEGER, attempt INTEGER, name TEXT, payload BLOB, at REAL NOT NULL);
CREATE INDEX events_by_run ON events (run_id, seq);
"""

_FLOOR_POSTGRES = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT NOT NULL, step INTEGER NOT NULL,
                   updated_at DOUBLE PRECISION NOT NULL);
CREATE TABLE events (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                     run_id TEXT NOT NULL, kind TEXT NOT NULL, cid INTEGER, attempt INTEGER,
                     name TEXT, payload BYTEA, at DOUBLE PRECISION NOT NULL);
CREATE INDEX events_by_run ON events (run_id, seq);
"""

_UPDATE = "UPDATE runs SET step = ?, updated_at = ? WHERE run_id = ?"
_INSERT = (
    "INSERT INTO events (run_id, kind, cid, attempt, name, payload, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
#: What a no-op step's result and the next step's arguments weigh, about.
_PAYLOAD = bytes(16)


def _events(run_id: str, cid: int, now: float) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Step *cid* completed, step *cid* + 1 scheduled."""
    return (
        (run_id, "step_completed", cid, 1, "noop", _PAYLOAD, now),
        (run_id, "step_scheduled", cid + 1, None, "noop", _PAYLOAD, now),
    )


#: Runs per transaction of the burst floor.
BURST_FLOOR_BATCH = 100


def _run_writes(run_id: str, now: float) -> tuple[tuple[Any, ...], ...]:
    """The burst floor's run: created (its row and event), its step completed, ended."""
    return (
        (run_id, "run_created", None, None, "bench", _PAYLOAD, now),
        (run_id, "step_completed", 0, 1, "noop", _PAYLOAD, now),
    )


def burst_floor_samples(target: str, runs: int, repeat: int, synchronous: str) -> list[float]:
    """Milliseconds to write *runs* runs, 4 writes each (the run's row, two events, the
    row's end), ``BURST_FLOOR_BATCH`` runs per transaction; *repeat* times after one
    warm-up. Blocking: call it in a thread."""
    if is_postgres_url(target):
        import psycopg

        pg = PgTarget(target)
        with psycopg.connect(pg.conninfo, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{pg.schema}"')
            conn.execute(_FLOOR_POSTGRES)
            return _burst_floor(conn, runs, repeat, "%s", pipeline=conn.pipeline)
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.executescript(_FLOOR_SQLITE)
        return _burst_floor(conn, runs, repeat, "?", pipeline=None)
    finally:
        conn.close()


def _burst_floor(conn: Any, runs: int, repeat: int, mark: str, pipeline: Any) -> list[float]:
    create = f"INSERT INTO runs VALUES ({mark}, 'running', 0, {mark})"
    end = f"UPDATE runs SET status = 'completed', updated_at = {mark} WHERE run_id = {mark}"
    insert = _INSERT.replace("?", mark)
    samples = []
    for round_ in range(repeat + 1):
        began = time.perf_counter()
        for first in range(0, runs, BURST_FLOOR_BATCH):
            with contextlib.nullcontext() if pipeline is None else pipeline():
                conn.execute("BEGIN" if pipeline is not None else "BEGIN IMMEDIATE")
                for i in range(first, min(runs, first + BURST_FLOOR_BATCH)):
                    run_id, now = f"burst-{round_}-{i}", time.time()
                    created, completed = _run_writes(run_id, now)
                    conn.execute(create, (run_id, now))
                    conn.execute(insert, created)
                    conn.execute(insert, completed)
                    conn.execute(end, (now, run_id))
                conn.execute("COMMIT")
        samples.append((time.perf_counter() - began) * 1000)
    return samples[1:]


def floor_samples(target: str, steps: int, repeat: int, synchronous: str) -> list[float]:
    """Milliseconds for *steps* floor transactions, *repeat* times (after one warm-up).

    Blocking: call it in a thread.
    """
    if is_postgres_url(target):
        return _postgres_floor(target, steps, repeat)
    return _sqlite_floor(target, steps, repeat, synchronous)


def _sqlite_floor(path: str, steps: int, repeat: int, synchronous: str) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.executescript(_FLOOR_SQLITE)
        samples = []
        for run in range(repeat + 1):
            run_id = f"run-{run}"
            conn.execute("INSERT INTO runs VALUES (?, 'running', 0, ?)", (run_id, time.time()))
            began = time.perf_counter()
            for cid in range(steps):
                now = time.time()
                completed, scheduled = _events(run_id, cid, now)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_UPDATE, (cid + 1, now, run_id))
                conn.execute(_INSERT, completed)
                conn.execute(_INSERT, scheduled)
                conn.execute("COMMIT")
            samples.append((time.perf_counter() - began) * 1000)
        return samples[1:]
    finally:
        conn.close()


def _postgres_floor(url: str, steps: int, repeat: int) -> list[float]:
    import psycopg

    target = PgTarget(url)
    update, insert = _UPDATE.replace("?", "%s"), _INSERT.replace("?", "%s")
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{target.schema}"')
        conn.execute(_FLOOR_POSTGRES)
        samples = []
        for run in range(repeat + 1):
            run_id = f"run-{run}"
            conn.execute("INSERT INTO runs VALUES (%s, 'running', 0, %s)", (run_id, time.time()))
            began = time.perf_counter()
            for cid in range(steps):
                now = time.time()
                completed, scheduled = _events(run_id, cid, now)
                with conn.pipeline():  # sent together; leaving the block waits for COMMIT
                    conn.execute("BEGIN")
                    conn.execute(update, (cid + 1, now, run_id))
                    conn.execute(insert, completed)
                    conn.execute(insert, scheduled)
                    conn.execute("COMMIT")
            samples.append((time.perf_counter() - began) * 1000)
        return samples[1:]
