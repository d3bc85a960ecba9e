"""Named streams of a run, as steps and workflows use them.

A step opens ``rw.writable(name)`` and writes chunks to it; readers anywhere
get them in order while the run is still going. A workflow body may open a
writable too, but only to hand it to steps as an argument: writing is a side
effect, and a workflow body is replayed, so it writes nothing itself.

Choices, where a user could expect otherwise:

- Leaving ``async with rw.writable(...)`` flushes; it does not close. A
  stream is written by whichever steps open it (one after another, or the
  new attempt of a retried step), so it stays open until a step calls
  :meth:`Writable.close` or the run ends; either ends its readers.
- A step's outcome is journaled only after everything it wrote is durable.
- Chunks of a failed attempt stay in the stream, and the new attempt's
  chunks follow them: a reader that streams tokens to a screen has already
  shown them, and holding every chunk back until the step succeeds would
  defeat streaming. Each :class:`Chunk` names its ``writer`` step and
  ``attempt``, so a reader that wants only the final output drops a step's
  chunks when it sees a newer attempt of that step begin.
"""

from __future__ import annotations

from types import TracebackType

import attrs

from ._context import current_step
from ._exceptions import NotInStepError, NotInWorkflowError
from .actors._interpreter import current_interpreter
from .streams._hub import AttemptStreams, StreamReader, current_attempt

__all__ = ["DEFAULT_STREAM", "Writable", "check_name", "readable", "writable"]

DEFAULT_STREAM = "default"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a stream name is a non-empty str, got {name!r}")
    return name


@attrs.frozen
class Writable:
    """A run's named stream, open for writing from steps.

    Safe to pass from a workflow to a step (it is encoded as the run id and
    the name). ``write``, ``flush`` and ``close`` must be called from a step.
    """

    run_id: str
    name: str

    def _attempt(self, operation: str) -> AttemptStreams:
        attempt = current_attempt.get()
        if attempt is None:
            why = (
                "a workflow body is replayed, so it hands the writable to a step"
                if current_interpreter.get() is not None
                else "streams are written by the steps of a run"
            )
            raise NotInStepError(f"Writable.{operation}()", why)
        return attempt

    async def write(self, data: object) -> None:
        """Append one chunk: ``str``, ``bytes`` or any value the codec encodes.

        Returns once the chunk is queued; it becomes durable (and visible to
        readers) within a group commit. Waits while this process holds more
        than ``MAX_PENDING_BYTES`` of the stream not yet durable. Raises
        :class:`rw.ChunkTooLarge` above ``rw.MAX_CHUNK_BYTES``,
        :class:`rw.EncodeError` if the codec refuses the value and
        :class:`rw.StreamClosed` once the stream is closed.
        """
        attempt = self._attempt("write")
        await attempt.hub.write(attempt, self.run_id, self.name, data)

    async def flush(self) -> None:
        """Return once every chunk written before the call is durable."""
        attempt = self._attempt("flush")
        await attempt.hub.flush(attempt, self.run_id, self.name)

    async def close(self) -> None:
        """Flush, then close the stream for good: its readers end after its last chunk."""
        attempt = self._attempt("close")
        await attempt.hub.close(attempt, self.run_id, self.name)

    async def __aenter__(self) -> Writable:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Flush on the way out; closing is explicit (see the module docstring).
        if current_attempt.get() is not None:
            await self.flush()


def writable(name: str = DEFAULT_STREAM) -> Writable:
    """The run's stream called *name*, to write to from a step (or to hand to one)."""
    check_name(name)
    info = current_step.get()
    if info is not None:
        return Writable(info.run_id, name)
    interpreter = current_interpreter.get()
    if interpreter is None:
        raise NotInWorkflowError("rw.writable()")
    run_id: str = interpreter.info.run_id
    return Writable(run_id, name)


def readable(
    name: str = DEFAULT_STREAM, *, start: int = 0, run_id: str | None = None
) -> StreamReader:
    """Read a stream of this run (or of *run_id*) from inside a step.

    The same reader ``run.stream()`` gives: in order from *start*, ending when
    the stream is closed or its run ends. Reading a stream of its own run, a
    step waits until a writer closes it (its run cannot end meanwhile), or
    stops reading when it has what it needs. A workflow body cannot read
    streams (what it reads would differ on replay); it hands that to a step.
    """
    check_name(name)
    attempt = current_attempt.get()
    info = current_step.get()
    if attempt is None or info is None:
        raise NotInStepError("rw.readable()", "a workflow body hands stream reading to a step")
    return attempt.hub.reader(run_id if run_id is not None else info.run_id, name, start)
