"""``db migrate``, ``db info`` and ``db vacuum``: the journal itself rather than its runs.

``db migrate`` creates the journal, or upgrades it to this runwright's
schema version, as opening a runtime does (unless ``migrate=False``): run it
once before starting runtimes that may not change the schema. ``db info``
reads the journal read-only: its version, its runs by status, on SQLite
the files of its blob directory (payloads over 1 MiB, part of the journal:
a backup copies the file and that directory together), and the processes
that hold leases on runs. A lease's expiry is told in seconds from
now by the journal's own clock (``rw_now()``: the host's for an SQLite
file, the server's for PostgreSQL), so no host's clock skews it. ``db
vacuum`` gives back the space pruned runs held: SQLite's ``VACUUM`` rewrites
the file (writers wait while it runs), after removing the blob files no
run uses (left by a crash); on PostgreSQL each journal table is
vacuumed (concurrent writes go on).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from .._exceptions import NotARunwrightDatabase
from ..journal import open_journal, sqlite
from ..journal import postgres as pg
from ..journal._states import RunStatus
from ..journal._tx import Connection
from ..journal._untag import human_size
from ._common import Target, read_only, target_of
from ._format import print_json, table_lines

__all__ = ["info_command", "migrate_command", "vacuum_command"]


def migrate_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target.backend == "postgresql":
        before, after = pg.migrate(target.db, target.schema)
    else:
        before, after = _migrate_sqlite(target)
    if before == 0:
        print(f"{target.display}: created the journal at version {after}")
    elif before == after:
        print(f"{target.display}: already at version {after}")
    else:
        print(f"{target.display}: upgraded from version {before} to {after}")
    return 0


def vacuum_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target.backend == "postgresql":
        before, after = pg.vacuum(target.db, target.schema)
    else:
        before, after = sqlite.vacuum(target.db)
    print(f"{target.display}: {_mib(before)} before, {_mib(after)} after")
    return 0


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _migrate_sqlite(target: Target) -> tuple[int, int]:
    before = _sqlite_version(target.db)

    async def open_and_close() -> None:
        journal = await open_journal(target.db)
        await journal.close()

    anyio.run(open_and_close)
    return before, _sqlite_version(target.db)


def _sqlite_version(path: str) -> int:
    """The version of the journal in the SQLite file at *path*; 0 if it holds none yet
    (opening the journal says why a file that is not one cannot become one)."""
    if not os.path.lexists(path) or (os.path.isfile(path) and os.path.getsize(path) == 0):
        return 0
    try:
        conn = sqlite.connect_read_only(path)
    except NotARunwrightDatabase:
        return 0
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def info_command(args: argparse.Namespace) -> int:
    target = target_of(args)
    with read_only(target) as conn:
        version = _version(conn, target)
        counts = {
            str(status): int(count)
            for status, count in conn.execute("SELECT status, count(*) FROM runs GROUP BY status")
        }
        owners = [
            (str(owner), int(runs), None if expires_in is None else float(expires_in))
            for owner, runs, expires_in in conn.execute(
                "SELECT owner, count(*), min(lease_expires_at) - rw_now() FROM runs "
                "WHERE owner IS NOT NULL GROUP BY owner ORDER BY owner"
            )
        ]
    runs = {status.value: counts.get(status.value, 0) for status in RunStatus}
    blobs: dict[str, Any] | None = None
    if target.backend == "sqlite":
        files, size = sqlite.blob_usage(target.db)
        blobs = {"directory": sqlite.blob_dir(target.db), "files": files, "bytes": size}
    if args.json:
        print_json(
            {
                "backend": target.backend,
                "target": target.address,
                "schema": target.schema_name,
                "version": version,
                "runs": runs,
                "blobs": blobs,
                "owners": [
                    {
                        "owner": owner,
                        "runs": held,
                        "lease_expires_in": None if expires_in is None else round(expires_in, 3),
                    }
                    for owner, held, expires_in in owners
                ],
            }
        )
        return 0
    fields = [("backend", target.backend), ("target", target.address)]
    if target.schema_name is not None:
        fields.append(("schema", target.schema_name))
    fields.append(("version", str(version)))
    in_all = sum(runs.values())
    by_status = ", ".join(f"{count} {status}" for status, count in runs.items())
    fields.append(("runs", f"{in_all} ({by_status})"))
    if blobs is not None:
        count, size = blobs["files"], blobs["bytes"]
        noun = "file" if count == 1 else "files"
        fields.append(
            ("blobs", f"{count} {noun}, {human_size(int(size))}, in {blobs['directory']}")
        )
    fields.append(("owners", str(len(owners)) if owners else "none"))
    for label, value in fields:
        print(f"{label:<8} {value}")
    if owners:
        table = [["OWNER", "RUNS", "LEASE"]]
        table.extend([owner, str(held), _lease(expires_in)] for owner, held, expires_in in owners)
        for line in table_lines(table):
            print(f"  {line}")
    return 0


def _version(conn: Connection, target: Target) -> int:
    if target.backend == "postgresql":
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    else:
        row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _lease(expires_in: float | None) -> str:
    if expires_in is None:
        return "-"
    if expires_in >= 0:
        return f"expires in {expires_in:.1f} s"
    return f"expired {-expires_in:.1f} s ago"
