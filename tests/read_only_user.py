"""What a user who may read but not write a journal meets (``tests/test_read_only.py``);
not a test module.

Usage::

    python tests/read_only_user.py BACKEND DB RUN_ID

Started as root, it loads everything it needs, then becomes ``nobody`` for
good (``setuid``) before it touches DB, so the file system's permissions
apply as they do to any non-root user. It prints one JSON line: what opening
a runtime on DB did (within 5 s), and the exit codes and error text of
``runwright runs list`` and ``runwright runs show RUN_ID``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

import anyio
import anyio._backends._asyncio
import anyio._backends._trio
import anyio.to_thread

import runwright as rw
import runwright._cli._common
import runwright._cli._db
import runwright._cli._format
import runwright._cli._runs
import runwright._cli._timeline
import runwright.journal.sqlite
from runwright._cli import main

NOBODY = 65534


def become_nobody() -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    assert os.geteuid() != 0


async def open_runtime(db: str) -> dict[str, str]:
    try:
        with anyio.fail_after(5):
            async with rw.Runtime(db) as runtime:
                await runtime.start(noop)
        return {"opened": "yes"}
    except TimeoutError:
        return {"hung": "open or start took over 5 s"}
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)}


@rw.workflow
async def noop() -> None:
    return None


def cli(*argv: str) -> dict[str, object]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


def run() -> None:
    backend, db, run_id = sys.argv[1:4]
    become_nobody()
    report = {
        "runtime": anyio.run(open_runtime, db, backend=backend),
        "list": cli("runs", "list", "--db", db),
        "show": cli("runs", "show", run_id, "--db", db),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    run()
