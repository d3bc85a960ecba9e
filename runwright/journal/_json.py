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
  stored payload that cannot be read, with why. Neither reads back.

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
from ._tagged import _walk
from ._untag import _DECODER

__all__ = ["from_json", "payload_json", "to_json"]

_FORMATS = {1: "json", 2: "json", 3: "bytes", 4: "bytes", 5: "str", 6: "str"}


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


def payload_json(data: bytes | None) -> object:
    """A stored payload (what the codec wrote) in the JSON form, without decoding it."""
    if data is None:
        return None
    kind = _FORMATS.get(data[0]) if data else None
    if kind is None:
        return {"$undecodable": "not a payload this runwright can read"}
    body = bytes(data[1:])
    try:
        if data[0] % 2 == 0:
            body = zstandard.ZstdDecompressor().decompress(body)
        if kind == "bytes":
            return {"$b": base64.b64encode(body).decode("ascii")}
        text = body.decode("utf-8", "surrogatepass")
        if kind == "str":
            return text
        return _finite(json.loads(text))
    except (zstandard.ZstdError, ValueError, RecursionError) as exc:
        return {"$undecodable": f"{type(exc).__name__}: {exc}"}


def from_json(tree: object) -> object:
    """The value a JSON form stands for (``$repr`` and ``$undecodable`` cannot be read back)."""
    text = json.dumps(tree, ensure_ascii=False)
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise DecodeError("the JSON form is nested too deeply to decode") from None


def _finite(tree: Any) -> Any:
    if type(tree) is float:
        return tree if math.isfinite(tree) else {"$f": repr(tree)}
    if type(tree) is list:
        return [_finite(item) for item in tree]
    if type(tree) is dict:
        return {key: _finite(item) for key, item in tree.items()}
    return tree


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<unprintable {type(value).__name__}: {exc!r}>"
