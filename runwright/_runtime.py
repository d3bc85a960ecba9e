"""The runtime: what an application opens to start runs and wait for them."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, overload

import anyio
import anyio.abc
import attrs

from ._clock import Clock, SystemClock
from ._definitions import WorkflowDefinition, duration
from ._exceptions import (
    EventNotSet,
    EventTimeout,
    JournalError,
    RunCancelled,
    RunFailed,
    RunNotFound,
)
from ._payload_limit import DEFAULT_MAX_PAYLOAD_BYTES, LimitedCodec, check_limit
from ._retention import ENDED, prune, prune_forever
from ._scheduler import ScheduleInfo, list_schedules, pause, start_schedules, trigger
from ._streaming import DEFAULT_STREAM, check_name
from ._tracing import open_tracing
from .actors._messages import RunEnd
from .actors._supervisor import Supervisor
from .journal import Journal, describe, open_journal
from .journal._codec import Codec, DefaultCodec, rebuild_exception
from .journal._queries import (
    list_runs,
    problem_of,
    problems_of,
    published,
    run_row,
    run_status,
)
from .journal._rows import RunRow
from .journal._states import RunStatus
from .journal.sqlite import Synchronous
from .streams._chunks import StreamInfo
from .streams._hub import StreamReader
from .streams._latest import LatestAttempts

__all__ = ["RunHandle", "RunProblem", "RunSummary", "Runtime", "run"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_DB = "runwright.db"
#: Seconds past ``shutdown_grace`` that closing a runtime gives its last writes.
_LAST_WRITES = 0.9


@attrs.frozen
class RunProblem:
    """Why a run cannot advance, since when: ``kind`` is ``non_determinism`` (its code
    does not replay its journal), ``unknown_workflow`` or ``undecodable_payload``."""

    kind: str
    message: str
    since: dt.datetime

    @classmethod
    def from_row(cls, row: tuple[str, str, float] | None) -> RunProblem | None:
        return None if row is None else cls(row[0], row[1], _datetime(row[2]))


@attrs.frozen
class RunSummary:
    """One run as ``list_runs`` and ``runwright runs list`` show it.

    ``problem`` is set while the run cannot advance (its status stays RUNNING).
    """

    id: str
    workflow: str
    status: RunStatus
    key: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    error_type: str | None
    error_message: str | None
    problem: RunProblem | None = None

    @classmethod
    def from_row(cls, row: RunRow, problem: tuple[str, str, float] | None = None) -> RunSummary:
        return cls(
            row.run_id,
            row.workflow,
            RunStatus(row.status),
            row.key,
            _datetime(row.created_at),
            None if row.finished_at is None else _datetime(row.finished_at),
            row.error_type,
            row.error_message,
            RunProblem.from_row(problem),
        )


def _journal_error_in(exc: BaseException) -> JournalError | None:
    """The journal error *exc* is or (as a group of errors) holds, if any."""
    if isinstance(exc, JournalError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _journal_error_in(inner)
            if found is not None:
                return found
    return None


def _datetime(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


class RunHandle(Generic[R]):
    """A run in the journal. Cheap to make; every method reads or writes the journal."""

    def __init__(self, runtime: Runtime, run_id: str) -> None:
        self._runtime = runtime
        self.id = run_id

    def __repr__(self) -> str:
        return f"<RunHandle {self.id}>"

    async def status(self) -> RunStatus:
        status = await self._runtime._journal_or_fail().read(lambda c: run_status(c, self.id))
        if status is None:
            raise RunNotFound(self.id)
        return RunStatus(status)

    async def summary(self) -> RunSummary:
        """The run's status, times, error, and why it cannot advance if it cannot."""
        run_id = self.id
        row, problem = await self._runtime._journal_or_fail().read(
            lambda c: (run_row(c, run_id, with_args=False), problem_of(c, run_id))
        )
        if row is None:
            raise RunNotFound(self.id)
        return RunSummary.from_row(row, problem)

    async def result(self, timeout: float | None = None, *, raise_on_problem: bool = False) -> R:
        """The workflow's return value, once the run ends.

        Raises :class:`RunFailed` (its ``__cause__`` is the rebuilt error where
        possible), :class:`RunCancelled`, or :class:`RunTimeout` after *timeout*
        seconds (the run goes on; the message says why if it cannot advance).
        With *raise_on_problem*, a run that cannot advance raises
        :class:`RunStuck` as soon as that is recorded (useful in tests).
        """
        runtime = self._runtime
        end = await runtime._supervisor_or_fail().wait(
            self.id, timeout, raise_on_problem=raise_on_problem
        )
        return runtime._unpack(self.id, end)  # type: ignore[no-any-return]

    async def send(self, topic: str, payload: Any = None) -> None:
        """Send the run a message on *topic*; its workflow gets it with ``rw.receive(topic)``.

        Messages are journaled at once and wait for the workflow, in order,
        however early they are sent. Raises :class:`rw.RunEnded` if the run
        has ended, :class:`rw.EncodeError` if *payload* cannot be encoded.
        """
        await self._runtime.send(self.id, topic, payload)

    async def get_event(self, key: str, timeout: float | None = None) -> Any:
        """The latest value the run published under *key* (``rw.set_event``), waiting for
        the first one if need be.

        Raises :class:`rw.EventNotSet` if the run ended without publishing it, and
        :class:`rw.EventTimeout` (a ``TimeoutError``) after *timeout* seconds.
        """
        runtime, run_id = self._runtime, self.id
        journal = runtime._journal_or_fail()
        delay = 0.005
        try:
            with anyio.fail_after(timeout):
                while True:
                    status, value = await journal.read(lambda c: published(c, run_id, key))
                    if status is None:
                        raise RunNotFound(run_id)
                    if value is not None:
                        return runtime.codec.decode(value)
                    if status in ("completed", "failed", "cancelled"):
                        why = f"ended ({status}) without publishing an event {key!r}"
                        raise EventNotSet(run_id, key, why)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 0.2)
        except TimeoutError:
            why = f"published no event {key!r} within {timeout:g}s"
            raise EventTimeout(run_id, key, why) from None

    async def cancel(self) -> None:
        """Cancel the run if it is still going; running steps are cancelled. No-op once ended."""
        await self._runtime._supervisor_or_fail().cancel(self.id)

    def stream(
        self, name: str = DEFAULT_STREAM, *, start: int = 0, skip_superseded: bool = False
    ) -> StreamReader | LatestAttempts:
        """Read the run's stream *name*: an async iterator of :class:`rw.Chunk`.

        Chunks come in write order from index *start* (a negative *start*
        counts back from the stream's length when reading begins), with no
        gap and no duplicate, whether the run is still writing or long done.
        Iteration ends when the stream is closed or the run ends. Readers in
        the writing process get chunks from memory as soon as they are
        durable; readers elsewhere are woken by the journal's watcher.

        With *skip_superseded*, chunks of a step's attempt that a later attempt
        of the same step is known to have replaced are left out (what a failed
        attempt wrote before its retry): all of them when the retry had begun
        before reading started, and those that come after the retry's first
        chunk otherwise.
        """
        check_name(name)
        supervisor = self._runtime._supervisor_or_fail()
        reader = supervisor.streams.reader(self.id, name, start)
        if skip_superseded:
            return LatestAttempts(reader, supervisor.journal)
        return reader

    async def stream_info(self, name: str = DEFAULT_STREAM) -> StreamInfo:
        """The stream's chunk and byte counts, and whether it is closed (or its run ended)."""
        return await self._runtime._supervisor_or_fail().streams.info(self.id, name)

    async def streams(self) -> list[StreamInfo]:
        """Every stream the run has written to, oldest first."""
        return await self._runtime._supervisor_or_fail().streams.all_of(self.id)


class Runtime:
    """An open journal plus the supervisor that drives its runs in this process.

    ``db`` is an SQLite file path or a PostgreSQL URL
    (``postgresql://user@host/dbname``, optionally ``?schema=name``); it
    defaults to ``$RUNWRIGHT_DB``, else ``./runwright.db``.
    ``synchronous`` is SQLite's setting: FULL (the default) survives power
    loss; NORMAL survives process crashes but may lose the last commits on
    power loss, and commits several times faster. On PostgreSQL durability is
    the server's ``synchronous_commit``. ``schema`` names the PostgreSQL
    schema that holds the journal (default ``runwright``); ``migrate=False``
    refuses to create or upgrade it (``runwright db migrate`` does that).
    ``reconnect_timeout`` is how long a lost PostgreSQL server is waited for
    before writes, and ``start()``, fail with :class:`rw.JournalUnavailable`.
    ``host_id`` names this process's host in run leases (default: the host
    name); one machine can play several hosts with distinct ids. ``cache_runs`` bounds hot
    interpreters (0: every step resumes by replay). ``max_concurrent_steps``
    bounds steps running at once. ``execute=False`` makes a client that starts
    runs and reads results but runs no steps. ``retention`` (seconds or a
    timedelta) prunes, in the background, runs that ended longer ago than
    that (see :meth:`prune`). ``max_payload_bytes`` (default 64 MiB; None:
    no limit) bounds every value the runtime journals once encoded (run and
    step arguments, results, hook payloads, messages, published events): a
    larger one raises :class:`rw.EncodeError` where it was given, before
    anything is written. ``tracing`` turns OpenTelemetry traces of runs on or off
    (``runwright[otel]``): by default they are on if a tracer provider is configured
    when the runtime opens; True uses the global provider, and a TracerProvider
    may be passed instead (see README, "OpenTelemetry").
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        *,
        synchronous: Synchronous = "FULL",
        cache_runs: int = 1000,
        max_concurrent_steps: int = 100,
        codec: Codec | None = None,
        clock: Clock | None = None,
        busy_timeout: float = 5.0,
        lease_seconds: float = 30.0,
        shutdown_grace: float = 10.0,
        hydration_cache_bytes: int = 64 * 1024 * 1024,
        execute: bool = True,
        schema: str | None = None,
        migrate: bool = True,
        reconnect_timeout: float = 30.0,
        host_id: str | None = None,
        retention: float | dt.timedelta | None = None,
        max_payload_bytes: int | None = DEFAULT_MAX_PAYLOAD_BYTES,
        tracing: object = None,
    ) -> None:
        target = os.fspath(db) if db is not None else os.environ.get("RUNWRIGHT_DB", DEFAULT_DB)
        self._target = target
        #: The journal as messages name it (a URL never shows its password).
        self.path = describe(target, schema)
        self.schema = schema
        self.migrate = migrate
        self.reconnect_timeout = reconnect_timeout
        self.synchronous = synchronous
        self.codec: Codec = codec if codec is not None else DefaultCodec()
        #: The most bytes one encoded value may take in the journal (None: no limit).
        self.max_payload_bytes = check_limit(max_payload_bytes)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._options = {
            "cache_runs": cache_runs,
            "max_concurrent_steps": max_concurrent_steps,
            "lease_seconds": lease_seconds,
            "hydration_bytes": hydration_cache_bytes,
            "execute": execute,
            "host_id": host_id,
        }
        if cache_runs < 0:
            raise ValueError(f"cache_runs must be >= 0, got {cache_runs}")
        self.busy_timeout = busy_timeout
        self.shutdown_grace = shutdown_grace
        #: Ended runs older than this many seconds are pruned in the background.
        self.retention = None if retention is None else duration(retention, "retention")
        self._tracing_setting = tracing
        self._pruner: anyio.CancelScope | None = None
        self._journal: Journal | None = None
        self._supervisor: Supervisor | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    @property
    def journal(self) -> Journal:
        return self._journal_or_fail()

    @property
    def supervisor(self) -> Supervisor:
        return self._supervisor_or_fail()

    def __repr__(self) -> str:
        return f"<Runtime {self.path}>"

    def _journal_or_fail(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("the runtime is not open; use it as `async with Runtime(...)`")
        return self._journal

    def _supervisor_or_fail(self) -> Supervisor:
        if self._supervisor is None:
            raise RuntimeError("the runtime is not open; use it as `async with Runtime(...)`")
        return self._supervisor

    async def __aenter__(self) -> Runtime:
        if self._journal is not None:
            raise RuntimeError("this Runtime is already open")
        tracing = open_tracing(self._tracing_setting)  # decided once, here
        journal = await open_journal(
            self._target,
            synchronous=self.synchronous,
            busy_timeout=self.busy_timeout,
            schema=self.schema,
            migrate=self.migrate,
            reconnect_timeout=self.reconnect_timeout,
        )
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            codec = self.codec
            if self.max_payload_bytes is not None:
                codec = LimitedCodec(codec, self.max_payload_bytes)
            supervisor = Supervisor(
                journal,
                codec,
                self.clock,
                **self._options,  # type: ignore[arg-type]
                tracing=tracing,
            )
            journal.watch(supervisor.on_foreign_events)
            await tg.start(journal.serve)
            await tg.start(supervisor.serve)
            if self._options["execute"]:
                await start_schedules(supervisor, self.clock)
            if self.retention is not None:
                self._pruner = anyio.CancelScope()
                tg.start_soon(self._prune_forever, journal, self.retention)
        except BaseException as exc:
            journal.stop_writing()
            tg.cancel_scope.cancel()
            try:
                await tg.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                # What the journal refused, not the task group that met it.
                fault = _journal_error_in(group)
                if fault is None:
                    raise
                raise fault from None
            finally:
                await journal.close()
            fault = _journal_error_in(exc)
            if fault is not None and fault is not exc:
                raise fault from None
            raise
        self._journal, self._supervisor, self._tg = journal, supervisor, tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        journal, supervisor, tg = self._journal, self._supervisor, self._tg
        assert journal is not None
        assert supervisor is not None
        assert tg is not None
        if self._pruner is not None:
            self._pruner.cancel()
        supervisor.streams.shut()  # readers (an open SSE response) must not hold up the exit
        # Shutdown ends within shutdown_grace and a second, whatever the journal's state:
        # the grace for running steps, the rest for the last writes.
        last_writes = time.monotonic() + self.shutdown_grace + _LAST_WRITES
        try:
            with anyio.CancelScope(shield=True):
                try:
                    await supervisor.stop(self.shutdown_grace)
                    with anyio.move_on_after(max(0.0, last_writes - time.monotonic()) / 2):
                        await supervisor.release()
                finally:
                    # Else the writer, and so the exit, never ends.
                    journal.stop_writing(within=max(0.0, last_writes - time.monotonic()))
        finally:
            try:
                # The body's own exception propagates unwrapped: everything the
                # group runs has been stopped above, so it exits cleanly.
                await tg.__aexit__(None, None, None)
            finally:
                self._journal = self._supervisor = self._tg = None
                with anyio.CancelScope(shield=True):
                    await journal.close()
        return None

    async def start(
        self,
        workflow: WorkflowDefinition[P, R],
        /,
        *args: Any,
        key: str | None = None,
        timeout: float | dt.timedelta | None = None,
        **kwargs: Any,
    ) -> RunHandle[R]:
        """Start a run of *workflow*; returns once it is journaled, before its first step runs.

        With *key*, a second start with the same key returns the first run and
        starts nothing. *timeout* (seconds or a timedelta; default the
        workflow's own ``timeout=``) is a durable deadline: when it passes, the
        run is cancelled as by ``run.cancel()`` and ends CANCELLED, "timed out".
        """
        if not isinstance(workflow, WorkflowDefinition):
            raise TypeError(f"runtime.start() needs an @rw.workflow, got {workflow!r}")
        seconds = workflow.timeout if timeout is None else duration(timeout, "timeout")
        run_id = await self._supervisor_or_fail().start_run(
            workflow, args, kwargs, key, timeout=seconds
        )
        return RunHandle(self, run_id)

    def interrupt_streams(self) -> None:
        """End every stream reader of this runtime now (they raise :class:`rw.StreamInterrupted`,
        and open SSE responses end without their ``end`` event, so clients reconnect).

        Closing the runtime does this first; call it yourself when the server
        begins to shut down, if it waits for open responses before the runtime
        is closed (a hypercorn ``shutdown_trigger``, for one).
        """
        self._supervisor_or_fail().streams.shut()

    async def prune(
        self,
        older_than: float | dt.timedelta,
        *,
        status: RunStatus | str | list[RunStatus | str] | None = None,
    ) -> int:
        """Delete runs that ended more than *older_than* ago (seconds or a timedelta), with
        their events, steps, waits, hooks and streams; return how many.

        *status* limits it to some ended statuses (default: completed, failed and
        cancelled). Runs still going are never touched, nor a run whose child
        or parent is still going. Deletes are small transactions through the
        journal's writer, so runs being written are not held up.
        """
        seconds = duration(older_than, "older_than")
        wanted = [status] if isinstance(status, RunStatus | str) else status
        statuses = ENDED if wanted is None else [RunStatus(s).value for s in wanted]
        return await prune(self._journal_or_fail(), self.clock.now() - seconds, statuses)

    async def _prune_forever(self, journal: Journal, retention: float) -> None:
        every = min(max(retention / 100, 60.0), 3600.0)
        assert self._pruner is not None
        with self._pruner:
            await prune_forever(journal, self.clock, retention, every)

    async def send(self, run_id: str, topic: str, payload: Any = None) -> None:
        """Send run *run_id* a message on *topic* (see :meth:`RunHandle.send`)."""
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"a topic must be a non-empty string, got {topic!r}")
        await self._supervisor_or_fail().send(run_id, topic, payload)

    async def resume_hook(self, token: str, payload: Any = None) -> None:
        """Deliver *payload* to the live hook holding *token*, whichever process drives its run.

        Raises :class:`rw.HookNotFound` if no live hook has the token, and
        :class:`rw.EncodeError` if the payload cannot be encoded (nothing is
        written then).
        """
        await self._supervisor_or_fail().resume_hook(token, payload)

    async def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule in the journal (declared by any process), by name."""
        return await list_schedules(self._journal_or_fail(), self.clock.now())

    async def pause_schedule(self, name: str) -> None:
        """Stop schedule *name* firing, in every process, until it is resumed (runs
        already started go on). Raises :class:`rw.ScheduleNotFound`."""
        await pause(self._journal_or_fail(), name, True, self.clock.now())

    async def resume_schedule(self, name: str) -> None:
        """Let a paused schedule fire again from its next tick: the ticks it missed while
        paused are skipped. Raises :class:`rw.ScheduleNotFound`."""
        await pause(self._journal_or_fail(), name, False, self.clock.now())

    async def trigger_schedule(self, name: str) -> RunHandle[Any]:
        """Start a run of schedule *name* now, given the time now as its tick, paused or
        not; its ticks go on as before. The run is keyed by the instant: two calls start
        two runs unless they are made at the same microsecond."""
        supervisor = self._supervisor_or_fail()
        run_id = await trigger(supervisor, supervisor.codec, name, self.clock.now())
        return RunHandle(self, run_id)

    @overload
    def get_run(self, run_id: str) -> RunHandle[Any]: ...
    @overload
    def get_run(self, run_id: None = None, *, key: str) -> Awaitable[RunHandle[Any]]: ...

    def get_run(
        self, run_id: str | None = None, *, key: str | None = None
    ) -> RunHandle[Any] | Awaitable[RunHandle[Any]]:
        """A handle on an existing run: ``get_run(run_id)`` (checked when it is used), or
        ``await get_run(key=...)``, the run that holds a key (RunNotFound if none does)."""
        if (run_id is None) == (key is None):
            raise TypeError("get_run() takes a run id or key=, not both or neither")
        if run_id is not None:
            return RunHandle(self, run_id)
        assert key is not None
        return self._run_with_key(key)

    async def _run_with_key(self, key: str) -> RunHandle[Any]:
        rows = await self._journal_or_fail().read(lambda c: list_runs(c, key=key, limit=1))
        if not rows:
            raise RunNotFound(key, key=True)
        return RunHandle(self, rows[0].run_id)

    async def list_runs(
        self,
        *,
        status: RunStatus | str | None = None,
        workflow: WorkflowDefinition[Any, Any] | str | None = None,
        stuck: bool | None = None,
        key: str | None = None,
        parent: str | None = None,
        since: dt.datetime | None = None,
        after: RunSummary | str | None = None,
        limit: int = 100,
    ) -> list[RunSummary]:
        """Runs, newest first, optionally of one status and one workflow; *stuck* keeps
        only runs that cannot advance (True) or only the others (False); *key* the run
        holding it; *parent* a run's children; *since* runs created then or later.
        Page with *after*: the last run (or its id) of the previous page.
        """
        status_text = RunStatus(status).value if status is not None else None
        name = workflow.name if isinstance(workflow, WorkflowDefinition) else workflow
        after_id = after.id if isinstance(after, RunSummary) else after
        since_ts = None if since is None else since.timestamp()

        def read(c: Any) -> tuple[list[RunRow], dict[str, tuple[str, str, float]]]:
            rows = list_runs(
                c,
                status=status_text,
                workflow=name,
                stuck=stuck,
                key=key,
                parent=parent,
                since=since_ts,
                after=after_id,
                limit=limit,
            )
            return rows, problems_of(c, [row.run_id for row in rows])

        rows, problems = await self._journal_or_fail().read(read)
        return [RunSummary.from_row(row, problems.get(row.run_id)) for row in rows]

    def _unpack(self, run_id: str, end: RunEnd) -> Any:
        if end.status == "completed":
            assert end.outcome is not None
            return self.codec.decode(end.outcome)
        if end.status == "cancelled":
            raise RunCancelled(run_id, end.error_message)
        info: Any = self.codec.decode(end.outcome) if end.outcome is not None else {}
        cause = rebuild_exception(info) if isinstance(info, dict) else None
        raise RunFailed(
            run_id,
            str(info.get("type", end.error_type)),
            str(info.get("message", end.error_message)),
            str(info.get("traceback") or ""),
        ) from cause


def run(
    workflow: WorkflowDefinition[P, R],
    /,
    *args: Any,
    db: str | os.PathLike[str] | None = None,
    key: str | None = None,
    **kwargs: Any,
) -> R:
    """Start a run, wait for it and return its value: a helper for scripts (asyncio)."""

    async def main() -> R:
        async with Runtime(db) as runtime:
            handle = await runtime.start(workflow, *args, key=key, **kwargs)
            return await handle.result()

    return anyio.run(main)
