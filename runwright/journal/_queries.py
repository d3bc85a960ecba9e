"""Reads: plain functions of a connection (either backend's), usable from any thread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._events import RUN_ARGS, RUN_OUTCOME, Event
from ._rows import RunRow, StepRow, StoredChunk, StreamRow, WaitRow
from ._stored import stored
from ._tx import Connection

__all__ = [
    "chunks_from",
    "claimable_runs",
    "due_waits",
    "events_of",
    "events_of_runs",
    "latest_attempts",
    "list_runs",
    "live_hooks",
    "live_runs",
    "next_wake",
    "owners",
    "problem_of",
    "problems_of",
    "published",
    "run_row",
    "run_status",
    "runs_after",
    "steps_of",
    "stream_row",
    "streams_of",
    "waits_of",
]

_RUN_COLUMNS = (
    f"run_id, workflow, key, status, {RUN_ARGS}, {RUN_OUTCOME}, error_type, error_message, "
    "owner, lease_expires_at, created_at, updated_at, finished_at"
)
#: The same without the arguments, which may be large and most readers do not need.
_RUN_COLUMNS_NO_ARGS = _RUN_COLUMNS.replace(f"{RUN_ARGS}, ", "")


def _run(conn: Connection, row: Any) -> RunRow:
    """A run row read with ``_RUN_COLUMNS``, its payloads read from their files if need be."""
    if type(row[4]) is str or type(row[5]) is str:
        values: list[Any] = [*row[:4], stored(conn, row[4]), stored(conn, row[5]), *row[6:]]
        return RunRow(*values)
    return RunRow(*row)


def _row_without_args(conn: Connection, row: Any) -> RunRow:
    """A run row read with ``_RUN_COLUMNS_NO_ARGS``: its ``args`` are empty."""
    outcome = row[4] if type(row[4]) is not str else stored(conn, row[4])
    values: list[Any] = [*row[:4], b"", outcome, *row[5:]]
    return RunRow(*values)


def _event(conn: Connection, row: Any) -> Event:
    """An event whose payload is stored in a file (``type(row[6]) is str``)."""
    values: list[Any] = [*row[:6], stored(conn, row[6]), row[7]]
    return Event(*values)


def events_of(conn: Connection, run_id: str, after: int = 0) -> list[Event]:
    rows = conn.execute(
        "SELECT seq, run_id, kind, cid, attempt, name, payload, at FROM events "
        "WHERE run_id = ? AND seq > ? ORDER BY seq",
        (run_id, after),
    ).fetchall()
    return [Event(*row) if type(row[6]) is not str else _event(conn, row) for row in rows]


def events_of_runs(conn: Connection, run_ids: list[str]) -> dict[str, list[Event]]:
    """Every event of each run in *run_ids*, in journal order (one query)."""
    found: dict[str, list[Event]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        marks = ",".join("?" * len(run_ids))
        rows = conn.execute(
            "SELECT seq, run_id, kind, cid, attempt, name, payload, at FROM events "
            f"WHERE run_id IN ({marks}) ORDER BY run_id, seq",
            run_ids,
        ).fetchall()
        for row in rows:
            found[row[1]].append(Event(*row) if type(row[6]) is not str else _event(conn, row))
    return found


def runs_after(
    conn: Connection, after: str, *, statuses: list[str] | None = None, limit: int = 500
) -> list[RunRow]:
    """Up to *limit* runs whose id sorts after *after* (page through every run with it),
    optionally only those in *statuses*."""
    where, params = "run_id > ?", [after]
    if statuses:
        where += f" AND status IN ({','.join('?' * len(statuses))})"
        params += statuses
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where} ORDER BY run_id LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [_run(conn, row) for row in rows]


def run_row(conn: Connection, run_id: str, *, with_args: bool = True) -> RunRow | None:
    """The run's row; without *with_args*, its ``args`` are left empty (not read)."""
    if not with_args:
        row = conn.execute(
            f"SELECT {_RUN_COLUMNS_NO_ARGS} FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None else _row_without_args(conn, row)
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else _run(conn, row)


#: ``_RUN_COLUMNS_NO_ARGS`` named by table, for a query that joins ``runs`` to another.
_LISTED_COLUMNS = (
    f"runs.run_id, runs.workflow, runs.key, runs.status, {RUN_OUTCOME}, runs.error_type, "
    "runs.error_message, runs.owner, runs.lease_expires_at, runs.created_at, "
    "runs.updated_at, runs.finished_at"
)


def list_runs(
    conn: Connection,
    *,
    status: str | None = None,
    workflow: str | None = None,
    stuck: bool | None = None,
    key: str | None = None,
    parent: str | None = None,
    since: float | None = None,
    attributes: Sequence[tuple[str, str]] = (),
    after: str | None = None,
    limit: int = 100,
) -> list[RunRow]:
    """Runs, newest first (by creation, then id); *stuck* keeps only those that cannot
    advance (True) or only the others (False); *parent* the children of a run; *since*
    those created at or after it; *attributes* those with every ``(key, text form)``
    given (a journal of schema version 5 or later); *after* those listed after the run
    with that id (the last of the previous page), so that pages follow each other with
    no gap and no repeat. Their ``args`` are left empty (not read).

    With attributes, the first one's index (``run_attributes_by_value``) gives the
    order, as in the web view's runs list: a rare attribute is found without walking
    every run."""
    where: list[str] = []
    params: list[object] = []
    source, made, ident = "runs", "runs.created_at", "runs.run_id"
    if attributes:
        source = "run_attributes AS a JOIN runs ON runs.run_id = a.run_id"
        made, ident = "a.run_created_at", "a.run_id"
        where += ["a.key = ?", "a.value = ?"]
        params += list(attributes[0])
        for pair in attributes[1:]:
            where.append(
                "EXISTS (SELECT 1 FROM run_attributes AS b "
                "WHERE b.run_id = runs.run_id AND b.key = ? AND b.value = ?)"
            )
            params += list(pair)
    equal = (("status", status), ("workflow", workflow), ("key", key), ("parent_run_id", parent))
    for column, value in equal:
        if value is not None:
            where.append(f"runs.{column} = ?")
            params.append(value)
    if since is not None:
        where.append(f"{made} >= ?")
        params.append(since)
    if after is not None:
        then = "(SELECT created_at FROM runs WHERE run_id = ?)"
        where.append(f"({made} < {then} OR ({made} = {then} AND {ident} > ?))")
        params += [after, after, after]
    if stuck is not None:
        exists = "EXISTS (SELECT 1 FROM run_problems p WHERE p.run_id = runs.run_id)"
        where.append(exists if stuck else f"NOT {exists}")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_LISTED_COLUMNS} FROM {source} {clause} ORDER BY {made} DESC, {ident} LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [_row_without_args(conn, row) for row in rows]


def steps_of(conn: Connection, run_id: str) -> list[StepRow]:
    rows = conn.execute(
        "SELECT run_id, cid, name, status, attempt, retry_at FROM steps WHERE run_id = ? "
        "ORDER BY cid",
        (run_id,),
    ).fetchall()
    return [StepRow(*row) for row in rows]


def waits_of(conn: Connection, run_id: str) -> list[WaitRow]:
    rows = conn.execute(
        "SELECT run_id, cid, wake_at, status FROM waits WHERE run_id = ? ORDER BY cid", (run_id,)
    ).fetchall()
    return [WaitRow(*row) for row in rows]


def due_waits(conn: Connection, now: float, limit: int = 1000) -> list[WaitRow]:
    rows = conn.execute(
        "SELECT run_id, cid, wake_at, status FROM waits WHERE status = 'pending' AND wake_at <= ? "
        "ORDER BY wake_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [WaitRow(*row) for row in rows]


def next_wake(conn: Connection) -> float | None:
    row = conn.execute("SELECT min(wake_at) FROM waits WHERE status = 'pending'").fetchone()
    return None if row[0] is None else float(row[0])


def claimable_runs(conn: Connection, owner: str, limit: int) -> list[tuple[str, str | None, bool]]:
    """Unfinished runs nobody holds a live lease on (or *owner* holds), oldest first:
    ``(run_id, owner, lease_expired)``, expiry judged by the journal's clock."""
    return [
        (str(r[0]), r[1], bool(r[2]))
        for r in conn.execute(
            "SELECT run_id, owner, lease_expires_at < rw_now() FROM runs "
            "WHERE status IN ('pending', 'running') "
            "AND (owner IS NULL OR owner = ? OR lease_expires_at < rw_now()) "
            "ORDER BY created_at LIMIT ?",
            (owner, limit),
        )
    ]


def owners(conn: Connection) -> list[str]:
    """Every process that holds a run's lease."""
    return [
        str(r[0]) for r in conn.execute("SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL")
    ]


def live_runs(conn: Connection) -> list[tuple[str, str | None, bool]]:
    """Every run that is not finished: ``(run_id, owner, lease_expired)``."""
    return [
        (str(r[0]), r[1], bool(r[2]))
        for r in conn.execute(
            "SELECT run_id, owner, coalesce(lease_expires_at < rw_now(), false) FROM runs "
            "WHERE status IN ('pending', 'running') ORDER BY created_at"
        )
    ]


def problems_of(conn: Connection, run_ids: list[str]) -> dict[str, tuple[str, str, float]]:
    """Why each run in *run_ids* that cannot advance cannot: (kind, message, since)."""
    if not run_ids:
        return {}
    rows = conn.execute(
        "SELECT run_id, kind, message, at FROM run_problems "
        f"WHERE run_id IN ({','.join('?' * len(run_ids))})",
        run_ids,
    ).fetchall()
    return {str(row[0]): (str(row[1]), str(row[2]), float(row[3])) for row in rows}


def problem_of(conn: Connection, run_id: str) -> tuple[str, str, float] | None:
    row = conn.execute(
        "SELECT kind, message, at FROM run_problems WHERE run_id = ?", (run_id,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), float(row[2]))


def chunks_from(
    conn: Connection, run_id: str, name: str, start: int, max_bytes: int
) -> list[StoredChunk]:
    """A stream's chunks from *start* on, in order: about *max_bytes* decoded, one at least."""
    rows = conn.execute(
        "SELECT idx, format, size, writer, attempt, at, data FROM stream_chunks "
        "WHERE run_id = ? AND name = ? AND idx >= ? ORDER BY idx",
        (run_id, name, start),
    )
    chunks: list[StoredChunk] = []
    total = 0
    for row in rows:
        chunks.append(StoredChunk(*row))
        total += max(row[2], len(row[6]))  # what it will take decoded
        if total >= max_bytes:
            break
    return chunks


def published(conn: Connection, run_id: str, key: str) -> tuple[str | None, bytes | None]:
    """The run's status and the value it last published under *key* (None if none)."""
    status = run_status(conn, run_id)
    row = conn.execute(
        "SELECT payload FROM events WHERE run_id = ? AND kind = 'event_set' AND name = ? "
        "ORDER BY seq DESC LIMIT 1",
        (run_id, key),
    ).fetchone()
    return status, None if row is None else bytes(stored(conn, row[0]))


def live_hooks(conn: Connection, run_id: str | None = None) -> list[tuple[str, str, int]]:
    """The live hooks (of one run): (token, run id, position), by run then position."""
    where, params = ("WHERE run_id = ?", (run_id,)) if run_id is not None else ("", ())
    rows = conn.execute(
        f"SELECT token, run_id, cid FROM hooks {where} ORDER BY run_id, cid", params
    ).fetchall()
    return [(str(row[0]), str(row[1]), int(row[2])) for row in rows]


def latest_attempts(conn: Connection, run_id: str, name: str) -> dict[str, int]:
    """The newest attempt of each step that wrote to a stream, by the step's writer id."""
    rows = conn.execute(
        "SELECT writer, max(attempt) FROM stream_chunks WHERE run_id = ? AND name = ? "
        "AND writer IS NOT NULL AND attempt IS NOT NULL GROUP BY writer",
        (run_id, name),
    ).fetchall()
    return {str(row[0]): int(row[1]) for row in rows}


def stream_row(conn: Connection, run_id: str, name: str) -> StreamRow | None:
    row = conn.execute(
        "SELECT run_id, name, chunks, bytes, closed_at, created_at, updated_at FROM streams "
        "WHERE run_id = ? AND name = ?",
        (run_id, name),
    ).fetchone()
    return None if row is None else StreamRow(*row)


def streams_of(conn: Connection, run_id: str) -> list[StreamRow]:
    rows = conn.execute(
        "SELECT run_id, name, chunks, bytes, closed_at, created_at, updated_at FROM streams "
        "WHERE run_id = ? ORDER BY created_at, name",
        (run_id,),
    )
    return [StreamRow(*row) for row in rows]


def run_status(conn: Connection, run_id: str) -> str | None:
    row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else str(row[0])
