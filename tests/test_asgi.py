"""runwright.asgi: a run's stream over HTTP, served by hypercorn, read with httpx."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx
import hypercorn
import hypercorn.asyncio
import hypercorn.trio
import pytest

import runwright as rw
import runwright.asgi
from runwright.asgi import stream_response
from runwright.journal._json import from_json

pytestmark = [
    pytest.mark.anyio,
    # A client that stops reading mid-response leaves httpx's and httpcore's body
    # iterators (async generators) unexhausted, and trio warns when it finalizes
    # them. That is the client's business, not the server's.
    pytest.mark.filterwarnings(r"ignore:Async generator 'http(x|core)\.:ResourceWarning"),
]

gates: dict[str, anyio.Event] = {}


@rw.step
async def write_all(items: list[Any]) -> int:
    async with rw.writable() as out:
        for item in items:
            await out.write(item)
    return len(items)


@rw.workflow
async def finished(items: list[Any]) -> int:
    return await write_all(items)


@rw.step
async def write_gated(gate: str, count: int) -> int:
    """Write ``count`` chunks; wait on the gate once the first five are durable."""
    async with rw.writable() as out:
        for i in range(count):
            await out.write(f"token {i}")
            if i == 4:
                await out.flush()
                await gates[gate].wait()
        await out.close()
    return count


@rw.workflow
async def gated(gate: str, count: int) -> int:
    return await write_gated(gate, count)


@rw.step(retries=1, backoff=0)
async def retried_writer() -> str:
    attempt = rw.step_info().attempt
    async with rw.writable() as out:
        for i in range(2):
            await out.write(f"attempt {attempt} token {i}")
    if attempt == 1:
        raise ConnectionError("dropped")
    return "ok"


@rw.workflow
async def retried_stream() -> str:
    return await retried_writer()


class App:
    """Serves ``/runs/<run id>/<stream>?format=&start=&keepalive=`` with stream_response.

    Counts the stream responses that started and that returned, so a test can
    tell whether one is still running after its client went away.
    """

    def __init__(self, runtime: rw.Runtime) -> None:
        self.runtime = runtime
        self.started = 0
        self.returned = 0
        self._returned = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        _, _, run_id, name = scope["path"].split("/")
        query = dict(parse_qsl(scope["query_string"].decode()))
        response = stream_response(
            self.runtime.get_run(run_id),
            name,
            format=query.get("format", "sse"),  # type: ignore[arg-type]
            start=int(query["start"]) if "start" in query else None,
            keepalive=float(query.get("keepalive", 15)),
            skip_superseded=query.get("skip_superseded") == "1",
        )
        self.started += 1
        try:
            await response(scope, receive, send)
        finally:
            self.returned += 1
            self._returned.set()
            self._returned = anyio.Event()

    async def all_returned(self) -> None:
        while self.returned < self.started:
            await self._returned.wait()


@asynccontextmanager
async def serving(app: App, backend: str) -> AsyncIterator[httpx.AsyncClient]:
    """Serve *app* with hypercorn on this test's event loop; yield a client for it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # connections queue up from here on, before the server accepts them
    port = listener.getsockname()[1]
    config = hypercorn.Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.graceful_timeout = 1.0
    serve = hypercorn.trio.serve if backend == "trio" else hypercorn.asyncio.serve
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(partial(serve, app, config, shutdown_trigger=stop.wait))
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=5.0
            ) as client:
                yield client
        finally:
            stop.set()


class Events:
    """Server-sent events of a streamed response, one at a time.

    An event is a dict of its fields; a comment line comes as ``{"": text}``.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self) -> dict[str, str] | None:
        """The next event, or None once the response body ended."""
        fields: dict[str, str] = {}
        async for line in self._lines:
            if not line:
                if fields:
                    return fields
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        assert not fields, f"the body ended inside an event: {fields}"
        return None

    async def take(self, count: int) -> list[dict[str, str]]:
        taken = []
        for _ in range(count):
            event = await self.next()
            assert event is not None
            taken.append(event)
        return taken

    async def rest(self) -> list[dict[str, str]]:
        events = []
        while (event := await self.next()) is not None:
            events.append(event)
        return events


@asynccontextmanager
async def sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Events]:
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.status_code
        events = Events(response)
        try:
            yield events
        finally:
            await events._lines.aclose()


def chunk_ids(events: list[dict[str, str]]) -> list[int]:
    return [int(e["id"]) for e in events if "id" in e]


async def test_sse_of_a_finished_run_sends_every_chunk_then_an_end_event(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    items = ["Hello", b"\x00\xffraw", {"n": [1, 2.5, None, True], "s": "line\nbreak"}, (1, 2), 7]
    async with make_runtime() as runtime:
        run = await runtime.start(finished, items)
        assert await run.result() == 5
        async with (
            serving(App(runtime), anyio_backend) as client,
            sse(client, f"/runs/{run.id}/default") as events,
        ):
            headers = events.response.headers
            got = await events.rest()
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert chunk_ids(got) == [0, 1, 2, 3, 4]
    payloads = [json.loads(e["data"]) for e in got[:5]]
    assert [p["data"] for p in payloads] == [
        "Hello",
        {"$b": base64.b64encode(b"\x00\xffraw").decode()},
        {"n": [1, 2.5, None, True], "s": "line\nbreak"},
        {"$t": [1, 2]},
        7,
    ]
    # The same JSON form the command line prints, which reads back losslessly.
    assert [from_json(p["data"]) for p in payloads] == items
    assert {(p["writer"], p["attempt"]) for p in payloads} == {(f"{run.id}:0", 1)}
    assert got[5] == {"event": "end", "data": '{"chunks":5,"reason":"completed"}'}
    assert len(got) == 6


async def test_a_retried_writer_is_announced_or_its_superseded_chunks_skipped(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(retried_stream)
        assert await run.result() == "ok"
        everything = [c.data async for c in run.stream()]
        latest = [c.data async for c in run.stream(skip_superseded=True)]
        async with serving(App(runtime), anyio_backend) as client:
            async with sse(client, f"/runs/{run.id}/default") as events:
                announced = await events.rest()
            async with sse(client, f"/runs/{run.id}/default?skip_superseded=1") as events:
                skipped = await events.rest()
    assert everything == [f"attempt {a} token {i}" for a in (1, 2) for i in range(2)]
    assert latest == ["attempt 2 token 0", "attempt 2 token 1"]
    attempt = {"event": "attempt", "data": json.dumps(
        {"writer": f"{run.id}:0", "attempt": 2}, separators=(",", ":"))}  # fmt: skip
    assert announced[2] == attempt
    assert chunk_ids(announced) == [0, 1, 2, 3]
    assert announced[-1] == {"event": "end", "data": '{"chunks":4,"reason":"completed"}'}
    assert chunk_ids(skipped) == [2, 3]
    assert skipped[-1] == {"event": "end", "data": '{"chunks":2,"reason":"completed"}'}


async def test_sse_delivers_chunks_while_the_run_is_still_writing(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    gates["live"] = anyio.Event()
    async with make_runtime() as runtime:
        run = await runtime.start(gated, "live", 10)
        async with (
            serving(App(runtime), anyio_backend) as client,
            sse(client, f"/runs/{run.id}/default") as events,
        ):
            first = await events.take(5)  # all written before the gate
            assert await run.status() == rw.RunStatus.RUNNING
            gates["live"].set()
            rest = await events.rest()
        assert await run.result() == 10
    assert chunk_ids(first + rest) == list(range(10))
    assert [json.loads(e["data"])["data"] for e in first] == [f"token {i}" for i in range(5)]
    assert rest[-1] == {"event": "end", "data": '{"chunks":10,"reason":"closed"}'}


async def test_a_client_resumes_with_last_event_id_without_gap_or_duplicate(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    gates["resume"] = anyio.Event()
    async with make_runtime() as runtime:
        run = await runtime.start(gated, "resume", 10)
        async with serving(App(runtime), anyio_backend) as client:
            async with sse(client, f"/runs/{run.id}/default") as events:
                before = await events.take(3)
            # The first client went away mid-stream; it comes back with the last id it saw.
            last = before[-1]["id"]
            async with sse(client, f"/runs/{run.id}/default", {"Last-Event-ID": last}) as events:
                after = await events.take(1)
                gates["resume"].set()
                after += await events.rest()
    assert chunk_ids(before) == [0, 1, 2]
    assert chunk_ids(before + after) == list(range(10))
    assert after[-1] == {"event": "end", "data": '{"chunks":7,"reason":"closed"}'}


async def test_last_event_id_wins_over_start_and_an_empty_one_is_absent(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(finished, list(range(6)))
        await run.result()
        async with serving(App(runtime), anyio_backend) as client:
            url = f"/runs/{run.id}/default?start=2"
            async with sse(client, url) as events:
                assert chunk_ids(await events.rest()) == [2, 3, 4, 5]
            async with sse(client, url, {"Last-Event-ID": "3"}) as events:
                assert chunk_ids(await events.rest()) == [4, 5]
            async with sse(client, url, {"Last-Event-ID": ""}) as events:
                assert chunk_ids(await events.rest()) == [2, 3, 4, 5]


async def test_an_idle_sse_response_sends_keepalive_comments(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    gates["idle"] = anyio.Event()
    async with make_runtime() as runtime:
        run = await runtime.start(gated, "idle", 6)
        async with (
            serving(App(runtime), anyio_backend) as client,
            sse(client, f"/runs/{run.id}/default?keepalive=0.02") as events,
        ):
            assert chunk_ids(await events.take(5)) == [0, 1, 2, 3, 4]
            assert await events.next() == {"": "keepalive"}
            gates["idle"].set()
            rest = [e for e in await events.rest() if "" not in e]
    assert chunk_ids(rest) == [5]
    assert rest[-1]["event"] == "end"


async def test_raw_body_is_the_chunks_concatenated(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    parts = [b"\x89PNG\r\n", bytes(range(256)) * 50, b"", b"tail"]
    async with make_runtime() as runtime:
        run = await runtime.start(finished, parts)
        await run.result()
        mixed = await runtime.start(finished, ["zażółć ", b"\x00", {"n": 1}, [b"\x01"]])
        await mixed.result()
        async with serving(App(runtime), anyio_backend) as client:
            response = await client.get(f"/runs/{run.id}/default?format=raw")
            tail = await client.get(f"/runs/{run.id}/default?format=raw&start=3")
            other = await client.get(f"/runs/{mixed.id}/default?format=raw")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == b"".join(parts)
    assert tail.content == b"tail"
    assert other.content == 'zażółć \x00{"n":1}\n[{"$b":"AQ=="}]\n'.encode()


@pytest.mark.parametrize("fmt", ["sse", "raw"])
async def test_an_unknown_run_gets_a_404(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str, fmt: str
) -> None:
    async with make_runtime() as runtime, serving(App(runtime), anyio_backend) as client:
        response = await client.get(f"/runs/no-such-run/default?format={fmt}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert "no-such-run" in response.text


async def test_a_bad_last_event_id_gets_a_400(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(finished, ["x"])
        await run.result()
        async with serving(App(runtime), anyio_backend) as client:
            for bad in ["abc", "-1", "1.5", "+3", "1_0", "9" * 40]:
                response = await client.get(
                    f"/runs/{run.id}/default", headers={"Last-Event-ID": bad}
                )
                assert response.status_code == 400, bad
                assert "Last-Event-ID must be the index of the last chunk" in response.text
                assert repr(bad) in response.text


async def test_a_client_disconnect_ends_the_response_with_no_task_left(
    make_runtime: Callable[..., rw.Runtime], anyio_backend: str
) -> None:
    async with make_runtime() as runtime:
        app = App(runtime)
        gates["gone"] = anyio.Event()
        run = await runtime.start(gated, "gone", 10)
        async with serving(app, anyio_backend) as client:
            async with sse(client, f"/runs/{run.id}/default") as events:
                assert chunk_ids(await events.take(2)) == [0, 1]
            # The run is stuck at its gate: only the disconnect can end the response.
            with anyio.fail_after(3):
                await app.all_returned()
            assert (app.started, app.returned) == (1, 1)
            assert await run.status() == rw.RunStatus.RUNNING
        gates["gone"].set()
        assert await run.result() == 10


async def test_the_disconnect_check_fails_when_nothing_watches_for_the_disconnect(
    make_runtime: Callable[..., rw.Runtime],
    anyio_backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def deaf(receive: Any, scope: anyio.CancelScope) -> None:
        await anyio.sleep_forever()

    monkeypatch.setattr(runwright.asgi, "_until_disconnect", deaf)
    async with make_runtime() as runtime:
        app = App(runtime)
        gates["deaf"] = anyio.Event()
        run = await runtime.start(gated, "deaf", 10)
        async with serving(app, anyio_backend) as client:
            async with sse(client, f"/runs/{run.id}/default") as events:
                assert chunk_ids(await events.take(2)) == [0, 1]
            with anyio.move_on_after(0.2):
                await app.all_returned()
            assert (app.started, app.returned) == (1, 0)  # the same check catches the leak
            gates["deaf"].set()  # let the response run out
            with anyio.fail_after(3):
                await app.all_returned()
        assert await run.result() == 10


async def test_an_open_sse_response_ends_cleanly_when_the_runtime_shuts_down(
    make_runtime: Callable[..., rw.Runtime],
    anyio_backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gates["shutdown"] = anyio.Event()
    stop, opened = anyio.Event(), anyio.Event()
    box: dict[str, Any] = {}

    async def hold_runtime() -> None:
        async with make_runtime(shutdown_grace=0.1) as runtime:
            box["runtime"] = runtime
            opened.set()
            await stop.wait()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(hold_runtime)
        await opened.wait()
        runtime = box["runtime"]
        run = await runtime.start(gated, "shutdown", 10)
        async with (
            serving(App(runtime), anyio_backend) as client,
            sse(client, f"/runs/{run.id}/default") as events,
        ):
            before = await events.take(5)  # the writer then waits on its gate
            stop.set()  # the runtime shuts down with the response open
            with anyio.fail_after(5):
                after = await events.rest()
    # The body ended cleanly without an `end` event: a client reconnects and resumes.
    assert after == []
    assert chunk_ids(before) == [0, 1, 2, 3, 4]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    gates["shutdown"].set()
    async with (
        make_runtime() as runtime,
        serving(App(runtime), anyio_backend) as client,
        sse(client, f"/runs/{run.id}/default", {"Last-Event-ID": "4"}) as events,
    ):
        resumed = await events.rest()
    # The interrupted attempt is retried from the start: its chunks follow the first five.
    assert chunk_ids(resumed) == list(range(5, 15))
    assert [json.loads(e["data"])["attempt"] for e in resumed[:10]] == [2] * 10
    assert resumed[-1]["event"] == "end"


async def test_an_open_sse_response_does_not_hold_up_the_servers_shutdown(
    make_runtime: Callable[..., rw.Runtime],
    anyio_backend: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server's graceful shutdown waits its timeout for open responses, then cancels
    them: a stream response ends on that cancellation at once and logs nothing."""
    gates["server"] = anyio.Event()
    async with make_runtime() as runtime:
        run = await runtime.start(gated, "server", 10)
        app = App(runtime)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        config = hypercorn.Config()
        config.bind = [f"fd://{listener.detach()}"]
        config.graceful_timeout = 0.5
        serve = hypercorn.trio.serve if anyio_backend == "trio" else hypercorn.asyncio.serve
        stop, served = anyio.Event(), anyio.Event()

        async def serve_until_stopped() -> None:
            await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
            served.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(serve_until_stopped)
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
                sse(client, f"/runs/{run.id}/default") as events,
            ):
                await events.take(5)
                stop.set()
                with anyio.fail_after(5):  # the graceful timeout, then at once
                    await served.wait()
            await app.all_returned()
        gates["server"].set()
        assert await run.result(timeout=10) == 10
    # (hypercorn on asyncio logs the cancellation of its own connection task; nothing
    # may come from the application.)
    assert not [
        r
        for r in caplog.records
        if r.levelname == "ERROR"
        and ("ASGI" in r.getMessage() or "runwright" in (r.exc_text or ""))
    ]


async def test_interrupt_streams_ends_readers_with_where_to_read_on(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    gates["interrupt"] = anyio.Event()
    async with make_runtime(shutdown_grace=0.1) as runtime:
        run = await runtime.start(gated, "interrupt", 10)
        reader = run.stream()
        first = [await anext(reader) for _ in range(5)]
        runtime.interrupt_streams()
        with anyio.fail_after(5), pytest.raises(rw.StreamInterrupted) as info:
            await anext(reader)
        assert info.value.position == 5
        assert [c.index for c in first] == [0, 1, 2, 3, 4]
        gates["interrupt"].set()
