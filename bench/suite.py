"""The suite ``bench.py`` runs: its workflows, its scenarios and what a scenario yields."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import runwright as rw

__all__ = ["FLOOR_STEPS", "PAYLOAD", "STAMPS", "Result", "Scenario", "Target", "scenarios"]

# -- the workflows ----------------------------------------------------------------

#: 10 KB of incompressible bytes: the codec stores it as is (no zstd win), so
#: every step really journals 10 KB.
PAYLOAD = random.Random(0).randbytes(10 * 1024)

#: ``time.perf_counter()`` at each ``stamp`` step, for the long scenario.
STAMPS: list[float] = []


@rw.step
async def noop(value: int) -> int:
    return value


@rw.step
async def blob(index: int) -> bytes:
    return PAYLOAD


@rw.step
async def stamp(index: int) -> int:
    STAMPS.append(time.perf_counter())
    return index


@rw.workflow(name="bench.empty")
async def empty_workflow(n: int) -> int:
    return n


@rw.workflow(name="bench.sequential")
async def sequential(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total


@rw.workflow(name="bench.gather")
async def gather(n: int) -> int:
    return sum(await rw.gather(*[noop(i) for i in range(n)]))


@rw.workflow(name="bench.race")
async def race(n: int) -> int:
    return await rw.race(*[noop(i) for i in range(n)])


@rw.workflow(name="bench.blobs")
async def blobs(n: int) -> int:
    size = 0
    for i in range(n):
        size += len(await blob(i))
    return size


@rw.workflow(name="bench.stamps")
async def stamps(n: int) -> int:
    for i in range(n):
        await stamp(i)
    return n


# -- scenarios and results --------------------------------------------------------

Kind = Literal["floor", "burst_floor", "latency", "burst", "long", "ratio"]


@dataclass(frozen=True)
class Target:
    text: str
    check: Callable[[Result], bool | None]  # None: not applicable to this run


@dataclass(frozen=True)
class Scenario:
    id: str
    label: str
    kind: Kind
    workflow: rw.WorkflowDefinition[Any, Any] | None  # None: the floor, no runtime
    arg: int
    steps: int  # steps per run, for the ms/step note
    expect: Callable[[Any], bool]
    target: Target | None = None
    vs_floor: bool = False  # sequential steps: show ms/step as a multiple of the floor's


@dataclass
class Result:
    id: str
    label: str
    kind: Kind
    runs: int = 0
    median_ms: float | None = None
    p95_ms: float | None = None
    runs_per_s: float | None = None
    total_ms: float | None = None
    ms_per_step: float | None = None
    x_floor: float | None = None  # ms_per_step / the floor's ms per transaction
    ratio: float | None = None
    commits_per_run: float | None = None
    target: str | None = None
    met: bool | None = None
    notes: str = ""
    error: str | None = None
    wall_s: float | None = None  # the whole scenario: open, warm-up, runs, close
    samples_ms: list[float] = field(default_factory=list)


def _equals(expected: Any) -> Callable[[Any], bool]:
    return lambda value: value == expected


FLOOR_STEPS = 50


def scenarios(burst: int, long_steps: int, driver: str = "sqlite3") -> list[Scenario]:
    def latency(
        id: str,
        label: str,
        workflow: rw.WorkflowDefinition[Any, Any],
        n: int,
        expect: Callable[[Any], bool],
        target: Target | None = None,
    ) -> Scenario:
        vs_floor = workflow is sequential and n > 1
        return Scenario(id, label, "latency", workflow, n, n, expect, target, vs_floor)

    def median_at_most(ms: float) -> Target:
        return Target(
            f"median <= {ms:g} ms",
            lambda r: None if r.median_ms is None else r.median_ms <= ms,
        )

    def triangle(n: int) -> Callable[[Any], bool]:
        return _equals(n * (n - 1) // 2)

    floor = f"floor: {FLOOR_STEPS} {driver} transactions"
    burst_floor = f"floor: {burst} runs, 4 writes each, 100 per transaction"
    out = [
        Scenario("floor", floor, "floor", None, FLOOR_STEPS, FLOOR_STEPS, _equals(None)),
        Scenario("burst_floor", burst_floor, "burst_floor", None, burst, 1, _equals(None)),
        latency("empty", "no steps", empty_workflow, 0, _equals(0)),
        latency("step1", "1 step", sequential, 1, _equals(0)),
    ]
    for n in (10, 25, 50):
        target = median_at_most(20) if n == 50 else None
        out.append(latency(f"seq{n}", f"{n} sequential steps", sequential, n, triangle(n), target))
    for n in (10, 25, 50):
        target = median_at_most(15) if n == 50 else None
        out.append(latency(f"gather{n}", f"gather of {n} steps", gather, n, triangle(n), target))
    out.append(latency("race10", "race of 10 steps", race, 10, lambda v: v in range(10)))
    for n in (10, 50):
        size = _equals(n * len(PAYLOAD))
        out.append(latency(f"blob{n}", f"{n} sequential 10 KB steps", blobs, n, size))
    out.append(
        Scenario(
            "burst",
            f"{burst} one-step runs at once",
            "burst",
            sequential,
            burst,
            1,
            _equals(0),
            Target(
                ">= 3000 runs/s",
                lambda r: None if r.runs_per_s is None or burst != 1000 else r.runs_per_s >= 3000,
            ),
        )
    )
    window = min(100, long_steps // 2)
    out.append(
        Scenario(
            "long",
            f"{long_steps}-step run",
            "long",
            stamps,
            long_steps,
            long_steps,
            _equals(long_steps),
            Target(
                f"<= 1.2x steps 1-{window}",
                lambda r: None if r.ratio is None else r.ratio <= 1.2,
            ),
            vs_floor=True,
        )
    )
    return out
