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


def test_two_processes_one_tick_one_run(db_path: Path | str, tmp_path: Path):
    ledger = tmp_path / "ledger.txt"
    launched = time.time()
    # Both clocks read TICK four seconds from now (time to start up), and the
    # processes stop two seconds after that.
    offset = TICK - (launched + 4.0)
    until = launched + 6.0
    script = str(HERE / "schedule_worker.py")
    argv = [sys.executable, script, os.fspath(db_path), str(offset), str(until), str(ledger)]
    procs = [
        subprocess.Popen([*argv, backend], stderr=subprocess.PIPE, text=True)
        for backend in ("asyncio", "trio")
    ]
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
