"""The default codec: values to bytes for the journal, and back.

Theory of operation
-------------------
Every stored payload starts with one format byte, so the format can evolve
without migrating old journals::

    0x01  tagged JSON, UTF-8            0x02  the same, zstandard-compressed
    0x03  a top-level ``bytes`` value   0x04  the same, zstandard-compressed
    0x05  a top-level ``str`` value     0x06  the same, zstandard-compressed
    0x07  tagged JSON with binary parts, as segments

A decoder that meets any other byte refuses it: the payload was written by a
newer runwright. A top-level ``str`` or ``bytes`` is stored as is (UTF-8 for a
``str``, lone surrogates included), which skips JSON escaping and base64 for the
payloads that are most often large.

Large ``bytes`` and ``bytearray`` values inside a structure (the arguments of
a call are one: ``(args, kwargs)``) are stored raw too, as *binary parts*
(see :mod:`._tagged`): a ``0x07`` payload is a sequence of segments, the tagged
JSON first and then each part, each segment a kind byte (0 raw, 1 zstandard),
its stored length (8 bytes, big-endian) and its bytes. A value encoded
without parts keeps the older formats, which every runwright reads.

Compression: a body (or segment) longer than ``compress_threshold`` bytes is
compressed, and kept compressed only if that made it smaller. From
``SAMPLE_FROM`` bytes on, ``SAMPLES`` slices of ``SAMPLE_BYTES`` spread over
the body are compressed first, and the body is compressed only if they shrink
by a tenth or more: a large incompressible value (random bytes, a JPEG, a zip)
costs one cheap trial instead of a full pass of zstd that is thrown away.

How a value becomes tagged JSON is in :mod:`._tagged`, how it is read back
in :mod:`._untag`.
"""

from __future__ import annotations

import datetime as dt
import enum
import struct
import threading
import typing
import uuid
from collections.abc import Callable
from decimal import Decimal

import attrs
import zstandard

from runwright._exceptions import DecodeError, EncodeError

from ._tagged import _dump, encode_exception, walk_with_parts
from ._untag import CodecRemoteError, Omitted, _is_namedtuple, _load, human_size, rebuild_exception

__all__ = [
    "SAMPLES",
    "SAMPLE_BYTES",
    "SAMPLE_FROM",
    "Codec",
    "CodecRemoteError",
    "DefaultCodec",
    "Omitted",
    "encode_error",
    "encode_exception",
    "human_size",
    "is_immutable",
    "rebuild_exception",
]

_JSON, _JSON_ZSTD = b"\x01", b"\x02"
_BYTES, _BYTES_ZSTD = b"\x03", b"\x04"
_STR, _STR_ZSTD = b"\x05", b"\x06"
_PARTS = b"\x07"
#: What each format byte holds.
_KINDS = {
    _JSON: "value",
    _JSON_ZSTD: "value",
    _BYTES: "bytes",
    _BYTES_ZSTD: "bytes",
    _STR: "str",
    _STR_ZSTD: "str",
    _PARTS: "parts",
}

#: A segment of a ``0x07`` payload: its kind (0 raw, 1 zstandard) and stored length.
_SEGMENT = struct.Struct(">BQ")
_RAW, _ZSTD = 0, 1

#: Bodies this long or longer are compressed only if samples of them compress.
SAMPLE_FROM = 512 * 1024
SAMPLES = 8
SAMPLE_BYTES = 8 * 1024


class Codec(typing.Protocol):
    """Turns the values of a run into bytes for the journal, and back."""

    def encode(self, value: object) -> bytes: ...

    def decode(self, data: bytes) -> object: ...


class _ZstdContexts(threading.local):
    """One compressor and one decompressor per thread: they are not thread-safe."""

    def __init__(self, level: int) -> None:
        self.compressor = zstandard.ZstdCompressor(level=level)
        self.decompressor = zstandard.ZstdDecompressor()


@attrs.frozen
class DefaultCodec:
    """Tagged JSON with zstandard compression above ``compress_threshold`` bytes (when
    samples of a large body show that it pays); large ``bytes`` stored raw.

    Round-trips, with their types, JSON values, ``int`` of any size, ``float``
    (``inf`` and ``nan`` too), ``bytes``, ``bytearray``, tuples, sets,
    frozensets, dicts with keys of any encodable type, ``datetime``, ``date``,
    ``time`` (with ``timezone`` or ``ZoneInfo``), ``timedelta``, ``UUID``,
    ``Decimal``, enum members, named tuples, dataclasses, attrs classes and
    exceptions (rebuilt as their own type when possible, else as
    :class:`CodecRemoteError`). Any other subclass of these types (an
    ``OrderedDict``, a ``str`` subclass) is refused rather than decoded as its
    base type.
    """

    compress_threshold: int = attrs.field(
        default=2048, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )
    level: int = attrs.field(
        default=3,
        validator=[
            attrs.validators.instance_of(int),
            attrs.validators.le(zstandard.MAX_COMPRESSION_LEVEL),
        ],
    )
    _zstd: _ZstdContexts = attrs.field(init=False, repr=False, eq=False)

    @_zstd.default
    def _make_zstd(self) -> _ZstdContexts:
        return _ZstdContexts(self.level)

    def encode(self, value: object) -> bytes:
        """Encode ``value``; raise :class:`EncodeError` naming where it cannot be."""
        if type(value) is str:
            return self._frame(_STR, _STR_ZSTD, value.encode("utf-8", "surrogatepass"))
        if type(value) is bytes:
            return self._frame(_BYTES, _BYTES_ZSTD, value)
        try:
            tree, parts = walk_with_parts(value)
        except RecursionError:
            raise EncodeError("value is nested too deeply to encode") from None
        text = _dump(tree).encode("utf-8", "surrogatepass")
        if not parts:
            return self._frame(_JSON, _JSON_ZSTD, text)
        pieces: list[bytes | bytearray] = [_PARTS]
        for body in (text, *parts):
            packed = self._pack(body)
            if packed is None:
                pieces += [_SEGMENT.pack(_RAW, len(body)), body]
            else:
                pieces += [_SEGMENT.pack(_ZSTD, len(packed)), packed]
        return b"".join(pieces)

    def decode(self, data: bytes) -> object:
        """Decode what :meth:`encode` wrote; raise :class:`DecodeError` if it cannot."""
        if not data:
            raise DecodeError("cannot decode an empty payload: it has no format byte")
        fmt = data[:1]
        if fmt == _PARTS:
            text, *parts = segments(data, self._decompress)
            return _load(text, parts)
        body = data[1:]
        if fmt == _JSON:
            return _load(body)
        if fmt == _STR:
            return _text(body)
        if fmt == _BYTES:
            return bytes(body)
        if fmt == _JSON_ZSTD:
            return _load(self._decompress(body))
        if fmt == _STR_ZSTD:
            return _text(self._decompress(body))
        if fmt == _BYTES_ZSTD:
            return self._decompress(body)
        raise DecodeError(
            f"unknown codec format byte 0x{data[0]:02x}; written by a newer runwright?"
        )

    def peek(self, data: bytes, limit: int) -> object:
        """Decode *data* without reading any value over *limit* bytes: such a value (a
        ``bytes`` or ``str`` payload, a binary part, a whole JSON payload) comes back as
        an :class:`Omitted` with its type and size. What a command shows of a payload."""
        if not data:
            raise DecodeError("cannot decode an empty payload: it has no format byte")
        kind = _KINDS.get(data[:1])
        if kind is None:
            return self.decode(data)  # raises: a format this runwright cannot read
        if kind == "parts":
            split = split_segments(data)
            text = split[0]
            if segment_size(*text) > limit:
                return Omitted("value", segment_size(*text))
            parts = [
                Omitted("bytes", segment_size(*part))
                if segment_size(*part) > limit
                else self._segment(*part)
                for part in split[1:]
            ]
            return _load(self._segment(*text), parts)
        packed = data[:1] in (_JSON_ZSTD, _BYTES_ZSTD, _STR_ZSTD)
        size = segment_size(_ZSTD if packed else _RAW, memoryview(data)[1:])
        if size > limit:
            return Omitted(kind, size)
        return self.decode(data)

    def _segment(self, kind: int, view: memoryview) -> memoryview:
        return memoryview(self._decompress(view)) if kind == _ZSTD else view

    def _frame(self, fmt: bytes, packed_fmt: bytes, body: bytes) -> bytes:
        packed = self._pack(body)
        return fmt + body if packed is None else packed_fmt + packed

    def _pack(self, body: bytes | bytearray) -> bytes | None:
        """*body* compressed, or None where that is not worth it."""
        size = len(body)
        if size <= self.compress_threshold:
            return None
        compressor = self._zstd.compressor
        if size >= SAMPLE_FROM:
            sample = _sample(body)
            if len(compressor.compress(sample)) > len(sample) * 0.9:
                return None
        packed = compressor.compress(body)
        return packed if len(packed) < size else None

    def _decompress(self, body: bytes | memoryview) -> bytes:
        try:
            return self._zstd.decompressor.decompress(body)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"corrupt compressed payload: {exc}") from None


def _sample(body: bytes | bytearray) -> bytes:
    """``SAMPLES`` slices of ``SAMPLE_BYTES``, evenly spread from the start to the end."""
    view = memoryview(body)
    step = (len(body) - SAMPLE_BYTES) // (SAMPLES - 1)
    return b"".join(view[i * step : i * step + SAMPLE_BYTES] for i in range(SAMPLES))


def split_segments(data: bytes | memoryview) -> list[tuple[int, memoryview]]:
    """The segments of a ``0x07`` payload as stored: ``(kind, view of data)`` pairs,
    the JSON first, then each binary part."""
    view = memoryview(data)
    found: list[tuple[int, memoryview]] = []
    at, end = 1, len(view)
    while at < end:
        if at + _SEGMENT.size > end:
            raise DecodeError("corrupt payload: a segment header is cut short")
        kind, size = _SEGMENT.unpack_from(view, at)
        at += _SEGMENT.size
        if at + size > end:
            raise DecodeError("corrupt payload: a segment is cut short")
        if kind not in (_RAW, _ZSTD):
            raise DecodeError(f"corrupt payload: unknown segment kind {kind}")
        found.append((kind, view[at : at + size]))
        at += size
    if not found:
        raise DecodeError("corrupt payload: it has no segments")
    return found


def segment_size(kind: int, view: memoryview) -> int:
    """How many bytes a stored body holds once decompressed (read from zstd's header)."""
    if kind == _RAW:
        return len(view)
    try:
        size = zstandard.frame_content_size(view)
    except zstandard.ZstdError as exc:
        raise DecodeError(f"corrupt compressed payload: {exc}") from None
    return size if size >= 0 else len(view)


def segments(
    data: bytes | memoryview, decompress: Callable[[memoryview], bytes]
) -> list[memoryview]:
    """The segments of a ``0x07`` payload, decompressed: the JSON, then each binary part.

    Raw segments are views of *data*, not copies.
    """
    return [
        memoryview(decompress(view)) if kind == _ZSTD else view
        for kind, view in split_segments(data)
    ]


#: How much of an error's message and traceback a record over the payload limit keeps.
_ERROR_TEXT_LIMIT = 64 * 1024


def encode_error(codec: Codec, error: BaseException) -> bytes:
    """What the journal records of *error*: :func:`encode_exception`, encoded.

    If *codec* refuses that record (over ``max_payload_bytes``: an exception
    holding a huge value), the record keeps the type, the first 64 KiB of the
    message and the last 64 KiB of the traceback, without args or attributes.
    """
    info = encode_exception(error)
    try:
        return codec.encode(info)
    except EncodeError:
        message, trace = str(info["message"]), str(info["traceback"])
        info.update(
            message=message[:_ERROR_TEXT_LIMIT],
            traceback=trace[-_ERROR_TEXT_LIMIT:],
            args=None,
            attributes={},
            attributes_complete=False,
        )
        return codec.encode(info)


def is_immutable(value: object) -> bool:
    """Whether ``value`` cannot be changed in place, however deep one looks.

    Such a decoded value may be shared between replays. Frozen dataclasses and
    attrs classes are not counted: ``object.__setattr__`` still changes them.
    """
    cls = type(value)
    if cls in _IMMUTABLE_TYPES:
        return True
    if isinstance(value, tuple | frozenset) and (
        cls is tuple or cls is frozenset or _is_namedtuple(cls)
    ):
        return all(is_immutable(item) for item in value)
    return isinstance(value, enum.Enum)


_IMMUTABLE_TYPES = frozenset(
    {
        type(None),
        bool,
        int,
        float,
        str,
        bytes,
        Decimal,
        uuid.UUID,
        dt.datetime,
        dt.date,
        dt.time,
        dt.timedelta,
    }
)


def _text(body: bytes) -> str:
    try:
        return str(body, "utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"stored text is not valid UTF-8: {exc}") from None
