"""OpenTelemetry traces of runs (``runwright[otel]``).

Theory of operation
-------------------
Whether a runtime traces is decided once, when it opens (:func:`open_tracing`):
by default it does if ``opentelemetry-api`` is importable and a tracer
provider has been configured (the global one is not the API's no-op default).
A runtime that does not trace holds ``None`` where the :class:`Tracing` would
be, and each step pays one attribute test for it.

``start()`` opens a ``runwright.start <workflow>`` span in the caller's
context (a child of the caller's current span, or a new trace) around the
write that creates the run, and journals that span's W3C ``traceparent``
(and ``tracestate``) in a ``trace_context`` event of the same transaction.
Every other span of the run is a child of that journaled context, in
whichever process records it: step attempts (recorded where they run),
sleeps and hook waits (recorded by the process that drives the run when the
journal says they ended, with start and end times from the journal), and
the ``runwright.run <workflow>`` span from the run's creation to its end
(recorded by the process that ends it). So one trace id holds a run across
processes and restarts, and a process killed mid-run leaves no span whose
parent is missing. Child runs journal their parent's context and join its
trace. See docs/decisions/0019-opentelemetry.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .journal._events import Event, Kind

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

__all__ = ["RunTrace", "Tracing", "open_tracing"]

#: Separates ``traceparent`` from ``tracestate`` in a journaled context (neither holds one).
_SEPARATOR = "\n"


def open_tracing(setting: object) -> Tracing | None:
    """The runtime's tracing for its ``tracing=`` *setting*: None (decide: on if the API is
    installed and a tracer provider is configured), False (off), True (on, with the
    global provider), or a TracerProvider to use."""
    if setting is False:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        if setting is None:
            return None
        raise RuntimeError(
            "Runtime(tracing=...) needs OpenTelemetry: pip install 'runwright[otel]'"
        ) from None
    from . import __version__

    if setting is None or setting is True:
        provider = trace.get_tracer_provider()
        if setting is None and isinstance(
            provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
        ):
            return None
    elif isinstance(setting, trace.TracerProvider):
        provider = setting
    else:
        raise TypeError(f"tracing must be None, True, False or a TracerProvider, got {setting!r}")
    return Tracing(provider.get_tracer("runwright", __version__))


class Tracing:
    """A runtime's tracer, and how a run's context is journaled and read back."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.tracer = tracer
        # Always W3C trace context, whatever the global propagator: the journaled
        # form must read the same in every process, now and after an upgrade.
        self._propagator = TraceContextTextMapPropagator()

    @contextlib.contextmanager
    def starting(self, run_id: str, workflow: str) -> Iterator[str]:
        """The ``runwright.start`` span, current for the write that creates the run;
        yields its context as it is journaled."""
        from opentelemetry import trace

        span = self.tracer.start_span(
            f"runwright.start {workflow}",
            kind=trace.SpanKind.PRODUCER,
            attributes={"runwright.run_id": run_id, "runwright.workflow": workflow},
        )
        with trace.use_span(span, end_on_exit=True):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier, trace.set_span_in_context(span))
            state = carrier.get("tracestate")
            yield carrier["traceparent"] + ("" if not state else _SEPARATOR + state)

    def found(self, run_id: str) -> None:
        """The start in progress found its key held by *run_id*: it created nothing."""
        from opentelemetry import trace

        span = trace.get_current_span()
        span.set_attribute("runwright.run_id", run_id)
        span.set_attribute("runwright.existing", True)

    def run(self, run_id: str, workflow: str, created_at: float, journaled: str) -> RunTrace:
        """The trace of a run whose context was journaled as *journaled*."""
        parent, _, state = journaled.partition(_SEPARATOR)
        carrier = {"traceparent": parent}
        if state:
            carrier["tracestate"] = state
        context = self._propagator.extract(carrier)
        return RunTrace(self.tracer, context, journaled, run_id, workflow, created_at)

    def follow(
        self,
        trace: RunTrace | None,
        run_id: str,
        workflow: str,
        created_at: float,
        events: list[Event],
        news: bool,
    ) -> RunTrace | None:
        """Read a run's events from the journal into its trace (found among them if the
        actor has none yet). *news*: they are new to the actor, not its history."""
        if trace is None:
            journaled = next((e.name for e in events if e.kind == Kind.TRACE_CONTEXT), None)
            if journaled is None:
                return None  # started by a process that did not trace: not traced
            trace = self.run(run_id, workflow, created_at, journaled)
        trace.read(events, news)
        return trace


class RunTrace:
    """The spans of one run in this process, and what they need from its journal."""

    def __init__(
        self,
        tracer: Tracer,
        parent: Context,
        journaled: str,
        run_id: str,
        workflow: str,
        created_at: float,
    ) -> None:
        self.tracer = tracer
        self.parent = parent
        #: The context as journaled (a child run journals its parent's).
        self.journaled = journaled
        self.run_id = run_id
        self.workflow = workflow
        self.created_at = created_at
        #: When each pending sleep was created, by position.
        self._sleeps: dict[int, float] = {}
        #: Each live hook's token, and when its current wait began (creation or last payload).
        self._hooks: dict[int, tuple[str, float]] = {}

    def _attributes(self, outcome: str, **more: Any) -> dict[str, Any]:
        return {
            "runwright.run_id": self.run_id,
            "runwright.workflow": self.workflow,
            "runwright.outcome": outcome,
            **more,
        }

    # -- step attempts (recorded where they run) -----------------------------------

    def step_started(self, name: str, cid: int, attempt: int, at: float) -> Span:
        return self.tracer.start_span(
            f"runwright.step {name}",
            self.parent,
            attributes={
                "runwright.run_id": self.run_id,
                "runwright.workflow": self.workflow,
                "runwright.step": name,
                "runwright.position": cid,
                "runwright.attempt": attempt,
            },
            start_time=_ns(at),
        )

    @contextlib.contextmanager
    def current(self, span: Span) -> Iterator[None]:
        """Make *span* the current one (spans the step's code opens are its children)."""
        from opentelemetry import trace

        with trace.use_span(span, end_on_exit=False, record_exception=False):
            yield

    def step_ended(
        self, span: Span, outcome: str, at: float, error: BaseException | None = None
    ) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_attribute("runwright.outcome", outcome)
        if error is not None:
            span.record_exception(error)
        if outcome in ("failed", "retrying"):
            span.set_status(Status(StatusCode.ERROR, str(error) if error is not None else None))
        span.end(_ns(at))

    # -- sleeps, hooks and the run (from the journal) --------------------------------

    def read(self, events: Iterable[Event], news: bool) -> None:
        """Events read from the journal. Only hook payloads are written by other processes;
        a payload that is *news* ends a hook wait span."""
        for event in events:
            kind, cid = event.kind, event.cid
            if cid is None or cid < 0:
                continue
            if kind == Kind.WAIT_CREATED:
                self._sleeps[cid] = event.at
            elif kind in (Kind.WAIT_COMPLETED, Kind.WAIT_CANCELLED):
                self._sleeps.pop(cid, None)
            elif kind == Kind.HOOK_CREATED:
                self._hooks[cid] = (event.name or "", event.at)
            elif kind == Kind.HOOK_RECEIVED:
                hook = self._hooks.get(cid)
                if hook is not None:
                    token, since = hook
                    if news:
                        more = {"runwright.position": cid}
                        self._span("runwright.hook", since, event.at, "received", **more)
                    self._hooks[cid] = (token, event.at)
            elif kind == Kind.HOOK_DISPOSED:
                self._hooks.pop(cid, None)

    def written(self, events: Iterable[Event]) -> None:
        """Events this process just wrote for the run: a sleep that fired or was released
        ends its span (from when the journal says it was created)."""
        for event in events:
            kind, cid = event.kind, event.cid
            if cid is None or cid < 0:
                continue
            if kind == Kind.WAIT_CREATED:
                self._sleeps[cid] = event.at
            elif kind in (Kind.WAIT_COMPLETED, Kind.WAIT_CANCELLED):
                since = self._sleeps.pop(cid, None)
                if since is not None:
                    outcome = "fired" if kind == Kind.WAIT_COMPLETED else "cancelled"
                    more = {"runwright.position": cid}
                    self._span("runwright.sleep", since, event.at, outcome, **more)
            elif kind == Kind.HOOK_CREATED:
                self._hooks[cid] = (event.name or "", event.at)
            elif kind == Kind.HOOK_DISPOSED:
                self._hooks.pop(cid, None)

    def ended(self, status: str, at: float) -> None:
        """The run ended here (*status*): its span, from its creation."""
        from opentelemetry.trace import Status, StatusCode

        span = self._span(f"runwright.run {self.workflow}", self.created_at, None, status)
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR))
        span.end(_ns(at))

    def _span(self, name: str, start: float, end: float | None, outcome: str, **more: Any) -> Span:
        span = self.tracer.start_span(
            name, self.parent, attributes=self._attributes(outcome, **more), start_time=_ns(start)
        )
        if end is not None:
            span.end(_ns(end))
        return span


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)
