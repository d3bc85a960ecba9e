"""How commands show what they read: times, values, errors, tables and JSON.

With ``--json``, a command that shows one thing prints one JSON object on one
line; a list prints one object per line (JSON Lines), nothing for an empty
list. Field names are snake_case and stable; every time is an ISO 8601 string
in UTC (``2027-01-15T08:00:00.000000Z``), or null.

Payloads are decoded with the default codec. Decoding imports the modules a
payload names (the journal is trusted); a value whose class cannot be imported
here is shown as ``<undecodable: ...>`` rather than failing the command. A
value over ``SHOW_LIMIT`` bytes (a ``bytes`` or ``str``, or a whole payload
of JSON) is not read at all: it is shown by its size, ``<50.0 MB bytes>``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import attrs
import zstandard

from .._exceptions import DecodeError
from ..journal._codec import DefaultCodec
from ..journal._rows import RunRow

__all__ = [
    "SHOW_LIMIT",
    "ErrorInfo",
    "Undecodable",
    "arguments",
    "call",
    "decode",
    "error_info",
    "iso",
    "iso_json",
    "one_line",
    "peek",
    "print_json",
    "print_json_lines",
    "print_table",
    "safe_repr",
    "short_type",
    "shorten",
    "summary_json",
    "table_lines",
]

_REPR_LIMIT = 200
_MESSAGE_LIMIT = 200


@attrs.frozen
class Undecodable:
    reason: str

    def __repr__(self) -> str:
        return f"<undecodable: {self.reason}>"


@attrs.frozen
class ErrorInfo:
    """A recorded exception, as the journal's error payload describes it."""

    type: str
    message: str
    traceback: str

    def summary(self) -> str:
        return f"{short_type(self.type)}: {one_line(self.message)}"

    def as_json(self) -> dict[str, object]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


#: Values over this many bytes are shown by their size (an Omitted), not read.
SHOW_LIMIT = 1024 * 1024


def decode(codec: DefaultCodec, data: bytes | None) -> object:
    if data is None:
        return None
    try:
        return codec.decode(data)
    except DecodeError as exc:
        return Undecodable(str(exc))


def peek(codec: DefaultCodec, data: bytes | None) -> object:
    """*data* decoded, with every value over ``SHOW_LIMIT`` bytes shown by its size."""
    if data is None:
        return None
    try:
        return codec.peek(data, SHOW_LIMIT)
    except DecodeError as exc:
        return Undecodable(str(exc))


def error_info(codec: DefaultCodec, data: bytes | None) -> ErrorInfo:
    """The type, message and traceback of an error payload, even if its values won't decode."""
    info = peek(codec, data)
    if isinstance(info, Undecodable) and data is not None and len(data) <= SHOW_LIMIT:
        info = _raw_json(data)
    if not isinstance(info, dict):
        return ErrorInfo("?", repr(info), "")
    return ErrorInfo(
        str(info.get("type", "?")),
        str(info.get("message", "")),
        str(info.get("traceback") or ""),
    )


def _raw_json(data: bytes) -> object:
    """A JSON payload parsed without rebuilding tagged values (which may need missing classes)."""
    try:
        if data[:1] == b"\x01":
            return json.loads(data[1:])
        if data[:1] == b"\x02":
            return json.loads(zstandard.ZstdDecompressor().decompress(data[1:]))
    except (ValueError, zstandard.ZstdError):
        pass
    return None


def call(name: str, decoded: object) -> str:
    """``name(1, 'a', flag=True)`` from a decoded ``(args, kwargs)`` pair."""
    listed = _arguments(decoded)
    if listed is None:
        return shorten(f"{name}{safe_repr(decoded)}")
    return shorten(f"{name}({listed})")


def arguments(decoded: object) -> str:
    """``1, 'a', flag=True`` from a decoded ``(args, kwargs)`` pair; ``-`` for none."""
    listed = _arguments(decoded)
    if listed is None:
        return shorten(safe_repr(decoded))
    return shorten(listed) if listed else "-"


def _arguments(decoded: object) -> str | None:
    if not (
        isinstance(decoded, tuple)
        and len(decoded) == 2
        and isinstance(decoded[0], tuple | list)
        and isinstance(decoded[1], dict)
    ):
        return None
    parts = [safe_repr(value) for value in decoded[0]]
    parts.extend(f"{key}={safe_repr(value)}" for key, value in decoded[1].items())
    return ", ".join(parts)


def safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as exc:
        return f"<unprintable {type(value).__name__}: {exc!r}>"


def shorten(text: str, limit: int = _REPR_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str) -> str:
    lines = message.strip().splitlines()
    if not lines:
        return ""
    text = lines[0] + (" ..." if len(lines) > 1 else "")
    return shorten(text, _MESSAGE_LIMIT)


def short_type(type_name: str) -> str:
    """``ValueError`` for a builtin, ``rw.StepTimeout`` for runwright's own, else the path."""
    if type_name.startswith("runwright._exceptions:"):
        return "rw." + type_name.partition(":")[2]
    return type_name.removeprefix("builtins:")


def iso(timestamp: float | None, timespec: str = "milliseconds") -> str:
    if timestamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_json(timestamp: float | None) -> str | None:
    return None if timestamp is None else iso(timestamp, "microseconds")


def summary_json(row: RunRow, problem: tuple[str, str, float] | None = None) -> dict[str, object]:
    return {
        "id": row.run_id,
        "workflow": row.workflow,
        "status": row.status,
        "key": row.key,
        "created_at": iso_json(row.created_at),
        "finished_at": iso_json(row.finished_at),
        "error_type": row.error_type,
        "error_message": row.error_message,
        "problem": None if problem is None else problem_json(problem),
    }


def problem_json(problem: tuple[str, str, float]) -> dict[str, object]:
    kind, message, at = problem
    return {"kind": kind, "message": message, "since": iso_json(at)}


def table_lines(table: list[list[str]]) -> list[str]:
    """Rows of cells in left-aligned columns; the first row is the header."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


def print_table(table: list[list[str]]) -> None:
    for line in table_lines(table):
        print(line)


def print_json(value: Any) -> None:
    """One JSON value on one line: what a ``--json`` command that shows one thing prints."""
    print(json.dumps(value, ensure_ascii=False))


def print_json_lines(values: Iterable[Any]) -> None:
    """One JSON object per line (JSON Lines): what a ``--json`` list prints; none for none."""
    for value in values:
        print(json.dumps(value, ensure_ascii=False))
