"""The benchmark scripts run: ``bench/bench.py --quick`` and ``bench/streams.py --quick``
exit 0 and print their tables.

No timing is asserted; this only guards the scripts against bit rot.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"


def run_quick(script: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run *script* --quick; return the process and its table's header line."""
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    header = next((line for line in proc.stdout.splitlines() if line.startswith("scenario ")), None)
    assert header is not None, proc.stdout
    return proc, header


def test_bench_quick_runs(tmp_path: Path) -> None:
    proc, header = run_quick(BENCH, tmp_path)
    for column in ("median ms", "p95 ms", "runs/s", "target", "met"):
        assert column in header
    assert "50 sequential steps" in proc.stdout
    assert "ERROR" not in proc.stdout


STREAMS = BENCH.with_name("streams.py")


def test_streams_bench_quick_runs(tmp_path: Path) -> None:
    proc, header = run_quick(STREAMS, tmp_path)
    for column in ("median ms", "p95 ms", "MiB/s", "target", "met"):
        assert column in header
    for row in (
        "TTFB, reader in this process",
        "TTFB, reader in another process",
        "1 MiB in 64 KiB chunks",
        "pipeline of 5 transform steps",
        "10 parallel streams of 1 MiB",
        "fan-out/fan-in: 10 streams",
    ):
        assert row in proc.stdout, row
    assert "ERROR" not in proc.stdout
