"""An ASGI application for tests/test_server_shutdown.py, served by uvicorn in a
subprocess: one runtime on $RW_TEST_DB, each path /RUN_ID answers that run's default
stream as SSE. With $RW_INTERRUPT set, shutdown signals end the streams first."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import runwright as rw
from runwright.asgi import interrupt_streams_on_signals, stream_response

STATE: dict[str, rw.Runtime] = {}


@rw.step
async def first_words() -> int:
    async with rw.writable() as out:
        for i in range(3):
            await out.write(f"word {i}")
    return 3


@rw.workflow
async def talks_then_waits() -> None:
    await first_words()
    await rw.hook("sse-server-never")  # the run, and its stream, stay open


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        async with rw.Runtime(os.environ["RW_TEST_DB"], shutdown_grace=0.1) as runtime:
            STATE["runtime"] = runtime
            interrupt = (
                interrupt_streams_on_signals(runtime)
                if os.environ.get("RW_INTERRUPT")
                else contextlib.nullcontext()
            )
            with interrupt:
                await receive()  # lifespan.startup
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    run = STATE["runtime"].get_run(scope["path"].strip("/"))
    await stream_response(run)(scope, receive, send)
