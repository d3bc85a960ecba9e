"""Every error runwright raises, in one tree.

    Exception
    ├── FatalError             raised by a step: fail now, never retry
    ├── RetryableError         raised by a step: retry after ``retry_after`` seconds
    └── RunwrightError
        ├── NotInWorkflowError     rw.sleep / rw.gather / ... called outside a workflow body
        ├── NotInStepError         a stream written or read outside a step
        ├── UnknownWorkflowError   a run names a workflow this process has not registered
        ├── NonDeterminismError    replayed code asked for something the journal did not record
        ├── StepFailed             a step failed for good and its exception type cannot be rebuilt
        ├── CodecError
        │   ├── EncodeError        a value cannot be encoded (names the step and the argument)
        │   └── DecodeError        stored bytes cannot be decoded
        ├── JournalError
        │   ├── NotARunwrightDatabase  the file is not a runwright journal
        │   ├── JournalCorrupt         a runwright journal whose file is damaged
        │   │   └── PayloadFileCorrupt a large payload's file is missing or damaged
        │   │                          (SQLite; also a DecodeError)
        │   ├── JournalReadOnly        the journal can be read but not written
        │   ├── JournalFull            the disk (or the database's size limit) is full
        │   ├── DatabaseLocked         another process held the database past the busy timeout
        │   ├── JournalUnavailable     the database server cannot be reached (after retrying)
        │   └── SchemaVersionError     the journal was written by a newer runwright
        ├── RunNotFound            no run with that id
        ├── ScheduleNotFound       no schedule with that name in the journal
        ├── RunFailed              the run's workflow raised; carries the recorded error
        ├── RunCancelled           the run was cancelled
        ├── RunTimeout             ``run.result(timeout=...)`` gave up waiting (the run goes on)
        ├── Cancelled              raised inside a workflow when its run is cancelled
        ├── HookConflict           a live hook already holds that token (raised in the workflow)
        ├── HookNotFound           no live hook has that token (raised by resume_hook)
        ├── StreamClosed           a write to a stream that was closed, or whose run ended
        └── ChunkTooLarge          a chunk is over ``rw.MAX_CHUNK_BYTES`` (also a ValueError)

Errors carry the context a caller needs as attributes (``run_id``, ``step``,
``position``, ...) and say in their message what to do next.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "ChunkTooLarge",
    "CodecError",
    "DatabaseLocked",
    "DecodeError",
    "EncodeError",
    "EventNotSet",
    "EventTimeout",
    "FatalError",
    "HookConflict",
    "HookNotFound",
    "JournalCorrupt",
    "JournalError",
    "JournalFull",
    "JournalReadOnly",
    "JournalUnavailable",
    "KeyConflict",
    "NonDeterminismError",
    "NotARunwrightDatabase",
    "NotInStepError",
    "NotInWorkflowError",
    "PayloadFileCorrupt",
    "ReceiveTimeout",
    "RetryableError",
    "RunCancelled",
    "RunEnded",
    "RunFailed",
    "RunNotFound",
    "RunStuck",
    "RunTimeout",
    "RunwrightError",
    "ScheduleNotFound",
    "SchemaVersionError",
    "StepFailed",
    "StepTimeout",
    "StreamClosed",
    "StreamInterrupted",
    "UnknownWorkflowError",
]


class FatalError(Exception):
    """Raise from a step to fail it at once: it is never retried."""


class RetryableError(Exception):
    """Raise from a step to have it retried after ``retry_after`` seconds.

    With ``retry_after=None`` the step's own backoff decides the delay.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_retryable, (str(self), self.retry_after))


def _rebuild_retryable(message: str, retry_after: float | None) -> RetryableError:
    return RetryableError(message, retry_after=retry_after)


class RunwrightError(Exception):
    """Base of every error runwright itself raises."""


class NotInWorkflowError(RunwrightError):
    """A workflow-only operation was used outside a running workflow body."""

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"{operation} can only be awaited inside a workflow body; "
            "decorate the function with @rw.workflow and start it with runtime.start()"
        )
        self.operation = operation


class NotInStepError(RunwrightError):
    """A step-only operation (writing or reading a stream) was used outside a step."""

    def __init__(self, operation: str, why: str) -> None:
        super().__init__(f"{operation} can only be used inside a step: {why}")
        self.operation = operation


class UnknownWorkflowError(RunwrightError):
    """A run names a workflow that is not registered in this process."""

    def __init__(self, name: str, run_id: str | None = None) -> None:
        where = f" (run {run_id})" if run_id else ""
        super().__init__(
            f"no workflow named {name!r} is registered{where}; import the module that "
            "defines it before starting the runtime. The run is left as it is in the journal."
        )
        self.name = name
        self.run_id = run_id


class NonDeterminismError(RunwrightError):
    """Replayed workflow code issued a command that differs from the journal.

    Two things cause it: the workflow's code changed in a way that breaks
    replay, or its body is not deterministic (it reads the clock, draws
    random numbers or does I/O outside steps). The journal is left untouched:
    the run stays RUNNING and continues once its code replays.
    """

    def __init__(self, run_id: str, position: int, recorded: str, requested: str) -> None:
        super().__init__(
            f"run {run_id}: at position {position} the journal recorded {recorded} but the "
            f"workflow code now asks for {requested}. Either the workflow's code changed "
            "since the run got there (run the code it started with, or branch with "
            "rw.patched(); `runwright replay` finds such runs before a deploy), or the "
            "workflow body is not deterministic: it must take the time from rw.now(), "
            "random values from rw.random() or rw.uuid4(), and do any I/O (clocks, "
            "network, files, environment) inside a step. The journal is unchanged; the run "
            "continues once its code replays."
        )
        self.run_id = run_id
        self.position = position
        self.recorded = recorded
        self.requested = requested


class StepFailed(RunwrightError):
    """A step failed for good and its exception could not be rebuilt as its own type."""

    def __init__(self, step: str, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"step {step!r} failed with {type_name}: {message}")
        self.step = step
        self.type_name = type_name
        self.message = message
        self.traceback = traceback


class StepTimeout(RunwrightError, TimeoutError):
    """An attempt of a step ran past its ``timeout=``: it was cancelled and counts as
    failed (retried like any other failure while retries are left)."""

    def __init__(self, step: str, timeout: float, attempt: int) -> None:
        super().__init__(f"step {step!r} attempt {attempt} timed out after {timeout:g}s")
        self.step = step
        self.timeout = timeout
        self.attempt = attempt


class CodecError(RunwrightError):
    """A value could not be encoded, or stored bytes could not be decoded."""


class EncodeError(CodecError, TypeError):
    """A value cannot be encoded by the codec.

    ``path`` locates the bad value inside the encoded object (``"[2]['when']"``);
    ``step`` and ``argument`` name the call site when the value was an argument.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        step: str | None = None,
        argument: str | None = None,
    ) -> None:
        self.reason = message
        self.path = path
        self.step = step
        self.argument = argument
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.step is not None:
            where.append(f"step {self.step!r}")
        if self.argument is not None:
            where.append(f"argument {self.argument!r}")
        if self.path:
            where.append(f"at {self.path}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason

    def at(self, *, step: str | None = None, argument: str | None = None) -> EncodeError:
        """The same error, located at a step call site."""
        return EncodeError(
            self.reason,
            path=self.path,
            step=step if step is not None else self.step,
            argument=argument if argument is not None else self.argument,
        )


class DecodeError(CodecError):
    """Stored bytes cannot be decoded (corrupt, or written by an unknown format)."""


class JournalError(RunwrightError):
    """The journal database cannot be used."""


class NotARunwrightDatabase(JournalError):
    """The file exists but is not a runwright journal."""

    def __init__(
        self,
        path: str,
        detail: str,
        advice: str = "point the runtime at a new path or at a file runwright created",
    ) -> None:
        super().__init__(f"{path} is not a runwright journal ({detail}); {advice}")
        self.path = path


class JournalCorrupt(JournalError):
    """The file is a runwright journal, but damaged (truncated, overwritten, a bad disk)."""

    def __init__(self, path: str, detail: str, check: str = "") -> None:
        says = f"; PRAGMA integrity_check says: {check}" if check else ""
        super().__init__(
            f"{path} is a runwright journal but its file is malformed ({detail}); "
            f"restore it from a backup{says}"
        )
        self.path = path
        self.check = check


class PayloadFileCorrupt(JournalCorrupt, DecodeError):
    """The file that holds a large payload of an SQLite journal (in the journal's
    ``-blobs`` directory) is missing, of the wrong size or damaged. Also a
    :class:`DecodeError`: a run that needs the payload is stuck, with this as its
    problem, until the file is restored."""

    def __init__(self, path: str, file: str, detail: str) -> None:
        RunwrightError.__init__(
            self,
            f"{path}: a payload of this journal cannot be read from {file}: it {detail}. "
            "Restore the journal and its -blobs directory together from a backup",
        )
        self.path = path
        self.file = file
        self.check = ""


class JournalReadOnly(JournalError):
    """The journal can be read but not written: ``cause`` says why (a read-only file,
    directory or file system). Reading commands (``runwright runs list``) still work."""

    def __init__(self, path: str, cause: str) -> None:
        super().__init__(
            f"{path} cannot be written: {cause}. Make it writable for this process's user, "
            "or read it with `runwright runs list --db PATH`"
        )
        self.path = path
        self.cause = cause


class JournalFull(JournalError):
    """A write failed because the disk holding the journal (or the database's own size
    limit) is full. Nothing of that write was kept; runwright retries its own writes
    once space is freed."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"{path}: the disk is full ({detail}); nothing was written. Free space on the "
            "disk that holds the journal: runs resume where they stopped once it has room"
        )
        self.path = path


class DatabaseLocked(JournalError):
    """Another process held the database past the busy timeout."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        super().__init__(
            f"{path} stayed locked by another process for more than {busy_timeout:g}s; "
            "nothing was written. Retry, or raise busy_timeout on the Runtime."
        )
        self.path = path
        self.busy_timeout = busy_timeout


class JournalUnavailable(JournalError):
    """The journal's database server could not be reached, or the connection was lost
    during a write (whose outcome the caller cannot know; runwright's own writes are
    safe to repeat)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"{path}: the database is unavailable ({detail}); runwright reconnects on its "
            "own. Retry, or raise reconnect_timeout on the Runtime to wait longer."
        )
        self.path = path


class SchemaVersionError(JournalError):
    """The journal was written by a newer runwright than this one."""


class RunNotFound(RunwrightError):
    """No run with that id (or, with ``key=True``, holding that key) is in the journal."""

    def __init__(self, run_id: str, *, key: bool = False) -> None:
        what = f"holding the key {run_id!r}" if key else f"with id {run_id!r}"
        super().__init__(f"no run {what} in this journal")
        self.run_id = run_id


class ScheduleNotFound(RunwrightError, LookupError):
    """No schedule of that name is in the journal (a schedule is recorded there when a
    runtime that runs steps opens in a process that declared it)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no schedule named {name!r} in this journal (`runwright schedules list` shows "
            "those it has; a schedule is recorded when a runtime that runs steps opens in a "
            "process that declares it)"
        )
        self.name = name


class RunFailed(RunwrightError):
    """The run's workflow raised; ``error`` is the recorded exception (rebuilt if possible)."""

    def __init__(self, run_id: str, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"run {run_id} failed with {type_name}: {message}")
        self.run_id = run_id
        self.type_name = type_name
        self.message = message
        self.traceback = traceback


class RunCancelled(RunwrightError):
    """The run was cancelled before it finished; ``reason`` says why if the journal does
    ("timed out" when its ``timeout=`` passed)."""

    def __init__(self, run_id: str, reason: str | None = None) -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(f"run {run_id} was cancelled{because}")
        self.run_id = run_id
        self.reason = reason


class RunTimeout(RunwrightError, TimeoutError):
    """Waiting for a run's result timed out; the run itself goes on.

    ``problem`` is why the run cannot advance, if it cannot (then waiting
    longer will not help until it is fixed).
    """

    def __init__(self, run_id: str, timeout: float, problem: str | None = None) -> None:
        message = f"run {run_id} did not finish within {timeout:g}s (it goes on)"
        if problem:
            message += f"; it cannot advance: {problem}"
        super().__init__(message)
        self.run_id = run_id
        self.timeout = timeout
        self.problem = problem


class RunStuck(RunwrightError):
    """The run cannot advance: its code does not replay its journal, its workflow is
    not registered, or a payload cannot be decoded. Raised by
    ``result(raise_on_problem=True)``; the run stays RUNNING until it is fixed."""

    def __init__(self, run_id: str, kind: str, message: str) -> None:
        super().__init__(f"run {run_id} cannot advance ({kind}): {message}")
        self.run_id = run_id
        self.kind = kind
        self.message = message


class HookConflict(RunwrightError):
    """A live hook already holds this token; raised where the workflow awaits its hook."""

    def __init__(self, token: str) -> None:
        super().__init__(
            f"a live hook already holds the token {token!r}; tokens are unique among live "
            "hooks until the hook is disposed or its run ends"
        )
        self.token = token


class KeyConflict(RunwrightError):
    """``start(..., key=k)`` where *k* already names a run of another workflow, or one
    started with other arguments: a key names one run, whatever retries it."""

    def __init__(self, key: str, run_id: str, holder: str) -> None:
        super().__init__(
            f"the key {key!r} already names run {run_id}, {holder}; a key names one run "
            "(a start with the same workflow and arguments returns it): use another key, "
            "or look the run up with runtime.get_run()"
        )
        self.key = key
        self.run_id = run_id


class ReceiveTimeout(RunwrightError, TimeoutError):
    """``rw.receive(topic, timeout=)`` saw no message in time (a later one waits for the
    next receive)."""

    def __init__(self, topic: str, timeout: float) -> None:
        super().__init__(f"no message on topic {topic!r} within {timeout:g}s")
        self.topic = topic
        self.timeout = timeout


class EventNotSet(RunwrightError, LookupError):
    """``run.get_event(key)``: the run ended without publishing *key*, or, with a timeout,
    had not published it in time (then it is also a ``TimeoutError``: see EventTimeout)."""

    def __init__(self, run_id: str, key: str, why: str) -> None:
        super().__init__(f"run {run_id} {why}")
        self.run_id = run_id
        self.key = key


class EventTimeout(EventNotSet, TimeoutError):
    """``run.get_event(key, timeout=)`` saw no event *key* in time (the run goes on)."""


class RunEnded(RunwrightError):
    """A message was sent to a run that has ended: nothing would ever receive it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has ended; a message to it would never be received")
        self.run_id = run_id


class HookNotFound(RunwrightError):
    """No live hook has this token (never created, disposed, or its run ended)."""

    def __init__(self, token: str) -> None:
        super().__init__(f"no live hook has the token {token!r}; nothing was delivered")
        self.token = token


class Cancelled(RunwrightError):
    """Raised inside a workflow body, at the await it was blocked on, when its run is cancelled.

    The body may catch it (or use ``finally``) to run cleanup steps; whatever
    it does, the run then ends CANCELLED.
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} was cancelled")
        self.run_id = run_id


class StreamClosed(RunwrightError):
    """A write to a stream that was closed, or whose run has ended. Nothing was written."""

    def __init__(self, run_id: str, name: str, why: str) -> None:
        super().__init__(
            f"stream {name!r} of run {run_id} {why}; nothing more can be written to it"
        )
        self.run_id = run_id
        self.name = name


class StreamInterrupted(RunwrightError):
    """A stream reader stopped because its runtime is shutting down; the stream goes on.
    Read on from ``position`` (the next chunk's index) through another runtime."""

    def __init__(self, run_id: str, name: str, position: int) -> None:
        super().__init__(
            f"reading stream {name!r} of run {run_id} stopped at chunk {position}: the "
            "runtime is shutting down; read on from there through another runtime"
        )
        self.run_id = run_id
        self.name = name
        self.position = position


class ChunkTooLarge(RunwrightError, ValueError):
    """One chunk is larger than the limit; split it into several writes."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(
            f"a chunk of {size} bytes was written to stream {name!r}; one chunk may hold at "
            f"most {limit} bytes (rw.MAX_CHUNK_BYTES): split it into several writes"
        )
        self.name = name
        self.size = size
        self.limit = limit
