"""How fast ``runwright replay`` checks recorded runs against the loaded code.

One run of ``bench.twenty`` (20 sequential steps, bench/flows.py) is recorded
through a real runtime; its rows (the run, its steps and its 63 events) are
then copied under new run ids until the journal holds ``--runs`` finished
runs (default 10,000), as if each had run. Then, timed:

* ``check``: the replay check in this process (``check_journal`` over a
  read-only connection): read every run's events, decode them, replay each
  run in a fresh interpreter;
* ``cli``: ``runwright replay flows`` as a subprocess, end to end
  (start Python, import, read, replay, print a line per run).

Target: 10,000 runs in <= 10 s through the CLI. Wall-clock times move with
the machine's load; the rate per run is printed next to them.

    python bench/replay.py [--runs N] [--quick] [--db postgresql://...] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import flows
from copies import copy_run
from journals import Journals
from report import format_machine, host_facts, render_table

import runwright as rw
from runwright._cli._common import Target, read_only
from runwright.actors._check import check_journal
from runwright.journal._codec import DefaultCodec

TARGET_SECONDS = 10.0
TARGET_RUNS = 10_000


async def record(db: str) -> str:
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        run = await runtime.start(flows.twenty, 1)
        await run.result(timeout=60)
        return run.id


def time_check(db: str) -> tuple[float, int, int]:
    started = time.perf_counter()
    checked = failed = 0
    with read_only(Target(db)) as conn:
        for result in check_journal(conn, DefaultCodec()):
            checked += 1
            failed += not result.ok
    return time.perf_counter() - started, checked, failed


def time_cli(db: str) -> tuple[float, int]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "runwright._cli", "replay", "flows", "--db", db],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
    return elapsed, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=TARGET_RUNS)
    parser.add_argument("--quick", action="store_true", help="1,000 runs")
    parser.add_argument("--db", help="a postgresql:// URL (default: an SQLite file)")
    parser.add_argument("--dir", help="where SQLite journals go (default: a temporary dir)")
    args = parser.parse_args()
    runs = 1_000 if args.quick else args.runs
    journals = Journals(args.db, parent=args.dir)
    print(format_machine(host_facts()))
    print(f"journal: {journals.describe()}")
    with journals.journal("replay") as db:
        template = anyio.run(record, db)
        started = time.perf_counter()
        copy_run(db, template, runs - 1)
        print(f"recorded 1 run of bench.twenty, copied to {runs:,} runs "
              f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        check_s, checked, failed = time_check(db)
        cli_s, status = time_cli(db)
    scale = runs / TARGET_RUNS
    rows = [["scenario", "runs", "seconds", "us/run", "target", "met"]]
    rows.append(
        ["check", f"{checked:,}", f"{check_s:.2f}", f"{check_s / checked * 1e6:.0f}", "", ""]
    )
    rows.append(
        [
            "cli",
            f"{runs:,}",
            f"{cli_s:.2f}",
            f"{cli_s / runs * 1e6:.0f}",
            f"<= {TARGET_SECONDS * scale:g} s",
            "yes" if cli_s <= TARGET_SECONDS * scale and status == 0 else "no",
        ]
    )
    print(render_table(rows, right={1, 2, 3}))
    if failed or status:
        print(f"ERROR: {failed} run(s) did not replay; the CLI exited {status}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
