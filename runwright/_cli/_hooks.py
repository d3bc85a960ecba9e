"""``hooks list`` and ``hooks resume``.

``list`` reads the journal read-only. ``resume`` delivers its payload through
a client runtime, which runs no steps; the process that drives the hook's run
wakes it.
"""

from __future__ import annotations

import argparse
import json

import anyio

from ..journal._queries import live_hooks
from ._common import CommandError, check_journal, client, read_only, target_of
from ._format import print_json, print_json_lines, print_table

__all__ = ["list_command", "resume_command"]


def list_command(args: argparse.Namespace) -> int:
    with read_only(target_of(args)) as conn:
        rows = live_hooks(conn, args.run_id)
    if args.json:
        print_json_lines({"token": t, "run_id": r, "position": c} for t, r, c in rows)
        return 0
    if not rows:
        print("no live hooks")
        return 0
    print_table([["TOKEN", "RUN ID", "POSITION"], *([t, r, str(c)] for t, r, c in rows)])
    return 0


def resume_command(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--data is not valid JSON: {exc}") from None
    target = target_of(args)
    check_journal(target)

    async def resume() -> None:
        async with client(target) as runtime:
            await runtime.resume_hook(args.token, payload)

    anyio.run(resume)
    if args.json:
        print_json({"token": args.token, "delivered": True})
    else:
        print(f"delivered to {args.token}")
    return 0
