"""Instructions per sequential step and per one-step run, counted by callgrind.

Wall-clock medians move by a third between runs on a shared machine;
instruction counts repeat to about 2%. Each figure is a difference of two
whole-process counts (every thread together), so start-up, imports and the
runtime's opening cancel out:

* a sequential step: a run of 110 sequential no-op steps minus a run of 10,
  divided by 100;
* a one-step run: 110 one-step runs, one after the other, minus 10, divided by
  100.

Usage::

    .venv/bin/python bench/instructions.py              # both, SQLite NORMAL, asyncio
    .venv/bin/python bench/instructions.py --backend trio --synchronous FULL
    .venv/bin/python bench/instructions.py --repeat 3   # medians of 3 counts each

Needs valgrind (``apt-get install valgrind``). The targets are those of the
CPU work on the hot path (a sequential step <= 300k, a one-step run <= 500k).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

TARGETS = {"sequential step": 300_000, "one-step run": 500_000}
SMALL, LARGE = 10, 110


def _child(kind: str, n: int, synchronous: str, backend: str) -> None:
    import anyio

    import runwright as rw

    @rw.step
    async def echo(x: int) -> int:
        return x

    @rw.workflow
    async def chain(steps: int) -> int:
        for i in range(steps):
            await echo(i)
        return steps

    async def main() -> None:
        folder = tempfile.mkdtemp()
        async with rw.Runtime(os.path.join(folder, "j.db"), synchronous=synchronous) as runtime:
            if kind == "seq":
                await (await runtime.start(chain, n)).result()
            else:
                for _ in range(n):
                    await (await runtime.start(chain, 1)).result()
        shutil.rmtree(folder)

    anyio.run(main, backend=backend)


def _count(kind: str, n: int, options: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, __file__, "--child", kind, str(n),
            "--synchronous", options.synchronous, "--backend", options.backend,
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        summary = subprocess.run(
            ["callgrind_annotate", out], check=True, capture_output=True, text=True
        ).stdout
    match = re.search(r"^([\d,]+).*PROGRAM TOTALS", summary, re.MULTILINE)
    if match is None:
        raise SystemExit("callgrind_annotate printed no PROGRAM TOTALS line")
    return int(match.group(1).replace(",", ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="NORMAL")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--repeat", type=int, default=1, help="counts per figure (median)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        _child(options.child[0], int(options.child[1]), options.synchronous, options.backend)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    print(f"SQLite {options.synchronous}, {options.backend}, median of {options.repeat}")
    print(f"{'what':<18}{'instructions':>14}{'target':>12}{'met':>6}")
    for label, kind in (("sequential step", "seq"), ("one-step run", "runs")):
        each = [
            (_count(kind, LARGE, options) - _count(kind, SMALL, options)) // (LARGE - SMALL)
            for _ in range(options.repeat)
        ]
        value, target = int(statistics.median(each)), TARGETS[label]
        met = "yes" if value <= target else "no"
        print(f"{label:<18}{value:>14,}{target:>12,}{met:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
