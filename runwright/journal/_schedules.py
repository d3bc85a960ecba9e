"""Schedules in the journal: each one's latest declaration and its durable state.

One ``schedules`` row per schedule name (schema version 4): the declaration
that was made last, by whichever process (workflow, cron expression, time
zone, catch-up policy), whether it is paused, the newest tick that started a
run (``last_tick``), and ``fire_after``: ticks at or before it are never
started on schedule. ``fire_after`` is the time of the first declaration,
moved forward when a declaration changes the expression or the time zone
(the new expression's ticks count from then) and when the schedule is
resumed (ticks that fell while it was paused are skipped).

A tick starts its run in the same transaction as :func:`claim_tick`, which
checks that the schedule is not paused and still has the expression the
tick came from; the run's key (schedule and tick time) is what makes a tick
start one run however many processes fire it.
"""

from __future__ import annotations

import attrs

from ._tx import Connection, Tx

__all__ = [
    "ScheduleRow",
    "claim_tick",
    "declare_schedule",
    "schedule_row",
    "schedule_rows",
    "set_paused",
]

_COLUMNS = (
    "name, workflow, cron, timezone, catch_up, paused, last_tick, fire_after, declared_at, "
    "updated_at"
)


@attrs.frozen
class ScheduleRow:
    name: str
    workflow: str
    cron: str
    timezone: str
    catch_up: str
    paused: bool
    last_tick: float | None
    fire_after: float
    declared_at: float
    updated_at: float

    @property
    def fired_through(self) -> float:
        """Every tick at or before this time has fired, or never will on schedule."""
        return self.fire_after if self.last_tick is None else max(self.fire_after, self.last_tick)

    @classmethod
    def of(cls, row: tuple[object, ...]) -> ScheduleRow:
        name, workflow, cron, timezone, catch_up, paused, last, after, declared, updated = row
        return cls(
            str(name),
            str(workflow),
            str(cron),
            str(timezone),
            str(catch_up),
            bool(paused),
            None if last is None else float(last),  # type: ignore[arg-type]
            float(after),  # type: ignore[arg-type]
            float(declared),  # type: ignore[arg-type]
            float(updated),  # type: ignore[arg-type]
        )


def schedule_rows(conn: Connection) -> list[ScheduleRow]:
    """Every schedule in the journal, by name."""
    rows = conn.execute(f"SELECT {_COLUMNS} FROM schedules ORDER BY name").fetchall()
    return [ScheduleRow.of(tuple(row)) for row in rows]


def schedule_row(conn: Connection, name: str) -> ScheduleRow | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM schedules WHERE name = ?", (name,)).fetchone()
    return None if row is None else ScheduleRow.of(tuple(row))


def declare_schedule(
    tx: Tx, name: str, workflow: str, cron: str, timezone: str, catch_up: str, at: float
) -> ScheduleRow:
    """Record a process's declaration of schedule *name*: the latest one wins. Returns
    the row as it stands after it."""
    conn = tx.conn
    current = schedule_row(conn, name)
    if current is None:
        conn.execute(
            f"INSERT INTO schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (name, workflow, cron, timezone, catch_up, at, at, at),
        )
    elif (current.workflow, current.cron, current.timezone, current.catch_up) != (
        workflow,
        cron,
        timezone,
        catch_up,
    ):
        moved = (current.cron, current.timezone) != (cron, timezone)
        conn.execute(
            "UPDATE schedules SET workflow = ?, cron = ?, timezone = ?, catch_up = ?, "
            "fire_after = ?, declared_at = ?, updated_at = ? WHERE name = ?",
            (
                workflow,
                cron,
                timezone,
                catch_up,
                max(current.fire_after, at) if moved else current.fire_after,
                at,
                at,
                name,
            ),
        )
    row = schedule_row(conn, name)
    assert row is not None
    return row


def set_paused(tx: Tx, name: str, paused: bool, at: float) -> bool:
    """Pause or resume schedule *name*; False if the journal has no such schedule.

    Resuming a paused schedule moves ``fire_after`` to *at*: ticks that fell
    while it was paused are not caught up."""
    if paused:
        cur = tx.conn.execute(
            "UPDATE schedules SET paused = 1, updated_at = ? WHERE name = ?", (at, name)
        )
    else:
        cur = tx.conn.execute(
            "UPDATE schedules SET fire_after = CASE WHEN paused = 1 AND fire_after < ? THEN ? "
            "ELSE fire_after END, paused = 0, updated_at = ? WHERE name = ?",
            (at, at, at, name),
        )
    return cur.rowcount == 1


def claim_tick(tx: Tx, name: str, cron: str, timezone: str, tick: float, at: float) -> bool:
    """Record that *tick* of schedule *name* fires, if it may: the schedule is not
    paused, still has *cron* in *timezone*, and the tick is after ``fire_after``.
    ``last_tick`` only ever moves forward."""
    cur = tx.conn.execute(
        "UPDATE schedules SET last_tick = CASE WHEN last_tick IS NULL OR last_tick < ? THEN ? "
        "ELSE last_tick END, updated_at = ? "
        "WHERE name = ? AND paused = 0 AND cron = ? AND timezone = ? AND fire_after < ?",
        (tick, tick, at, name, cron, timezone, tick),
    )
    return cur.rowcount == 1
