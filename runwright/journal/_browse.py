"""Reads for browsing many runs: one page of the runs list, found by keyset.

The runs list is ordered newest first by ``(created_at, run_id)``, and a
page ends where the next begins: the next page is asked for with the last
row's ``(created_at, run_id)`` (a keyset), never with an OFFSET, so a page
deep in a million runs costs what the first one does. Each filter walks an
index in that order and stops after a page:

- none, or a time range: ``runs_by_created (created_at, run_id)``;
- a status: ``runs_by_status (status, created_at)``; a workflow:
  ``runs_by_workflow (workflow, created_at)`` (runs created in the same
  instant are put in id order by a sort of those few rows);
- an attribute: ``run_attributes_by_value (key, value, run_created_at,
  run_id)``, joined to ``runs`` by primary key;
- a run id or key: the primary key or the key's unique index.

The keyset condition is written ``created_at <= t AND (created_at, run_id)
< (t, id)``: the first half is what an index on ``created_at`` alone can
seek to, on both backends; the row comparison drops the rows of that
instant already shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ._tx import Connection

__all__ = ["RunListRow", "children_of", "runs_page"]


@attrs.frozen
class RunListRow:
    """One row of the runs list."""

    run_id: str
    workflow: str
    key: str | None
    status: str
    created_at: float
    finished_at: float | None
    error_type: str | None
    error_message: str | None
    parent_run_id: str | None
    #: Why the run cannot advance (a ``run_problems`` kind), if it cannot.
    problem: str | None


_COLUMNS = (
    "r.run_id, r.workflow, r.key, r.status, r.created_at, r.finished_at, r.error_type, "
    "r.error_message, r.parent_run_id, "
    "(SELECT p.kind FROM run_problems AS p WHERE p.run_id = r.run_id)"
)


def runs_page(
    conn: Connection,
    *,
    status: str | None = None,
    workflow: str | None = None,
    attribute: tuple[str, str] | None = None,
    since: float | None = None,
    until: float | None = None,
    search: str | None = None,
    before: tuple[float, str] | None = None,
    after: tuple[float, str] | None = None,
    limit: int = 50,
) -> list[RunListRow]:
    """Up to *limit* runs, newest first, that match every filter given.

    *attribute* is ``(key, text form)``; *since* and *until* bound ``created_at``
    (inclusive, exclusive); *search* is a run id or a key (exact); *before* is
    the ``(created_at, run_id)`` of the last row of the previous (newer) page,
    *after* that of the first row of the next (older) one: the page is then
    the *limit* runs just newer than it (read oldest first, the same index
    backwards, and turned round).
    """
    where: list[str] = []
    params: list[object] = []
    if attribute is not None:
        # The attribute's index gives the order; its copy of created_at is the run's.
        source = "run_attributes AS a JOIN runs AS r ON r.run_id = a.run_id"
        made, ident = "a.run_created_at", "a.run_id"
        where += ["a.key = ?", "a.value = ?"]
        params += list(attribute)
    else:
        source = "runs AS r"
        made, ident = "r.created_at", "r.run_id"
    for column, value in (("r.status", status), ("r.workflow", workflow)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if search is not None:
        where.append("(r.run_id = ? OR r.key = ?)")
        params += [search, search]
    if since is not None:
        where.append(f"{made} >= ?")
        params.append(since)
    if until is not None:
        where.append(f"{made} < ?")
        params.append(until)
    if before is not None:
        where.append(f"{made} <= ? AND ({made}, {ident}) < (?, ?)")
        params += [before[0], before[0], before[1]]
    order = "DESC"
    if after is not None:
        where.append(f"{made} >= ? AND ({made}, {ident}) > (?, ?)")
        params += [after[0], after[0], after[1]]
        order = "ASC"
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM {source} {clause} "
        f"ORDER BY {made} {order}, {ident} {order} LIMIT ?",
        (*params, limit),
    ).fetchall()
    found = [RunListRow(*row) for row in rows]
    if after is not None:
        found.reverse()
    return found


def children_of(conn: Connection, run_id: str) -> Sequence[tuple[str, str, str]]:
    """The child runs of *run_id*: (run id, workflow, status), in the order started."""
    rows = conn.execute(
        "SELECT run_id, workflow, status FROM runs WHERE parent_run_id = ? ORDER BY parent_cid",
        (run_id,),
    ).fetchall()
    return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]
