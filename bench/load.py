"""Where a multi-process benchmark's time goes: CPU by process group, and what the
PostgreSQL sessions wait for.

CPU comes from ``/proc`` (Linux; elsewhere the figures are missing): the
machine's busy time over all cores, the client (this process), each worker
process, and each PostgreSQL backend serving the benchmark's sessions
(found in ``pg_stat_activity`` by ``application_name``; the server must run
on this machine for its processes to be visible). ``other`` is whatever
else kept the machine busy: other programs, and the server's own background
processes.

:class:`WaitSampler` looks at ``pg_stat_activity`` every 10 ms from a thread
and counts, per look, the benchmark's sessions that are waiting for a lock
(the journal's per-schema advisory lock: writers queueing behind one
another), running (active, no wait), waiting on the WAL (a commit's flush),
or idle inside a transaction (holding the lock while the client works or a
round trip is under way); and whether one of them holds an advisory lock
(the journal's write lock), which gives the share of the time the lock was
held: near 100% means every process's writes are queueing for it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CpuSnapshot", "CpuUse", "WaitSampler", "backend_pids", "verdict"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Busy share of all cores, or of the time the write lock is held, from which
#: the resource counts as saturated.
SATURATED = 0.85
#: Share of all cores used by other processes from which a measurement is flagged.
OTHER_LOAD = 0.15


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process *pid* so far, or None if it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of all cores since boot, or None off Linux."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(x) for x in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / _TICK, sum(ticks) / _TICK


def backend_pids(conn: Any, application_name: str) -> list[int]:
    """Server process ids of the sessions named *application_name* (not *conn*'s own)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    ).fetchall()
    return [int(row[0]) for row in rows]


@dataclass
class CpuSnapshot:
    wall: float
    machine: tuple[float, float] | None
    client: float
    workers: dict[int, float | None]
    server: dict[int, float | None]

    @classmethod
    def take(cls, workers: list[int], server: list[int]) -> CpuSnapshot:
        return cls(
            time.perf_counter(),
            machine_cpu(),
            time.process_time(),
            {pid: process_cpu(pid) for pid in workers},
            {pid: process_cpu(pid) for pid in server},
        )


def _spent(before: dict[int, float | None], after: dict[int, float | None]) -> float | None:
    """CPU seconds the processes of *after* spent since *before* (from their start if they
    were not in it); None if none could be read."""
    spent = [end - (before.get(pid) or 0.0) for pid, end in after.items() if end is not None]
    return sum(spent) if spent else None


@dataclass
class CpuUse:
    """CPU seconds spent between two snapshots, by group, and the machine's busy share."""

    cores: int
    wall_s: float
    busy: float | None  # share of all cores, 0..1
    machine_s: float | None
    client_s: float
    workers_s: float | None
    server_s: float | None
    busiest_worker_s: float | None

    @classmethod
    def between(cls, before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
        busy = machine_s = None
        if before.machine is not None and after.machine is not None:
            machine_s = after.machine[0] - before.machine[0]
            total = after.machine[1] - before.machine[1]
            busy = machine_s / total if total > 0 else None
        per_worker = [
            after.workers[pid] - start  # type: ignore[operator]
            for pid, start in before.workers.items()
            if start is not None and after.workers.get(pid) is not None
        ]
        return cls(
            cores=os.cpu_count() or 1,
            wall_s=after.wall - before.wall,
            busy=busy,
            machine_s=machine_s,
            client_s=after.client - before.client,
            workers_s=_spent(before.workers, after.workers),
            server_s=_spent(before.server, after.server) if after.server else None,
            busiest_worker_s=max(per_worker, default=None),
        )

    def other_s(self) -> float | None:
        """CPU seconds the machine spent on anything but the client, workers and server."""
        if self.machine_s is None:
            return None
        known = self.client_s + (self.workers_s or 0.0) + (self.server_s or 0.0)
        return max(0.0, self.machine_s - known)

    def other_share(self) -> float | None:
        other = self.other_s()
        if other is None or self.wall_s <= 0:
            return None
        return other / (self.cores * self.wall_s)

    def text(self, runs: int) -> str:
        """Where the CPU went, per run: client, workers, server, other; and how busy."""

        def per_run(seconds: float) -> str:
            return f"{seconds / runs * 1000:.1f} ms"

        parts = [f"client {per_run(self.client_s)}"]
        if self.workers_s is not None:
            workers = f"workers {per_run(self.workers_s)}"
            if self.busiest_worker_s is not None and self.workers_s > 0:
                workers += f" (busiest worker {self.busiest_worker_s / self.workers_s:.0%})"
            parts.append(workers)
        if self.server_s is not None:
            parts.append(f"server {per_run(self.server_s)}")
        other = self.other_s()
        if other is not None:
            parts.append(f"other {per_run(other)}")
        busy = (
            "(machine figures need Linux)"
            if self.busy is None
            else f"{self.busy:.0%} of {self.cores} cores busy over {self.wall_s:.2f} s"
        )
        return f"CPU per run: {', '.join(parts)}; {busy}"


@dataclass
class WaitSampler:
    """Counts what the benchmark's PostgreSQL sessions are doing, every *interval* s."""

    conninfo: str
    application_name: str
    interval: float = 0.01
    samples: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _conn: Any = None
    error: str | None = None

    def __enter__(self) -> WaitSampler:
        import psycopg

        # A name of its own, so that it does not count itself.
        self._conn = psycopg.connect(
            self.conninfo, autocommit=True, application_name=f"{self.application_name}_probe"
        )
        self._thread = threading.Thread(target=self._loop, name="wait-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._conn.close()

    def _loop(self) -> None:
        # Whether a session holds an advisory lock: the journal's write lock (the
        # migration lock is only taken while a journal opens).
        query = (
            "SELECT a.state, a.wait_event_type, a.wait_event, EXISTS ("
            " SELECT 1 FROM pg_locks l"
            " WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted)"
            " FROM pg_stat_activity a WHERE a.application_name = %s"
        )
        try:
            while not self._stop.wait(self.interval):
                rows = self._conn.execute(query, (self.application_name,)).fetchall()
                self.samples += 1
                for state, wait_type, wait, _ in rows:
                    self.seen[_category(state, wait_type, wait)] += 1
                if any(holds for *_, holds in rows):
                    self.seen["held"] += 1
        except Exception as exc:  # the server went away: report what was seen so far
            self.error = f"{type(exc).__name__}: {exc}"

    def mean(self, category: str) -> float:
        """Sessions in *category* on average (for "held": the share of time the write
        lock was held by one of them)."""
        return self.seen[category] / self.samples if self.samples else 0.0

    def text(self) -> str:
        if not self.samples:
            return f"sessions: no samples ({self.error or 'none taken'})"
        text = (
            f"write lock held {self.mean('held'):.0%} of the time; sessions on average: "
            f"{self.mean('lock'):.2f} queued for it, {self.mean('running'):.2f} running, "
            f"{self.mean('wal'):.2f} flushing WAL, {self.mean('in transaction'):.2f} waiting "
            f"for their client mid-transaction ({self.samples} samples)"
        )
        if self.error:
            text += f"; sampling stopped early: {self.error}"
        return text


def _category(state: str | None, wait_type: str | None, wait: str | None) -> str:
    if wait_type == "Lock":
        return "lock"
    if wait_type in ("IO", "LWLock") and wait and wait.startswith("WAL"):
        return "wal"
    if state in ("active", "idle in transaction") and wait_type == "Client":
        return "in transaction"  # mid-transaction (or mid-pipeline), waiting for the client
    if state == "active":
        return "running" if wait_type is None else "other wait"
    if state == "idle in transaction":
        return "in transaction"
    return "idle"


def verdict(use: CpuUse, waits: WaitSampler | None) -> str:
    """Which resource bounds a throughput measurement, from what was measured."""
    busy = "unknown" if use.busy is None else f"{use.busy:.0%}"
    cpu = use.busy is not None and use.busy >= SATURATED
    held = None if waits is None else waits.mean("held")
    lock = held is not None and held >= SATURATED
    note = ""
    other = use.other_share()
    if other is not None and other > OTHER_LOAD:
        note = f" (the machine was not quiet: {other:.0%} of its CPU went to other processes)"
    sharing = "the server, the workers" if use.server_s is not None else "the workers"
    if cpu and lock:
        text = (
            f"both: the {use.cores} cores were {busy} busy and the journal's write lock "
            f"was held {held:.0%} of the time"
        )
    elif cpu:
        text = f"CPU: the {use.cores} cores were {busy} busy, shared by {sharing} and the client"
        if held is not None:
            text += f"; the write lock was held {held:.0%} of the time"
    elif lock:
        text = (
            f"the journal's write serialization: its lock was held {held:.0%} of the time, "
            f"CPU {busy} busy"
        )
    elif held is None:  # SQLite: its write lock is not observable from outside
        text = (
            f"not CPU ({busy} busy): the file's single writer, one commit (and its fsync) at a time"
        )
    else:
        text = (
            f"neither CPU ({busy} busy) nor the write lock (held {held:.0%} of the time) "
            "is saturated: per-transaction latency (round trips and commits) bounds it"
        )
    return text + note
