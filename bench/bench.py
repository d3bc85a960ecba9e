#!/usr/bin/env python
"""runwright benchmark: per-run latency and throughput of the durable runtime.

The workflows and scenarios are in ``suite.py``. Every scenario runs on a
fresh journal, in one ``rw.Runtime(db, synchronous=...)`` opened for that
scenario: an SQLite file in its own temporary directory, or with ``--db
postgresql://...`` a fresh schema of that database, dropped at the end (see
``journals.py``). A latency scenario does one warm-up run (not counted), then
``--repeat`` runs one after the other; a run's latency is the time from
``await runtime.start(...)`` to ``await handle.result()`` returning.

Three scenarios are different:

* ``floor``: no runtime; the plain driver (sqlite3 or psycopg) makes 50
  transactions one after the other, each updating a row and inserting two
  event rows, the least a journal can do per sequential step. The
  ``x floor`` column divides a sequential scenario's ms/step by the floor's
  ms/transaction, measured in the same invocation.
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
    python bench/bench.py --db postgresql://postgres@127.0.0.1:5432/test
    python bench/bench.py --only seq50,gather50 --repeat 100
    python bench/bench.py --json results.json  # table on stdout, JSON to a file
    python bench/bench.py --json               # JSON on stdout instead of the table

Exit status: 0, or 1 if a scenario raised (its row says ERROR), or 2 with
``--fail-on-target`` when a target is missed. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

import runwright as rw

sys.path.insert(0, str(Path(__file__).parent))
from journals import (
    FLOOR_ROUND_TRIPS,
    Journals,
    burst_floor_samples,
    floor_samples,
    server_info,
)
from report import (
    error_text,
    format_machine,
    fs_type,
    host_facts,
    load_average,
    percentile,
    render_table,
    select,
    version_of,
)
from suite import STAMPS, Result, Scenario, scenarios

# -- measuring ----------------------------------------------------------------------


def _check(scenario: Scenario, value: Any) -> None:
    if not scenario.expect(value):
        raise AssertionError(f"{scenario.id}: unexpected result {value!r}")


def _summary(scenario: Scenario, samples: list[float]) -> Result:
    """A result of *samples* (ms, one per run): median, p95, runs/s, ms per step."""
    result = Result(scenario.id, scenario.label, scenario.kind, runs=len(samples))
    result.samples_ms = samples
    result.median_ms = statistics.median(samples)
    result.p95_ms = percentile(samples, 95)
    result.runs_per_s = len(samples) / (sum(samples) / 1000)
    result.total_ms = sum(samples)
    if scenario.steps:
        result.ms_per_step = result.median_ms / scenario.steps
    return result


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
    result = _summary(scenario, samples)
    result.commits_per_run = (runtime.journal.batches - batches) / repeat
    if result.ms_per_step is not None:
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
    STAMPS.clear()
    _check(scenario, await (await runtime.start(scenario.workflow, n)).result())  # warm-up
    batches = runtime.journal.batches
    early: list[float] = []
    late: list[float] = []
    totals: list[float] = []
    for _ in range(repeat):
        STAMPS.clear()
        t0 = time.perf_counter()
        value = await (await runtime.start(scenario.workflow, n)).result()
        totals.append((time.perf_counter() - t0) * 1000)
        _check(scenario, value)
        t = list(STAMPS)
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


async def measure_floor(target: str, scenario: Scenario, options: argparse.Namespace) -> Result:
    n, repeat = scenario.arg, options.repeat
    samples = await anyio.to_thread.run_sync(floor_samples, target, n, repeat, options.synchronous)
    result = _summary(scenario, samples)
    result.commits_per_run = n
    assert result.ms_per_step is not None
    shape = "UPDATE + 2 INSERTs"
    if target.startswith("postgresql://"):
        shape += f", {FLOOR_ROUND_TRIPS} round trip"
    result.notes = f"{result.ms_per_step:.3f} ms/transaction ({shape})"
    return result


async def measure_burst_floor(
    target: str, scenario: Scenario, options: argparse.Namespace
) -> Result:
    n = scenario.arg
    samples = await anyio.to_thread.run_sync(
        burst_floor_samples, target, n, options.big_repeat, options.synchronous
    )
    result = Result(scenario.id, scenario.label, scenario.kind, runs=n)
    result.samples_ms = samples
    result.total_ms = statistics.median(samples)
    result.runs_per_s = n / (result.total_ms / 1000)
    result.commits_per_run = 1 / 100
    result.notes = f"total {result.total_ms:.1f} ms (median of {len(samples)})"
    return result


def ratio_rows(results: list[Result], options: argparse.Namespace) -> list[Result]:
    """The targets set against the floors, measured in this invocation: a sequential
    step at most 1.5x a floor transaction (6x at NORMAL), a burst at least 15 % of
    the burst floor's runs/s (at FULL, and on PostgreSQL)."""
    by_id = {r.id: r for r in results}
    rows = []
    seq = by_id.get("seq50")
    if seq is not None and seq.x_floor is not None:
        limit = 6.0 if options.db is None and options.synchronous == "NORMAL" else 1.5
        row = Result("seq_vs_floor", "sequential step / floor transaction", "ratio")
        row.x_floor = seq.x_floor
        row.target, row.met = f"<= {limit:g}x floor", seq.x_floor <= limit
        row.notes = "50 sequential steps, ms/step over the floor's ms/transaction"
        rows.append(row)
    burst, floor = by_id.get("burst"), by_id.get("burst_floor")
    if burst is not None and floor is not None and burst.runs_per_s and floor.runs_per_s:
        share = burst.runs_per_s / floor.runs_per_s
        row = Result("burst_vs_floor", "burst runs/s / burst floor runs/s", "ratio")
        row.ratio = share
        row.target = ">= 15% of floor"
        applies = options.db is not None or options.synchronous == "FULL"
        row.met = share >= 0.15 if applies else None
        row.notes = f"{share:.1%} of the floor's {floor.runs_per_s:.0f} runs/s"
        rows.append(row)
    return rows


async def run_scenario(
    scenario: Scenario, options: argparse.Namespace, journals: Journals
) -> list[Result]:
    repeat = options.repeat if scenario.kind in ("latency", "floor") else options.big_repeat
    began = time.perf_counter()
    with journals.journal(scenario.id) as target, anyio.fail_after(options.timeout):
        if scenario.kind == "floor":
            results = [await measure_floor(target, scenario, options)]
        elif scenario.kind == "burst_floor":
            results = [await measure_burst_floor(target, scenario, options)]
        else:
            async with rw.Runtime(target, synchronous=options.synchronous) as runtime:
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


async def run_all(
    selected: list[Scenario], options: argparse.Namespace, journals: Journals
) -> list[Result]:
    results: list[Result] = []
    compared: list[Result] = []
    for scenario in selected:
        print(f"  {scenario.label} ...", file=sys.stderr, flush=True)
        try:
            done = await run_scenario(scenario, options, journals)
        except Exception as exc:  # report and carry on with the other scenarios
            failed = Result(scenario.id, scenario.label, scenario.kind, error=error_text(exc))
            if scenario.target is not None:
                failed.target, failed.met = scenario.target.text, False
            results.append(failed)
            continue
        results += done
        if scenario.vs_floor:
            compared += done
    floor = next((r for r in results if r.id == "floor" and r.ms_per_step), None)
    if floor is not None and floor.ms_per_step:
        for result in compared:
            if result.ms_per_step is not None:
                result.x_floor = result.ms_per_step / floor.ms_per_step
    return results + ratio_rows(results, options)


# -- reporting ----------------------------------------------------------------------


def machine_info(options: argparse.Namespace, journals: Journals) -> dict[str, Any]:
    info: dict[str, Any] = host_facts()
    info["backend"] = options.backend
    if options.backend == "trio":
        info["trio"] = version_of("trio")
    info["journal"] = journals.describe()
    if journals.backend == "sqlite":
        tmp = options.dir or tempfile.gettempdir()
        info["sqlite"] = sqlite3.sqlite_version
        info["synchronous"] = options.synchronous
        info["temp_dir"] = f"{tmp} ({fs_type(tmp)})"
    else:
        info["server"] = server_info(journals)
        info["psycopg"] = version_of("psycopg")
    info["load_avg"] = load_average()
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
    "x floor",
    "commits/run",
    "wall s",
    "target",
    "met",
    "notes",
)
_RIGHT = {1, 2, 3, 4, 5, 6, 7}


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
                "" if r.x_floor is None else f"{r.x_floor:.2f}x",
                _count(r.commits_per_run),
                _ms(r.wall_s, 1),
                r.target or "",
                _met(r),
                f"ERROR: {r.error}" if r.error else r.notes,
            )
        )
    return render_table(rows, _RIGHT)


# -- the command line ---------------------------------------------------------------


#: The counts: (default, with --quick, what they count).
_COUNTS = {
    "repeat": (30, 3, "measured runs per latency scenario and of the floor"),
    "big_repeat": (5, 1, "repetitions of the burst and the long run"),
    "burst": (1000, 100, "one-step runs started at once"),
    "long_steps": (1000, 300, "steps of the long run"),
}


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
        "--db",
        metavar="URL",
        default=None,
        help="a postgresql:// URL: each scenario's journal is a fresh schema of that "
        "database (named after the URL's schema parameter, else bench_<random>), "
        "dropped at the end; default: SQLite files in --dir",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the journals (files or schemas) at the end"
    )
    for name, (full, smoke, what) in _COUNTS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"{what} (default {full}; {smoke} with --quick)",
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
    for name, (full, smoke, _) in _COUNTS.items():
        if getattr(options, name) is None:
            setattr(options, name, smoke if options.quick else full)
    for name in ("repeat", "big_repeat", "burst"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if options.long_steps < 2:
        parser.error("--long-steps must be >= 2")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        journals = Journals(options.db, parent=options.dir, keep=options.keep)
        journals.check_name(max((s.id for s in scenarios(1, 2)), key=len))
    except ValueError as exc:
        print(f"bench.py: {exc}", file=sys.stderr)
        return 64
    driver = "psycopg" if journals.backend == "postgresql" else "sqlite3"
    every = scenarios(options.burst, options.long_steps, driver)
    selected = select(every, listing=options.list, only=options.only)
    if isinstance(selected, int):
        return selected

    info = machine_info(options, journals)
    settings = {
        key: getattr(options, key)
        for key in ("repeat", "big_repeat", "burst", "long_steps", "quick")
    }
    to_stdout_json = options.json == "-"
    if not to_stdout_json:
        print(f"runwright benchmark, {journals.backend} journal")
        print(format_machine({**info, **settings}))
        print(flush=True)

    began = time.perf_counter()
    try:
        results = anyio.run(run_all, selected, options, journals, backend=options.backend)
    finally:
        journals.report_kept()
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
