"""Serve a run's stream over HTTP: an ASGI application per response.

``stream_response(run, name)`` returns an ASGI application that answers one
HTTP request with the stream's chunks as they become durable, and ends the
response when the stream is closed or the run ends. It speaks the ASGI
protocol directly, so it needs nothing beyond anyio and the standard library,
and runs under any ASGI server on asyncio or trio.

Using it
--------
From any ASGI code, call it with the request's ``scope``, ``receive`` and
``send``::

    await stream_response(runtime.get_run(run_id), "tokens")(scope, receive, send)

From Starlette, return it from an ``async`` endpoint. Starlette's
``request_response`` wrapper answers a request with
``await response(scope, receive, send)`` on whatever the endpoint returned,
so any ASGI application works there, not only a ``Response`` subclass::

    async def tokens(request: Request) -> StreamResponse:
        run = runtime.get_run(request.path_params["run_id"])
        return stream_response(run, "tokens")

    app = Starlette(routes=[Route("/runs/{run_id}/tokens", tokens)])

FastAPI path operations are different: they serialize whatever an endpoint
returns unless it is a ``Response``. Register such an endpoint with
``app.add_route(path, tokens)`` instead, which makes a plain Starlette route.

Formats
-------
``format="sse"`` answers ``text/event-stream``: one event per chunk, then a
last event named ``end``, then the response ends::

    id: 0
    data: {"data":"Hello","writer":"<run id>:0","attempt":1}

    event: end
    data: {"chunks":1,"reason":"closed"}

``id`` is the chunk's index and ``end`` carries how many chunk events this
response sent and why the stream ended (``"reason"``: ``"closed"`` by its
writer, or the run's end, ``"completed"``, ``"failed"`` or ``"cancelled"``).
When a step's new attempt (a retry) writes its first chunk after chunks of
its previous attempt were sent, an ``attempt`` event comes first
(``event: attempt`` / ``data: {"writer": ..., "attempt": n}``) so that a
client can clear what the superseded attempt showed. ``data`` is JSON on one
line. A chunk's value is in runwright's JSON form, the same the command line
prints (see ``runwright.journal._json`` and the README): JSON values as they
are, any other value as an object with one ``$`` tag, e.g. ``{"$b":
"<base64>"}`` for ``bytes`` and ``{"$t": [...]}`` for a tuple, which reads
back losslessly. A browser's ``EventSource``
reconnects on its own and sends the last ``id`` it saw as ``Last-Event-ID``;
the response then resumes at the next chunk, so the client sees no gap and
no duplicate. The ``end`` event has no ``id``: a client that reconnects
after it gets an ``end`` again at once, so it should call ``close()`` on
seeing it. While no chunk arrives, a comment line (``: keepalive``) is sent
every *keepalive* seconds so that proxies keep the connection open.

``format="raw"`` answers the chunks back to back as the body
(``application/octet-stream`` unless *media_type* says otherwise):
``bytes`` as they are, ``str`` as its UTF-8 bytes, and any other value as
its JSON form (as above) on a line of its own, ending in ``\\n``.

Both set ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``, so that
caches and nginx pass chunks on as they come. An unknown run gets a 404,
and a ``Last-Event-ID`` that is not a chunk index a 400, each with a
plain-text body that says why.

Theory of operation
-------------------
The application runs two tasks in one task group: one reads the stream and
sends, the other waits on ``receive()`` for ``http.disconnect``. Whichever
finishes first cancels the other, so a client that goes away stops the
reading at once and the application returns with no task left behind (the
stream reader holds nothing that needs closing). A server that reports a
gone client by raising ``OSError`` from ``send()`` (as ASGI 2.4 allows) is
treated the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

import anyio

from ._exceptions import RunNotFound, StreamInterrupted
from ._streaming import check_name
from .journal._json import to_json

if TYPE_CHECKING:
    from ._runtime import RunHandle, Runtime
    from .streams._chunks import Chunk

__all__ = ["Format", "StreamResponse", "interrupt_streams_on_signals", "stream_response"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Format = Literal["sse", "raw"]

#: Seconds without a chunk after which an SSE response sends ``: keepalive``.
KEEPALIVE = 15.0

_MEDIA_TYPES: dict[str, str] = {"sse": "text/event-stream", "raw": "application/octet-stream"}
_KEEPALIVE_LINE = b": keepalive\n\n"


class _ClientGone(Exception):
    """``send()`` failed because the client disconnected."""


class _BadRequest(Exception):
    """The request cannot be answered; the message says why."""


def stream_response(
    run: RunHandle[Any],
    name: str = "default",
    *,
    format: Format = "sse",
    start: int | None = None,
    keepalive: float | None = KEEPALIVE,
    media_type: str | None = None,
    skip_superseded: bool = False,
) -> StreamResponse:
    """An ASGI application that answers one request with the run's stream *name*.

    *format* is ``"sse"`` (server-sent events) or ``"raw"`` (the chunks as
    the body); the module docstring describes both. Reading starts at chunk
    *start* (default 0; a negative *start* counts back from the end, as in
    ``run.stream()``); for SSE a ``Last-Event-ID: N`` request header wins
    and reading starts at N + 1. *keepalive* is the idle interval between
    SSE keepalive comments (``None`` sends none). *media_type* overrides the
    ``Content-Type``. *skip_superseded* leaves out chunks of a step's attempt
    that a later attempt replaced (see ``run.stream()``). The run is looked up
    when the request arrives: an unknown run gets a 404.
    """
    check_name(name)
    if format not in _MEDIA_TYPES:
        raise ValueError(f"format is 'sse' or 'raw', got {format!r}")
    if start is not None and (not isinstance(start, int) or isinstance(start, bool)):
        raise TypeError(f"start must be an int chunk index or None, got {start!r}")
    if keepalive is not None and not (
        isinstance(keepalive, int | float) and 0 < keepalive < math.inf
    ):
        raise ValueError(f"keepalive is a positive number of seconds or None, got {keepalive!r}")
    if media_type is not None and not isinstance(media_type, str):
        raise TypeError(f"media_type must be a str or None, got {media_type!r}")
    return StreamResponse(
        run,
        name,
        format,
        0 if start is None else start,
        keepalive,
        _MEDIA_TYPES[format] if media_type is None else media_type,
        skip_superseded,
    )


class StreamResponse:
    """The ASGI application :func:`stream_response` returns; call it once per request."""

    __slots__ = ("format", "keepalive", "media_type", "name", "run", "skip_superseded", "start")

    def __init__(
        self,
        run: RunHandle[Any],
        name: str,
        format: Format,
        start: int,
        keepalive: float | None,
        media_type: str,
        skip_superseded: bool = False,
    ) -> None:
        self.run = run
        self.name = name
        self.format = format
        self.start = start
        self.keepalive = keepalive
        self.media_type = media_type
        self.skip_superseded = skip_superseded

    def __repr__(self) -> str:
        return f"<StreamResponse {self.run.id}/{self.name} {self.format}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise TypeError(f"a stream response answers HTTP requests, not {scope['type']!r}")
        try:
            start = self._start_of(scope)
        except _BadRequest as exc:
            await _plain(send, 400, str(exc))
            return
        error: Exception | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_until_disconnect, receive, tasks.cancel_scope)
            try:
                await self._respond(scope, send, start)
            except _ClientGone:
                pass
            except Exception as exc:  # raised below, outside the task group, unwrapped
                error = exc
            tasks.cancel_scope.cancel()
        if error is not None:
            raise error

    def _start_of(self, scope: Scope) -> int:
        if self.format != "sse":
            return self.start
        last = _header(scope, b"last-event-id")
        if last is None or not last.strip():
            return self.start
        text = last.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise _BadRequest(
                f"Last-Event-ID must be the index of the last chunk received "
                f"(a non-negative integer), got {last!r}"
            )
        return int(text) + 1

    async def _respond(self, scope: Scope, send: Send, start: int) -> None:
        try:
            await self.run.stream_info(self.name)
        except RunNotFound as exc:
            await _plain(send, 404, str(exc))
            return
        headers = [
            (b"content-type", self.media_type.encode("latin-1")),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        await _send(send, {"type": "http.response.start", "status": 200, "headers": headers})
        if scope.get("method") == "HEAD":
            await _send(send, {"type": "http.response.body", "body": b""})
            return
        sse = self.format == "sse"
        idle = self.keepalive if sse and self.keepalive is not None else math.inf
        reader = self.run.stream(self.name, start=start, skip_superseded=self.skip_superseded)
        attempts: dict[str, int] = {}
        sent = 0
        interrupted = False
        while True:
            # Cancelling a read midway is safe: the reader moves only when it hands out a chunk.
            chunk: Chunk | None = None
            with anyio.move_on_after(idle):
                try:
                    chunk = await anext(reader)
                except StopAsyncIteration:
                    break
                except StreamInterrupted:
                    # The runtime is shutting down: end the response cleanly, with no
                    # `end` event, so that the client reconnects (Last-Event-ID).
                    interrupted = True
                    break
            if chunk is None:
                await _body(send, _KEEPALIVE_LINE)
                continue
            if sse and chunk.writer is not None and chunk.attempt is not None:
                before = attempts.get(chunk.writer)
                if before is not None and chunk.attempt > before:
                    # The step's new attempt begins: what its last one wrote is superseded.
                    news = {"writer": chunk.writer, "attempt": chunk.attempt}
                    await _body(send, b"event: attempt\ndata: " + _json(news) + b"\n\n")
                attempts[chunk.writer] = max(chunk.attempt, before or 0)
            await _body(send, _sse_event(chunk) if sse else _raw_bytes(chunk.data))
            sent += 1
        if sse and not interrupted:
            reason = await self.run._runtime.supervisor.streams.end_reason(self.run.id, self.name)
            end = {"chunks": sent, "reason": reason}
            await _body(send, b"event: end\ndata: " + _json(end) + b"\n\n")
        await _send(send, {"type": "http.response.body", "body": b""})


async def _until_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    """Return (cancelling the response) once the client is gone; ignore the request body."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _send(send: Send, message: Message) -> None:
    try:
        await send(message)
    except OSError as exc:
        raise _ClientGone from exc


async def _body(send: Send, body: bytes) -> None:
    await _send(send, {"type": "http.response.body", "body": body, "more_body": True})


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode("utf-8") + b"\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    try:
        await _send(send, {"type": "http.response.start", "status": status, "headers": headers})
        await _send(send, {"type": "http.response.body", "body": body})
    except _ClientGone:
        pass


def _header(scope: Scope, wanted: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if bytes(key).lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def _sse_event(chunk: Chunk) -> bytes:
    payload = {"data": to_json(chunk.data), "writer": chunk.writer, "attempt": chunk.attempt}
    return b"id: %d\ndata: %s\n\n" % (chunk.index, _json(payload))


def _raw_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        # As stored: lone surrogates (which a str chunk may hold) keep their bytes.
        return data.encode("utf-8", "surrogatepass")
    return _json(to_json(data)) + b"\n"


def _json(value: Any) -> bytes:
    """Compact JSON on one line (JSON escapes every newline inside strings)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape it as JSON allows
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


@contextlib.contextmanager
def interrupt_streams_on_signals(
    runtime: Runtime, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """While active, a shutdown signal first ends the runtime's stream readers, then goes
    to the handler installed before (the server's).

    For servers that wait for open responses before the application's
    shutdown runs, and tell the application nothing (uvicorn without
    ``--timeout-graceful-shutdown``): enter it in the ASGI lifespan, after
    the server installed its handlers::

        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with runtime:
                with interrupt_streams_on_signals(runtime):
                    yield

    Open SSE responses then end at once, without their ``end`` event, and
    browsers reconnect (``Last-Event-ID``) to another process. Signal handlers
    can only be set from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the runtime was closed already
            runtime.interrupt_streams()
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:  # what the signal would have done: do it
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for signum in signals:
        previous[signum] = signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
