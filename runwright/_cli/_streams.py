"""``streams list`` and ``streams tail``.

``streams list`` reads the journal read-only. ``streams tail`` reads through
a client runtime, whose journal watcher wakes it as soon as another process
appends to the stream or ends the run.
"""

from __future__ import annotations

import argparse
import json
import sys

import anyio
import attrs

from .._exceptions import RunNotFound
from ..journal._codec import DefaultCodec
from ..journal._json import to_json
from ..journal._queries import run_status, streams_of
from ..journal._rows import StreamRow
from ..streams._chunks import Chunk, StreamInfo
from ._common import CommandError, Target, check_journal, client, read_only, target_of
from ._format import Undecodable, decode, print_json_lines, print_table

__all__ = ["list_command", "tail_command"]

_ENDED = ("completed", "failed", "cancelled")


def _streams(target: Target, run_id: str) -> tuple[str, list[StreamInfo]]:
    """The run's status and its streams, from one snapshot."""
    with read_only(target) as conn:
        status = run_status(conn, run_id)
        if status is None:
            raise RunNotFound(run_id)
        rows: list[StreamRow] = []
        if (
            target.backend == "postgresql"
            or conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'streams'").fetchone()
        ):
            rows = streams_of(conn, run_id)  # an SQLite journal older than streams has none
    return status, [StreamInfo.of(row, status) for row in rows]


def _described(infos: list[StreamInfo]) -> str:
    if not infos:
        return "it has none"
    return "its streams: " + ", ".join(
        f"{i.name!r} ({i.chunks} chunk{'' if i.chunks == 1 else 's'}"
        f"{', closed' if i.closed else ''})"
        for i in infos
    )


def list_command(args: argparse.Namespace) -> int:
    _, infos = _streams(target_of(args), args.run_id)
    if args.json:
        print_json_lines(
            {"name": i.name, "chunks": i.chunks, "bytes": i.bytes, "closed": i.closed}
            for i in infos
        )
        return 0
    if not infos:
        print("no streams")
        return 0
    table = [["NAME", "CHUNKS", "BYTES", "CLOSED"]]
    table.extend([i.name, str(i.chunks), str(i.bytes), "yes" if i.closed else "no"] for i in infos)
    print_table(table)
    return 0


@attrs.frozen
class _LenientCodec:
    """The default codec, except that a value it cannot decode becomes an ``Undecodable``:
    one chunk whose class cannot be imported here must not end the tail."""

    inner: DefaultCodec = attrs.Factory(DefaultCodec)

    def encode(self, value: object) -> bytes:
        return self.inner.encode(value)

    def decode(self, data: bytes) -> object:
        return decode(self.inner, data)


def tail_command(args: argparse.Namespace) -> int:
    """Follow a stream until it is closed or its run ends.

    A stream the run has not written (yet): if the run has ended, that is an
    error that lists the streams it has; if it is still going, the stream may
    come, so the tail waits for it (saying so on stderr), and fails the same
    way if the run ends without it.
    """
    target = target_of(args)
    check_journal(target)
    run_id: str = args.run_id
    name: str = args.name
    start: int = args.start
    emit = _emit_json if args.json else _emit_chunk
    status, infos = _streams(target, run_id)
    if name not in {i.name for i in infos}:
        if status in _ENDED:
            raise CommandError(f"run {run_id} has no stream {name!r}; {_described(infos)}")
        print(
            f"runwright: run {run_id} has no stream {name!r} yet ({_described(infos)}); "
            "waiting for it",
            file=sys.stderr,
            flush=True,
        )

    async def tail() -> int:
        seen = 0
        async with client(target, codec=_LenientCodec()) as runtime:
            async for chunk in runtime.get_run(run_id).stream(name, start=start):
                emit(chunk)
                seen += 1
        return seen

    try:
        seen = anyio.run(tail)
    except KeyboardInterrupt:
        return 130
    if not seen:
        _, infos = _streams(target, run_id)
        if name not in {i.name for i in infos}:
            raise CommandError(f"run {run_id} ended without a stream {name!r}; {_described(infos)}")
    return 0


def _emit_chunk(chunk: Chunk) -> None:
    """A chunk as its writer meant it: text as is, bytes raw, any other value as a JSON line."""
    data = chunk.data
    if isinstance(data, str):
        _write_text(data)
    elif isinstance(data, bytes):
        sys.stdout.flush()
        binary = getattr(sys.stdout, "buffer", None)
        if binary is None:  # stdout was replaced by a text-only stream
            _write_text(data.decode("utf-8", "backslashreplace"))
            return
        binary.write(data)
        binary.flush()
    else:
        _write_text(json.dumps(_json_form(data), ensure_ascii=False) + "\n")


def _emit_json(chunk: Chunk) -> None:
    record = {
        "index": chunk.index,
        "writer": chunk.writer,
        "attempt": chunk.attempt,
        "data": _json_form(chunk.data),
    }
    _write_text(json.dumps(record) + "\n")


def _json_form(data: object) -> object:
    """The chunk in runwright's JSON form; one that cannot be decoded here says why."""
    if isinstance(data, Undecodable):
        return {"$undecodable": data.reason}
    return to_json(data)


def _write_text(text: str) -> None:
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:  # a lone surrogate, or a character the locale cannot encode
        encoding = sys.stdout.encoding or "utf-8"
        sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding))
    sys.stdout.flush()
