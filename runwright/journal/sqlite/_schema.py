"""The journal's tables, and the check that a file is a runwright journal.

``events`` is the append-only log: every fact about a run, ordered by ``seq``.
``runs``, ``steps`` and ``waits`` are materialized from it for queries and for
conditional writes (claims); they are only ever written in the same
transaction as the event that changes them. ``run_problems`` is not part of
the journal: it holds the last error that stopped a run from advancing (an
unknown workflow, non-deterministic code) so that other processes can show
it, and it is cleared when the run advances again. ``hooks`` holds the live
hooks only: a token is unique among them and free again once its hook is
disposed or its run ends.

A run's arguments and outcome are stored once, in its ``run_created`` event
and the event that ended it; ``runs.args`` (kept empty) and ``runs.outcome``
(kept NULL) are written only by journals older than version 3, which copied
both into the row. Every UPDATE of a row reads its large values (a lease
renewal), and rewrites them when the row changes size (a claim).

``streams`` and ``stream_chunks`` hold what steps write to a run's named
streams: one row per stream (how many chunks, how many bytes, whether it was
closed) and one per chunk, indexed from 0 in commit order. Appending chunks
also appends a ``stream_appended`` event, and closing a ``stream_closed``
one, in the same transaction, so that other processes notice them the way
they notice every other change.

``blobs`` names the files of the journal's blob directory (``PATH-blobs/``)
that hold payloads over 1 MiB, each with its run: a TEXT ``events.payload``
is a reference to one of them (see ``_blobs``). A file no row names is an
orphan of a transaction that did not commit, and is removed.
"""

from __future__ import annotations

import sqlite3

from ..._exceptions import NotARunwrightDatabase, SchemaVersionError

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "check_file", "ensure_schema"]

#: ``PRAGMA application_id`` of every runwright journal: b"rwjl" as an integer.
APPLICATION_ID = 0x72776A6C
#: 2 added streams; 3 stopped copying run arguments and outcomes into ``runs``; 4 added
#: ``schedules``; 5 added run attributes and the index the web view pages runs by; 6 keeps
#: payloads over 1 MiB in files, referenced from ``events.payload`` (see ``_blobs``).
SCHEMA_VERSION = 6

# -- version 5: run attributes ---------------------------------------------------------
# Self-contained (a new table and two indexes; nothing existing changes), so that it
# merges with other additive blocks. ``run_attributes`` holds the latest
# value of each attribute a run set (``rw.set_attribute``), materialized from its
# ``attribute_set``/``step_attribute_set`` events in the same transaction. It copies the
# run's ``created_at`` so that the runs with one attribute value are read newest first
# straight from ``run_attributes_by_value``, a page at a time (keyset, not OFFSET).
# ``runs_by_created`` does the same for the unfiltered list.
_RUN_ATTRIBUTES = """
CREATE TABLE IF NOT EXISTS run_attributes (
    run_id          TEXT NOT NULL,
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,  -- the text form: 'c-17', '42', '0.5', 'true'
    type            TEXT NOT NULL,  -- str, int, float or bool
    run_created_at  REAL NOT NULL,
    set_at          REAL NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS run_attributes_by_value
    ON run_attributes (key, value, run_created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at, run_id);
"""

# -- version 6: payload files (SQLite only) ----------------------------------------------
_BLOBS = """
CREATE TABLE IF NOT EXISTS blobs (
    name    TEXT PRIMARY KEY,
    run_id  TEXT NOT NULL,
    size    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blobs_by_run ON blobs (run_id);
"""

_STREAMS = """
CREATE TABLE streams (
    run_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    chunks     INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    closed_at  REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;

CREATE TABLE stream_chunks (
    id       INTEGER PRIMARY KEY,
    run_id   TEXT NOT NULL,
    name     TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    format   INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    writer   TEXT,
    attempt  INTEGER,
    at       REAL NOT NULL,
    data     BLOB NOT NULL
);
CREATE UNIQUE INDEX stream_chunks_by_index ON stream_chunks (run_id, name, idx);
"""

# -- version 4: schedules ----------------------------------------------------------------
# Each schedule's latest declaration and durable state (see ``journal/_schedules.py``).
# Additive: a version 3 journal gets the table and nothing else changes.
_SCHEDULES = """
CREATE TABLE IF NOT EXISTS schedules (
    name        TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    catch_up    TEXT NOT NULL,
    paused      INTEGER NOT NULL,
    last_tick   REAL,
    fire_after  REAL NOT NULL,
    declared_at REAL NOT NULL,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;
"""

_SCHEMA = """
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    cid        INTEGER,
    attempt    INTEGER,
    name       TEXT,
    payload    BLOB,
    at         REAL NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, seq);
CREATE INDEX events_hook_positions ON events (run_id, cid) WHERE kind = 'hook_created';

CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    key              TEXT UNIQUE,
    status           TEXT NOT NULL,
    args             BLOB NOT NULL,  -- empty since version 3: see run_created
    outcome          BLOB,           -- NULL since version 3: see the run's end event
    error_type       TEXT,
    error_message    TEXT,
    owner            TEXT,
    lease_expires_at REAL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    finished_at      REAL,
    parent_run_id    TEXT,
    parent_cid       INTEGER
);
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE INDEX runs_by_owner ON runs (owner) WHERE owner IS NOT NULL;

CREATE TABLE steps (
    run_id        TEXT NOT NULL,
    cid           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    retry_at      REAL,
    PRIMARY KEY (run_id, cid)
) WITHOUT ROWID;

CREATE TABLE waits (
    run_id   TEXT NOT NULL,
    cid      INTEGER NOT NULL,
    wake_at  REAL NOT NULL,
    status   TEXT NOT NULL,
    PRIMARY KEY (run_id, cid)
) WITHOUT ROWID;
CREATE INDEX waits_pending ON waits (wake_at) WHERE status = 'pending';

CREATE TABLE hooks (
    token    TEXT PRIMARY KEY,
    run_id   TEXT NOT NULL,
    cid      INTEGER NOT NULL
);
CREATE INDEX hooks_by_run ON hooks (run_id, cid);

CREATE TABLE run_problems (
    run_id   TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL,
    at       REAL NOT NULL
) WITHOUT ROWID;
"""

_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_file(path: str) -> None:
    """Fail with :class:`NotARunwrightDatabase` unless *path* is absent, empty or SQLite."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise NotARunwrightDatabase(path, "it is a directory") from None
    if head and head != _SQLITE_MAGIC:
        raise NotARunwrightDatabase(path, "not an SQLite database file")


def ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the schema in a new database, or check that an existing one is ours."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and tables == 0:
            _create(conn, _SCHEMA + _STREAMS + _SCHEDULES + _RUN_ATTRIBUTES + _BLOBS)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif app_id != APPLICATION_ID:
            raise NotARunwrightDatabase(path, "an SQLite database that runwright did not create")
        elif version < SCHEMA_VERSION:
            if version < 2:
                _create(conn, _STREAMS)  # version 2 added streams and changed nothing else
            # Version 3 writes run arguments and outcomes in events only; what older
            # versions copied into runs stays, unread, until the run is pruned.
            if version < 4:
                _create(conn, _SCHEDULES)  # version 4 added schedules
            if version < 5:
                _create(conn, _RUN_ATTRIBUTES)  # version 5: run attributes (see above)
            if version < 6:
                _create(conn, _BLOBS)  # older journals hold every payload in events
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{path} has journal schema version {version}, newer than this runwright "
                f"understands ({SCHEMA_VERSION}); upgrade runwright"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _create(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
