"""A process killed where a large payload's file and its row disagree
(``tests/journal/test_blobs.py``); not a test module.

Usage::

    python tests/blob_crash_worker.py DB write
    python tests/blob_crash_worker.py DB prune

``write`` starts a run whose 2 MB argument goes to a file of the blob
directory, and SIGKILLs itself once that file is written and fsynced, just
before the transaction that names it commits. ``prune`` prunes every ended
run and SIGKILLs itself once that transaction has committed, before the
pruned runs' files are removed. Either way the files are orphans.
"""

from __future__ import annotations

import os
import signal
import sys

import anyio

import runwright as rw
from runwright.journal.sqlite._blobs import BlobWriter


@rw.workflow
async def keep(data: bytes) -> int:
    return len(data)


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


async def write(db: str) -> None:
    def before_commit(self: BlobWriter) -> None:
        if self._written:
            die()

    BlobWriter.before_commit = before_commit  # type: ignore[method-assign]
    async with rw.Runtime(db) as runtime:
        await runtime.start(keep, os.urandom(2_000_000))


async def prune(db: str) -> None:
    committed = BlobWriter.committed

    def committed_then_die(self: BlobWriter) -> None:
        if self._doomed:
            die()
        committed(self)

    BlobWriter.committed = committed_then_die  # type: ignore[method-assign]
    async with rw.Runtime(db) as runtime:
        await runtime.prune(0.001)


if __name__ == "__main__":
    path, mode = sys.argv[1:3]
    anyio.run(write if mode == "write" else prune, path)
    sys.exit(3)  # not killed: the test fails on this status
