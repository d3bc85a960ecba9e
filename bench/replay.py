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
from typing import Any

import anyio
import flows
from journals import Journals
from report import format_machine, host_facts, render_table

import runwright as rw
from runwright._cli._common import Target, read_only
from runwright.actors._check import check_journal
from runwright.journal._codec import DefaultCodec
from runwright.journal.postgres import PgTarget

TARGET_SECONDS = 10.0
TARGET_RUNS = 10_000


async def record(db: str) -> str:
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        run = await runtime.start(flows.twenty, 1)
        await run.result(timeout=60)
        return run.id


def _rows(conn: Any, table: str, run_id: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = conn.execute(f"SELECT * FROM {table} WHERE run_id = ?", (run_id,))
    columns = [d[0] for d in cur.description]
    return columns, [tuple(row) for row in cur.fetchall()]


def clone(db: str, template: str, runs: int) -> None:
    """Copy the recorded run's rows under *runs* - 1 new ids (events keep their order)."""
    backend = "postgresql" if db.startswith("postgresql") else "sqlite"
    with read_only(Target(db)) as conn:
        tables = {name: _rows(conn, name, template) for name in ("runs", "steps", "events")}
    copies: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    for name, (columns, rows) in tables.items():
        at = columns.index("run_id")
        keep = [i for i, c in enumerate(columns) if not (name == "events" and c == "seq")]
        out = []
        for n in range(1, runs):
            new_id = f"{n:08x}{template[8:]}"
            for row in rows:
                values = list(row)
                values[at] = new_id
                if name == "runs" and values[columns.index("key")] is not None:
                    values[columns.index("key")] = None
                out.append(tuple(values[i] for i in keep))
        copies[name] = ([columns[i] for i in keep], out)
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db)
        with conn:
            for name, (columns, rows) in copies.items():
                marks = ",".join("?" * len(columns))
                conn.executemany(f"INSERT INTO {name} ({','.join(columns)}) VALUES ({marks})", rows)
        conn.close()
        return
    import psycopg

    target = PgTarget(db, None)
    with psycopg.connect(target.conninfo) as pg:
        pg.execute(f'SET search_path TO "{target.schema}"')
        newest = pg.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        seq = int(newest[0]) if newest else 0
        with pg.cursor() as cur:
            for name, (columns, rows) in copies.items():
                if name == "events":
                    columns = ["seq", *columns]
                    rows = [(seq + i + 1, *row) for i, row in enumerate(rows)]
                with cur.copy(f"COPY {name} ({','.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)


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
        clone(db, template, runs)
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
