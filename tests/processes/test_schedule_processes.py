"""Two real processes serve one schedule on one journal (one on asyncio, one on trio):
the tick they both fire starts one run, executed once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import query_journal

from runwright._scheduler import tick_key

HERE = Path(__file__).parent
TICK = 1_800_000_000.0  # a minute boundary


def set_offset(path: Path, seconds: float) -> None:
    """Write the workers' clock offset whole (they read it at every look)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(str(seconds))
    os.replace(fresh, path)


def test_two_processes_one_tick_one_run(db_path: Path | str, tmp_path: Path):
    ledger, offset, stop = tmp_path / "ledger.txt", tmp_path / "offset", tmp_path / "stop"
    # The clocks stay 50 s before the tick (no earlier tick falls after it) until
    # both processes serve the schedule.
    set_offset(offset, TICK - 50 - time.time())
    script = str(HERE / "schedule_worker.py")
    argv = [sys.executable, script, os.fspath(db_path), str(offset), str(stop), str(ledger)]
    procs = [
        subprocess.Popen([*argv, backend], stderr=subprocess.PIPE, text=True)
        for backend in ("asyncio", "trio")
    ]
    try:
        for proc in procs:
            assert proc.stderr is not None
            while (line := proc.stderr.readline()) != "serving\n":
                assert line, f"a worker exited before serving (status {proc.wait()})"
        # Now both clocks read the tick half a second from now.
        set_offset(offset, TICK - 0.5 - time.time())
        deadline = time.monotonic() + 30
        while not (ledger.exists() and ledger.read_text()):
            assert time.monotonic() < deadline, "the tick's step did not run"
            time.sleep(0.05)
        time.sleep(1.0)  # the other process fires the tick too, and finds the run
    finally:
        stop.write_text("")
    logs = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        logs.append(err)
    key = tick_key("processes.every_minute", TICK)
    runs = query_journal(db_path, "SELECT run_id, status FROM runs WHERE key = ?", (key,))
    assert len(runs) == 1, runs
    [(run_id, status)] = runs
    assert status == "completed"
    assert query_journal(db_path, "SELECT count(*) FROM runs") == [(1,)]
    # Each process fired the tick, and got the same run.
    fired = "fired 2027-01-15T08:00:00Z: run "
    assert [log.count(fired) for log in logs] == [1, 1], logs
    assert all(f"{fired}{run_id}" in log for log in logs)
    lines = ledger.read_text().splitlines()
    assert len(lines) == 1  # the step ran once
    assert lines[0].startswith("2027-01-15T08:00:00+00:00 ")
