#!/usr/bin/env python
"""runwright benchmark: per-run latency and throughput of the durable runtime.

Every scenario runs on a fresh SQLite file in its own temporary directory, in
one ``rw.Runtime(path, synchronous=...)`` opened for that scenario. A
latency scenario does one warm-up run (not counted), then ``--repeat`` runs
one after the other; a run's latency is the time from ``await
runtime.start(...)`` to ``await handle.result()`` returning.

Two scenarios are different:

* ``burst``: N one-step runs started at once (every ``runtime.start`` in its
  own task), then every result awaited; reports total time and runs/s.
* ``long``: one sequential workflow of N steps; each step appends
  ``time.perf_counter()`` to a list, and the per-step cost of the first 100
  steps, ``(t[100] - t[0]) / 100``, is compared with that of the last 100,
  ``(t[N-1] - t[N-101]) / 100``.

Usage::

    python bench/bench.py                      # the whole suite (< 2 min on 2 cores)
    python bench/bench.py --quick              # smoke mode, a few seconds
    python bench/bench.py --synchronous NORMAL --backend trio
    python bench/bench.py --only seq50,gather50 --repeat 100
    python bench/bench.py --json results.json  # table on stdout, JSON to a file
    python bench/bench.py --json               # JSON on stdout instead of the table

Exit status: 0, or 1 if a scenario raised (its row says ERROR), or 2 with
``--fail-on-target`` when a target is missed. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import anyio

import runwright as rw

sys.path.insert(0, str(Path(__file__).parent))
from report import error_text, format_machine, fs_type, percentile, render_table, select

# -- the workflows ----------------------------------------------------------------

#: 10 KB of incompressible bytes: the codec stores it as is (no zstd win), so
#: every step really journals 10 KB.
PAYLOAD = random.Random(0).randbytes(10 * 1024)

_stamps: list[float] = []


@rw.step
async def noop(value: int) -> int:
    return value


@rw.step
async def blob(index: int) -> bytes:
    return PAYLOAD


@rw.step
async def stamp(index: int) -> int:
    _stamps.append(time.perf_counter())
    return index


@rw.workflow(name="bench.empty")
async def empty_workflow(n: int) -> int:
    return n


@rw.workflow(name="bench.sequential")
async def sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


@rw.workflow(name="bench.gather")
async def gather(n: int) -> int:
    return sum(await rw.gather(*[noop(i) for i in range(n)]))


@rw.workflow(name="bench.race")
async def race(n: int) -> int:
    return await rw.race(*[noop(i) for i in range(n)])


@rw.workflow(name="bench.blobs")
async def blobs(n: int) -> int:
    size = 0
    for i in range(n):
        size += len(await blob(i))
    return size


@rw.workflow(name="bench.stamps")
async def stamps(n: int) -> int:
    for i in range(n):
        await stamp(i)
    return n


# -- scenarios and results --------------------------------------------------------

Kind = Literal["latency", "burst", "long"]


@dataclass(frozen=True)
class Target:
    text: str
    check: Callable[[Result], bool | None]  # None: not applicable to this run


@dataclass(frozen=True)
class Scenario:
    id: str
    label: str
    kind: Kind
    workflow: rw.WorkflowDefinition[Any, Any]
    arg: int
    steps: int  # steps per run, for the ms/step note
    expect: Callable[[Any], bool]
    target: Target | None = None


@dataclass
class Result:
    id: str
    label: str
    kind: Kind
    runs: int = 0
    median_ms: float | None = None
    p95_ms: float | None = None
    runs_per_s: float | None = None
    total_ms: float | None = None
    ms_per_step: float | None = None
    ratio: float | None = None
    commits_per_run: float | None = None
    target: str | None = None
    met: bool | None = None
    notes: str = ""
    error: str | None = None
    wall_s: float | None = None  # the whole scenario: open, warm-up, runs, close
    samples_ms: list[float] = field(default_factory=list)


def _equals(expected: Any) -> Callable[[Any], bool]:
    return lambda value: value == expected


def scenarios(burst: int, long_steps: int) -> list[Scenario]:
    def latency(
        id: str,
        label: str,
        workflow: rw.WorkflowDefinition[Any, Any],
        n: int,
        steps: int,
        expect: Callable[[Any], bool],
        target: Target | None = None,
    ) -> Scenario:
        return Scenario(id, label, "latency", workflow, n, steps, expect, target)

    def median_at_most(ms: float) -> Target:
        return Target(
            f"median <= {ms:g} ms",
            lambda r: None if r.median_ms is None else r.median_ms <= ms,
        )

    out = [
        latency("empty", "no steps", empty_workflow, 0, 0, _equals(0)),
        latency("step1", "1 step", sequential, 1, 1, _equals(0)),
    ]
    for n in (10, 25, 50):
        target = median_at_most(20) if n == 50 else None
        out.append(
            latency(
                f"seq{n}",
                f"{n} sequential steps",
                sequential,
                n,
                n,
                _equals(n * (n - 1) // 2),
                target,
            )
        )
    for n in (10, 25, 50):
        target = median_at_most(15) if n == 50 else None
        out.append(
            latency(
                f"gather{n}",
                f"gather of {n} steps",
                gather,
                n,
                n,
                _equals(n * (n - 1) // 2),
                target,
            )
        )
    out.append(latency("race10", "race of 10 steps", race, 10, 10, lambda v: v in range(10)))
    for n in (10, 50):
        out.append(
            latency(
                f"blob{n}",
                f"{n} sequential 10 KB steps",
                blobs,
                n,
                n,
                _equals(n * len(PAYLOAD)),
            )
        )
    out.append(
        Scenario(
            "burst",
            f"{burst} one-step runs at once",
            "burst",
            sequential,
            burst,
            1,
            _equals(0),
            Target(
                ">= 3000 runs/s",
                lambda r: None if r.runs_per_s is None or burst != 1000 else r.runs_per_s >= 3000,
            ),
        )
    )
    window = min(100, long_steps // 2)
    out.append(
        Scenario(
            "long",
            f"{long_steps}-step run",
            "long",
            stamps,
            long_steps,
            long_steps,
            _equals(long_steps),
            Target(
                f"<= 1.2x steps 1-{window}",
                lambda r: None if r.ratio is None else r.ratio <= 1.2,
            ),
        )
    )
    return out


# -- measuring ----------------------------------------------------------------------


def _check(scenario: Scenario, value: Any) -> None:
    if not scenario.expect(value):
        raise AssertionError(f"{scenario.id}: unexpected result {value!r}")


async def measure_latency(runtime: rw.Runtime, scenario: Scenario, repeat: int) -> Result:
    _check(scenario, await (await runtime.start(scenario.workflow, scenario.arg)).result())
    batches = runtime.journal.batches
    samples: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        handle = await runtime.start(scenario.workflow, scenario.arg)
        value = await handle.result()
        samples.append((time.perf_counter() - t0) * 1000)
        _check(scenario, value)
    result = Result(scenario.id, scenario.label, scenario.kind, runs=repeat)
    result.samples_ms = samples
    result.median_ms = statistics.median(samples)
    result.p95_ms = percentile(samples, 95)
    result.runs_per_s = repeat / (sum(samples) / 1000)
    result.total_ms = sum(samples)
    result.commits_per_run = (runtime.journal.batches - batches) / repeat
    if scenario.steps:
        result.ms_per_step = result.median_ms / scenario.steps
        result.notes = f"{result.ms_per_step:.3f} ms/step"
    return result


async def _burst_once(runtime: rw.Runtime, scenario: Scenario, n: int) -> tuple[float, float]:
    """Start *n* one-step runs concurrently, then await every result: (start ms, total ms)."""
    handles: list[rw.RunHandle[Any]] = [None] * n  # type: ignore[list-item]
    values: list[Any] = [None] * n

    async def start(i: int) -> None:
        handles[i] = await runtime.start(scenario.workflow, 1)

    async def wait(i: int) -> None:
        values[i] = await handles[i].result()

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(start, i)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(wait, i)
    done = time.perf_counter()
    for value in values:
        _check(scenario, value)
    return (started - t0) * 1000, (done - t0) * 1000


async def measure_burst(runtime: rw.Runtime, scenario: Scenario, repeat: int) -> Result:
    n = scenario.arg
    await _burst_once(runtime, scenario, min(n, 100))  # warm-up
    batches = runtime.journal.batches
    starts: list[float] = []
    totals: list[float] = []
    for _ in range(repeat):
        start_ms, total_ms = await _burst_once(runtime, scenario, n)
        starts.append(start_ms)
        totals.append(total_ms)
    result = Result(scenario.id, scenario.label, scenario.kind, runs=n)
    result.samples_ms = totals
    result.total_ms = statistics.median(totals)
    result.runs_per_s = n / (result.total_ms / 1000)
    result.commits_per_run = (runtime.journal.batches - batches) / (n * repeat)
    result.notes = (
        f"total {result.total_ms:.1f} ms, all started after {statistics.median(starts):.1f} ms"
        f" (median of {repeat})"
    )
    return result


async def measure_long(
    runtime: rw.Runtime, scenario: Scenario, repeat: int
) -> tuple[Result, Result]:
    n = scenario.arg
    window = min(100, n // 2)
    _stamps.clear()
    _check(scenario, await (await runtime.start(scenario.workflow, n)).result())  # warm-up
    batches = runtime.journal.batches
    early: list[float] = []
    late: list[float] = []
    totals: list[float] = []
    for _ in range(repeat):
        _stamps.clear()
        t0 = time.perf_counter()
        value = await (await runtime.start(scenario.workflow, n)).result()
        totals.append((time.perf_counter() - t0) * 1000)
        _check(scenario, value)
        t = list(_stamps)
        if len(t) != n:
            raise AssertionError(f"long: {len(t)} step timestamps for {n} steps")
        early.append((t[window] - t[0]) / window * 1000)
        late.append((t[n - 1] - t[n - 1 - window]) / window * 1000)
    ratios = [b / a for a, b in zip(early, late, strict=True)]
    commits = (runtime.journal.batches - batches) / repeat

    first = Result(
        "long_early", f"{scenario.label}: ms/step, steps 1-{window}", "long", runs=repeat
    )
    last = Result(
        "long_late", f"{scenario.label}: ms/step, steps {n - window + 1}-{n}", "long", runs=repeat
    )
    for result, samples in ((first, early), (last, late)):
        result.samples_ms = samples
        result.median_ms = statistics.median(samples)
        result.p95_ms = percentile(samples, 95)
        result.ms_per_step = result.median_ms
        result.commits_per_run = commits
    first.total_ms = statistics.median(totals)
    first.notes = f"whole run {first.total_ms:.1f} ms (median)"
    last.ratio = statistics.median(ratios)
    last.notes = f"ratio {last.ratio:.2f}x (median of per-run ratios)"
    return first, last


async def run_scenario(scenario: Scenario, options: argparse.Namespace) -> list[Result]:
    repeat = options.repeat if scenario.kind == "latency" else options.big_repeat
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rwbench-", dir=options.dir) as tmp:
        path = Path(tmp) / "journal.db"
        with anyio.fail_after(options.timeout):
            async with rw.Runtime(path, synchronous=options.synchronous) as runtime:
                if scenario.kind == "latency":
                    results = [await measure_latency(runtime, scenario, repeat)]
                elif scenario.kind == "burst":
                    results = [await measure_burst(runtime, scenario, repeat)]
                else:
                    results = list(await measure_long(runtime, scenario, repeat))
    results[0].wall_s = time.perf_counter() - began
    target = scenario.target
    if target is not None:
        results[-1].target = target.text
        results[-1].met = target.check(results[-1])
    return results


async def run_all(selected: list[Scenario], options: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    for scenario in selected:
        print(f"  {scenario.label} ...", file=sys.stderr, flush=True)
        try:
            results += await run_scenario(scenario, options)
        except Exception as exc:  # report and carry on with the other scenarios
            failed = Result(scenario.id, scenario.label, scenario.kind, error=error_text(exc))
            if scenario.target is not None:
                failed.target, failed.met = scenario.target.text, False
            results.append(failed)
    return results


# -- reporting ----------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(options: argparse.Namespace) -> dict[str, Any]:
    tmp = options.dir or tempfile.gettempdir()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    info: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "sqlite": sqlite3.sqlite_version,
        "runwright": rw.__version__,
        "anyio": _version("anyio"),
        "synchronous": options.synchronous,
        "backend": options.backend,
        "temp_dir": f"{tmp} ({fs_type(tmp)})",
    }
    if hasattr(os, "getloadavg"):
        info["load_avg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if options.backend == "trio":
        info["trio"] = _version("trio")
    return info


def _ms(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _met(result: Result) -> str:
    if result.target is None:
        return ""
    return {True: "yes", False: "NO", None: "n/a"}[result.met]


HEADER = (
    "scenario",
    "runs",
    "median ms",
    "p95 ms",
    "runs/s",
    "commits/run",
    "wall s",
    "target",
    "met",
    "notes",
)
_RIGHT = {1, 2, 3, 4, 5, 6}


def format_table(results: list[Result]) -> str:
    rows: list[tuple[str, ...]] = [HEADER]
    for r in results:
        digits = 3 if r.kind == "long" else 2
        rows.append(
            (
                r.label,
                str(r.runs) if r.runs else "-",
                _ms(r.median_ms, digits),
                _ms(r.p95_ms, digits),
                "-" if r.runs_per_s is None else f"{r.runs_per_s:.0f}",
                _count(r.commits_per_run),
                _ms(r.wall_s, 1),
                r.target or "",
                _met(r),
                f"ERROR: {r.error}" if r.error else r.notes,
            )
        )
    return render_table(rows, _RIGHT)


# -- the command line ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark runwright: per-run latency and throughput."
    )
    parser.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL", "EXTRA", "OFF"],
        default="FULL",
        help="SQLite synchronous setting (default FULL)",
    )
    parser.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="default asyncio"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="measured runs per latency scenario (default 30; 3 with --quick)",
    )
    parser.add_argument(
        "--big-repeat",
        type=int,
        default=None,
        help="repetitions of the burst and the long run (default 5; 1 with --quick)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=None,
        help="one-step runs started at once (default 1000; 100 with --quick)",
    )
    parser.add_argument(
        "--long-steps",
        type=int,
        default=None,
        help="steps of the long run (default 1000; 300 with --quick)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: few repeats and smaller big scenarios"
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated scenario ids to run (see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list scenario ids and exit")
    parser.add_argument(
        "--dir",
        default=None,
        help="parent directory of the temporary journals (default: system temp)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds after which one scenario is abandoned (default 300)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="write results as JSON to FILE; without FILE, print JSON to stdout "
        "instead of the table",
    )
    parser.add_argument(
        "--fail-on-target", action="store_true", help="exit with status 2 if a target is missed"
    )
    options = parser.parse_args(argv)
    quick = options.quick
    defaults = {
        "repeat": (30, 3),
        "big_repeat": (5, 1),
        "burst": (1000, 100),
        "long_steps": (1000, 300),
    }
    for name, (full, smoke) in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, smoke if quick else full)
    for name in ("repeat", "big_repeat", "burst"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if options.long_steps < 2:
        parser.error("--long-steps must be >= 2")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    every = scenarios(options.burst, options.long_steps)
    selected = select(every, listing=options.list, only=options.only)
    if isinstance(selected, int):
        return selected

    info = machine_info(options)
    settings = {
        key: getattr(options, key)
        for key in ("repeat", "big_repeat", "burst", "long_steps", "quick")
    }
    to_stdout_json = options.json == "-"
    if not to_stdout_json:
        print("runwright benchmark")
        print(format_machine({**info, **settings}))
        print(flush=True)

    began = time.perf_counter()
    results = anyio.run(run_all, selected, options, backend=options.backend)
    elapsed = time.perf_counter() - began

    report = {
        "machine": info,
        "settings": settings,
        "elapsed_s": elapsed,
        "results": [asdict(r) for r in results],
    }
    if to_stdout_json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(results))
        print()
        judged = [r for r in results if r.target is not None]
        met = sum(1 for r in judged if r.met)
        print(f"targets met: {met}/{len(judged)}    elapsed: {elapsed:.1f} s")
        if options.json:
            Path(options.json).write_text(json.dumps(report, indent=2) + "\n")
            print(f"results written to {options.json}")

    if any(r.error for r in results):
        return 1
    if options.fail_on_target and any(r.met is False for r in results):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
