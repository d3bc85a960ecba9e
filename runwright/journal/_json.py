"""The JSON form of values: one mapping for everything that shows values as JSON.

The command line (``--json``), the SSE stream helper and the web view write a
value as the default codec's *tagged JSON* (see :mod:`._codec`): JSON values
as they are, every other value as an object with one ``$`` tag, e.g.
``{"$t": [1, 2]}`` for the tuple ``(1, 2)`` and ``{"$b": "aGk="}`` for
``b"hi"``. It is lossless and reads back with :func:`from_json`. Two tags are
added so that the output is always strict JSON:

* ``{"$f": "inf"}``, ``{"$f": "-inf"}``, ``{"$f": "nan"}``: a non-finite float;
* ``{"$repr": "..."}``: a value the default codec cannot encode (a custom
  codec's type), shown by its ``repr``; ``{"$undecodable": "..."}``: a
  stored payload that cannot be read, with why;
  ``{"$omitted": {"type": "bytes", "size": 50000000}}``: a value over the
  size limit the caller gave (a ``bytes``, ``bytearray`` or ``str``, or a whole
  JSON ``value``), left out. None of them reads back.

A stored payload is turned into this form without decoding it
(:func:`payload_json`): no class it names is imported, so a journal can be
shown by a process that does not have its code.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import zstandard

from .._exceptions import DecodeError, EncodeError
from ._codec import segment_size, split_segments
from ._tagged import _walk
from ._untag import _DECODER

__all__ = ["from_json", "payload_json", "to_json"]

_FORMATS = {1: "value", 2: "value", 3: "bytes", 4: "bytes", 5: "str", 6: "str", 7: "parts"}
_RAW, _ZSTD = 0, 1


def to_json(value: object) -> object:
    """*value* in the JSON form (strict JSON: ``json.dumps(..., allow_nan=False)`` takes it)."""
    if type(value) is str:
        return value
    if type(value) is bytes:
        return {"$b": base64.b64encode(value).decode("ascii")}
    try:
        tree = _walk(value, set())
    except (EncodeError, RecursionError):
        return {"$repr": _repr(value)}
    return _finite(tree)


def payload_json(data: bytes | None, limit: int | None = None) -> object:
    """A stored payload (what the codec wrote) in the JSON form, without decoding it.

    With *limit*, a value over that many bytes is not read: it is given as
    ``{"$omitted": {"type": ..., "size": ...}}``.
    """
    if data is None:
        return None
    kind = _FORMATS.get(data[0]) if data else None
    if kind is None:
        return {"$undecodable": "not a payload this runwright can read"}
    try:
        if kind == "parts":
            return _parts_json(data, limit)
        size = segment_size(_ZSTD if data[0] % 2 == 0 else _RAW, memoryview(data)[1:])
        if limit is not None and size > limit:
            return _omitted(kind, size)
        body = bytes(data[1:])
        if data[0] % 2 == 0:
            body = zstandard.ZstdDecompressor().decompress(body)
        if kind == "bytes":
            return {"$b": base64.b64encode(body).decode("ascii")}
        text = body.decode("utf-8", "surrogatepass")
        if kind == "str":
            return text
        return _finite(json.loads(text))
    except (zstandard.ZstdError, ValueError, RecursionError, DecodeError) as exc:
        return {"$undecodable": f"{type(exc).__name__}: {exc}"}


def _parts_json(data: bytes, limit: int | None) -> object:
    """A ``0x07`` payload in the JSON form: its binary parts as ``$b``/``$ba`` (or omitted)."""
    split = split_segments(data)
    sizes = [segment_size(kind, view) for kind, view in split]
    if limit is not None and sizes[0] > limit:
        return _omitted("value", sizes[0])
    decompress = zstandard.ZstdDecompressor().decompress
    kind, view = split[0]
    text = view if kind == _RAW else decompress(view)
    parts: list[bytes | int] = []
    for (kind, view), size in zip(split[1:], sizes[1:], strict=True):
        if limit is not None and size > limit:
            parts.append(size)
        else:
            parts.append(bytes(view) if kind == _RAW else decompress(view))
    return _finite(json.loads(str(text, "utf-8", "surrogatepass")), parts)


def _omitted(kind: str, size: int) -> object:
    return {"$omitted": {"type": kind, "size": size}}


def from_json(tree: object) -> object:
    """The value a JSON form stands for (``$repr`` and ``$undecodable`` cannot be read back)."""
    text = json.dumps(tree, ensure_ascii=False)
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise DecodeError("the JSON form is nested too deeply to decode") from None


def _finite(tree: Any, parts: list[bytes | int] | None = None) -> Any:
    """*tree* with non-finite floats tagged, and binary parts (``$p``, ``$pa``) put
    in from *parts*: base64, or omitted where *parts* holds only their size."""
    if type(tree) is float:
        return tree if math.isfinite(tree) else {"$f": repr(tree)}
    if type(tree) is list:
        return [_finite(item, parts) for item in tree]
    if type(tree) is dict:
        if parts is not None and len(tree) == 1:
            [(tag, index)] = tree.items()
            if tag in ("$p", "$pa") and type(index) is int and 0 <= index < len(parts):
                part = parts[index]
                kind = "bytes" if tag == "$p" else "bytearray"
                if isinstance(part, int):
                    return _omitted(kind, part)
                return {"$b" if tag == "$p" else "$ba": base64.b64encode(part).decode("ascii")}
        return {key: _finite(item, parts) for key, item in tree.items()}
    return tree


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<unprintable {type(value).__name__}: {exc!r}>"
