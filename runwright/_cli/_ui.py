"""``runwright ui``: serve the web view of a journal (``runwright.web``) over HTTP.

It opens the journal with a client runtime (it runs no steps) and serves the
view with hypercorn, on asyncio or trio (``--backend``), on 127.0.0.1 unless
told otherwise. Unless ``--read-only``, it prints the URL that carries the
access token actions need (opening it once signs a browser in with a
cookie), as Jupyter does. SIGINT or SIGTERM stops it: open pages and
streams are ended within a second.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

import anyio

from ._common import CommandError, check_journal, client, target_of

if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["DEFAULT_PORT", "add_parser", "ui_command"]

DEFAULT_PORT = 8233
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def add_parser(commands: _Commands, db: argparse.ArgumentParser) -> None:
    ui = commands.add_parser(
        "ui",
        parents=[db],
        help="serve a live web view of the journal's runs",
        description=(
            "Serve the web view of the journal: runs, their timelines, streams and actions "
            "(cancel, resume a hook, start again), which need the access token printed at "
            "start-up. Needs the [ui] extra: pip install 'runwright[ui]'."
        ),
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    ui.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    ui.add_argument("--read-only", action="store_true", help="show runs; offer no actions")
    ui.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    ui.set_defaults(handler=ui_command)


def ui_command(args: argparse.Namespace) -> int:
    try:
        from hypercorn.config import Config
    except ImportError:
        raise CommandError(
            "runwright ui needs an HTTP server: pip install 'runwright[ui]'"
        ) from None
    from ..web import app

    target = target_of(args)
    check_journal(target)
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, got {args.port}")
    listener = _listen(args.host, args.port)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    loopback = args.host in _LOOPBACK or host in _LOOPBACK
    config = Config()
    # hypercorn takes the socket over (and closes it) by its descriptor.
    fd = listener.detach()
    config.bind = [f"fd://{fd}"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    config.include_server_header = False

    async def serve() -> None:
        stop = anyio.Event()
        async with client(target) as runtime, anyio.create_task_group() as tasks:
            allowed = [*_LOOPBACK, shown] if loopback else None
            web = app(runtime, read_only=args.read_only, allowed_hosts=allowed)
            url = f"http://{shown}:{port}/"
            if web.token is None:
                print(f"runwright ui: {runtime.path}, read-only, at {url}", flush=True)
            else:
                print(
                    f"runwright ui: {runtime.path} at {url}\n"
                    f"  open {url}?token={web.token} to sign in (actions need the token)",
                    flush=True,
                )
            tasks.start_soon(_until_signal, stop, runtime)
            await _serve(args.backend, web, config, stop.wait)
            tasks.cancel_scope.cancel()

    anyio.run(serve, backend=args.backend)
    print("runwright ui: stopped", file=sys.stderr, flush=True)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def _until_signal(stop: anyio.Event, runtime: Any) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            with contextlib.suppress(RuntimeError):
                runtime.interrupt_streams()  # open stream responses end at once
            stop.set()
            return


async def _serve(backend: str, web: Any, config: Any, trigger: Any) -> None:
    if backend == "trio":
        from hypercorn.trio import serve as serve_trio

        await serve_trio(web, config, shutdown_trigger=trigger)
    else:
        from hypercorn.asyncio import serve as serve_asyncio

        await serve_asyncio(web, config, shutdown_trigger=trigger)
