"""The journal's tables in a PostgreSQL schema, and migrations.

The same tables as the SQLite journal (see ``journal/sqlite/_schema.py``),
in a schema of their own (``runwright`` unless named), plus ``meta`` for the
schema version and ``rw_now()``, the server's clock in epoch seconds, which
is what every lease is judged by. Creating or upgrading the schema holds an
advisory lock, so hosts starting together migrate once.

Payload columns (``events.payload``, ``stream_chunks.data``) are stored
``EXTERNAL``: out of line when large, never compressed by the server. The
codec already compressed what compresses; pglz on the rest is a wasted pass
(a 50 MB argument: 967 ms to insert with the default ``EXTENDED``, 379 ms
with ``EXTERNAL``, the same size on disk; measured in
``docs/decisions/0014-large-payloads.md``).
"""

from __future__ import annotations

from typing import Any

from ..._exceptions import NotARunwrightDatabase, SchemaVersionError

__all__ = ["SCHEMA_VERSION", "ensure_schema", "lock_key", "schema_version"]

#: Version 2 is the layout of the SQLite journal's version 2 (streams included); version 3,
#: like SQLite's, keeps run arguments and outcomes in events only, and stores payloads
#: EXTERNAL; version 4 adds ``schedules``.
SCHEMA_VERSION = 4

#: What version 3 changes in a version 2 schema (and sets up in a new one).
_EXTERNAL_PAYLOADS = """
ALTER TABLE events ALTER COLUMN payload SET STORAGE EXTERNAL;
ALTER TABLE stream_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
"""

# -- version 4: schedules ----------------------------------------------------------------
# Each schedule's latest declaration and durable state (see ``journal/_schedules.py``).
# Additive: a version 3 schema gets the table and nothing else changes.
_SCHEDULES = """
CREATE TABLE IF NOT EXISTS schedules (
    name        TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    catch_up    TEXT NOT NULL,
    paused      INTEGER NOT NULL,
    last_tick   DOUBLE PRECISION,
    fire_after  DOUBLE PRECISION NOT NULL,
    declared_at DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
"""

_TABLES = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE FUNCTION rw_now() RETURNS double precision LANGUAGE sql VOLATILE
    AS 'SELECT extract(epoch FROM clock_timestamp())::double precision';

CREATE TABLE events (
    seq      BIGINT PRIMARY KEY,  -- assigned by the writer holding the write lock
    run_id   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    cid      INTEGER,
    attempt  INTEGER,
    name     TEXT,
    payload  BYTEA,
    at       DOUBLE PRECISION NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, seq);
CREATE INDEX events_hook_positions ON events (run_id, cid) WHERE kind = 'hook_created';

CREATE TABLE runs (
    run_id           TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    key              TEXT UNIQUE,
    status           TEXT NOT NULL,
    args             BYTEA NOT NULL,  -- empty since version 3: see run_created
    outcome          BYTEA,           -- NULL since version 3: see the run's end event
    error_type       TEXT,
    error_message    TEXT,
    owner            TEXT,
    lease_expires_at DOUBLE PRECISION,
    created_at       DOUBLE PRECISION NOT NULL,
    updated_at       DOUBLE PRECISION NOT NULL,
    finished_at      DOUBLE PRECISION,
    parent_run_id    TEXT,
    parent_cid       INTEGER
);
CREATE INDEX runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at);
CREATE INDEX runs_by_owner ON runs (owner) WHERE owner IS NOT NULL;

CREATE TABLE steps (
    run_id    TEXT NOT NULL,
    cid       INTEGER NOT NULL,
    name      TEXT NOT NULL,
    status    TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    retry_at  DOUBLE PRECISION,
    PRIMARY KEY (run_id, cid)
);

CREATE TABLE waits (
    run_id   TEXT NOT NULL,
    cid      INTEGER NOT NULL,
    wake_at  DOUBLE PRECISION NOT NULL,
    status   TEXT NOT NULL,
    PRIMARY KEY (run_id, cid)
);
CREATE INDEX waits_pending ON waits (wake_at) WHERE status = 'pending';

CREATE TABLE hooks (
    token   TEXT PRIMARY KEY,
    run_id  TEXT NOT NULL,
    cid     INTEGER NOT NULL
);
CREATE INDEX hooks_by_run ON hooks (run_id, cid);

CREATE TABLE run_problems (
    run_id   TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL,
    at       DOUBLE PRECISION NOT NULL
);

CREATE TABLE streams (
    run_id      TEXT NOT NULL,
    name        TEXT NOT NULL,
    chunks      INTEGER NOT NULL,
    bytes       BIGINT NOT NULL,
    closed_at   DOUBLE PRECISION,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE stream_chunks (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id   TEXT NOT NULL,
    name     TEXT NOT NULL,
    idx      INTEGER NOT NULL,
    format   INTEGER NOT NULL,
    size     INTEGER NOT NULL,
    writer   TEXT,
    attempt  INTEGER,
    at       DOUBLE PRECISION NOT NULL,
    data     BYTEA NOT NULL
);
CREATE UNIQUE INDEX stream_chunks_by_index ON stream_chunks (run_id, name, idx);
"""


def lock_key(schema: str, purpose: str) -> int:
    """A stable signed 64-bit advisory lock key for *purpose* in *schema*."""
    import hashlib

    digest = hashlib.blake2b(f"runwright:{schema}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def schema_version(conn: Any, schema: str) -> int | None:
    """The journal's schema version in *schema*; None if the schema holds no journal.

    Raises NotARunwrightDatabase if the schema holds tables runwright did not create.
    """
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
    ).fetchone()
    if row[0] == 0:
        return None
    # Another application's table may be called meta too: look at its columns first.
    meta_columns = conn.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'meta' AND column_name IN ('key', 'value')",
        (schema,),
    ).fetchone()
    version = None
    if meta_columns[0] == 2:
        found = conn.execute(
            f'SELECT value FROM "{schema}".meta WHERE key = %s', ("schema_version",)
        ).fetchone()
        if found is not None and str(found[0]).isdigit():
            version = int(found[0])
    if version is None:
        raise NotARunwrightDatabase(
            f"schema {schema}",
            "it holds tables that runwright did not create",
            "name another schema (schema= or ?schema= in the URL)",
        )
    return version


def ensure_schema(conn: Any, schema: str, display: str, *, migrate: bool) -> int:
    """Create or upgrade the journal in *schema* (with *migrate*), or check it; return
    the version it had before (0: none)."""
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, "migrate"),))
        version = schema_version(conn, schema)
        if version is None:
            if not migrate:
                raise NotARunwrightDatabase(
                    display,
                    "no journal in this schema",
                    "create it with `runwright db migrate`, or open it with migrate=True",
                )
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            conn.execute(f'SET LOCAL search_path TO "{schema}"')
            conn.execute(_TABLES)
            conn.execute(_EXTERNAL_PAYLOADS)
            conn.execute(_SCHEDULES)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', %s)",
                (str(SCHEMA_VERSION),),
            )
        elif version < SCHEMA_VERSION and not migrate:
            raise SchemaVersionError(
                f"{display} has journal schema version {version}, older than this runwright's "
                f"({SCHEMA_VERSION}); upgrade it with `runwright db migrate` (processes of "
                "older runwright versions cannot read the runs this one writes)"
            )
        elif version < SCHEMA_VERSION:
            conn.execute(f'SET LOCAL search_path TO "{schema}"')
            # Version 3 writes run arguments and outcomes in events only (what version 2
            # copied into runs stays, unread, until the run is pruned).
            if version < 3:
                conn.execute(_EXTERNAL_PAYLOADS)
            if version < 4:
                conn.execute(_SCHEDULES)  # version 4 added schedules
            conn.execute(
                "UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
            )
        elif version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{display} has journal schema version {version}, newer than this runwright "
                f"understands ({SCHEMA_VERSION}); upgrade runwright"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version or 0
