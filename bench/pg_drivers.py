"""Which PostgreSQL driver the journal uses: one step-shaped transaction, three ways.

    pip install asyncpg   # not a runwright dependency; only this comparison needs it
    .venv/bin/python bench/pg_drivers.py [--db postgresql://...] [--txns 300] [--rounds 5]

The transaction is what a sequential step costs the journal: take the write
lock, read the newest seq, check the next position, update the step's row,
insert three events and the next step's row, commit. It runs:

- with asyncpg on asyncio (one await per statement; asyncpg has no trio support);
- with psycopg's sync API in a worker thread, one thread hop per transaction,
  one round trip per statement;
- the same in psycopg's pipeline mode (three round trips), as the journal does.

The ways alternate round by round, so that load on the machine falls on all of
them; the table shows the median of the rounds' means.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
import psycopg
from report import load_average, render_table

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/test"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--txns", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        import asyncpg
    except ImportError:
        raise SystemExit("this comparison needs asyncpg: pip install asyncpg") from None

    schema = f"drivers_{secrets.token_hex(4)}"
    admin = psycopg.connect(args.db, autocommit=True)
    admin.execute(
        f"CREATE SCHEMA {schema}; "
        f"CREATE TABLE {schema}.ev (seq bigint PRIMARY KEY, run text, kind text, payload bytea); "
        f"CREATE TABLE {schema}.st (run text, cid int, status text, PRIMARY KEY (run, cid))"
    )
    a = await asyncpg.connect(args.db)
    await a.execute(f"SET search_path TO {schema}")
    p = psycopg.connect(args.db, autocommit=True)
    p.execute(f"SET search_path TO {schema}")

    async def with_asyncpg(i: int) -> None:
        async with a.transaction():
            await a.execute("SELECT pg_advisory_xact_lock(7)")
            newest = await a.fetchval("SELECT coalesce(max(seq), 0) FROM ev")
            await a.fetchval("SELECT EXISTS (SELECT 1 FROM st WHERE run = $1 AND cid = $2)", "r", i)
            await a.execute("UPDATE st SET status = 'done' WHERE run = $1 AND cid = $2", "r", i - 1)
            await a.executemany(
                "INSERT INTO ev VALUES ($1, $2, $3, $4)",
                [(newest + k + 1, "r", "k", b"x") for k in range(3)],
            )
            await a.execute("INSERT INTO st VALUES ($1, $2, 'running')", "r", i)

    def plain(i: int) -> None:
        p.execute("BEGIN; SELECT pg_advisory_xact_lock(7)")
        row = p.execute("SELECT coalesce(max(seq), 0) FROM ev").fetchone()
        assert row is not None
        p.execute("SELECT EXISTS (SELECT 1 FROM st WHERE run = %s AND cid = %s)", ("r", i))
        p.execute("UPDATE st SET status = 'done' WHERE run = %s AND cid = %s", ("r", i - 1))
        for k in range(3):
            p.execute("INSERT INTO ev VALUES (%s, %s, %s, %s)", (row[0] + k + 1, "r", "k", b"x"))
        p.execute("INSERT INTO st VALUES (%s, %s, 'running')", ("r", i))
        p.execute("COMMIT")

    def pipelined(i: int) -> None:
        with p.pipeline() as pipeline:
            p.execute("BEGIN")
            p.execute("SELECT pg_advisory_xact_lock(7)")
            newest = p.execute("SELECT coalesce(max(seq), 0) FROM ev")
            p.execute(
                "SELECT EXISTS (SELECT 1 FROM st WHERE run = %s AND cid = %s)", ("r", i)
            ).fetchone()
            p.execute("UPDATE st SET status = 'done' WHERE run = %s AND cid = %s", ("r", i - 1))
            pipeline.sync()
            row = newest.fetchone()
            assert row is not None
            for k in range(3):
                p.execute(
                    "INSERT INTO ev VALUES (%s, %s, %s, %s)", (row[0] + k + 1, "r", "k", b"x")
                )
            p.execute("INSERT INTO st VALUES (%s, %s, 'running')", ("r", i))
            p.execute("COMMIT")

    def in_thread(fn: Callable[[int], None]) -> Callable[[int], Awaitable[None]]:
        async def run(i: int) -> None:
            await anyio.to_thread.run_sync(fn, i)

        return run

    ways: dict[str, Callable[[int], Awaitable[Any]]] = {
        "asyncpg, asyncio, 1 await per statement": with_asyncpg,
        "psycopg, 1 thread hop, 1 round trip per statement": in_thread(plain),
        "psycopg, 1 thread hop, pipeline (3 round trips)": in_thread(pipelined),
    }
    means: dict[str, list[float]] = {name: [] for name in ways}
    i = 0
    try:
        for _ in range(args.rounds):
            for name, way in ways.items():
                start = time.perf_counter()
                for _ in range(args.txns):
                    i += 1
                    await way(i)
                means[name].append((time.perf_counter() - start) / args.txns * 1e6)
        settings = {
            name: p.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("synchronous_commit", "wal_sync_method")
        }
    finally:
        await a.close()
        p.close()
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
    print(f"load average {load_average()}; server {settings}")
    rows = [["driver", "median µs/txn", "rounds"]]
    for name, values in means.items():
        rows.append(
            [name, f"{statistics.median(values):.0f}", " ".join(f"{v:.0f}" for v in values)]
        )
    print(render_table(rows, right={1}))


if __name__ == "__main__":
    asyncio.run(main())
