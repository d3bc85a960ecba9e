"""Tagged JSON, read back: one JSON parse whose object hook rebuilds tagged values.

The format is described in :mod:`._tagged`. Classes named by import path are
found again here (:func:`_resolve`), and recorded exceptions rebuilt
(:func:`rebuild_exception`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import json
import threading
import typing
import uuid
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from runwright._exceptions import DecodeError

__all__ = ["CodecRemoteError", "Omitted", "human_size", "rebuild_exception"]

_TRACEBACK_ATTRIBUTE = "__runwright_traceback__"


class CodecRemoteError(Exception):
    """Stands in for a recorded exception whose type cannot be rebuilt here.

    The type may have been moved or renamed, be defined inside a function, or
    refuse the recorded ``args``. ``type_name`` is its ``"module:qualname"``.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(type_name, message, traceback)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


def rebuild_exception(info: Mapping[str, object]) -> BaseException | None:
    """Rebuild the exception that :func:`encode_exception` described, or ``None``.

    The type is called with the recorded ``args``; if that fails and every
    attribute was recorded, the instance is made without ``__init__`` and its
    attributes are restored. The traceback text is attached as
    ``__runwright_traceback__``.
    """
    path, args = info.get("type"), info.get("args")
    attributes = info.get("attributes") or {}
    if not (isinstance(path, str) and isinstance(args, list | tuple)):
        return None
    if not isinstance(attributes, dict):
        return None
    try:
        cls = _resolve(path)
    except DecodeError:
        return None
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        return None
    exc: BaseException | None
    try:
        exc = cls(*args)
    except Exception:
        exc = None
    if not isinstance(exc, cls):
        if info.get("attributes_complete") is not True:
            return None
        try:
            exc = cls.__new__(cls, *args)
            exc.args = tuple(args)
        except Exception:
            return None
    try:
        vars(exc).update(attributes)
        setattr(exc, _TRACEBACK_ATTRIBUTE, str(info.get("traceback") or ""))
    except Exception:
        return None
    return exc


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields") and hasattr(cls, "_make")


def _type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# Decoding: one JSON parse; the object hook rebuilds tagged objects.


@attrs.frozen
class Omitted:
    """Stands in for a value a size-bounded decode did not read (see ``DefaultCodec.peek``):
    its type (``bytes``, ``bytearray``, ``str``, or ``value`` for a whole JSON payload)
    and its size in bytes, as stored uncompressed."""

    type: str
    size: int

    def __repr__(self) -> str:
        return f"<{human_size(self.size)} {self.type}>"


def human_size(size: int) -> str:
    """``512 B``, ``2.0 KB``, ``50.0 MB``: decimal units, as disks and networks count."""
    if size < 1000:
        return f"{size} B"
    for unit in ("KB", "MB", "GB", "TB"):
        size_in = size / 1000 ** ("KMGT".index(unit[0]) + 1)
        if size_in < 999.95 or unit == "TB":
            return f"{size_in:.1f} {unit}"
    raise AssertionError("unreachable")


class _Reading(threading.local):
    """The binary parts of the payload this thread is decoding (None: it has none)."""

    parts: Sequence[memoryview | Omitted] | None = None


_READING = _Reading()


def _load(body: bytes | memoryview, parts: Sequence[memoryview | Omitted] | None = None) -> object:
    """The value of tagged JSON *body*, whose ``$p`` and ``$pa`` tags index *parts*."""
    try:
        text = str(body, "utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"stored payload is not valid UTF-8: {exc}") from None
    saved, _READING.parts = _READING.parts, parts
    try:
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"stored payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("stored payload is nested too deeply to decode") from None
    finally:
        _READING.parts = saved
    if end != len(text):
        raise DecodeError(f"stored payload has data after the JSON value, at offset {end}")
    return value


def _object_hook(obj: dict[str, Any]) -> object:
    if len(obj) == 1:
        [(tag, payload)] = obj.items()
        if tag[:1] == "$":
            return _decode_tag(tag, payload)
    return obj


def _decode_tag(tag: str, payload: object) -> object:
    entry = _TAGS.get(tag)
    if entry is None:
        raise DecodeError(f"unknown tag {tag!r} in stored payload; written by a newer runwright?")
    expected, decoder = entry
    if type(payload) is not expected:
        raise DecodeError(
            f"corrupt {tag!r} value in stored payload: expected a JSON "
            f"{_JSON_TYPES[expected]}, got {type(payload).__name__}"
        )
    try:
        return decoder(payload)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"corrupt {tag!r} value in stored payload: {exc!r}") from exc


_JSON_TYPES = {list: "array", str: "string", int: "number"}


def _part(index: int, kind: type[bytes | bytearray]) -> object:
    parts = _READING.parts
    if parts is None or not 0 <= index < len(parts):
        raise DecodeError(f"corrupt payload: it refers to binary part {index}, which it lacks")
    part = parts[index]
    if isinstance(part, Omitted):
        return Omitted(kind.__name__, part.size)
    return kind(part)


def _decode_datetime(payload: list[Any]) -> dt.datetime:
    naive, fold, tz = payload
    return dt.datetime.fromisoformat(naive).replace(tzinfo=_decode_tz(tz), fold=fold)


def _decode_time(payload: list[Any]) -> dt.time:
    naive, fold, tz = payload
    return dt.time.fromisoformat(naive).replace(tzinfo=_decode_tz(tz), fold=fold)


def _decode_tz(spec: list[Any] | None) -> dt.tzinfo | None:
    if spec is None:
        return None
    kind = spec[0]
    if kind == "fixed":
        offset = dt.timedelta(microseconds=spec[1])
        return dt.timezone(offset) if spec[2] is None else dt.timezone(offset, spec[2])
    if kind == "zone":
        return zoneinfo.ZoneInfo(spec[1])
    raise DecodeError(f"unknown time zone kind {kind!r} in stored payload")


def _decode_enum(payload: list[Any]) -> enum.Enum:
    path, name = payload
    cls = _resolve_class(path, "an enum", lambda c: issubclass(c, enum.Enum))
    try:
        return typing.cast("type[enum.Enum]", cls)[name]
    except KeyError:
        raise DecodeError(f"enum {path!r} has no member {name!r}") from None


def _decode_flag(payload: list[Any]) -> enum.Enum:
    path, value = payload
    cls = _resolve_class(path, "a flag enum", lambda c: issubclass(c, enum.Flag))
    return typing.cast("type[enum.Flag]", cls)(value)


def _decode_namedtuple(payload: list[Any]) -> object:
    path, items = payload
    cls = _resolve_class(path, "a named tuple", _is_namedtuple)
    return cls(*items)


def _decode_dataclass(payload: list[Any]) -> object:
    path, values = payload
    cls = _resolve_class(path, "a dataclass", dataclasses.is_dataclass)
    fields = [(f.name, f.name, f.init) for f in dataclasses.fields(cls)]
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    return _construct(cls, path, fields, values, params.init)


def _decode_attrs(payload: list[Any]) -> object:
    path, values = payload
    cls = _resolve_class(path, "an attrs class", attrs.has)
    fields = [(a.name, a.alias or a.name, a.init) for a in attrs.fields(cls)]
    return _construct(cls, path, fields, values, True)


def _construct(
    cls: type,
    path: str,
    fields: list[tuple[str, str, bool]],
    values: dict[str, object],
    call_init: bool,
) -> object:
    """Call ``cls`` with its init fields, then set the others directly.

    Stored fields the class no longer has are ignored; fields it gained take
    their defaults.
    """
    kwargs = {}
    later = {}
    for name, alias, init in fields:
        if name in values:
            if init and call_init:
                kwargs[alias] = values[name]
            else:
                later[name] = values[name]
    try:
        obj = cls(**kwargs) if call_init else object.__new__(cls)
        for name, value in later.items():
            object.__setattr__(obj, name, value)
    except Exception as exc:
        raise DecodeError(f"cannot rebuild {path!r} from its stored fields: {exc!r}") from exc
    return obj


def _decode_exception(payload: list[Any]) -> BaseException:
    path, message, args, traceback_text, attributes, complete = payload
    info = {
        "type": path,
        "message": message,
        "args": args,
        "traceback": traceback_text,
        "attributes": attributes,
        "attributes_complete": complete,
    }
    exc = rebuild_exception(info)
    if exc is None:
        exc = CodecRemoteError(str(path), str(message), str(traceback_text))
        setattr(exc, _TRACEBACK_ATTRIBUTE, exc.traceback)
    return exc


_TAGS: dict[str, tuple[type, Callable[[Any], object]]] = {
    "$t": (list, tuple),
    "$s": (list, set),
    "$fs": (list, frozenset),
    "$d": (list, dict),
    "$i": (str, lambda p: int(p, 16)),
    "$b": (str, lambda p: base64.b64decode(p, validate=True)),
    "$ba": (str, lambda p: bytearray(base64.b64decode(p, validate=True))),
    "$p": (int, lambda p: _part(p, bytes)),
    "$pa": (int, lambda p: _part(p, bytearray)),
    "$dt": (list, _decode_datetime),
    "$date": (str, dt.date.fromisoformat),
    "$time": (list, _decode_time),
    "$td": (list, lambda p: dt.timedelta(days=p[0], seconds=p[1], microseconds=p[2])),
    "$uuid": (str, lambda p: uuid.UUID(hex=p)),
    "$dec": (str, Decimal),
    "$enum": (list, _decode_enum),
    "$flag": (list, _decode_flag),
    "$nt": (list, _decode_namedtuple),
    "$dc": (list, _decode_dataclass),
    "$attrs": (list, _decode_attrs),
    "$exc": (list, _decode_exception),
    # Never written here: the JSON form of a non-finite float (see _json.py).
    "$f": (str, float),
}

_DECODER = json.JSONDecoder(object_hook=_object_hook)

_RESOLVED: dict[str, object] = {}


def _resolve(path: str) -> object:
    """The object at ``"module:qualname"``, importing the module if needed."""
    found = _RESOLVED.get(path)
    if found is not None:
        return found
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise DecodeError(f"malformed import path {path!r} in stored payload")
    try:
        found = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception as exc:
        raise DecodeError(
            f"cannot import {path!r} ({type(exc).__name__}: {exc}); was the class moved, "
            "renamed or deleted since the value was stored?"
        ) from None
    _RESOLVED[path] = found
    return found


def _resolve_class(path: str, kind: str, check: Callable[[type], bool]) -> type:
    found = _resolve(path)
    if not (isinstance(found, type) and check(found)):
        raise DecodeError(f"{path!r} is no longer {kind}; it cannot rebuild the stored value")
    return found
