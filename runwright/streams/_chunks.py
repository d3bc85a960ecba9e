"""What a stream holds: chunks, how they are stored, and the limits on them.

A chunk is whatever one ``write()`` was given. ``str`` and ``bytes`` are
stored as they are (text as UTF-8); any other value goes through the
runtime's codec, so a reader gets back what the codec gives back. Chunks of
at least ``COMPRESS_FROM`` bytes are compressed with zstandard in the writer
thread, and kept compressed only when that saves a tenth or more.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import zstandard

from .._exceptions import DecodeError
from ..journal._codec import Codec
from ..journal._rows import ChunkRow, StoredChunk, StreamRow

__all__ = [
    "COMPRESS_FROM",
    "MAX_CHUNK_BYTES",
    "Chunk",
    "StreamInfo",
    "decode_stored",
    "pack",
]

#: The most bytes one chunk may hold, once encoded. Larger writes raise ChunkTooLarge.
MAX_CHUNK_BYTES = 4 * 1024 * 1024
#: Chunks this large or larger are compressed when that pays.
COMPRESS_FROM = 1024

BYTES = 0
TEXT = 1
VALUE = 2
ZSTD = 8


@attrs.frozen
class Chunk:
    """One chunk of a stream, as a reader sees it.

    ``index`` counts from 0 in write order. ``writer`` is the step id
    (``rw.step_info().step_id``) of the step that wrote it and ``attempt`` its
    attempt number: a retried step's new attempt writes new chunks after the
    failed attempt's, and readers tell them apart by these two fields.
    """

    index: int
    data: Any
    writer: str | None
    attempt: int | None


@attrs.frozen
class StreamInfo:
    """A stream as ``run.stream_info()`` sees it. ``closed`` is also true once the run ended."""

    run_id: str
    name: str
    chunks: int
    bytes: int
    closed: bool

    @classmethod
    def of(cls, row: StreamRow, run_status: str) -> StreamInfo:
        """A stream's row as readers see it: closed once closed, or once its run ended."""
        closed = row.closed_at is not None or run_status in ("completed", "failed", "cancelled")
        return cls(row.run_id, row.name, row.chunks, row.bytes, closed)


class _Zstd(threading.local):
    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=1)
        self.decompressor = zstandard.ZstdDecompressor()


_zstd = _Zstd()


def pack(fmt: int, data: bytes, writer: str | None, attempt: int | None) -> ChunkRow:
    """The row one chunk is stored as; compresses large ones (call it off the event loop)."""
    size = len(data)
    if size >= COMPRESS_FROM and fmt != VALUE:  # the codec compresses values itself
        packed = _zstd.compressor.compress(data)
        if len(packed) * 10 <= size * 9:
            return ChunkRow(fmt | ZSTD, size, writer, attempt, packed)
    return ChunkRow(fmt, size, writer, attempt, data)


def decode_stored(stored: StoredChunk, codec: Codec) -> Chunk:
    """The reader's view of a stored chunk (call it off the event loop)."""
    data = stored.data
    fmt = stored.format
    if fmt & ZSTD:
        try:
            data = _zstd.decompressor.decompress(data)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"chunk {stored.index} is corrupt: {exc}") from None
        fmt &= ~ZSTD
    value: Any
    if fmt == BYTES:
        value = bytes(data)
    elif fmt == TEXT:
        value = bytes(data).decode("utf-8", "surrogatepass")
    elif fmt == VALUE:
        value = codec.decode(bytes(data))
    else:
        raise DecodeError(
            f"chunk {stored.index} has unknown format {stored.format}; written by a newer "
            "runwright?"
        )
    return Chunk(stored.index, value, stored.writer, stored.attempt)
