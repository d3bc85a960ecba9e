"""``runwright worker MODULE...``: execute runs from the journal until SIGINT/SIGTERM.

It imports the modules (registering their workflows); any number of workers
and client processes may share one journal. A worker creates or upgrades the
journal it opens, as every runtime does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import anyio

from .._runtime import Runtime
from ._common import import_modules, target_of

__all__ = ["worker_command"]


def worker_command(args: argparse.Namespace) -> int:
    import_modules(args.modules)
    target = target_of(args)

    async def serve() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with Runtime(
                target.db,
                schema=target.schema,
                synchronous=args.synchronous,
                max_concurrent_steps=args.concurrency,
                lease_seconds=args.lease,
                shutdown_grace=args.shutdown_grace,
                host_id=args.host_id,
            ) as runtime:
                print(
                    f"runwright worker {os.getpid()}: executing runs from {runtime.path}",
                    file=sys.stderr,
                    flush=True,
                )
                async for signum in signals:
                    print(
                        f"runwright worker {os.getpid()}: {signal.Signals(signum).name}, "
                        "shutting down",
                        file=sys.stderr,
                        flush=True,
                    )
                    break

    anyio.run(serve, backend=args.backend)
    return 0
