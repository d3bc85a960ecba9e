"""A server that waits for open responses before the application's shutdown runs
(uvicorn without --timeout-graceful-shutdown) is not held up by an open SSE stream when
the application uses runwright.asgi.interrupt_streams_on_signals: SIGINT ends the
stream at once, cleanly, and the server exits. Without it, the server waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from sse_server_app import talks_then_waits

import runwright as rw

TESTS = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_run(db: Path | str) -> str:
    async def start() -> str:
        async with rw.Runtime(db, execute=False) as client:
            return (await client.start(talks_then_waits)).id

    return anyio.run(start)


def _serve(db: Path | str, port: int, *, interrupt: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RW_TEST_DB": str(db), "PYTHONPATH": str(TESTS)}
    if interrupt:
        env["RW_INTERRUPT"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "sse_server_app:app", "--port", str(port),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _first_events(lines: Iterator[str], count: int) -> list[str]:
    data = []
    for line in lines:
        if line.startswith("data: "):
            data.append(line)
        if len(data) == count:
            return data
    raise AssertionError(f"the stream ended after {data}")


@pytest.mark.parametrize("interrupt", [True, False], ids=["interrupted", "without-helper"])
def test_sigint_ends_an_open_stream_and_the_server(db_path: Path | str, interrupt: bool):
    run_id = _start_run(db_path)
    port = _free_port()
    server = _serve(db_path, port, interrupt=interrupt)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 20
            while True:  # until the server listens
                try:
                    client.get("/nope", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, server.stderr
                    time.sleep(0.05)
            with client.stream("GET", f"/{run_id}") as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                assert len(_first_events(lines, 3)) == 3
                server.send_signal(signal.SIGINT)
                signalled = time.monotonic()
                if not interrupt:
                    # The server waits for the open response: the case this helper is for.
                    time.sleep(2.0)
                    assert server.poll() is None
                    return
                rest = list(lines)
        server.wait(timeout=10)
        assert time.monotonic() - signalled < 5
        assert not any(line.startswith("event: end") for line in rest)  # resume, not end
        stderr = server.stderr.read().decode() if server.stderr else ""
        assert "Traceback" not in stderr, stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if server.stderr is not None:
            server.stderr.close()
