"""Tagged JSON: how the default codec writes a value as JSON, and reads it back.

Tagged JSON is plain JSON for JSON-native values (``str``, ``float``, ``bool``,
``None``, ``int`` below 2**1024, ``list``, and ``dict`` with ``str`` keys).
Every other value becomes a JSON object with exactly one key, its tag, which
starts with ``$``: ``{"$t": [1, 2]}`` is the tuple ``(1, 2)``. A user dict
that itself has one key starting with ``$`` is escaped by writing it as the
``$d`` pairs form, which is also how dicts with non-``str`` keys are written,
so no user value is ever read back as a tag. The tags and their payloads::

    $t tuple, $s set, $fs frozenset     [items]; sets sorted when orderable
    $d dict                             [[key, value], ...]
    $i int of 2**1024 or more           hex text
    $b bytes, $ba bytearray             base64 text
    $p bytes, $pa bytearray             index of a binary part (see below)
    $dt datetime, $time time            [naive ISO text, fold, zone]; zone is
                                        null, ["fixed", offset in us, name|null]
                                        or ["zone", ZoneInfo key]
    $date date                          ISO text
    $td timedelta                       [days, seconds, microseconds]
    $uuid UUID, $dec Decimal            hex text, str() text
    $enum, $flag                        [path, member name], [path, value]
    $nt named tuple                     [path, [items]]
    $dc dataclass, $attrs attrs class   [path, {field: value}]
    $exc exception                      [path, str(exc), args|null, traceback
                                        text, {attribute: value}, whether every
                                        attribute could be kept]

A ``bytes`` or ``bytearray`` of ``PART_FROM`` bytes or more, inside a value
the default codec encodes, is not written as base64 (a third bigger, and a
pass over every byte each way): it becomes a *binary part* of the payload,
stored raw after the JSON (format ``0x07``, see :mod:`._codec`), and the JSON
holds its index. The JSON form that commands print (:mod:`._json`) never
holds parts: it writes ``$b`` and ``$ba``.

Decoding is one ``json`` parse whose object hook turns tagged objects back into
values, innermost first; an unknown tag was written by a newer runwright.

Classes are stored by import path, ``"module:qualname"``, and found again by
importing the module on decode. Journals are trusted: decoding imports the
modules they name and calls the classes they name. A class must be reachable
under its path; one defined inside a function is refused when encoding, not
when decoding.

Values are copied, not shared: an object that appears twice in a structure
comes back as two equal objects, and a reference cycle cannot be encoded.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import json.encoder
import threading
import traceback
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs

from runwright._exceptions import DecodeError, EncodeError

from ._untag import _TRACEBACK_ATTRIBUTE, _is_namedtuple, _resolve, _type_path

__all__ = ["PART_FROM", "encode_exception", "walk_with_parts"]

_SCALARS = frozenset({str, float, bool, type(None)})
_INT_LIMIT = 1 << 1024
_ADVICE = (
    "use JSON types, bytes, tuples, sets, datetime, UUID, Decimal, dataclasses, "
    "attrs classes or exceptions"
)


def encode_exception(exc: BaseException) -> dict[str, object]:
    """What the journal records of an exception, as encodable values.

    ``args`` is ``None`` when they cannot all be encoded; ``attributes`` holds
    the encodable entries of the instance ``__dict__`` and
    ``attributes_complete`` says whether that was all of them.
    """
    args = list(exc.args)
    recorded = _exception_attributes(exc)
    attributes = {name: item for name, item in recorded.items() if _encodable(item)}
    return {
        "type": _type_path(type(exc)),
        "message": _message(exc),
        "args": args if _encodable(args) else None,
        "traceback": _traceback_text(exc),
        "attributes": attributes,
        "attributes_complete": len(attributes) == len(recorded),
    }


# Encoding: _walk turns a value into JSON-native values and tagged objects.


# The scalar tests of _walk are repeated inline in the list and dict loops:
# skipping the call for scalar items makes those loops about 40% faster.


def _walk(value: Any, active: set[int]) -> object:
    cls = type(value)
    if cls in _SCALARS:
        return value
    if cls is int:
        return value if -_INT_LIMIT < value < _INT_LIMIT else {"$i": hex(value)}
    walker = _WALKERS.get(cls)
    if walker is None:
        return _walk_other(value, active)
    return walker(value, active)


def _walk_list(value: Any, active: set[int]) -> list[object]:
    key = _enter(value, active)
    out: list[object] = []
    append = out.append
    try:
        for item in value:
            cls = type(item)
            if cls in _SCALARS or (cls is int and -_INT_LIMIT < item < _INT_LIMIT):
                append(item)
            else:
                append(_walk(item, active))
    except EncodeError as exc:
        active.discard(key)
        raise _relocated(exc, f"[{len(out)}]") from None
    active.discard(key)
    return out


def _walk_dict(value: dict[Any, Any], active: set[int]) -> object:
    key = _enter(value, active)
    out: dict[str, object] = {}
    name: Any = None
    try:
        for name, item in value.items():
            if type(name) is not str:
                break
            cls = type(item)
            if cls in _SCALARS or (cls is int and -_INT_LIMIT < item < _INT_LIMIT):
                out[name] = item
            else:
                out[name] = _walk(item, active)
        else:
            if len(out) != 1 or name[:1] != "$":
                active.discard(key)
                return out
    except EncodeError as exc:
        active.discard(key)
        raise _relocated(exc, f"[{name!r}]") from None
    active.discard(key)
    return {"$d": _walk_pairs(value, active)}


def _walk_pairs(value: dict[Any, Any], active: set[int]) -> list[object]:
    key = _enter(value, active)
    out: list[object] = []
    name = None
    try:
        for name, item in value.items():
            try:
                encoded_name = _walk(name, active)
            except EncodeError as exc:
                raise EncodeError(f"dict key: {exc.reason}", path=exc.path) from None
            out.append([encoded_name, _walk(item, active)])
    except EncodeError as exc:
        active.discard(key)
        raise _relocated(exc, f"[{name!r}]") from None
    active.discard(key)
    return out


def _walk_tuple(value: tuple[object, ...], active: set[int]) -> object:
    return {"$t": _walk_list(value, active)}


def _walk_set(value: set[object] | frozenset[object], active: set[int]) -> object:
    try:
        items: list[object] = sorted(value)  # type: ignore[type-var]
    except TypeError:
        items = list(value)
    key = _enter(value, active)
    try:
        out = [_walk(item, active) for item in items]
    except EncodeError as exc:
        active.discard(key)
        raise _relocated(exc, "{...}") from None
    active.discard(key)
    return {"$fs" if type(value) is frozenset else "$s": out}


#: A bytes or bytearray value this long or longer becomes a binary part of its payload.
PART_FROM = 1024


class _Parts(threading.local):
    """The binary parts of the payload this thread is encoding; None: write base64."""

    current: list[bytes | bytearray] | None = None


_PARTS = _Parts()


def walk_with_parts(value: object) -> tuple[object, list[bytes | bytearray]]:
    """The tagged tree of *value*, and the binary parts its ``$p`` and ``$pa`` tags index."""
    parts: list[bytes | bytearray] = []
    saved, _PARTS.current = _PARTS.current, parts
    try:
        return _walk(value, set()), parts
    finally:
        _PARTS.current = saved


def _walk_bytes(value: bytes, active: set[int]) -> object:
    parts = _PARTS.current
    if parts is not None and len(value) >= PART_FROM:
        parts.append(value)
        return {"$p": len(parts) - 1}
    return {"$b": base64.b64encode(value).decode("ascii")}


def _walk_bytearray(value: bytearray, active: set[int]) -> object:
    parts = _PARTS.current
    if parts is not None and len(value) >= PART_FROM:
        parts.append(value)
        return {"$pa": len(parts) - 1}
    return {"$ba": base64.b64encode(value).decode("ascii")}


def _walk_datetime(value: dt.datetime, active: set[int]) -> object:
    naive = value.replace(tzinfo=None, fold=0).isoformat()
    return {"$dt": [naive, value.fold, _encode_tz(value.tzinfo)]}


def _walk_date(value: dt.date, active: set[int]) -> object:
    return {"$date": value.isoformat()}


def _walk_time(value: dt.time, active: set[int]) -> object:
    naive = value.replace(tzinfo=None, fold=0).isoformat()
    return {"$time": [naive, value.fold, _encode_tz(value.tzinfo)]}


def _walk_timedelta(value: dt.timedelta, active: set[int]) -> object:
    return {"$td": [value.days, value.seconds, value.microseconds]}


def _walk_uuid(value: uuid.UUID, active: set[int]) -> object:
    return {"$uuid": value.hex}


def _walk_decimal(value: Decimal, active: set[int]) -> object:
    return {"$dec": str(value)}


def _encode_tz(tz: dt.tzinfo | None) -> object:
    if tz is None:
        return None
    if type(tz) is dt.timezone:
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        explicit = name != dt.timezone(offset).tzname(None)
        return ["fixed", offset // dt.timedelta(microseconds=1), name if explicit else None]
    if type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        return ["zone", tz.key]
    raise EncodeError(
        f"cannot encode a tzinfo of type {type(tz).__name__!r}; use datetime.timezone "
        "or zoneinfo.ZoneInfo (created from a key)"
    )


_WALKERS: dict[type, Callable[[Any, set[int]], object]] = {
    list: _walk_list,
    dict: _walk_dict,
    tuple: _walk_tuple,
    set: _walk_set,
    frozenset: _walk_set,
    bytes: _walk_bytes,
    bytearray: _walk_bytearray,
    dt.datetime: _walk_datetime,
    dt.date: _walk_date,
    dt.time: _walk_time,
    dt.timedelta: _walk_timedelta,
    uuid.UUID: _walk_uuid,
    Decimal: _walk_decimal,
}


def _walk_other(value: object, active: set[int]) -> object:
    cls = type(value)
    if isinstance(value, enum.Enum):
        if isinstance(value, enum.Flag):
            return {"$flag": [_class_path(cls), _walk(value.value, active)]}
        return {"$enum": [_class_path(cls), value.name]}
    if isinstance(value, BaseException):
        return _walk_exception(value, active)
    if isinstance(value, tuple) and _is_namedtuple(cls):
        return {"$nt": [_class_path(cls), _walk_list(value, active)]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [field.name for field in dataclasses.fields(value)]
        return {"$dc": [_class_path(cls), _walk_fields(value, names, active)]}
    if attrs.has(cls):
        names = [field.name for field in attrs.fields(cls)]
        return {"$attrs": [_class_path(cls), _walk_fields(value, names, active)]}
    raise EncodeError(f"cannot encode object of type {cls.__name__!r}; {_ADVICE}")


def _walk_fields(value: object, names: list[str], active: set[int]) -> dict[str, object]:
    key = _enter(value, active)
    out: dict[str, object] = {}
    name = ""
    try:
        for name in names:
            try:
                item = getattr(value, name)
            except AttributeError:
                continue
            out[name] = _walk(item, active)
    except EncodeError as exc:
        active.discard(key)
        raise _relocated(exc, f".{name}") from None
    active.discard(key)
    return out


def _walk_exception(exc: BaseException, active: set[int]) -> object:
    key = _enter(exc, active)
    args = _walk_or_missing(list(exc.args), active)
    recorded = _exception_attributes(exc)
    attributes = {}
    for name, item in recorded.items():
        walked = _walk_or_missing(item, active)
        if walked is not _MISSING:
            attributes[name] = walked
    active.discard(key)
    complete = len(attributes) == len(recorded)
    if len(attributes) == 1 and next(iter(attributes))[:1] == "$":
        attributes = {"$d": [[name, item] for name, item in attributes.items()]}
    return {
        "$exc": [
            _type_path(type(exc)),
            _message(exc),
            None if args is _MISSING else args,
            _traceback_text(exc),
            attributes,
            complete,
        ]
    }


_MISSING = object()


def _walk_or_missing(value: object, active: set[int]) -> object:
    before = set(active)
    parts = _PARTS.current
    kept = 0 if parts is None else len(parts)
    try:
        return _walk(value, active)
    except (EncodeError, RecursionError):
        active.intersection_update(before)
        if parts is not None:
            del parts[kept:]  # what the failed walk took, nothing refers to
        return _MISSING


def _encodable(value: object) -> bool:
    saved, _PARTS.current = _PARTS.current, None
    try:
        return _walk_or_missing(value, set()) is not _MISSING
    finally:
        _PARTS.current = saved


def _exception_attributes(exc: BaseException) -> dict[str, object]:
    return {k: v for k, v in vars(exc).items() if k != _TRACEBACK_ATTRIBUTE}


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__} object>"


def _traceback_text(exc: BaseException) -> str:
    if exc.__traceback__ is not None:
        try:
            return "".join(traceback.format_exception(exc))
        except Exception:
            return ""
    recorded = getattr(exc, _TRACEBACK_ATTRIBUTE, "")
    return recorded if isinstance(recorded, str) else ""


def _enter(value: object, active: set[int]) -> int:
    key = id(value)
    if key in active:
        raise EncodeError("value contains a reference cycle")
    active.add(key)
    return key


def _relocated(exc: EncodeError, segment: str) -> EncodeError:
    return EncodeError(exc.reason, path=segment + exc.path)


_CLASS_PATHS: dict[type, str] = {}


def _class_path(cls: type) -> str:
    """The import path of a class that decoding must find again, checked once."""
    path = _CLASS_PATHS.get(cls)
    if path is not None:
        return path
    if "<locals>" in cls.__qualname__:
        raise EncodeError(
            f"class {cls.__qualname__} is defined inside a function; define it at module "
            "level so it can be decoded"
        )
    path = _type_path(cls)
    try:
        found = _resolve(path)
    except DecodeError:
        found = None
    if found is not cls:
        raise EncodeError(
            f"class {cls.__qualname__} cannot be found again as {path!r}; define it at "
            "module level under its own name so it can be decoded"
        )
    _CLASS_PATHS[cls] = path
    return path


def _make_dump() -> Callable[[object], str]:
    encoder = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=True, check_circular=False
    )
    # JSONEncoder.encode builds a fresh C encoder on every call; building it once
    # halves the cost of dumping a five-field dict (3.8 us -> 1.6 us, measured).
    make_c_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_c_encoder is None:
        return encoder.encode
    try:
        c_encoder = make_c_encoder(
            None, encoder.default, json.encoder.encode_basestring, None, ":", ",",
            False, False, True,
        )  # fmt: skip
    except TypeError:
        return encoder.encode

    def dump(value: object) -> str:
        return "".join(c_encoder(value, 0))

    return dump


_dump = _make_dump()
