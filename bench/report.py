"""What the benchmark scripts share: percentiles, error text, the machine's
facts, and the table they print."""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, TypeVar

import runwright as rw

__all__ = [
    "error_text",
    "format_machine",
    "fs_type",
    "host_facts",
    "load_average",
    "percentile",
    "render_table",
    "select",
    "version_of",
]


class _Scenario(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def label(self) -> str: ...


S = TypeVar("S", bound=_Scenario)


def select(every: list[S], *, listing: bool, only: str | None) -> list[S] | int:
    """The scenarios ``--only`` names (all without it), or an exit status:
    0 after ``--list`` printed them, 64 for an unknown id."""
    if listing:
        for scenario in every:
            print(f"{scenario.id:10} {scenario.label}")
        return 0
    if not only:
        return every
    wanted = {part.strip() for part in only.split(",") if part.strip()}
    unknown = wanted - {s.id for s in every}
    if unknown:
        print(f"unknown scenario id(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 64
    return [s for s in every if s.id in wanted]


def version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def host_facts() -> dict[str, Any]:
    """Python, the platform, the CPUs, runwright's version: the start of every header."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "runwright": rw.__version__,
        "anyio": version_of("anyio"),
    }


def load_average() -> str | None:
    if not hasattr(os, "getloadavg"):
        return None
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def format_machine(info: dict[str, Any]) -> str:
    width = max(len(k) for k in info)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in info.items())


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def error_text(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(error_text(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def fs_type(path: str) -> str:
    """The filesystem type holding *path*, from /proc/mounts (Linux), else '?'."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "?"
    best, fstype = "", "?"
    real = os.path.realpath(path)
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1]
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, fstype = point, parts[2]
    return fstype


def render_table(rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """*rows* (the header first) as aligned columns, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
