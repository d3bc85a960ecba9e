#!/usr/bin/env python
"""Many processes, one journal: worker throughput and cross-process latencies.

    .venv/bin/python bench/processes.py                      # SQLite, 1 and 4 workers
    .venv/bin/python bench/processes.py --db postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/processes.py --quick              # smoke mode, a few seconds

Workers are ``runwright worker flows --host-id bench-host-<i>`` processes,
each playing a host of its own; the client is this process, ``rw.Runtime(db,
execute=False, host_id="bench-client")``. Every measurement has a fresh
journal (see ``journals.py``) and its own workers. Rows:

- throughput: ``--runs`` five-step runs, all started at once by the client,
  executed by 1, 2 and 4 workers (SQLite: 1 and 4; ``--workers`` chooses);
  runs/s from the first start to the last result, after a warm-up. The
  notes say where the CPU went meanwhile and, on PostgreSQL, what the
  sessions waited for (``load.py``); the last line names the limit.
- wake-up: a run ends in a worker; how long until ``result()`` returns in
  the client.
- resume: ``resume_hook`` in the client until the workflow, in a worker,
  has the payload and runs its next step.
- stream: a step in a worker writes a chunk; how long until a reader in the
  client (``run.stream()``) has it.

Latencies are medians and p95 of ``--samples`` events, 20 ms apart, stamped
with ``flows.clock`` (one clock for every process on Linux).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import runwright as rw

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import flows  # noqa: E402
from journals import Journals, server_info  # noqa: E402
from load import CpuSnapshot, CpuUse, WaitSampler, backend_pids, verdict  # noqa: E402
from report import (  # noqa: E402
    error_text,
    format_machine,
    host_facts,
    load_average,
    percentile,
    render_table,
)

#: Seconds between latency samples, so that each is a fresh event, not a queue.
GAP = 0.02
#: Stream chunks read before the samples (the reader attaching, the worker warming up).
WARMUP_CHUNKS = 3
LATENCY_TARGET_MS = 10.0
SCALING_TARGET = 1.6


# -- workers ------------------------------------------------------------------------


@dataclass
class Workers:
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    async def ready(self, timeout: float = 60.0) -> None:
        """Wait until every worker says it executes runs (its runtime is open)."""
        deadline = time.monotonic() + timeout
        waiting = set(range(len(self.procs)))
        while waiting:
            for i in list(waiting):
                if "executing runs from" in self.logs[i].read_text(errors="replace"):
                    waiting.discard(i)
                elif self.procs[i].poll() is not None:
                    raise RuntimeError(f"worker {i} exited: {self.tail(i)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers {sorted(waiting)} not up after {timeout:g} s")
            await anyio.sleep(0.02)

    def tail(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace").strip()[-2000:]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def start_workers(db: str, count: int, synchronous: str, logs: Path) -> Workers:
    procs, files = [], []
    for i in range(1, count + 1):
        log = logs / f"worker-{i}-{time.monotonic_ns()}.log"
        command = [
            sys.executable, "-m", "runwright._cli", "worker", "flows", "--db", db,
            "--synchronous", synchronous, "--host-id", f"bench-host-{i}",
        ]  # fmt: skip
        with log.open("wb") as stderr:
            procs.append(
                subprocess.Popen(
                    command, cwd=HERE, stderr=stderr, stdout=stderr, start_new_session=True
                )
            )
        files.append(log)
    return Workers(procs, files)


@contextlib.asynccontextmanager
async def client_of_workers(
    db: str, count: int, options: argparse.Namespace
) -> AsyncIterator[tuple[rw.Runtime, Workers]]:
    """*count* worker processes on *db*, up and watching, and a client runtime."""
    workers = start_workers(db, count, options.synchronous, options.logs)
    try:
        await workers.ready()
        async with rw.Runtime(
            db, execute=False, synchronous=options.synchronous, host_id="bench-client"
        ) as client:
            await many(client, 4 * count)  # warm-up: every worker gets some
            yield client, workers
    finally:
        workers.stop()


async def many(client: rw.Runtime, runs: int) -> None:
    """Start *runs* five-step runs at once, then wait for each result in turn.

    One ``result()`` at a time: a client waiting on a run it does not drive
    polls the journal (backing off to 100 ms) besides being woken by the
    watcher, so a thousand concurrent waiters would load the machine with
    reads that are no part of the workers' throughput.
    """
    handles: list[tuple[int, rw.RunHandle[Any]]] = []

    async def start(i: int) -> None:
        handles.append((i, await client.start(flows.five, i)))

    async with anyio.create_task_group() as tg:
        for i in range(runs):
            tg.start_soon(start, i)
    for i, handle in handles:
        if await handle.result(timeout=300) != i + 10:
            raise AssertionError(f"five-step run {i} returned an unexpected result")


# -- measurements -------------------------------------------------------------------


@dataclass
class Throughput:
    workers: int
    runs_per_s: float
    cpu: CpuUse
    waits: WaitSampler | None


async def throughput(
    db: str, count: int, options: argparse.Namespace, journals: Journals
) -> Throughput:
    async with client_of_workers(db, count, options) as (client, workers):
        sampler = None
        server: list[int] = []
        if journals.backend == "postgresql":
            sampler = WaitSampler(journals.url, journals.application_name)
            with journals.connect() as conn:
                server = backend_pids(conn, journals.application_name)
        with sampler or contextlib.nullcontext():
            before = CpuSnapshot.take(workers.pids, server)
            started = time.perf_counter()
            await many(client, options.runs)
            elapsed = time.perf_counter() - started
            if server:  # sessions opened meanwhile count from their start
                with journals.connect() as conn:
                    server = sorted({*server, *backend_pids(conn, journals.application_name)})
            after = CpuSnapshot.take(workers.pids, server)
        return Throughput(count, options.runs / elapsed, CpuUse.between(before, after), sampler)


async def wake_up_latency(client: rw.Runtime, samples: int) -> list[float]:
    """A run ends in a worker -> ``result()`` returns in the client."""
    latencies = []
    for _ in range(samples):
        handle = await client.start(flows.stamped)
        ended = await handle.result(timeout=60)
        latencies.append((flows.clock() - ended) * 1000)
        await anyio.sleep(GAP)
    return latencies


async def resume_latency(client: rw.Runtime, samples: int) -> list[float]:
    """``resume_hook`` in the client -> the workflow continuing in a worker."""
    handle = await client.start(flows.listener, "bench", samples)
    sent = []
    for i in range(samples):
        while True:
            try:
                t0 = flows.clock()
                await client.resume_hook("bench", i)
                break
            except rw.HookNotFound:
                await anyio.sleep(0.01)
        sent.append(t0)
        await anyio.sleep(GAP)
    stamps = await handle.result(timeout=60)
    return [(stamp - t0) * 1000 for stamp, t0 in zip(stamps, sent, strict=True)]


async def stream_latency(client: rw.Runtime, samples: int) -> list[float]:
    """A step in a worker writes a chunk -> a reader in the client has it."""
    count = samples + WARMUP_CHUNKS
    handle = await client.start(flows.ticker, count, GAP)
    latencies = []
    async for chunk in handle.stream("ticks"):
        arrived = flows.clock()
        index, written = str(chunk.data).split()
        if int(index) >= WARMUP_CHUNKS:
            latencies.append((arrived - float(written)) * 1000)
    if await handle.result(timeout=60) != count or len(latencies) != samples:
        raise AssertionError(f"stream: {len(latencies)} of {samples} chunks arrived")
    return latencies


# -- running and reporting ------------------------------------------------------------


@dataclass
class Row:
    label: str
    result: str = ""
    target: str = ""
    met: bool | None = None
    notes: str = ""
    error: str | None = None


def _spread(latencies: list[float]) -> str:
    return f"{statistics.median(latencies):.1f} / {percentile(latencies, 95):.1f} ms"


def _latency_row(label: str, latencies: list[float], target: bool) -> Row:
    row = Row(label, _spread(latencies))
    if target:
        row.target = f"median <= {LATENCY_TARGET_MS:g} ms"
        row.met = statistics.median(latencies) <= LATENCY_TARGET_MS
    row.notes = f"{len(latencies)} samples"
    return row


async def measure_throughputs(
    options: argparse.Namespace, journals: Journals
) -> tuple[list[Row], list[str]]:
    """A row per worker count, and the lines that say where the time went."""
    rows: list[Row] = []
    found: list[str] = []
    measured: dict[int, Throughput] = {}
    for count in options.workers:
        label = f"{options.runs} five-step runs, {count} worker{'s' if count > 1 else ''}"
        print(f"  {label} ...", end="", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            with journals.journal(f"w{count}") as db:
                done = await throughput(db, count, options, journals)
        except Exception as exc:  # report and carry on with the other measurements
            rows.append(Row(label, error=error_text(exc)))
            continue
        finally:
            print(f" {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
        measured[count] = done
        row = Row(label, f"{done.runs_per_s:.0f} runs/s")
        one = measured.get(1)
        if one is not None and count > 1:
            speedup = done.runs_per_s / one.runs_per_s
            row.notes = f"{speedup:.2f}x 1 worker"
            if count == 2 and journals.backend == "postgresql":
                row.target = f">= {SCALING_TARGET:g}x 1 worker"
                row.met = speedup >= SCALING_TARGET
        rows.append(row)
        found.append(f"{label}:")
        found.append(f"  {done.cpu.text(options.runs)}")
        if done.waits is not None:
            found.append(f"  {done.waits.text()}")
        found.append(f"  limit: {verdict(done.cpu, done.waits)}")
    return rows, found


LATENCIES: list[tuple[str, Callable[[rw.Runtime, int], Awaitable[list[float]]], bool]] = [
    ("run ends in a worker -> client result() (median / p95)", wake_up_latency, False),
    (
        "resume_hook in client -> workflow continues in a worker on another host",
        resume_latency,
        True,
    ),
    ("stream chunk written in a worker -> reader in client", stream_latency, True),
]


async def measure_latencies(options: argparse.Namespace, journals: Journals) -> list[Row]:
    """A row per latency, all measured on one journal with one worker."""
    print("  latencies ...", end="", file=sys.stderr, flush=True)
    began = time.perf_counter()
    rows: dict[str, Row] = {}
    try:
        with journals.journal("lat") as db:
            async with client_of_workers(db, 1, options) as (client, _):
                for label, measure, target in LATENCIES:
                    try:
                        samples = await measure(client, options.samples)
                    except Exception as exc:  # report and carry on with the others
                        rows[label] = Row(label, error=error_text(exc))
                    else:
                        rows[label] = _latency_row(label, samples, target)
    except Exception as exc:  # the workers or the journal failed
        for label, _, _ in LATENCIES:
            rows.setdefault(label, Row(label, error=error_text(exc)))
    print(f" {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    return list(rows.values())


async def run_all(options: argparse.Namespace, journals: Journals) -> tuple[list[Row], list[str]]:
    rows, found = await measure_throughputs(options, journals)
    rows += await measure_latencies(options, journals)
    return rows, found


def format_table(rows: list[Row]) -> str:
    table: list[tuple[str, ...]] = [("scenario", "result", "target", "met", "notes")]
    for r in rows:
        met = "" if not r.target else {True: "yes", False: "NO", None: "n/a"}[r.met]
        notes = f"ERROR: {r.error}" if r.error else r.notes
        table.append((r.label, "ERROR" if r.error else r.result, r.target, met, notes))
    return render_table(table, {1})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="a postgresql:// URL: each measurement's journal is a fresh schema of that "
        "database, dropped at the end; default: SQLite files in --dir",
    )
    parser.add_argument("--keep", action="store_true", help="keep the journals at the end")
    parser.add_argument("--dir", default=None, help="parent directory of temporary files")
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs per throughput measurement (1000; 20 with --quick)",
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="samples per latency (50; 5 with --quick)"
    )
    parser.add_argument(
        "--workers",
        default=None,
        help="comma-separated worker counts (default 1,2,4 on PostgreSQL, 1,4 on SQLite)",
    )
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--quick", action="store_true", help="smoke mode: small counts")
    options = parser.parse_args(argv)
    if options.runs is None:
        options.runs = 20 if options.quick else 1000
    if options.samples is None:
        options.samples = 5 if options.quick else 50
    if options.runs < 1 or options.samples < 1:
        parser.error("--runs and --samples must be >= 1")
    if options.workers is not None:
        try:
            options.workers = sorted({int(n) for n in options.workers.split(",") if n.strip()})
        except ValueError:
            parser.error(f"--workers takes numbers, not {options.workers!r}")
        if not options.workers or options.workers[0] < 1:
            parser.error("--workers must name counts >= 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        journals = Journals(options.db, parent=options.dir, keep=options.keep)
        journals.check_name("lat")
    except ValueError as exc:
        print(f"processes.py: {exc}", file=sys.stderr)
        return 64
    if options.workers is None:
        options.workers = [1, 2, 4] if journals.backend == "postgresql" else [1, 4]
    info = host_facts()
    info["journal"] = journals.describe()
    if journals.backend == "postgresql":
        info["server"] = server_info(journals)
    else:
        info["synchronous"] = options.synchronous
    info["load_avg"] = load_average()
    info["settings"] = (
        f"{options.runs} runs per throughput measurement, {options.samples} samples per latency"
    )
    print(f"runwright processes benchmark, {journals.backend} journal")
    print(format_machine(info))
    print(flush=True)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rwprocs-", dir=options.dir) as logs:
        options.logs = Path(logs)
        try:
            rows, found = anyio.run(run_all, options, journals)
        finally:
            journals.report_kept()
    print(format_table(rows))
    print()
    if found:
        print("where the time went during the throughput runs:")
        for line in found:
            print(line)
        print()
    judged = [r for r in rows if r.target]
    met = sum(1 for r in judged if r.met)
    print(f"targets met: {met}/{len(judged)}    elapsed: {time.perf_counter() - began:.1f} s")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
