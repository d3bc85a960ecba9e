"""The benchmark script runs: ``bench/bench.py --quick`` exits 0 and prints its table.

No timing is asserted; this only guards the script against bit rot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"


def test_bench_quick_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    header = next((line for line in proc.stdout.splitlines() if line.startswith("scenario ")), None)
    assert header is not None, proc.stdout
    for column in ("median ms", "p95 ms", "runs/s", "target", "met"):
        assert column in header
    assert "50 sequential steps" in proc.stdout
    assert "ERROR" not in proc.stdout
