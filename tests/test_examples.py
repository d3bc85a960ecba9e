"""The examples run as the README says, as real processes, and print what they claim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def run_example(name: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_quickstart(tmp_path: Path) -> None:
    out = run_example("quickstart.py", tmp_path)
    assert "charge o-1: attempt 3" in out
    assert "status: completed" in out
    again = run_example("quickstart.py", tmp_path)  # same key: the first run's result
    assert "charge o-1" not in again
    assert "status: completed" in again


def test_streaming(tmp_path: Path) -> None:
    out = run_example("streaming.py", tmp_path)
    words = "durable streams survive crashes and resume where the reader left off"
    assert f"live:   {words} \n" in out
    assert "tokens: 11" in out
    assert "last 3: reader left off \n" in out
    assert "stream: 11 chunks, 69 bytes, closed=True" in out
