"""The benchmark scripts run: ``bench/bench.py``, ``bench/streams.py``,
``bench/processes.py``, ``bench/replay.py``, ``bench/prune.py``, ``bench/payloads.py`` and
``bench/schedules.py`` with
``--quick`` exit 0 and print their tables;
``bench.py`` and ``processes.py`` also on PostgreSQL (``--db``), where each
scenario's schema is named after the URL's and is gone afterwards.

No timing is asserted; this only guards the scripts against bit rot.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PG_URL

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"
STREAMS = BENCH.with_name("streams.py")
PROCESSES = BENCH.with_name("processes.py")
REPLAY = BENCH.with_name("replay.py")
PRUNE = BENCH.with_name("prune.py")
PAYLOADS = BENCH.with_name("payloads.py")
SCHEDULES = BENCH.with_name("schedules.py")
WEB = BENCH.with_name("web.py")


def run_quick(
    script: Path, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run *script* --quick (plus *args*); return the process and its table's header line."""
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    header = next((line for line in proc.stdout.splitlines() if line.startswith("scenario ")), None)
    assert header is not None, proc.stdout
    assert "ERROR" not in proc.stdout
    return proc, header


def pg_target() -> tuple[str, str]:
    """A URL naming a fresh schema prefix (with a password, which must not be shown)."""
    prefix = f"t_{secrets.token_hex(6)}"
    url = PG_URL.replace("postgres@", "postgres:hush@", 1)
    return f"{url}{'&' if '?' in url else '?'}schema={prefix}", prefix


def schemas_named(prefix: str) -> list[str]:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{prefix}%",)
        ).fetchall()
    return [row[0] for row in rows]


def check_postgres_header(stdout: str, prefix: str) -> None:
    assert "postgresql journal" in stdout.splitlines()[0]
    journal = next(line for line in stdout.splitlines() if line.startswith("journal "))
    assert f"(schema {prefix})" in journal
    assert "hush" not in stdout
    assert "server " in stdout


def test_bench_quick_runs(journal_backend: str, tmp_path: Path) -> None:
    if journal_backend == "sqlite":
        proc, header = run_quick(BENCH, tmp_path)
        assert "floor: 50 sqlite3 transactions" in proc.stdout
        assert "50 sequential steps" in proc.stdout
    else:
        url, prefix = pg_target()
        only = "floor,burst_floor,seq10,gather10,burst,long"
        proc, header = run_quick(BENCH, tmp_path, "--db", url, "--only", only, "--long-steps", "50")
        check_postgres_header(proc.stdout, prefix)
        assert "floor: 50 psycopg transactions" in proc.stdout
        assert schemas_named(prefix) == []
    for column in ("median ms", "p95 ms", "runs/s", "x floor", "target", "met"):
        assert column in header
    seq10 = next(line for line in proc.stdout.splitlines() if line.startswith("10 sequential"))
    assert re.search(r" \d+\.\d\dx ", seq10), seq10  # its ms/step as a multiple of the floor's
    # The floors' targets: a burst against the burst floor, a step against the floor.
    assert re.search(r"floor: 100 runs, 4 writes each, 100 per transaction +100 ", proc.stdout)
    share = next(line for line in proc.stdout.splitlines() if line.startswith("burst runs/s"))
    assert re.search(r">= 15% of floor +(yes|NO) +\d+\.\d% of the floor's \d+ runs/s", share)
    if journal_backend == "sqlite":
        lines = proc.stdout.splitlines()
        step = next(line for line in lines if line.startswith("sequential step /"))
        assert re.search(r" \d+\.\d\dx +- +- +<= 1\.5x floor +(yes|NO) ", step), step


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


def test_replay_bench_quick_runs(journal_backend: str, tmp_path: Path) -> None:
    args: tuple[str, ...] = ()
    if journal_backend == "postgresql":
        url, prefix = pg_target()
        args = ("--db", url)
    proc, header = run_quick(REPLAY, tmp_path, *args)
    for column in ("runs", "seconds", "us/run", "target", "met"):
        assert column in header
    assert re.search(r"^check +1,000 ", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^cli +1,000 ", proc.stdout, re.MULTILINE), proc.stdout
    if journal_backend == "postgresql":
        assert schemas_named(prefix) == []


def test_prune_bench_quick_runs(journal_backend: str, tmp_path: Path) -> None:
    args: tuple[str, ...] = ("--synchronous", "NORMAL")
    if journal_backend == "postgresql":
        url, prefix = pg_target()
        args = ("--db", url)
    proc, _ = run_quick(PRUNE, tmp_path, *args)
    assert re.search(r"^load \+ prune .* 10,000 in ", proc.stdout, re.MULTILINE), proc.stdout
    assert "worst stall the prune added: " in proc.stdout
    if journal_backend == "postgresql":
        assert schemas_named(prefix) == []


def test_web_bench_quick_runs(journal_backend: str, tmp_path: Path) -> None:
    args: tuple[str, ...] = ()
    if journal_backend == "postgresql":
        url, prefix = pg_target()
        args = ("--db", url)
    proc, header = run_quick(WEB, tmp_path, *args)
    for column in ("rows", "median ms", "p95 ms", "target", "met"):
        assert column in header
    assert re.search(r"^page at run 18,000 +50 ", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^attribute \(200 runs\) +4 ", proc.stdout, re.MULTILINE), proc.stdout
    if journal_backend == "postgresql":
        assert schemas_named(prefix) == []


def test_processes_bench_quick_runs(journal_backend: str, tmp_path: Path) -> None:
    if journal_backend == "sqlite":
        proc, header = run_quick(PROCESSES, tmp_path)
        counts = (1, 4)
    else:
        url, prefix = pg_target()
        proc, header = run_quick(PROCESSES, tmp_path, "--db", url, "--workers", "1,2")
        check_postgres_header(proc.stdout, prefix)
        assert ">= 1.6x 1 worker" in proc.stdout
        assert "write lock held" in proc.stdout
        assert schemas_named(prefix) == []
        counts = (1, 2)
    for column in ("result", "target", "met"):
        assert column in header
    for count in counts:
        assert f"five-step runs, {count} worker" in proc.stdout
    for row in (
        "run ends in a worker -> client result()",
        "resume_hook in client -> workflow continues in a worker on another host",
        "stream chunk written in a worker -> reader in client",
    ):
        assert row in proc.stdout, row
    assert "where the time went" in proc.stdout
    assert "limit: " in proc.stdout


def test_payloads_bench_quick_runs(journal_backend: str, tmp_path: Path) -> None:
    args: tuple[str, ...] = ()
    if journal_backend == "postgresql":
        url, prefix = pg_target()
        args = ("--db", url)
    proc, header = run_quick(PAYLOADS, tmp_path, *args)
    for column in ("result", "target", "met"):
        assert column in header
    for row in ("journal growth, 20 MB argument", "start() / file floor", "runs show --json"):
        assert row in proc.stdout, row
    assert re.search(r"floor: one INSERT of it \+ COMMIT +\d+ ms", proc.stdout), proc.stdout
    if journal_backend == "postgresql":
        assert schemas_named(prefix) == []


def test_schedules_bench_quick_runs(journal_backend: str, tmp_path: Path) -> None:
    args: tuple[str, ...] = ("--synchronous", "NORMAL")
    if journal_backend == "postgresql":
        url, prefix = pg_target()
        args = ("--db", url)
    proc, header = run_quick(SCHEDULES, tmp_path, *args)
    assert "fire median ms" in header
    for row in (r"day +24 +24 ", r"two +24 +24 ", r"catchup +100 +100 "):
        assert re.search(f"^{row}", proc.stdout, re.MULTILINE), proc.stdout
    if journal_backend == "postgresql":
        assert schemas_named(prefix) == []


@pytest.mark.parametrize("script", [BENCH, PROCESSES], ids=["bench", "processes"])
def test_db_must_be_a_postgres_url(script: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script), "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 64
    assert "postgresql:// URL" in proc.stderr


@pytest.mark.parametrize("kind", ["seq", "runs"])
def test_instructions_bench_workload_runs(kind: str) -> None:
    """What bench/instructions.py has callgrind count (counting itself needs valgrind)."""
    script = BENCH.with_name("instructions.py")
    proc = subprocess.run(
        [sys.executable, str(script), "--child", kind, "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
