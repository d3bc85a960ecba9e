"""The PostgreSQL server stops answering for a while: runs wait, and finish once it is
back, each step recorded once; nothing fails because the server was away.

The runtime reaches the server through a TCP proxy the test stops (its
listener and every connection through it closed: what a stopped server looks
like to a client) and starts again on the same port.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import pytest
from conftest import query_journal

import runwright as rw

pytestmark = pytest.mark.anyio


class Proxy:
    """Forwards 127.0.0.1:port to the PostgreSQL server until :meth:`stop`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._scope: anyio.CancelScope | None = None

    async def start(self, tg: anyio.abc.TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=self.port, reuse_port=False
        )
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._scope = anyio.CancelScope()
        tg.start_soon(self._serve, listener, self._scope)

    def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    async def _serve(self, listener: anyio.abc.Listener[Any], scope: anyio.CancelScope) -> None:
        with scope:
            async with listener:
                await listener.serve(self._pipe_client)

    async def _pipe_client(self, client: anyio.abc.SocketStream) -> None:
        async with (
            client,
            await anyio.connect_tcp(*self.upstream) as server,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_pump, client, server, tg.cancel_scope)
            tg.start_soon(_pump, server, client, tg.cancel_scope)


async def _pump(
    source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, scope: anyio.CancelScope
) -> None:
    try:
        async for data in source:
            await sink.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    scope.cancel()


@asynccontextmanager
async def proxied(db: str) -> AsyncIterator[tuple[Proxy, str]]:
    parts = urlsplit(db)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    async with anyio.create_task_group() as tg:
        await proxy.start(tg)
        netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port or 5432}", "")
        host = f"{netloc.rstrip('@')}@" if "@" in parts.netloc else ""
        url = urlunsplit(parts._replace(netloc=f"{host}127.0.0.1:{proxy.port}"))
        try:
            yield proxy, url
        finally:
            proxy.stop()
            tg.cancel_scope.cancel()


@rw.step
async def count(i: int) -> int:
    async with rw.writable() as out:
        await out.write(i)
    await anyio.sleep(0.01)
    return i


@rw.workflow
async def counting(n: int) -> int:
    total = 0
    for i in range(n):
        total += await count(i)
    return total


@pytest.mark.postgres_only("a stopped server is the PostgreSQL journal's fault")
async def test_runs_wait_out_a_stopped_server_and_finish(
    db_path: str, caplog: pytest.LogCaptureFixture
):
    results: dict[int, int] = {}

    async def wait_for(i: int, handle: rw.RunHandle[int]) -> None:
        results[i] = await handle.result(timeout=30)

    async with (
        proxied(os.fspath(db_path)) as (proxy, url),
        rw.Runtime(url, synchronous="NORMAL", reconnect_timeout=0.3) as runtime,
        # A client in another process would wait by reading the journal: through the outage.
        rw.Runtime(url, execute=False, reconnect_timeout=0.3) as client,
        anyio.create_task_group() as waiting,
    ):
        handles = [await runtime.start(counting, 30) for _ in range(4)]
        for i, handle in enumerate(handles):
            waiting.start_soon(wait_for, i, client.get_run(handle.id))
        await anyio.sleep(0.15)
        proxy.stop()
        with anyio.fail_after(20):
            while runtime.journal.fault is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert isinstance(runtime.journal.fault, rw.JournalUnavailable)
        with pytest.raises(rw.JournalUnavailable):
            await runtime.start(counting, 1)
        await anyio.sleep(1.0)  # the server stays away a while
        async with anyio.create_task_group() as tg:
            await proxy.start(tg)
            assert [await h.result(timeout=30) for h in handles] == [sum(range(30))] * 4
            for handle in handles:
                chunks = [c.data async for c in handle.stream(skip_superseded=True)]
                assert chunks == list(range(30))
            with anyio.fail_after(10):
                while len(results) < len(handles):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert list(results.values()) == [sum(range(30))] * 4
            with anyio.fail_after(10):
                while len(results) < len(handles):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert list(results.values()) == [sum(range(30))] * 4
            tg.cancel_scope.cancel()
    twice = query_journal(
        db_path,
        "SELECT run_id, cid FROM events WHERE kind = 'step_completed' "
        "GROUP BY run_id, cid HAVING count(*) > 1",
    )
    assert twice == []
    failed = query_journal(db_path, "SELECT count(*) FROM events WHERE kind = 'step_failed'")
    assert failed == [(0,)]
    assert "journal writes succeed again" in caplog.text
