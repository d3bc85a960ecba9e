"""A journal its user may read but not write: a runtime says so at open, with the path
and the cause, without hanging; the reading commands of the CLI work.

The checks run in a subprocess as a non-root user (``tests/read_only_user.py``
drops to ``nobody``); as a non-root user already, the subprocess runs as that
user. SQLite only: file permissions are a property of the SQLite journal (a
PostgreSQL role's privileges are the server's concern).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from conftest import mount

import runwright as rw

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions"),
]

NOBODY = 65534
USER_SCRIPT = Path(__file__).with_name("read_only_user.py")


#: Over 1 MiB: on SQLite the argument is in a file of the journal's blob directory,
#: which the reading commands read too.
LARGE = 2 * 1024 * 1024


@rw.workflow
async def hello(data: bytes) -> str:
    return "hello"


def _give(path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)


async def _journal(folder: Path) -> tuple[Path, str]:
    path = folder / "journal.db"
    async with rw.Runtime(path, synchronous="NORMAL") as runtime:
        handle = await runtime.start(hello, os.urandom(LARGE))
        assert await handle.result(timeout=10) == "hello"
    assert await anyio.Path(f"{path}-blobs").exists()  # the argument is a file there
    return path, handle.id


def _as_user(backend: str, path: Path, run_id: str) -> dict[str, dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(USER_SCRIPT), backend, str(path), run_id],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=path.parent.parent,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, dict[str, object]] = json.loads(done.stdout.splitlines()[-1])
    return report


def _check(report: dict[str, dict[str, object]], path: Path, cause: str, run_id: str) -> None:
    opened = report["runtime"]
    assert opened.get("error") == "JournalReadOnly", opened
    message = str(opened["message"])
    assert message.startswith(f"{path} cannot be written: {cause}"), message
    assert report["list"]["code"] == 0, report["list"]
    assert run_id in str(report["list"]["out"])
    assert report["show"]["code"] == 0, report["show"]
    assert "completed" in str(report["show"]["out"])
    assert "args      <2.1 MB bytes>\n" in str(report["show"]["out"])
    for command in ("list", "show"):
        assert "not a runwright journal" not in str(report[command]["err"])


@pytest.mark.parametrize(
    ("what", "mode", "cause"),
    [("file", 0o444, "read-only file"), ("directory", 0o555, "read-only directory")],
)
async def test_a_read_only_file_or_directory(
    shared_dir: Path, anyio_backend: str, what: str, mode: int, cause: str
):
    path, run_id = await _journal(shared_dir)
    for name in (shared_dir, path):
        _give(name)
    os.chmod(path if what == "file" else shared_dir, mode)
    report = await anyio.to_thread.run_sync(_as_user, anyio_backend, path, run_id)
    _check(report, path, cause, run_id)


async def test_a_read_only_mount(small_mount: Path, anyio_backend: str):
    path, run_id = await _journal(small_mount)
    remounted = await anyio.to_thread.run_sync(lambda: mount("-o", "remount,ro", str(small_mount)))
    assert remounted.returncode == 0, remounted.stderr
    # Read-only for everyone, root included: no need to drop privileges, but it does.
    report = await anyio.to_thread.run_sync(_as_user, anyio_backend, path, run_id)
    _check(report, path, "read-only file system", run_id)
