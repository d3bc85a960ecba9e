"""What the journal's tables hold, as plain records: the same on every backend."""

from __future__ import annotations

import attrs

__all__ = ["ChunkRow", "RunRow", "StepRow", "StoredChunk", "StreamRow", "WaitRow"]


@attrs.frozen
class RunRow:
    run_id: str
    workflow: str
    key: str | None
    status: str
    args: bytes
    outcome: bytes | None
    error_type: str | None
    error_message: str | None
    owner: str | None
    lease_expires_at: float | None
    created_at: float
    updated_at: float
    finished_at: float | None


@attrs.frozen
class StepRow:
    run_id: str
    cid: int
    name: str
    status: str
    attempt: int
    retry_at: float | None


@attrs.frozen
class WaitRow:
    run_id: str
    cid: int
    wake_at: float
    status: str


@attrs.frozen
class ChunkRow:
    """One chunk as stored: ``format`` says how ``data`` is encoded (see runwright.streams)."""

    format: int
    size: int
    writer: str | None
    attempt: int | None
    data: bytes


@attrs.frozen
class StoredChunk:
    index: int
    format: int
    size: int
    writer: str | None
    attempt: int | None
    at: float
    data: bytes


@attrs.frozen
class StreamRow:
    run_id: str
    name: str
    chunks: int
    bytes: int
    closed_at: float | None
    created_at: float
    updated_at: float
