"""Filling a journal fast for the benchmarks: one recorded run, copied many times.

The copies are the recorded run's rows (the run, its steps and events) under
new run ids, written with the plain driver (sqlite3, or psycopg's COPY), as if
each had run. ``shift`` moves every copy's times back, so copies can look as
if they ended long ago.
"""

from __future__ import annotations

from typing import Any

from runwright._cli._common import Target, read_only
from runwright.journal.postgres import PgTarget

__all__ = ["copy_run"]

_TIMES = {"created_at", "updated_at", "finished_at", "at", "lease_expires_at"}


def _rows(conn: Any, table: str, run_id: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = conn.execute(f"SELECT * FROM {table} WHERE run_id = ?", (run_id,))
    columns = [d[0] for d in cur.description]
    return columns, [tuple(row) for row in cur.fetchall()]


def copy_run(db: str, template: str, copies: int, *, shift: float = 0.0) -> None:
    """Copy run *template*'s rows under *copies* new ids (events keep their order),
    its times moved *shift* seconds back."""
    backend = "postgresql" if db.startswith("postgresql") else "sqlite"
    with read_only(Target(db)) as conn:
        tables = {name: _rows(conn, name, template) for name in ("runs", "steps", "events")}
    written: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    for name, (columns, rows) in tables.items():
        at = columns.index("run_id")
        keep = [i for i, c in enumerate(columns) if not (name == "events" and c == "seq")]
        out = []
        times = [i for i, c in enumerate(columns) if c in _TIMES]
        for n in range(1, copies + 1):
            new_id = f"{n:08x}{template[8:]}"
            for row in rows:
                values = list(row)
                values[at] = new_id
                for i in times:
                    if values[i] is not None:
                        values[i] -= shift
                if name == "runs" and values[columns.index("key")] is not None:
                    values[columns.index("key")] = None
                out.append(tuple(values[i] for i in keep))
        written[name] = ([columns[i] for i in keep], out)
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db)
        with conn:
            for name, (columns, rows) in written.items():
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
            for name, (columns, rows) in written.items():
                if name == "events":
                    columns = ["seq", *columns]
                    rows = [(seq + i + 1, *row) for i, row in enumerate(rows)]
                with cur.copy(f"COPY {name} ({','.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        pg.commit()
        # As autovacuum would after such a load: plans that fit the tables.
        for name in written:
            pg.execute(f"ANALYZE {name}")
