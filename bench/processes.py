"""Many processes, one journal: worker throughput and cross-process wake-up latency.

    .venv/bin/python bench/processes.py [--runs 1000] [--synchronous FULL|NORMAL]

Prints a table:
- 1,000 five-step runs started by a client process and executed by 1 worker
  process, then by 4 (total runs/s, from the first start to the last result);
- cross-process wake-up: a run ends in a worker process; how long until the
  client process, waiting on ``result()``, has the value (median and p95,
  measured against the wall-clock time the run's last step returned);
- resume-to-continue: ``resume_hook`` in the client process until the
  workflow, in a worker process, has the payload and runs its next step.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

import runwright as rw

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import flows  # noqa: E402


def start_workers(db: Path, count: int, synchronous: str) -> list[subprocess.Popen[bytes]]:
    procs = []
    for _ in range(count):
        command = [
            sys.executable, "-m", "runwright._cli", "worker", "flows",
            "--db", str(db), "--synchronous", synchronous,
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(command, cwd=HERE, stderr=subprocess.DEVNULL, start_new_session=True)
        )
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=30)


@contextlib.asynccontextmanager
async def client_of_workers(db: Path, workers: int, synchronous: str) -> AsyncIterator[rw.Runtime]:
    """*workers* worker processes on *db*, up and watching, and a client runtime."""
    procs = start_workers(db, workers, synchronous)
    try:
        async with rw.Runtime(db, execute=False, synchronous=synchronous) as client:
            handle = await client.start(flows.five, 0)
            await handle.result(timeout=60)
            yield client
    finally:
        stop_workers(procs)


async def throughput(db: Path, workers: int, runs: int, synchronous: str) -> float:
    async with client_of_workers(db, workers, synchronous) as client:
        started = time.perf_counter()
        handles = [await client.start(flows.five, i) for i in range(runs)]
        for i, handle in enumerate(handles):
            assert await handle.result(timeout=300) == i + 10
        return runs / (time.perf_counter() - started)


async def wake_up_latency(db: Path, samples: int, synchronous: str) -> list[float]:
    async with client_of_workers(db, 1, synchronous) as client:
        latencies = []
        for _ in range(samples):
            handle = await client.start(flows.stamped)
            ended = await handle.result(timeout=60)
            latencies.append((time.time() - ended) * 1000)
            await anyio.sleep(0.02)  # let the watcher go idle, as between real events
        return latencies


async def resume_latency(db: Path, samples: int, synchronous: str) -> list[float]:
    """resume_hook in this process -> the workflow continuing in a worker process."""
    async with client_of_workers(db, 1, synchronous) as client:
        handle = await client.start(flows.listener, "bench", samples)
        sent = []
        for i in range(samples):
            while True:
                try:
                    t0 = time.time()
                    await client.resume_hook("bench", i)
                    break
                except rw.HookNotFound:
                    await anyio.sleep(0.01)
            sent.append(t0)
            await anyio.sleep(0.02)
        stamps = await handle.result(timeout=60)
        return [(stamp - t0) * 1000 for stamp, t0 in zip(stamps, sent, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (1, 4):
            rate = anyio.run(
                throughput, Path(tmp) / f"w{count}.db", count, options.runs, options.synchronous
            )
            rows.append((f"{options.runs} five-step runs, {count} worker(s)", f"{rate:.0f} runs/s"))
        lat = anyio.run(wake_up_latency, Path(tmp) / "lat.db", options.samples, options.synchronous)
        rows.append(("run ends in a worker -> client result() (median / p95)", _spread(lat)))
        lat = anyio.run(resume_latency, Path(tmp) / "hook.db", options.samples, options.synchronous)
        rows.append(
            ("resume_hook in client -> workflow continues in worker (median / p95)", _spread(lat))
        )
    print(
        f"runwright processes benchmark: synchronous={options.synchronous}, "
        f"{os.cpu_count()} cpus, python {sys.version.split()[0]}"
    )
    width = max(len(name) for name, _ in rows)
    print(f"{'scenario'.ljust(width)}  result")
    print(f"{'-' * width}  ------")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


def _spread(latencies: list[float]) -> str:
    p95 = statistics.quantiles(latencies, n=20)[18]
    return f"{statistics.median(latencies):.1f} / {p95:.1f} ms"


if __name__ == "__main__":
    main()
