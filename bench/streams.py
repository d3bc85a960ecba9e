#!/usr/bin/env python
"""runwright streams benchmark: time to first byte, bulk transfer, pipelines, fan-in.

Every scenario runs on a fresh SQLite file in its own temporary directory, in
one ``rw.Runtime(path, synchronous=...)`` opened for that scenario.

* ``ttfb``: a step writes one small chunk at a time; a reader in this
  process (``run.stream()``) takes it and acknowledges it, and only then is
  the next chunk written. Each sample is the time from ``write()`` to the
  chunk arriving at the reader.
* ``ttfb_proc``: the same, but the reader is another process (a client
  ``rw.Runtime(db, execute=False)``) that prints each chunk's arrival time
  on its stdout; this process reads those lines and only then writes the
  next chunk. On Linux both processes stamp with ``time.monotonic()``
  (CLOCK_MONOTONIC, one clock for the whole machine); elsewhere with
  ``time.time()``.
* ``bulk``, ``pipeline``, ``parallel``, ``fanin``: each repetition is a new
  run. Its steps start and check in, the readers outside the run attach,
  and after a 5 ms pause the writing steps are released; a sample is the
  time from the first ``write()`` to the last chunk of the last stream
  arriving at the reader outside the run.

Usage::

    python bench/streams.py                        # everything, well under a minute
    python bench/streams.py --quick                # smoke mode, a few seconds
    python bench/streams.py --synchronous NORMAL --backend trio
    python bench/streams.py --only ttfb,bulk --repeat 50

Exit status: 0, or 1 if a scenario raised (its row says ERROR), or 2 with
``--fail-on-target`` when a target is missed. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import zstandard
from anyio.streams.buffered import BufferedByteReceiveStream

import runwright as rw

sys.path.insert(0, str(Path(__file__).parent))
from report import error_text, format_machine, fs_type, percentile, render_table, select

# -- the data ---------------------------------------------------------------------

SCRIPT = Path(__file__).resolve()
KIB = 1024
MIB = 1024 * 1024
CHUNK = 64 * KIB
#: Chunks that arrive before the readers settle; not counted in the TTFB samples.
WARMUP_CHUNKS = 5
#: Pause between the last check-in and releasing the writers (readers park meanwhile).
SETTLE_S = 0.005
#: The clock both processes stamp with: CLOCK_MONOTONIC is system-wide on Linux.
clock = time.monotonic if sys.platform.startswith("linux") else time.time


def _make_data(size: int) -> bytes:
    """ASCII text: words from a 2,048-word vocabulary, a running counter every 16th word."""
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(2048)]
    words: list[str] = []
    length = 0
    while length < size:
        word = f"#{len(words) // 16:07d}" if len(words) % 16 == 0 else rng.choice(vocabulary)
        words.append(word)
        length += len(word) + 1
    return " ".join(words).encode()[:size]


DATA = _make_data(MIB)


def _ratio() -> float:
    """How much zstd level 1 (what the journal uses) shrinks a 64 KiB chunk of DATA."""
    compressor = zstandard.ZstdCompressor(level=1)
    pieces = [DATA[i : i + CHUNK] for i in range(0, len(DATA), CHUNK)]
    return sum(map(len, pieces)) / sum(len(compressor.compress(p)) for p in pieces)


def pieces(size: int) -> list[bytes]:
    """*size* bytes of DATA in 64 KiB chunks (the last one may be shorter)."""
    assert size <= len(DATA)
    return [DATA[i : min(i + CHUNK, size)] for i in range(0, size, CHUNK)]


def token(i: int) -> str:
    return f"token {i:06d} of a streamed answer "


# -- coordination between the steps and the measuring code (same process) ---------


@dataclass
class Probe:
    """What one measured run's steps and readers share in this process."""

    expected: int = 0  # steps that check in before the writers are released
    arrived: int = 0
    all_in: anyio.Event = field(default_factory=anyio.Event)
    go: anyio.Event = field(default_factory=anyio.Event)
    firsts: list[float] = field(default_factory=list)  # clock() at each writer's first write
    sent: dict[int, float] = field(default_factory=dict)  # ttfb: chunk index -> clock()
    acks: Any = None  # ttfb: receive end of a memory object stream

    def check_in(self) -> None:
        self.arrived += 1
        if self.arrived >= self.expected:
            self.all_in.set()


_probes: dict[str, Probe] = {}


# -- the workflows ----------------------------------------------------------------


@rw.step(name="bench.streams.ping")
async def ping(key: str, count: int) -> int:
    """Write *count* small chunks, each once the reader has acknowledged the previous one."""
    probe = _probes[key]
    async with rw.writable("ping") as out:
        for i in range(count):
            await probe.acks.receive()
            probe.sent[i] = clock()
            await out.write(token(i))
        await out.close()
    return count


@rw.workflow(name="bench.streams.pinger")
async def pinger(key: str, count: int) -> int:
    return await ping(key, count)


@rw.step(name="bench.streams.produce")
async def produce(key: str, name: str, size: int) -> int:
    """Write *size* bytes to stream *name* in 64 KiB chunks once released, then close it."""
    probe = _probes[key]
    chunks = pieces(size)
    probe.check_in()
    await probe.go.wait()
    out = rw.writable(name)
    probe.firsts.append(clock())
    for chunk in chunks:
        await out.write(chunk)
    await out.close()
    return size


@rw.step(name="bench.streams.transform")
async def transform(key: str, source: str, target: str) -> int:
    """Copy stream *source* to *target*, swapping the case of every letter; close *target*."""
    _probes[key].check_in()
    size = 0
    out = rw.writable(target)
    async for chunk in rw.readable(source):
        size += len(chunk.data)
        await out.write(chunk.data.swapcase())
    await out.close()
    return size


@rw.step(name="bench.streams.merge")
async def merge(key: str, sources: list[str], target: str) -> int:
    """Read every stream of *sources* concurrently into *target* as chunks arrive; close it."""
    _probes[key].check_in()
    out = rw.writable(target)
    sizes = [0] * len(sources)

    async def pump(index: int, source: str) -> None:
        async for chunk in rw.readable(source):
            sizes[index] += len(chunk.data)
            await out.write(chunk.data)

    async with anyio.create_task_group() as tg:
        for index, source in enumerate(sources):
            tg.start_soon(pump, index, source)
    await out.close()
    return sum(sizes)


@rw.workflow(name="bench.streams.single")
async def single(key: str, size: int) -> int:
    return await produce(key, "bulk", size)


@rw.workflow(name="bench.streams.pipeline")
async def pipeline(key: str, size: int, stages: int) -> list[int]:
    steps = [transform(key, f"s{k - 1}", f"s{k}") for k in range(1, stages + 1)]
    return await rw.gather(produce(key, "s0", size), *steps)


@rw.workflow(name="bench.streams.parallel")
async def parallel(key: str, size: int, width: int) -> list[int]:
    return await rw.gather(*[produce(key, f"p{i}", size) for i in range(width)])


@rw.workflow(name="bench.streams.fan")
async def fan(key: str, sizes: list[int]) -> list[int]:
    names = [f"f{i}" for i in range(len(sizes))]
    writers = [produce(key, name, size) for name, size in zip(names, sizes, strict=True)]
    return await rw.gather(*writers, merge(key, names, "merged"))


# -- results ----------------------------------------------------------------------


@dataclass
class Result:
    id: str
    label: str
    samples: int = 0
    median_ms: float | None = None
    p95_ms: float | None = None
    mb_per_s: float | None = None
    commits_per_run: float | None = None
    target: str | None = None
    met: bool | None = None
    notes: str = ""
    error: str | None = None
    wall_s: float | None = None
    samples_ms: list[float] = field(default_factory=list)


def _summarise(result: Result, samples_s: list[float], size: int | None = None) -> Result:
    samples = [s * 1000 for s in samples_s]
    result.samples = len(samples)
    result.samples_ms = samples
    result.median_ms = statistics.median(samples)
    result.p95_ms = percentile(samples, 95)
    if size is not None:
        result.mb_per_s = size / MIB / (result.median_ms / 1000)
    return result


# -- measuring: time to first byte ------------------------------------------------


def _ttfb_probe(key: str) -> tuple[Probe, Any]:
    send, receive = anyio.create_memory_object_stream[None](math.inf)
    probe = _probes[key] = Probe(acks=receive)
    return probe, send


async def measure_ttfb(runtime: rw.Runtime, options: argparse.Namespace) -> Result:
    result = Result("ttfb", "TTFB, reader in this process")
    count = options.chunks + WARMUP_CHUNKS
    probe, acks = _ttfb_probe("ttfb")
    latencies: list[float] = []
    with acks, probe.acks:
        run = await runtime.start(pinger, "ttfb", count)
        reader = run.stream("ping")
        acks.send_nowait(None)
        async for chunk in reader:
            arrived = clock()
            if chunk.index >= WARMUP_CHUNKS:
                latencies.append(arrived - probe.sent[chunk.index])
            if chunk.index + 1 < count:
                acks.send_nowait(None)
        if await run.result() != count or len(latencies) != options.chunks:
            raise AssertionError(f"ttfb: {len(latencies)} of {options.chunks} chunks arrived")
    _summarise(result, latencies)
    result.notes = f"p99 {percentile(result.samples_ms, 99):.3f} ms, {len(token(0))} B chunks"
    return result


async def measure_ttfb_process(runtime: rw.Runtime, options: argparse.Namespace) -> Result:
    result = Result("ttfb_proc", "TTFB, reader in another process")
    count = options.chunks + WARMUP_CHUNKS
    probe, acks = _ttfb_probe("ttfb_proc")
    latencies: list[float] = []
    round_trips: list[float] = []
    run = await runtime.start(pinger, "ttfb_proc", count)
    command = [
        sys.executable, str(SCRIPT), "--reader", str(runtime.path), run.id,
        "ping", "--synchronous", options.synchronous, "--backend", options.backend,
    ]  # fmt: skip
    errors = Path(runtime.path).with_name("reader.err")
    spawned = clock()
    with acks, probe.acks, errors.open("wb") as stderr:
        async with await anyio.open_process(command, stdout=subprocess.PIPE, stderr=stderr) as proc:
            assert proc.stdout is not None
            lines = BufferedByteReceiveStream(proc.stdout)
            try:
                ready = await lines.receive_until(b"\n", 1024)
                if ready != b"ready":
                    raise AssertionError(f"reader: {ready!r}")
                startup = clock() - spawned
                acks.send_nowait(None)
                for _ in range(count):
                    index_text, stamp_text = (await lines.receive_until(b"\n", 1024)).split()
                    index, arrived = int(index_text), float(stamp_text)
                    if index >= WARMUP_CHUNKS:
                        latencies.append(arrived - probe.sent[index])
                        round_trips.append(clock() - probe.sent[index])
                    if index + 1 < count:
                        acks.send_nowait(None)
                status = await proc.wait()
            except (anyio.EndOfStream, anyio.IncompleteRead, ValueError) as exc:
                status = await proc.wait()
                raise AssertionError(
                    f"the reader process stopped (status {status}): "
                    f"{errors.read_text().strip()[-2000:]}"
                ) from exc
            finally:
                if proc.returncode is None:
                    proc.kill()
            if status != 0:
                raise AssertionError(f"reader status {status}: {errors.read_text()[-2000:]}")
        if await run.result() != count:
            raise AssertionError("ttfb_proc: the run did not write every chunk")
    _summarise(result, latencies)
    result.notes = (
        f"p99 {percentile(result.samples_ms, 99):.2f} ms; write -> ack back here "
        f"{statistics.median(round_trips) * 1000:.2f} ms; reader up in {startup:.2f} s"
    )
    return result


async def reader_process(db: str, run_id: str, name: str, synchronous: str) -> None:
    """The other process of ``ttfb_proc``: print ``index clock()`` for each chunk as it arrives."""
    async with rw.Runtime(db, execute=False, synchronous=synchronous) as client:  # type: ignore[arg-type]
        run = client.get_run(run_id)
        await run.stream_info(name)  # warm the connection before saying ready
        os.write(1, b"ready\n")
        async for chunk in run.stream(name):
            os.write(1, f"{chunk.index} {clock()!r}\n".encode())


# -- measuring: bulk transfers ----------------------------------------------------


@dataclass(frozen=True)
class Bulk:
    """One bulk scenario: a workflow, the streams read outside it, the bytes they carry."""

    id: str
    label: str
    start: Callable[[rw.Runtime, str], Awaitable[rw.RunHandle[Any]]]
    read: list[str]  # streams read outside the run
    steps: int  # steps that check in before the writers are released
    size: int  # bytes counted for MiB/s
    read_bytes: int  # bytes the outside readers get in all
    target_ms: float | None = None
    note: str = ""


def bulks() -> list[Bulk]:
    fan_sizes = [100_000 * (i + 1) for i in range(10)]
    return [
        Bulk(
            "bulk",
            "1 MiB in 64 KiB chunks, reader in this process",
            lambda runtime, key: runtime.start(single, key, MIB),
            ["bulk"],
            1,
            MIB,
            MIB,
            10.0,
            "16 chunks in one step, then close",
        ),
        Bulk(
            "pipeline",
            "pipeline of 5 transform steps over 1 MiB",
            lambda runtime, key: runtime.start(pipeline, key, MIB, 5),
            ["s5"],
            6,
            MIB,
            MIB,
            note="s0 -> 5 x swapcase -> s5; MiB/s of s5",
        ),
        Bulk(
            "parallel",
            "10 parallel streams of 1 MiB",
            lambda runtime, key: runtime.start(parallel, key, MIB, 10),
            [f"p{i}" for i in range(10)],
            10,
            10 * MIB,
            10 * MIB,
            note="10 readers; aggregate MiB/s",
        ),
        Bulk(
            "fanin",
            "fan-out/fan-in: 10 streams (100 KB-1 MB) merged",
            lambda runtime, key: runtime.start(fan, key, fan_sizes),
            ["merged"],
            11,
            sum(fan_sizes),
            sum(fan_sizes),
            note=f"{sum(fan_sizes) / 1e6:.1f} MB into one stream; MiB/s of merged",
        ),
    ]


async def _bulk_once(runtime: rw.Runtime, bulk: Bulk, key: str) -> float:
    """One run: release the writers, return seconds from first write to last chunk read."""
    probe = _probes[key] = Probe(expected=bulk.steps)
    received = [0] * len(bulk.read)
    last_at = [0.0] * len(bulk.read)
    try:
        run = await bulk.start(runtime, key)

        async def read(i: int, name: str) -> None:
            async for chunk in run.stream(name):
                last_at[i] = clock()
                received[i] += len(chunk.data)

        async with anyio.create_task_group() as tg:
            for i, name in enumerate(bulk.read):
                tg.start_soon(read, i, name)
            with anyio.fail_after(30):
                await probe.all_in.wait()
            await anyio.sleep(SETTLE_S)
            probe.go.set()
        await run.result()
    finally:
        del _probes[key]
    if sum(received) != bulk.read_bytes:
        raise AssertionError(f"{bulk.id}: read {sum(received)} bytes of {bulk.read_bytes}")
    return max(last_at) - min(probe.firsts)


async def measure_bulk(runtime: rw.Runtime, bulk: Bulk, options: argparse.Namespace) -> Result:
    result = Result(bulk.id, bulk.label)
    await _bulk_once(runtime, bulk, f"{bulk.id}-warm-up")
    batches = runtime.journal.batches
    samples = [await _bulk_once(runtime, bulk, f"{bulk.id}-{i}") for i in range(options.repeat)]
    result.commits_per_run = (runtime.journal.batches - batches) / options.repeat
    _summarise(result, samples, bulk.size)
    result.notes = bulk.note
    return result


# -- running ------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    id: str
    label: str
    measure: Callable[[rw.Runtime, argparse.Namespace], Awaitable[Result]]
    target_ms: float | None


def scenarios() -> list[Scenario]:
    out = [
        Scenario("ttfb", "TTFB, reader in this process", measure_ttfb, 1.0),
        Scenario("ttfb_proc", "TTFB, reader in another process", measure_ttfb_process, 10.0),
    ]
    for bulk in bulks():

        def measure(
            runtime: rw.Runtime, options: argparse.Namespace, bulk: Bulk = bulk
        ) -> Awaitable[Result]:
            return measure_bulk(runtime, bulk, options)

        out.append(Scenario(bulk.id, bulk.label, measure, bulk.target_ms))
    return out


async def run_scenario(scenario: Scenario, options: argparse.Namespace) -> Result:
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rwstreams-", dir=options.dir) as tmp:
        path = Path(tmp) / "journal.db"
        with anyio.fail_after(options.timeout):
            async with rw.Runtime(path, synchronous=options.synchronous) as runtime:
                result = await scenario.measure(runtime, options)
    result.wall_s = time.perf_counter() - began
    if scenario.target_ms is not None:
        result.target = f"median <= {scenario.target_ms:g} ms"
        result.met = result.median_ms is not None and result.median_ms <= scenario.target_ms
    return result


async def run_all(selected: list[Scenario], options: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    for scenario in selected:
        print(f"  {scenario.label} ...", file=sys.stderr, flush=True)
        try:
            results.append(await run_scenario(scenario, options))
        except Exception as exc:  # report and carry on with the other scenarios
            failed = Result(scenario.id, scenario.label, error=error_text(exc))
            if scenario.target_ms is not None:
                failed.target, failed.met = f"median <= {scenario.target_ms:g} ms", False
            results.append(failed)
    return results


# -- reporting ----------------------------------------------------------------------


def machine_info(options: argparse.Namespace) -> dict[str, Any]:
    tmp = options.dir or tempfile.gettempdir()
    info: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "runwright": rw.__version__,
        "synchronous": options.synchronous,
        "backend": options.backend,
        "temp_dir": f"{tmp} ({fs_type(tmp)})",
    }
    if hasattr(os, "getloadavg"):
        info["load_avg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["data"] = (
        f"bytes of ASCII text (random words and a counter), zstd-1 shrinks a 64 KiB chunk "
        f"{_ratio():.1f}x; TTFB chunks are {len(token(0))}-char str"
    )
    info["settings"] = (
        f"{options.chunks} TTFB chunks (+{WARMUP_CHUNKS} warm-up), "
        f"{options.repeat} runs per bulk scenario (+1 warm-up)"
    )
    return info


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


HEADER = ("scenario", "n", "median ms", "p95 ms", "MiB/s", "commits/run", "wall s", "target")
HEADER += ("met", "notes")
_RIGHT = {1, 2, 3, 4, 5, 6}


def format_table(results: list[Result]) -> str:
    rows: list[tuple[str, ...]] = [HEADER]
    for r in results:
        met = "" if r.target is None else {True: "yes", False: "NO", None: "n/a"}[r.met]
        digits = 3 if r.median_ms is not None and r.median_ms < 10 else 1
        rows.append(
            (
                r.label,
                str(r.samples) if r.samples else "-",
                _num(r.median_ms, digits),
                _num(r.p95_ms, digits),
                _num(r.mb_per_s, 0),
                _num(r.commits_per_run, 1),
                _num(r.wall_s, 1),
                r.target or "",
                met,
                f"ERROR: {r.error}" if r.error else r.notes,
            )
        )
    return render_table(rows, _RIGHT)


# -- the command line ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark runwright streams.")
    parser.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="SQLite synchronous setting (default FULL)",
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="default asyncio"
    )
    parser.add_argument(
        "--chunks", type=int, default=None, help="TTFB samples (default 200; 20 with --quick)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="measured runs per bulk scenario (default 30; 3 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: few samples")
    parser.add_argument("--only", default=None, help="comma-separated scenario ids (see --list)")
    parser.add_argument("--list", action="store_true", help="list scenario ids and exit")
    parser.add_argument(
        "--dir", default=None, help="parent directory of the temporary journals (default: temp)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds after which one scenario is abandoned (default 120)",
    )
    parser.add_argument(
        "--fail-on-target", action="store_true", help="exit with status 2 if a target is missed"
    )
    # The other process of ttfb_proc: --reader DB RUN_ID STREAM
    parser.add_argument("--reader", nargs=3, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.chunks is None:
        options.chunks = 20 if options.quick else 200
    if options.repeat is None:
        options.repeat = 3 if options.quick else 30
    if options.chunks < 1 or options.repeat < 1:
        parser.error("--chunks and --repeat must be >= 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if options.reader:
        db, run_id, name = options.reader
        anyio.run(reader_process, db, run_id, name, options.synchronous, backend=options.backend)
        return 0
    every = scenarios()
    selected = select(every, listing=options.list, only=options.only)
    if isinstance(selected, int):
        return selected

    info = machine_info(options)
    print("runwright streams benchmark")
    print(format_machine(info))
    print(flush=True)

    began = time.perf_counter()
    results = anyio.run(run_all, selected, options, backend=options.backend)
    elapsed = time.perf_counter() - began

    print(format_table(results))
    print()
    met = sum(1 for r in results if r.met)
    judged = sum(1 for r in results if r.target is not None)
    print(f"targets met: {met}/{judged}    elapsed: {elapsed:.1f} s")
    if any(r.error for r in results):
        return 1
    if options.fail_on_target and any(r.met is False for r in results):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
