"""``@rw.step`` and ``@rw.workflow``: definitions that carry their own metadata.

A decorated function becomes a definition object holding its name and options.
Inside a workflow body, calling a step returns an awaitable that asks the
interpreter to schedule it; anywhere else, awaiting the call simply runs the
function (a sync step in a worker thread).

Workflows are also registered by name in this module's registry, so that a
runtime can resume a run it finds in the journal after a restart. The registry
holds definitions only; there is no process-wide runtime.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

import anyio.to_thread
import attrs

from ._exceptions import EncodeError, UnknownWorkflowError
from .actors._commands import StepRequest
from .actors._interpreter import current_interpreter
from .journal._codec import Codec

if TYPE_CHECKING:
    from ._schedule import Schedule

__all__ = [
    "Backoff",
    "StepCall",
    "StepDefinition",
    "WorkflowDefinition",
    "lookup_workflow",
    "step",
    "workflow",
]

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen
class Backoff:
    """Exponential backoff between step attempts: ``initial * factor**(n-1)``, capped."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.initial < 0 or self.factor < 1 or self.maximum < 0:
            raise ValueError(
                "Backoff needs initial >= 0, factor >= 1 and maximum >= 0, got "
                f"{self.initial}, {self.factor}, {self.maximum}"
            )

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number *failed_attempt* (1-based) failed."""
        return float(min(self.maximum, self.initial * self.factor ** (failed_attempt - 1)))


def _as_backoff(value: Backoff | float | Callable[[int], float]) -> Callable[[int], float]:
    if isinstance(value, Backoff):
        return value.delay
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"backoff must be >= 0 seconds, got {value}")
        constant = float(value)
        return lambda _attempt: constant
    if callable(value):
        return value
    raise TypeError(f"backoff must be a Backoff, a number of seconds or a callable, not {value!r}")


class StepDefinition(Generic[P, R]):
    """A function decorated with ``@rw.step``."""

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        *,
        name: str | None,
        retries: int,
        backoff: Backoff | float | Callable[[int], float],
        timeout: float | None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.fn = fn
        self.name = name or _default_name(fn)
        self.retries = retries
        self.backoff = _as_backoff(backoff)
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> StepCall[R]:
        return StepCall(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<runwright step {self.name!r}>"

    async def invoke(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> R:
        """Run the function once: an async one here, a sync one in a worker thread."""
        if self.is_async:
            return await self.fn(*args, **kwargs)  # type: ignore[misc, no-any-return]
        call = functools.partial(self.fn, *args, **kwargs)
        # A thread cannot be interrupted: a cancelled (timed out, losing, shut
        # down) attempt stops waiting for it at once and ignores its result.
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)  # type: ignore[arg-type]

    def encode_args(self, codec: Codec, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        """Encode the call's arguments, or raise an EncodeError naming the bad argument."""
        try:
            return codec.encode((args, dict(kwargs)))
        except EncodeError as exc:
            raise _locate(exc, self.signature, args, kwargs, codec).at(step=self.name) from None


def _locate(
    error: EncodeError,
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    codec: Codec,
) -> EncodeError:
    """The same error, naming the first argument that cannot be encoded."""
    try:
        named = list(signature.bind_partial(*args, **kwargs).arguments.items())
    except TypeError:
        named = [(f"#{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    for argument, value in named:
        try:
            codec.encode(value)
        except EncodeError as exc:
            return exc.at(argument=argument)
    return error


class StepCall(Generic[R]):
    """The awaitable a step call returns."""

    __slots__ = ("args", "definition", "kwargs")

    def __init__(
        self, definition: StepDefinition[Any, R], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.definition = definition
        self.args = args
        self.kwargs = kwargs

    def __await__(self) -> Generator[Any, Any, R]:
        interpreter = current_interpreter.get()
        if interpreter is None:
            return (yield from self.definition.invoke(self.args, self.kwargs).__await__())
        codec = interpreter.info.codec
        definition, args, kwargs = self.definition, self.args, self.kwargs
        request = StepRequest(
            definition.name,
            definition,
            args,
            kwargs,
            lambda: definition.encode_args(codec, args, kwargs),
        )
        return (yield from request.__await__())  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<call of runwright step {self.definition.name!r}>"


class _StepDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> StepDefinition[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> StepDefinition[P, R]: ...


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> StepDefinition[P, R]: ...
@overload
def step(fn: Callable[P, R], /) -> StepDefinition[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    retries: int = 3,
    backoff: Backoff | float | Callable[[int], float] = ...,
    timeout: float | None = None,
) -> _StepDecorator: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 3,
    backoff: Backoff | float | Callable[[int], float] = Backoff(),
    timeout: float | None = None,
) -> Any:
    """Make a function a step: its result is journaled and it is retried on failure.

    ``retries`` more attempts follow a failure (``rw.FatalError`` is never
    retried); ``backoff`` sets the delay between attempts; ``timeout`` bounds
    one attempt in seconds: an attempt past it is cancelled and fails with
    ``rw.StepTimeout`` (a ``TimeoutError``), retried like any other failure.
    A sync function runs in a worker thread; a thread cannot be interrupted, so
    a timed-out or cancelled sync attempt is abandoned (the thread runs on and
    its result is ignored).
    """

    def decorate(f: Callable[..., Any]) -> StepDefinition[Any, Any]:
        return StepDefinition(f, name=name, retries=retries, backoff=backoff, timeout=timeout)

    return decorate if fn is None else decorate(fn)


def duration(value: float | dt.timedelta, what: str) -> float:
    """*value* (seconds or a timedelta) as seconds, which must be finite and > 0."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be seconds or a timedelta, got {value!r}")
    if not (0 < seconds < math.inf):
        raise ValueError(f"{what} must be > 0 seconds, got {value!r}")
    return seconds


class WorkflowDefinition(Generic[P, R]):
    """An ``async def`` decorated with ``@rw.workflow``.

    ``timeout`` (seconds) is the deadline every run of it gets unless
    ``runtime.start(..., timeout=)`` gives another.
    """

    def __init__(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        *,
        name: str | None,
        timeout: float | dt.timedelta | None = None,
    ) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@rw.workflow needs an async def function, got {fn!r}")
        self.fn = fn
        self.name = name or _default_name(fn)
        self.timeout = None if timeout is None else duration(timeout, "timeout")
        self.signature = inspect.signature(fn)
        #: Set by ``@rw.schedule``: when the workflow is started on its own.
        self.schedule: Schedule | None = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<runwright workflow {self.name!r}>"

    def check_args(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"workflow {self.name!r}: {exc}") from None

    def encode_args(self, codec: Codec, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        try:
            return codec.encode((args, dict(kwargs)))
        except EncodeError as exc:
            located = _locate(exc, self.signature, args, kwargs, codec)
            raise EncodeError(
                f"workflow {self.name!r}: {located.reason}",
                path=located.path,
                argument=located.argument,
            ) from None


_registry: dict[str, WorkflowDefinition[Any, Any]] = {}


class _WorkflowDecorator(Protocol):
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> WorkflowDefinition[P, R]: ...


@overload
def workflow(fn: Callable[P, Coroutine[Any, Any, R]], /) -> WorkflowDefinition[P, R]: ...
@overload
def workflow(
    *, name: str | None = None, timeout: float | dt.timedelta | None = None
) -> _WorkflowDecorator: ...


def workflow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | dt.timedelta | None = None,
) -> Any:
    """Make an ``async def`` a durable workflow, registered under *name*.

    The default name is ``module.qualname``. Registering a different function
    under a name already taken raises ValueError; redefining the same function
    (same module and qualname, e.g. on reload) replaces it. *timeout* bounds
    each run (and each child run) of it: when it passes, the run is cancelled
    ("timed out"), durably, across restarts and processes.
    """

    def decorate(f: Callable[..., Any]) -> WorkflowDefinition[Any, Any]:
        definition = WorkflowDefinition(f, name=name, timeout=timeout)
        existing = _registry.get(definition.name)
        if existing is not None and _origin(existing.fn) != _origin(f):
            raise ValueError(
                f"workflow name {definition.name!r} is already used by "
                f"{_origin(existing.fn)}; give one of them another name="
            )
        _registry[definition.name] = definition
        return definition

    return decorate if fn is None else decorate(fn)


def lookup_workflow(name: str, run_id: str | None = None) -> WorkflowDefinition[Any, Any]:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownWorkflowError(name, run_id) from None


def _origin(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _default_name(fn: Callable[..., Any]) -> str:
    return _origin(fn).replace(".<locals>", "")
