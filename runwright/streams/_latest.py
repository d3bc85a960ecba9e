"""Reading a stream without the output of superseded attempts.

A retried step writes its new attempt's chunks after the failed attempt's,
which stay in the stream (every chunk names its ``writer`` step and
``attempt``). :class:`LatestAttempts` wraps a reader and drops every chunk
whose writer is known, by then, to have a newer attempt: known from the
journal when reading starts (so a finished stream reads as if only the last
attempts had written), and from the chunks read since. A chunk handed out
before its writer's next attempt began cannot be taken back: readers that
show chunks as they come watch for the attempt to change (the SSE helper
sends an ``attempt`` event then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..journal._queries import latest_attempts

if TYPE_CHECKING:
    from ..journal._journal import Journal
    from ._chunks import Chunk
    from ._hub import StreamReader

__all__ = ["LatestAttempts"]


class LatestAttempts:
    """An async iterator of a stream's chunks, superseded attempts left out."""

    def __init__(self, reader: StreamReader, journal: Journal) -> None:
        self._reader = reader
        self._journal = journal
        self._newest: dict[str, int] | None = None

    @property
    def position(self) -> int:
        return self._reader.position

    def __aiter__(self) -> LatestAttempts:
        return self

    async def __anext__(self) -> Chunk:
        reader = self._reader
        if self._newest is None:
            run_id, name = reader.run_id, reader.name
            self._newest = await self._journal.read(lambda c: latest_attempts(c, run_id, name))
        while True:
            chunk = await anext(reader)
            if chunk.writer is None or chunk.attempt is None:
                return chunk
            newest = self._newest.get(chunk.writer, 0)
            if chunk.attempt < newest:
                continue
            self._newest[chunk.writer] = chunk.attempt
            return chunk

    async def aclose(self) -> None:
        await self._reader.aclose()
