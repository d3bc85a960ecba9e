"""The web view's runs list on a journal of a million runs: server time per page.

The journal is filled fast, straight through the schema with the plain driver
(sqlite3's ``executemany`` in one transaction, or psycopg's ``COPY``): a journal
is created by opening a runtime on it, then ``--runs`` rows (default
1,000,000) go into ``runs``, one ``customer`` attribute each (5,000 customers,
so 200 runs each) into ``run_attributes``, and every hundredth run gets a
``tier=gold`` one. Runs are 1/100 s apart, in ten workflows, 80% completed, 10%
failed, 5% cancelled, 5% running, each with a key. No events: the list reads
none.

Then each page is asked for ``--repeat`` times through the web application
itself (``runwright.web.app`` over a client runtime, called in-process with
httpx's ASGI transport, so no network is counted): the server time is from the
request reaching the application to its last byte. Target: a page of 50 rows
in at most 50 ms (p95).

Last, how soon a page hears of a write (its ``/events`` stream, called as a
server would): from ``start()`` returning in another runtime on the journal (as
another process: the journal's watcher reports it) and in the application's own
runtime (an application mounted in a service: the feed's tick finds it), to the
``change`` event naming the run leaving the application. Target: 1 s.

    python bench/web.py [--runs N] [--quick] [--db postgresql://...] [--dir DIR]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import anyio
import flows
import httpx
from journals import Journals
from report import format_machine, host_facts, percentile, render_table

import runwright as rw
from runwright.web import app

TARGET_MS = 50.0
TARGET_LIVE_MS = 1000.0
START = 1_700_000_000.0
STATUSES = ["completed"] * 16 + ["failed"] * 2 + ["cancelled", "running"]


def run_rows(count: int) -> Iterator[tuple[Any, ...]]:
    tail = secrets.token_hex(10)
    for i in range(count):
        made = START + i * 0.01
        status = STATUSES[i % len(STATUSES)]
        ended = None if status == "running" else made + 0.5
        yield (
            f"{i:012x}{tail}", f"bench.flow{i % 10}", f"order-{i}", status, b"",
            made, ended or made, ended,
        )  # fmt: skip


def attribute_rows(count: int) -> Iterator[tuple[Any, ...]]:
    tail = secrets.token_hex(10)
    for i in range(count):
        made = START + i * 0.01
        yield (f"{i:012x}{tail}", "customer", f"c-{i % 5000}", "str", made, made)
        if i % 100 == 0:
            yield (f"{i:012x}{tail}", "tier", "gold", "str", made, made)


_RUN_COLUMNS = "run_id, workflow, key, status, args, created_at, updated_at, finished_at"
_ATTRIBUTE_COLUMNS = "run_id, key, value, type, run_created_at, set_at"


def fill(db: str, count: int) -> None:
    """*count* runs and their attributes, written straight through the schema."""
    anyio.run(_create, db)
    # One id suffix for both tables: the attribute rows name the runs.
    tail = secrets.token_hex(10)

    def runs() -> Iterator[tuple[Any, ...]]:
        for row in run_rows(count):
            yield (row[0][:12] + tail, *row[1:])

    def attributes() -> Iterator[tuple[Any, ...]]:
        for row in attribute_rows(count):
            yield (row[0][:12] + tail, *row[1:])

    if not db.startswith("postgresql"):
        import sqlite3

        conn = sqlite3.connect(db)
        with conn:
            conn.executemany(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", runs())
            conn.executemany(
                f"INSERT INTO run_attributes ({_ATTRIBUTE_COLUMNS}) VALUES (?,?,?,?,?,?)",
                attributes(),
            )
        conn.execute("ANALYZE")
        conn.close()
        return
    import psycopg

    from runwright.journal.postgres._url import PgTarget

    target = PgTarget(db)
    with psycopg.connect(target.conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{target.schema}"')
        with conn.cursor() as cur:
            with cur.copy(f"COPY runs ({_RUN_COLUMNS}) FROM STDIN") as copy:
                for row in runs():
                    copy.write_row(row)
            with cur.copy(f"COPY run_attributes ({_ATTRIBUTE_COLUMNS}) FROM STDIN") as copy:
                for row in attributes():
                    copy.write_row(row)
        conn.execute("VACUUM ANALYZE runs")
        conn.execute("VACUUM ANALYZE run_attributes")


async def _create(db: str) -> None:
    async with rw.Runtime(db, execute=False):
        pass


def deep_cursor(db: str, depth: int) -> str:
    """The page cursor of the run *depth* rows from the newest (read once, with OFFSET)."""
    from runwright._cli._common import Target, read_only

    with read_only(Target(db)) as conn:
        made, run_id = conn.execute(
            "SELECT created_at, run_id FROM runs ORDER BY created_at DESC, run_id DESC "
            "LIMIT 1 OFFSET ?",
            (depth,),
        ).fetchone()
    return f"{float(made)!r}~{run_id}"


async def measure(db: str, pages: list[tuple[str, str]], repeat: int) -> list[list[str]]:
    rows = [["scenario", "rows", "median ms", "p95 ms", "target", "met", "query"]]
    async with rw.Runtime(db, execute=False) as runtime:
        web = app(runtime, read_only=True)
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name, query in pages:
                times = []
                shown = 0
                for _ in range(repeat + 1):
                    started = time.perf_counter()
                    answer = await client.get(f"/api/runs?{query}")
                    times.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                    shown = answer.json()["rows"].count("<tr data-run=")
                times = times[1:]  # the first warms the caches
                p95 = percentile(times, 95)
                rows.append(
                    [
                        name, str(shown), f"{statistics.median(times):.2f}", f"{p95:.2f}",
                        f"p95 <= {TARGET_MS:g} ms", "yes" if p95 <= TARGET_MS else "no",
                        urllib.parse.unquote(query)[:60],
                    ]
                )  # fmt: skip
    return rows


async def live(db: str, samples: int) -> list[list[str]]:
    """Milliseconds from a run's start being written to the change event that names it."""
    rows = [["scenario", "samples", "median ms", "p95 ms", "target", "met"]]
    async with rw.Runtime(db) as runtime, rw.Runtime(db, execute=False) as other:
        web = app(runtime, read_only=True)
        heard: dict[str, float] = {}
        news = [anyio.Event()]
        gone = anyio.Event()
        scope = {
            "type": "http", "method": "GET", "path": "/events", "root_path": "",
            "query_string": b"", "headers": [],
        }  # fmt: skip

        async def receive() -> dict[str, Any]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            body = message.get("body", b"")
            if body.startswith(b"event: change"):
                now = time.perf_counter()
                for run_id in body.decode().split("[", 1)[-1].split("]")[0].split(","):
                    heard.setdefault(run_id.strip('"'), now)
                news.pop().set()
                news.append(anyio.Event())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(web, scope, receive, send)
            await anyio.sleep(0.2)
            for name, starter in (
                ("another process's write", other),
                ("this process's write", runtime),
            ):
                delays = []
                for _ in range(samples):
                    run = await starter.start(flows.stamped)
                    written = time.perf_counter()
                    with anyio.fail_after(10):
                        while run.id not in heard:
                            await news[0].wait()
                    delays.append((heard[run.id] - written) * 1000)
                    await anyio.sleep(0.05)
                p95 = percentile(delays, 95)
                rows.append(
                    [
                        f"page hears of {name}", str(samples), f"{statistics.median(delays):.1f}",
                        f"{p95:.1f}", f"p95 <= {TARGET_LIVE_MS:g} ms",
                        "yes" if p95 <= TARGET_LIVE_MS else "no",
                    ]
                )  # fmt: skip
            gone.set()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="runs in the journal")
    parser.add_argument("--quick", action="store_true", help="20,000 runs, 3 repeats")
    parser.add_argument("--repeat", type=int, default=20, help="samples per page (20)")
    parser.add_argument("--db", help="a postgresql:// URL (default: an SQLite file)")
    parser.add_argument("--dir", help="where SQLite journals go (default: a temporary dir)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeat = 20_000, 3
    journals = Journals(args.db, parent=args.dir)
    print(format_machine(host_facts()))
    print(f"journal: {journals.describe()}")
    with journals.journal("web") as db:
        started = time.perf_counter()
        fill(db, args.runs)
        print(f"filled {args.runs:,} runs in {time.perf_counter() - started:.1f} s")
        deep = deep_cursor(db, args.runs * 9 // 10)
        middle = START + args.runs * 0.01 / 2
        window = (
            urllib.parse.quote(_iso(middle)), urllib.parse.quote(_iso(middle + 60))
        )  # fmt: skip
        pages = [
            ("first page", ""),
            (f"page at run {args.runs * 9 // 10:,}", f"before={urllib.parse.quote(deep)}"),
            ("status=failed", "status=failed"),
            ("status=running, deep", f"status=running&before={urllib.parse.quote(deep)}"),
            ("workflow", "workflow=bench.flow3"),
            ("attribute (200 runs)", "attr=customer%3Dc-17"),
            ("attribute (1% of runs), deep", f"attr=tier%3Dgold&before={urllib.parse.quote(deep)}"),
            ("a minute's window", f"from={window[0]}&to={window[1]}"),
            ("search by key", f"q=order-{args.runs // 3}"),
        ]
        rows = anyio.run(measure, db, pages, args.repeat)
        print(render_table(rows, right={1, 2, 3}))
    with journals.journal("live") as db:  # runs that this process can execute
        latency = anyio.run(live, db, args.repeat)
        print(render_table(latency, right={1, 2, 3}))
    met = all(row[5] == "yes" for row in rows[1:] + latency[1:])
    return 0 if met or args.quick else 1


def _iso(timestamp: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
