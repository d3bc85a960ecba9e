"""The journal contract: every transaction the actors need, in SQL both backends run.

A :class:`Tx` is one caller's share of a write transaction. Each method appends
the event and changes the materialized row in the same transaction. Claims are
conditional UPDATEs whose ``WHERE status IN (...)`` comes from the lifecycle
tables in :mod:`._states`; a method returns False when it matched nothing,
which is how losing a race looks.

The SQL here is the common subset of SQLite and PostgreSQL (``?`` placeholders,
``ON CONFLICT``, ``RETURNING``); a backend hands in a connection whose
``execute`` speaks it. Time that decides ownership is ``rw_now()``, a function
each backend defines: the host's clock for an SQLite file (one host), the
database server's clock for PostgreSQL (many hosts, whose clocks drift).

A backend's transactions must be serializable with respect to each other and
commit in ``seq`` order: the methods read and then write (a key's run, a
step's row), and readers follow the log by ``seq``.

Every value is stored once, in the event that brought it: a run's arguments
in its ``run_created`` event, its outcome in its ``run_completed`` /
``run_failed`` / ``run_cancelled`` event. The ``runs`` row, which leases and
claims update again and again (SQLite reads a row's blobs on every UPDATE,
and rewrites them when the row changes size), keeps ``args`` empty and
``outcome`` NULL since schema version 3; readers take both from the events
(``RUN_ARGS`` and ``RUN_OUTCOME`` in :mod:`._events`). Journals written
before kept a copy in the row too; nothing reads it. A child's outcome is
also copied into its parent's ``child_completed`` event: the two runs are
pruned separately, and the parent's history must hold what it was given.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

from ._events import DEADLINE_CID, RESOLUTION_KINDS, RUN_ARGS, Event, Kind
from ._states import RUN_TRANSITIONS, STEP_TRANSITIONS, WAIT_TRANSITIONS, sources
from ._stored import stored

__all__ = ["TIMED_OUT", "Connection", "Cursor", "RunState", "Tx"]

#: The reason a run whose deadline passed was cancelled.
TIMED_OUT = "timed out"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the contract's SQL needs of a connection (sqlite3's, or an adapter)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...


def _in(states: Iterable[str]) -> str:
    return "(" + ",".join(f"'{s}'" for s in states) + ")"


_RUN_FINISH_FROM = {
    target: _in(sources(RUN_TRANSITIONS, target)) for target in ("completed", "failed", "cancelled")
}
_STEP_START_FROM = _in(sources(STEP_TRANSITIONS, "running"))
_STEP_CANCEL_FROM = _in(sources(STEP_TRANSITIONS, "cancelled"))
ENDED_RUN = ("completed", "failed", "cancelled")
#: Every table that holds rows of a run, the runs table last.
_RUN_TABLES = (
    "events",
    "steps",
    "waits",
    "hooks",
    "stream_chunks",
    "streams",
    "run_problems",
    "run_attributes",
    "runs",
)
_WAIT_FIRE_FROM = _in(sources(WAIT_TRANSITIONS, "fired"))
_WAIT_CANCEL_FROM = _in(sources(WAIT_TRANSITIONS, "cancelled"))


class RunState:
    """The answer to :meth:`Tx.run_state`: ``(newest outcome seq, owned, taken)``."""

    def __init__(self, cursor: Cursor) -> None:
        self._cursor: Cursor | None = cursor
        self._value = (0, False, False)

    def get(self) -> tuple[int, bool, bool]:
        if self._cursor is not None:
            row = self._cursor.fetchone()
            self._cursor = None
            self._value = (int(row[0]), bool(row[1]), bool(row[2]))
        return self._value


class Tx:
    """One caller's share of a write transaction. Only the writer thread uses it."""

    #: Whether a statement's answer may be collected after later statements were sent.
    deferred_answers = False

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.events: list[Event] = []

    @property
    def conn(self) -> Connection:
        """The connection this transaction runs on (for the journal's own write modules)."""
        return self._conn

    def append(
        self,
        run_id: str,
        kind: str,
        at: float,
        *,
        cid: int | None = None,
        attempt: int | None = None,
        name: str | None = None,
        payload: bytes | None = None,
    ) -> Event:
        seq = self._insert_event((run_id, kind, cid, attempt, name, payload, at))
        event = Event(seq, run_id, kind, cid, attempt, name, payload, at)
        self.events.append(event)
        return event

    def _insert_event(self, values: tuple[Any, ...]) -> int:
        row = self._conn.execute(
            "INSERT INTO events (run_id, kind, cid, attempt, name, payload, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            values,
        ).fetchone()
        return int(row[0])

    # -- runs -------------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        workflow: str,
        args: bytes,
        at: float,
        *,
        key: str | None,
        owner: str | None,
        lease_seconds: float,
    ) -> tuple[str, str, bytes] | None:
        """Create a run (RUNNING with a lease of *lease_seconds* if it has an owner, else
        PENDING).

        Returns None when it was created; else the run that already holds *key*,
        or *run_id* itself if it exists (a retry of a write whose commit was not
        acknowledged), as (run id, workflow, encoded arguments).
        """
        if key is not None:
            row = self._conn.execute(
                f"SELECT run_id, workflow, {RUN_ARGS} FROM runs WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                return str(row[0]), str(row[1]), bytes(stored(self._conn, row[2]))
        if owner is not None:
            cur = self._conn.execute(
                "INSERT INTO runs (run_id, workflow, key, status, args, owner, lease_expires_at, "
                "created_at, updated_at) VALUES (?, ?, ?, 'running', ?, ?, rw_now() + ?, ?, ?) "
                "ON CONFLICT (run_id) DO NOTHING",
                (run_id, workflow, key, b"", owner, lease_seconds, at, at),
            )
        else:
            cur = self._conn.execute(
                "INSERT INTO runs (run_id, workflow, key, status, args, created_at, updated_at) "
                "VALUES (?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
                (run_id, workflow, key, b"", at, at),
            )
        if cur.rowcount != 1:
            return run_id, workflow, args
        self.append(run_id, Kind.RUN_CREATED, at, name=workflow, payload=args)
        return None

    def start_child(
        self,
        parent_run_id: str,
        cid: int,
        child_run_id: str,
        workflow: str,
        args: bytes,
        at: float,
        *,
        owner: str | None,
        lease_seconds: float,
    ) -> None:
        """Create a child run and record it at position *cid* of its parent."""
        self.create_run(
            child_run_id, workflow, args, at, key=None, owner=owner, lease_seconds=lease_seconds
        )
        self._conn.execute(
            "UPDATE runs SET parent_run_id = ?, parent_cid = ? WHERE run_id = ?",
            (parent_run_id, cid, child_run_id),
        )
        self.append(
            parent_run_id, Kind.CHILD_STARTED, at, cid=cid, name=workflow,
            payload=child_run_id.encode(),
        )  # fmt: skip

    def claim_run(
        self, run_id: str, owner: str, lease_seconds: float, *, steal_from: str = ""
    ) -> bool:
        """Take ownership of a live run nobody holds, whose lease expired by the journal's
        clock (or *steal_from*'s, known dead)."""
        cur = self._conn.execute(
            "UPDATE runs SET owner = ?, lease_expires_at = rw_now() + ?, "
            "status = CASE status WHEN 'pending' THEN 'running' ELSE status END "
            "WHERE run_id = ? AND status IN ('pending', 'running') "
            "AND (owner IS NULL OR owner = ? OR owner = ? OR lease_expires_at < rw_now())",
            (owner, lease_seconds, run_id, owner, steal_from),
        )
        return cur.rowcount == 1

    def run_state(self, run_id: str, owner: str, cids: Sequence[int]) -> RunState:
        """What a driver checks before writing what follows from outcomes, in one query:
        the seq of the run's newest step or wait outcome (0 if none), whether *owner*
        drives the run (a live run whose lease it holds), and whether a step, wait or
        hook already exists at any of *cids* (someone else wrote it).

        The check sees the journal as it is now, whatever this transaction writes
        before its answer is asked for (a backend may collect the answer later,
        with the next one it needs)."""
        taken = "0"
        params: list[Any] = [run_id, run_id, owner]
        if cids:
            marks = ",".join("?" * len(cids))
            taken = (
                f"EXISTS (SELECT 1 FROM steps WHERE run_id = ? AND cid IN ({marks}) "
                f"UNION ALL SELECT 1 FROM waits WHERE run_id = ? AND cid IN ({marks}) "
                f"UNION ALL SELECT 1 FROM events WHERE run_id = ? AND kind = 'hook_created' "
                f"AND cid IN ({marks}))"
            )
            params += [run_id, *cids, run_id, *cids, run_id, *cids]
        row = self._conn.execute(
            "SELECT coalesce((SELECT seq FROM events WHERE run_id = ? AND kind IN "
            f"{_in(sorted(RESOLUTION_KINDS))} ORDER BY seq DESC LIMIT 1), 0), "
            "EXISTS (SELECT 1 FROM runs WHERE run_id = ? AND owner = ? AND status = 'running'), "
            f"{taken}",
            params,
        )
        state = RunState(row)
        if not self.deferred_answers:
            state.get()
        return state

    def renew_leases(self, owner: str, lease_seconds: float) -> set[str]:
        """Extend every lease *owner* holds by *lease_seconds* from now (the journal's clock);
        return the runs it still owns."""
        rows = self._conn.execute(
            "UPDATE runs SET lease_expires_at = rw_now() + ? WHERE owner = ? "
            "AND status = 'running' RETURNING run_id",
            (lease_seconds, owner),
        ).fetchall()
        return {str(row[0]) for row in rows}

    def release_run(self, run_id: str, owner: str) -> bool:
        cur = self._conn.execute(
            "UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE run_id = ? AND owner = ?",
            (run_id, owner),
        )
        return cur.rowcount == 1

    def release_runs(self, owner: str) -> int:
        cur = self._conn.execute(
            "UPDATE runs SET owner = NULL, lease_expires_at = NULL WHERE owner = ?", (owner,)
        )
        return cur.rowcount

    def finish_run(
        self,
        run_id: str,
        status: Literal["completed", "failed", "cancelled"],
        at: float,
        *,
        outcome: bytes | None,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        # What the run leaves to tidy (pending waits, hooks, a problem) comes back
        # with its parent: most runs leave nothing, and skip three statements.
        ended = self._conn.execute(
            "UPDATE runs SET status = ?, error_type = ?, error_message = ?, "
            "owner = NULL, lease_expires_at = NULL, updated_at = ?, finished_at = ? "
            f"WHERE run_id = ? AND status IN {_RUN_FINISH_FROM[status]} "
            "RETURNING parent_run_id, parent_cid, "
            f"EXISTS (SELECT 1 FROM waits WHERE run_id = ? AND status IN {_WAIT_CANCEL_FROM}), "
            "EXISTS (SELECT 1 FROM hooks WHERE run_id = ?), "
            "EXISTS (SELECT 1 FROM run_problems WHERE run_id = ?)",
            (status, error_type, error_message, at, at, run_id, run_id, run_id, run_id),
        ).fetchone()
        if ended is None:
            return False
        parent_run_id, parent_cid, waits, hooks, problem = ended
        kind = {
            "completed": Kind.RUN_COMPLETED,
            "failed": Kind.RUN_FAILED,
            "cancelled": Kind.RUN_CANCELLED,
        }[status]
        self.append(run_id, kind, at, payload=outcome)
        if waits:
            self._conn.execute(
                f"UPDATE waits SET status = 'cancelled' WHERE run_id = ? AND status IN "
                f"{_WAIT_CANCEL_FROM}",
                (run_id,),
            )
        if hooks:
            self._conn.execute("DELETE FROM hooks WHERE run_id = ?", (run_id,))
        if parent_run_id is not None:
            # The parent learns through its own journal, in the same transaction.
            self.append(
                str(parent_run_id), Kind.CHILD_COMPLETED, at, cid=int(parent_cid), name=status,
                payload=outcome,
            )  # fmt: skip
        if problem:
            self.clear_problem(run_id)
        return True

    def set_deadline(self, run_id: str, deadline: float, payload: bytes, at: float) -> None:
        """Give a new run a deadline (its ``timeout=``): then it is cancelled, "timed out"."""
        self._conn.execute(
            "INSERT INTO waits (run_id, cid, wake_at, status) VALUES (?, ?, ?, 'pending')",
            (run_id, DEADLINE_CID, deadline),
        )
        self.append(run_id, Kind.RUN_DEADLINE, at, payload=payload)

    def fire_deadline(self, run_id: str, at: float) -> str:
        """The run's deadline passed: cancel it, once ("requested"), whoever notices first.

        "fired" if the deadline was already fired or released; otherwise what
        :meth:`request_cancel` says.
        """
        cur = self._conn.execute(
            "UPDATE waits SET status = 'fired' WHERE run_id = ? AND cid = ? "
            f"AND status IN {_WAIT_FIRE_FROM}",
            (run_id, DEADLINE_CID),
        )
        if cur.rowcount != 1:
            return "fired"
        return self.request_cancel(run_id, at, reason=TIMED_OUT)

    def request_cancel(self, run_id: str, at: float, *, reason: str | None = None) -> str:
        """Ask a run to cancel: "requested" (its driver will), "finished" (a run nobody
        started ends now), "already" (asked before), "ended" or "unknown".

        *reason* is kept with the request (the event's name) and with the run's end.
        """
        row = self._conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return "unknown"
        if row[0] in ("completed", "failed", "cancelled"):
            return "ended"
        if row[0] == "pending":
            self.finish_run(run_id, "cancelled", at, outcome=None, error_message=reason)
            return "finished"
        asked = self._conn.execute(
            "SELECT 1 FROM events WHERE run_id = ? AND kind = ? LIMIT 1",
            (run_id, Kind.CANCEL_REQUESTED),
        ).fetchone()
        if asked is not None:
            return "already"
        self.append(run_id, Kind.CANCEL_REQUESTED, at, name=reason)
        children = self._conn.execute(
            "SELECT run_id FROM runs WHERE parent_run_id = ? AND status IN ('pending', 'running')",
            (run_id,),
        ).fetchall()
        for (child,) in children:
            self.request_cancel(str(child), at)
        return "requested"

    def prune_runs(self, cutoff: float, statuses: Sequence[str], limit: int) -> int:
        """Delete up to *limit* runs in *statuses* (ended ones) that finished before *cutoff*,
        with everything they hold; return how many.

        A run is kept while it has a child that has not ended (the child's end is
        written into its parent's events) or while its parent has not ended.
        """
        run_ids: list[str] = []
        for status in (s for s in ENDED_RUN if s in statuses):
            # One status at a time, through the (status, created_at) index, in no
            # particular order (no sort of every candidate): the scan stops at the limit.
            rows = self._conn.execute(
                "SELECT run_id FROM runs AS r WHERE status = ? AND finished_at < ? "
                "AND NOT EXISTS (SELECT 1 FROM runs AS c WHERE c.parent_run_id = r.run_id "
                "AND c.status IN ('pending', 'running')) "
                "AND (r.parent_run_id IS NULL OR NOT EXISTS (SELECT 1 FROM runs AS p "
                "WHERE p.run_id = r.parent_run_id AND p.status IN ('pending', 'running'))) "
                "LIMIT ?",
                (status, cutoff, limit - len(run_ids)),
            ).fetchall()
            run_ids += [str(row[0]) for row in rows]
            if len(run_ids) >= limit:
                break
        if not run_ids:
            return 0
        marks = ",".join("?" * len(run_ids))
        self._forget_runs(run_ids, marks)
        for table in _RUN_TABLES:
            self._conn.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", run_ids)
        return len(run_ids)

    def _forget_runs(self, run_ids: list[str], marks: str) -> None:
        """What a backend deletes of *run_ids* (being pruned) beyond their rows."""

    def set_problem(self, run_id: str, kind: str, message: str, at: float) -> None:
        self._conn.execute(
            "INSERT INTO run_problems (run_id, kind, message, at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET kind = excluded.kind, "
            "message = excluded.message, at = excluded.at",
            (run_id, kind, message, at),
        )

    def clear_problem(self, run_id: str) -> None:
        self._conn.execute("DELETE FROM run_problems WHERE run_id = ?", (run_id,))

    # -- steps ------------------------------------------------------------------

    def schedule_step(
        self, run_id: str, cid: int, name: str, args: bytes, at: float, *, start: bool
    ) -> None:
        """Record a step the workflow asked for; with *start*, claim its first attempt too.

        A first attempt claimed with the step is told by the ``step_scheduled``
        event's attempt (1), not by a ``step_started`` event of its own: one event
        fewer per step. Later attempts, and a first one claimed later (a step
        scheduled while the runtime stopped), each have their ``step_started``.
        """
        attempt = 1 if start else 0
        self._conn.execute(
            "INSERT INTO steps (run_id, cid, name, status, attempt) VALUES (?, ?, ?, ?, ?)",
            (run_id, cid, name, "running" if start else "scheduled", attempt),
        )
        self.append(
            run_id, Kind.STEP_SCHEDULED, at, cid=cid, attempt=attempt or None, name=name,
            payload=args,
        )  # fmt: skip

    def start_attempt(self, run_id: str, cid: int, name: str, attempt: int, at: float) -> bool:
        """Claim *attempt* of a step: wins only if the step is still at ``attempt - 1``."""
        cur = self._conn.execute(
            "UPDATE steps SET status = 'running', attempt = ?, retry_at = NULL "
            f"WHERE run_id = ? AND cid = ? AND attempt = ? AND status IN {_STEP_START_FROM}",
            (attempt, run_id, cid, attempt - 1),
        )
        if cur.rowcount != 1:
            return False
        self.append(run_id, Kind.STEP_STARTED, at, cid=cid, attempt=attempt, name=name)
        return True

    def _end_attempt(
        self,
        run_id: str,
        cid: int,
        attempt: int,
        status: str,
        retry_at: float | None = None,
    ) -> bool:
        cur = self._conn.execute(
            "UPDATE steps SET status = ?, retry_at = ? "
            "WHERE run_id = ? AND cid = ? AND attempt = ? AND status = 'running'",
            (status, retry_at, run_id, cid, attempt),
        )
        return cur.rowcount == 1

    def complete_step(
        self, run_id: str, cid: int, name: str, attempt: int, result: bytes, at: float
    ) -> Event | None:
        if not self._end_attempt(run_id, cid, attempt, "completed"):
            return None
        return self.append(
            run_id, Kind.STEP_COMPLETED, at, cid=cid, attempt=attempt, name=name, payload=result
        )

    def fail_step(
        self, run_id: str, cid: int, name: str, attempt: int, error: bytes, at: float
    ) -> Event | None:
        if not self._end_attempt(run_id, cid, attempt, "failed"):
            return None
        return self.append(
            run_id, Kind.STEP_FAILED, at, cid=cid, attempt=attempt, name=name, payload=error
        )

    def retry_step(
        self,
        run_id: str,
        cid: int,
        name: str,
        attempt: int,
        error: bytes,
        retry_at: float,
        at: float,
    ) -> bool:
        if not self._end_attempt(run_id, cid, attempt, "retrying", retry_at):
            return False
        self.append(
            run_id, Kind.STEP_RETRYING, at, cid=cid, attempt=attempt, name=name, payload=error
        )
        return True

    def cancel_step(self, run_id: str, cid: int, at: float) -> bool:
        """The workflow no longer waits for step *cid*: its attempt is not retried.

        False if the step already ended (its outcome was written first).
        """
        row = self._conn.execute(
            "UPDATE steps SET status = 'cancelled', retry_at = NULL "
            f"WHERE run_id = ? AND cid = ? AND status IN {_STEP_CANCEL_FROM} "
            "RETURNING name, attempt",
            (run_id, cid),
        ).fetchone()
        if row is None:
            return False
        name, attempt = str(row[0]), int(row[1])
        self.append(run_id, Kind.STEP_CANCELLED, at, cid=cid, attempt=attempt, name=name)
        return True

    def record_patch(self, run_id: str, cid: int, patch_id: str, at: float) -> None:
        """The run took patch *patch_id*'s new branch; the marker holds position *cid*."""
        self.append(run_id, Kind.PATCHED, at, cid=cid, name=patch_id)

    # -- hooks ------------------------------------------------------------------

    def create_hook(self, run_id: str, cid: int, token: str, payload: bytes, at: float) -> bool:
        """Record a hook; False (and a hook_conflict event) if a live hook holds *token*."""
        self.append(run_id, Kind.HOOK_CREATED, at, cid=cid, name=token, payload=payload)
        cur = self._conn.execute(
            "INSERT INTO hooks (token, run_id, cid) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (token, run_id, cid),
        )
        if cur.rowcount == 1:
            return True
        self.append(run_id, Kind.HOOK_CONFLICT, at, cid=cid, name=token)
        return False

    def dispose_hook(self, run_id: str, cid: int, at: float) -> bool:
        cur = self._conn.execute("DELETE FROM hooks WHERE run_id = ? AND cid = ?", (run_id, cid))
        if cur.rowcount != 1:
            return False
        self.append(run_id, Kind.HOOK_DISPOSED, at, cid=cid)
        return True

    def resume_hook(self, token: str, payload: bytes, at: float) -> Event | None:
        """Deliver *payload* to the live hook holding *token*; None if there is none."""
        row = self._conn.execute(
            "SELECT run_id, cid FROM hooks WHERE token = ?", (token,)
        ).fetchone()
        if row is None:
            return None
        run_id, cid = str(row[0]), int(row[1])
        return self.append(run_id, Kind.HOOK_RECEIVED, at, cid=cid, name=token, payload=payload)

    # -- messages ---------------------------------------------------------------

    def send_message(self, run_id: str, topic: str, payload: bytes, at: float) -> str:
        """A message to a run on *topic*: "sent", or "unknown" / "ended" (not sent)."""
        row = self._conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return "unknown"
        if row[0] in ENDED_RUN:
            return "ended"
        self.append(run_id, Kind.MESSAGE_SENT, at, name=topic, payload=payload)
        return "sent"

    def set_event(self, run_id: str, cid: int, key: str, value: bytes, at: float) -> None:
        """The workflow published *value* under *key* (at position *cid*)."""
        self.append(run_id, Kind.EVENT_SET, at, cid=cid, name=key, payload=value)

    # -- waits ------------------------------------------------------------------

    def create_wait(self, run_id: str, cid: int, wake_at: float, payload: bytes, at: float) -> None:
        self._conn.execute(
            "INSERT INTO waits (run_id, cid, wake_at, status) VALUES (?, ?, ?, 'pending')",
            (run_id, cid, wake_at),
        )
        self.append(run_id, Kind.WAIT_CREATED, at, cid=cid, name="sleep", payload=payload)

    def fire_wait(self, run_id: str, cid: int, at: float) -> Event | None:
        cur = self._conn.execute(
            f"UPDATE waits SET status = 'fired' WHERE run_id = ? AND cid = ? "
            f"AND status IN {_WAIT_FIRE_FROM}",
            (run_id, cid),
        )
        if cur.rowcount != 1:
            return None
        return self.append(run_id, Kind.WAIT_COMPLETED, at, cid=cid, name="sleep")

    def cancel_wait(self, run_id: str, cid: int, at: float) -> bool:
        """The workflow no longer waits for sleep *cid*: its timer will not fire."""
        cur = self._conn.execute(
            f"UPDATE waits SET status = 'cancelled' WHERE run_id = ? AND cid = ? "
            f"AND status IN {_WAIT_CANCEL_FROM}",
            (run_id, cid),
        )
        if cur.rowcount != 1:
            return False
        self.append(run_id, Kind.WAIT_CANCELLED, at, cid=cid, name="sleep")
        return True

    def cancel_child(self, run_id: str, cid: int, child_id: str, at: float) -> str:
        """The workflow no longer waits for the child it started at *cid*: cancel it.

        Returns what :meth:`request_cancel` says of the child.
        """
        self.append(run_id, Kind.CHILD_CANCELLED, at, cid=cid, name=child_id)
        return self.request_cancel(child_id, at)

    # -- streams ------------------------------------------------------------------
