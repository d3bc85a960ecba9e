"""``runwright replay MODULE...``: check that the code loaded now still replays the
journal's runs, before it is deployed.

It imports the modules (registering their workflows), reads each selected
run's history read-only and replays it in memory (no step runs, nothing is
written). Each run gets a line: ``ok``, or where the code and the journal
first disagree. The exit status is 1 if any run diverged or could not be
replayed (an unknown workflow, an undecodable payload, a missing run).
"""

from __future__ import annotations

import argparse
import sys

from ..actors._check import check_journal
from ..journal._codec import DefaultCodec
from ._common import import_modules, read_only, target_of
from ._format import print_json_lines

__all__ = ["replay_command"]


def replay_command(args: argparse.Namespace) -> int:
    import_modules(args.modules)
    target = target_of(args)
    checked = failed = 0
    found = []
    with read_only(target) as conn:
        for result in check_journal(
            conn, DefaultCodec(), run_ids=args.run or (), statuses=args.status or ()
        ):
            checked += 1
            failed += not result.ok
            if args.json:
                found.append(
                    {
                        "id": result.run_id,
                        "workflow": result.workflow,
                        "status": result.status,
                        "ok": result.ok,
                        "problem": result.problem,
                        "position": result.position,
                        "recorded": result.recorded,
                        "requested": result.requested,
                    }
                )
                continue
            verdict = "ok      " if result.ok else "DIVERGED"
            line = f"{verdict}  {result.run_id}  {result.workflow}  {result.status}"
            print(line if result.ok else f"{line}: {result.problem}")
    if args.json:
        print_json_lines(found)
    else:
        print(
            f"{checked} run(s) replayed against the loaded code: "
            f"{checked - failed} ok, {failed} diverged or could not be replayed",
            file=sys.stderr,
        )
    return 1 if failed else 0
