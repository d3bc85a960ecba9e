"""A run's streams, written: chunks appended in order, and the close.

Appending chunks also appends a ``stream_appended`` event, and closing a
``stream_closed`` one, in the same transaction (see the schema), so other
processes notice them as they notice every other change.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._exceptions import StreamClosed
from ._events import Kind
from ._rows import ChunkRow
from ._tx import ENDED_RUN, Tx

__all__ = ["append_chunks", "close_stream"]


def append_chunks(
    tx: Tx,
    run_id: str,
    name: str,
    chunks: Sequence[ChunkRow],
    at: float,
    *,
    close: bool = False,
) -> int:
    """Append *chunks* to a run's stream (closing it after them with *close*).

    Returns the index the first chunk got. Raises :class:`StreamClosed`,
    writing nothing, if there are chunks and the stream was closed or the
    run has ended (closing a closed stream is harmless).
    """
    status = tx.conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,))
    row = status.fetchone()
    if row is None:
        raise StreamClosed(run_id, name, "belongs to no run")
    stream = tx.conn.execute(
        "SELECT chunks, closed_at FROM streams WHERE run_id = ? AND name = ?", (run_id, name)
    ).fetchone()
    if not chunks:  # only a close: harmless on a closed stream or an ended run
        if close and row[0] not in ENDED_RUN:
            close_stream(tx, run_id, name, at)
        return 0 if stream is None else int(stream[0])
    if row[0] in ENDED_RUN:
        raise StreamClosed(run_id, name, f"belongs to a run that {row[0]}")
    if stream is None:
        first = 0
        tx.conn.execute(
            "INSERT INTO streams (run_id, name, chunks, bytes, created_at, updated_at) "
            "VALUES (?, ?, 0, 0, ?, ?)",
            (run_id, name, at, at),
        )
    elif stream[1] is not None:
        raise StreamClosed(run_id, name, "was closed")
    else:
        first = int(stream[0])
    tx.conn.executemany(
        "INSERT INTO stream_chunks (run_id, name, idx, format, size, writer, attempt, "
        "at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (run_id, name, first + i, c.format, c.size, c.writer, c.attempt, at, c.data)
            for i, c in enumerate(chunks)
        ],
    )
    last = first + len(chunks) - 1
    tx.conn.execute(
        "UPDATE streams SET chunks = ?, bytes = bytes + ?, updated_at = ? "
        "WHERE run_id = ? AND name = ?",
        (last + 1, sum(c.size for c in chunks), at, run_id, name),
    )
    tx.append(run_id, Kind.STREAM_APPENDED, at, name=name, payload=f"{first}-{last}".encode())
    if close:
        _close(tx, run_id, name, at)
    return first


def close_stream(tx: Tx, run_id: str, name: str, at: float) -> bool:
    """Close a run's stream; False if it was closed already (closing twice is harmless)."""
    tx.conn.execute(
        "INSERT INTO streams (run_id, name, chunks, bytes, created_at, updated_at) "
        "VALUES (?, ?, 0, 0, ?, ?) ON CONFLICT DO NOTHING",
        (run_id, name, at, at),
    )
    return _close(tx, run_id, name, at)


def _close(tx: Tx, run_id: str, name: str, at: float) -> bool:
    cur = tx.conn.execute(
        "UPDATE streams SET closed_at = ?, updated_at = ? "
        "WHERE run_id = ? AND name = ? AND closed_at IS NULL",
        (at, at, run_id, name),
    )
    if cur.rowcount != 1:
        return False
    tx.append(run_id, Kind.STREAM_CLOSED, at, name=name)
    return True
