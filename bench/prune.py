"""Pruning a large backlog of ended runs while new runs keep completing.

One run of ``bench.five`` (5 sequential steps) is recorded through a real
runtime and copied until the journal holds ``--runs`` (default 100,000)
runs that ended two days ago. Then, in one runtime:

* ``load alone``: ``--clients`` tasks start one-step runs back to back and
  wait for each, for ``--seconds``; every run's latency (start to result) is
  kept;
* ``load + prune``: the same load while ``runtime.prune(older_than=1 day)``
  deletes the backlog (its batches go through the same writer).

A run's latency is two journal writes (its start, its step's end) plus the
step; a prune transaction that held the writer up shows as a slow run. The
table prints the worst run latency in each phase and the longest stall the
prune added (worst with prune minus worst alone). Target: no stall over
100 ms.

    python bench/prune.py [--runs N] [--quick] [--db postgresql://...] [--dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import anyio
import flows
from copies import copy_run
from journals import Journals
from report import format_machine, host_facts, render_table

import runwright as rw

TARGET_STALL_MS = 100.0
DAY = 86400.0


async def record(db: str, synchronous: str) -> str:
    async with rw.Runtime(db, synchronous=synchronous) as runtime:  # type: ignore[arg-type]
        run = await runtime.start(flows.five, 1)
        await run.result(timeout=60)
        return run.id


async def load(runtime: rw.Runtime, clients: int, until: anyio.Event) -> list[float]:
    latencies: list[float] = []

    async def client() -> None:
        while not until.is_set():
            started = time.perf_counter()
            run = await runtime.start(flows.stamped)
            await run.result(timeout=60)
            latencies.append(time.perf_counter() - started)

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(client)
    return latencies


async def measure(db: str, args: argparse.Namespace) -> tuple[list[float], list[float], int, float]:
    async with rw.Runtime(db, synchronous=args.synchronous) as runtime:
        alone_done = anyio.Event()
        async with anyio.create_task_group() as tg:
            alone: list[float] = []

            async def run_alone() -> None:
                alone.extend(await load(runtime, args.clients, alone_done))

            tg.start_soon(run_alone)
            await anyio.sleep(args.seconds)
            alone_done.set()

        pruning_done = anyio.Event()
        with_prune: list[float] = []
        result: dict[str, float] = {}

        async def prune() -> None:
            started = time.perf_counter()
            result["pruned"] = await runtime.prune(DAY)
            result["seconds"] = time.perf_counter() - started
            pruning_done.set()

        async def run_with_prune() -> None:
            with_prune.extend(await load(runtime, args.clients, pruning_done))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run_with_prune)
            await anyio.sleep(0.2)  # the load is going before the prune starts
            tg.start_soon(prune)
    return alone, with_prune, int(result["pruned"]), result["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="ended runs to prune")
    parser.add_argument("--quick", action="store_true", help="10,000 runs, 1 s of load alone")
    parser.add_argument("--clients", type=int, default=4, help="concurrent load clients (4)")
    parser.add_argument("--seconds", type=float, default=3.0, help="load alone, seconds (3)")
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--db", help="a postgresql:// URL (default: an SQLite file)")
    parser.add_argument("--dir", help="where SQLite journals go (default: a temporary dir)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds = 10_000, 1.0
    journals = Journals(args.db, parent=args.dir)
    print(format_machine(host_facts()))
    print(f"journal: {journals.describe()}; synchronous {args.synchronous}")
    with journals.journal("prune") as db:
        template = anyio.run(record, db, args.synchronous)
        started = time.perf_counter()
        copy_run(db, template, args.runs, shift=2 * DAY)
        print(
            f"recorded 1 run of bench.five (5 steps) and {args.runs:,} copies that ended "
            f"two days ago in {time.perf_counter() - started:.1f} s"
        )
        alone, with_prune, pruned, prune_s = anyio.run(measure, db, args)

    def row(name: str, latencies: list[float], extra: str) -> list[str]:
        return [
            name,
            f"{len(latencies):,}",
            f"{statistics.median(latencies) * 1000:.1f}",
            f"{max(latencies) * 1000:.1f}",
            extra,
        ]

    stall_ms = max(0.0, (max(with_prune) - max(alone)) * 1000)
    rows = [["scenario", "load runs", "median ms", "worst ms", "pruned"]]
    rows.append(row("load alone", alone, "-"))
    rows.append(row("load + prune", with_prune, f"{pruned:,} in {prune_s:.1f} s"))
    print(render_table(rows, right={1, 2, 3}))
    met = "yes" if stall_ms <= TARGET_STALL_MS else "no"
    target = f"target <= {TARGET_STALL_MS:g} ms: {met}"
    print(f"worst stall the prune added: {stall_ms:.1f} ms ({target})")
    if pruned != args.runs:
        print(f"ERROR: pruned {pruned:,} of {args.runs:,} runs")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
