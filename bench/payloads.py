"""A large incompressible argument: what it adds to the journal, what ``start()`` costs
next to writing the same bytes to a file, and how long ``runwright runs show`` takes.

Each of ``--repeat`` rounds (default 5) gets a fresh journal and a fresh
``rw.Runtime(db)`` with default options (``synchronous=FULL`` on SQLite):

* a warm-up run of ``payload_size`` with a 1-byte argument, then the
  journal's size is taken;
* ``start(payload_size, data)``, where ``data`` is ``os.urandom(--mb MB)``
  (``bytes``), timed from the call to its return. The workflow returns
  ``len(data)`` and has no steps, so the run is created, executed and ended
  in that one write;
* ``result()``; on SQLite, a wait until the background checkpoint has cut
  the WAL back (to at most 8 MiB, the most it keeps while a runtime is open;
  how long after ``start()`` returned is shown); then the journal's size
  again, while the runtime is open, and once it has closed;
* ``runwright runs show RUN`` and ``runs show RUN --json``, each a new
  process, timed to its exit; also for the warm-up run, whose time is the
  command's own start-up;
* the file floor: the same bytes written to a new file next to the journal
  (same disk), flushed and ``fsync``-ed once, timed.

* the driver floor: the same bytes inserted as one blob and committed with
  the plain driver, nothing of runwright's around it (SQLite: a new file
  next to the journal, WAL, ``synchronous=FULL``, no automatic checkpoint;
  PostgreSQL: a table in the journal's schema, the column ``EXTERNAL``, the
  bytes a binary parameter). On PostgreSQL, the least the server takes to
  make the bytes durable, which ``start()`` cannot beat. On SQLite, what the
  value would cost through SQLite's pages: a payload over 1 MiB is a file of
  the journal's ``-blobs`` directory instead (docs/decisions/0015), so the
  file floor is the one ``start()`` is held to.

``os.sync()`` runs before ``start()`` and before each floor, so none pays
for another's writes still in the page cache.

The journal's size: on SQLite the database file plus its ``-wal`` and
``-shm`` and the files of its ``-blobs`` directory (where a payload over
1 MiB is stored, written and fsynced once: the floor this backend is held
to); on PostgreSQL ``pg_total_relation_size`` of every table of the
journal's schema (TOAST and indexes included; the server's own WAL is not
counted). Growth is bytes added / payload size, the median over rounds.

Targets: growth <= 1.1x; ``start()`` median <= 2x the file floor's median.

    python bench/payloads.py [--mb 50] [--repeat 5] [--quick] [--db postgresql://...] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import anyio
from journals import Journals, server_info
from report import format_machine, fs_type, host_facts, load_average, render_table

import runwright as rw
from runwright.journal.postgres._url import PgTarget
from runwright.journal.sqlite import blob_usage
from runwright.journal.sqlite._checkpoint import CHECKPOINT_BYTES

TARGET_GROWTH = 1.1
TARGET_START = 2.0
CLI = [sys.executable, "-m", "runwright._cli"]


@rw.workflow
async def payload_size(data: bytes) -> int:
    return len(data)


def journal_size(db: str) -> int:
    if not db.startswith("postgresql"):
        files = (db, f"{db}-wal", f"{db}-shm")
        return sum(os.path.getsize(p) for p in files if os.path.exists(p)) + blob_usage(db)[1]
    import psycopg

    target = PgTarget(db, None)
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (target.schema,),
        ).fetchone()
    return int(row[0]) if row else 0


async def wal_settled(db: str, since: float) -> float:
    """Seconds from *since* until the background checkpoint has cut the SQLite WAL back
    to at most 2 * CHECKPOINT_BYTES, the most it keeps while a runtime is open (0 on PG)."""
    if db.startswith("postgresql"):
        return 0.0
    wal = anyio.Path(f"{db}-wal")
    deadline = time.perf_counter() + 30
    while await wal.exists() and (await wal.stat()).st_size > 2 * CHECKPOINT_BYTES:
        if time.perf_counter() > deadline:
            break
        await anyio.sleep(0.002)
    return time.perf_counter() - since


def file_floor(directory: str, data: bytes) -> float:
    path = os.path.join(directory, "floor.bin")
    os.sync()
    started = time.perf_counter()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - started
    os.remove(path)
    return elapsed


def driver_floor(db: str, directory: str, data: bytes) -> float:
    """The same bytes as one blob, inserted and committed with the plain driver."""
    if not db.startswith("postgresql"):
        path = os.path.join(directory, "floor.db")
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
            os.sync()
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO blobs (data) VALUES (?)", (data,))
            conn.execute("COMMIT")
            return time.perf_counter() - started
        finally:
            conn.close()
    import psycopg

    target = PgTarget(db, None)
    with psycopg.connect(target.conninfo, autocommit=True) as pg:
        pg.execute(f'SET search_path TO "{target.schema}"')
        pg.execute("CREATE TABLE floor_blobs (id INTEGER PRIMARY KEY, data BYTEA)")
        pg.execute("ALTER TABLE floor_blobs ALTER COLUMN data SET STORAGE EXTERNAL")
        os.sync()
        started = time.perf_counter()
        with pg.transaction():
            pg.execute("INSERT INTO floor_blobs VALUES (1, %b)", (data,))
        return time.perf_counter() - started


def show_seconds(db: str, run_id: str, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [*CLI, "runs", "show", run_id, "--db", db, *extra],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


async def one_round(db: str, data: bytes) -> dict[str, Any]:
    async with rw.Runtime(db) as runtime:
        warm = await runtime.start(payload_size, b"x")
        await warm.result(timeout=60)
        before = journal_size(db)
        os.sync()  # no other writes pending: the floor is timed the same way
        started = time.perf_counter()
        run = await runtime.start(payload_size, data)
        start_s = time.perf_counter() - started
        assert await run.result(timeout=120) == len(data)
        settled = await wal_settled(db, started + start_s)
        open_size = journal_size(db)
    closed_size = journal_size(db)
    return {
        "start": start_s,
        "settled": settled,
        "growth_open": (open_size - before) / len(data),
        "growth_closed": (closed_size - before) / len(data),
        "run": run.id,
        "warm": warm.id,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="payload size in MB (50)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (5)")
    parser.add_argument("--quick", action="store_true", help="20 MB, 2 rounds")
    parser.add_argument("--db", help="a postgresql:// URL (default: an SQLite file)")
    parser.add_argument("--dir", help="where SQLite journals go (default: a temporary dir)")
    args = parser.parse_args()
    if args.quick:
        args.mb, args.repeat = 20.0, 2
    try:
        journals = Journals(args.db, parent=args.dir)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 64
    facts = host_facts()
    facts["load_avg"] = load_average()
    print(format_machine(facts))
    if journals.backend == "postgresql":
        print(f"journal  {journals.describe()}")
        print(f"server   {server_info(journals)}")
        print("size     pg_total_relation_size of the journal's tables (server WAL not counted)")
    else:
        where = args.dir or tempfile.gettempdir()
        print(f"journal  sqlite, synchronous FULL, in {where} ({fs_type(where)})")
        print("size     the database file + -wal + -shm + the -blobs directory's files")
    data = os.urandom(int(args.mb * 1_000_000))
    rounds: list[dict[str, Any]] = []
    for index in range(args.repeat):
        with journals.journal(f"r{index}") as db:
            result = anyio.run(one_round, db, data)
            if journals.backend == "sqlite":
                directory = os.path.dirname(db)
            else:
                directory = args.dir or tempfile.gettempdir()
            result["floor"] = file_floor(directory, data)
            result["driver"] = driver_floor(db, directory, data)
            result["show"] = show_seconds(db, result["run"])
            result["show_json"] = show_seconds(db, result["run"], "--json")
            result["show_small"] = show_seconds(db, result["warm"])
            rounds.append(result)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    start, floor = median("start"), median("floor")
    growth = median("growth_open")

    def verdict(ok: bool) -> str:
        return "yes" if ok else "NO"

    size = f"{args.mb:g} MB"
    rows = [["scenario", "result", "target", "met"]]
    rows.append(
        [
            f"journal growth, {size} argument (runtime open)",
            f"{growth:.3f}x",
            f"<= {TARGET_GROWTH}x",
            verdict(growth <= TARGET_GROWTH),
        ]
    )
    rows.append(
        [
            "journal growth, after the runtime closed",
            f"{median('growth_closed'):.3f}x",
            "",
            "",
        ]
    )
    rows.append([f"start() with a {size} argument", f"{start * 1000:.0f} ms", "", ""])
    if journals.backend == "sqlite":
        settled = median("settled")
        rows.append(["WAL cut back, after start() returned", f"{settled * 1000:.0f} ms", "", ""])
    rows.append([f"file floor: write {size} + fsync", f"{floor * 1000:.0f} ms", "", ""])
    rows.append(
        [
            "start() / file floor",
            f"{start / floor:.2f}x",
            f"<= {TARGET_START}x",
            verdict(start <= TARGET_START * floor),
        ]
    )
    driver = median("driver")
    driver_name = "psycopg" if journals.backend == "postgresql" else "sqlite3"
    rows.append(
        [f"{driver_name} floor: one INSERT of it + COMMIT", f"{driver * 1000:.0f} ms", "", ""]
    )
    rows.append(["start() / driver floor", f"{start / driver:.2f}x", "", ""])
    rows.append(["runs show (that run)", f"{median('show'):.2f} s", "", ""])
    rows.append(["runs show --json (that run)", f"{median('show_json'):.2f} s", "", ""])
    rows.append(["runs show (a 1-byte run: start-up)", f"{median('show_small'):.2f} s", "", ""])
    print(render_table(rows, right={1}))
    samples = ", ".join(f"{r['start'] * 1000:.0f}/{r['floor'] * 1000:.0f}" for r in rounds)
    print(f"start()/floor ms per round: {samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
