"""The default codec: values to bytes for the journal, and back.

Theory of operation
-------------------
Every stored payload starts with one format byte, so the format can evolve
without migrating old journals::

    0x01  tagged JSON, UTF-8            0x02  the same, zstandard-compressed
    0x03  a top-level ``bytes`` value   0x04  the same, zstandard-compressed
    0x05  a top-level ``str`` value     0x06  the same, zstandard-compressed

A decoder that meets any other byte refuses it: the payload was written by a
newer runwright. A top-level ``str`` or ``bytes`` is stored as is (UTF-8 for a
``str``, lone surrogates included), which skips JSON escaping and base64 for the
payloads that are most often large. A payload longer than
``compress_threshold`` bytes is compressed, and kept compressed only if that
made it smaller.

How a value becomes the body of a ``0x01`` payload is in :mod:`._tagged`.
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
import typing
import uuid
from decimal import Decimal

import attrs
import zstandard

from runwright._exceptions import DecodeError, EncodeError

from ._tagged import _dump, _walk, encode_exception
from ._untag import CodecRemoteError, _is_namedtuple, _load, rebuild_exception

__all__ = [
    "Codec",
    "CodecRemoteError",
    "DefaultCodec",
    "encode_exception",
    "is_immutable",
    "rebuild_exception",
]

_JSON, _JSON_ZSTD = b"\x01", b"\x02"
_BYTES, _BYTES_ZSTD = b"\x03", b"\x04"
_STR, _STR_ZSTD = b"\x05", b"\x06"


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
    """Tagged JSON with zstandard compression above ``compress_threshold`` bytes.

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
            tree = _walk(value, set())
        except RecursionError:
            raise EncodeError("value is nested too deeply to encode") from None
        return self._frame(_JSON, _JSON_ZSTD, _dump(tree).encode("utf-8", "surrogatepass"))

    def decode(self, data: bytes) -> object:
        """Decode what :meth:`encode` wrote; raise :class:`DecodeError` if it cannot."""
        if not data:
            raise DecodeError("cannot decode an empty payload: it has no format byte")
        fmt = data[:1]
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

    def _frame(self, fmt: bytes, packed_fmt: bytes, body: bytes) -> bytes:
        if len(body) > self.compress_threshold:
            packed = self._zstd.compressor.compress(body)
            if len(packed) < len(body):
                return packed_fmt + packed
        return fmt + body

    def _decompress(self, body: bytes) -> bytes:
        try:
            return self._zstd.decompressor.decompress(body)
        except zstandard.ZstdError as exc:
            raise DecodeError(f"corrupt compressed payload: {exc}") from None


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
        return body.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"stored text is not valid UTF-8: {exc}") from None
