"""Large event payloads through the journal's writer, on both backends: stored exactly,
in seq order among small ones in the same transaction, and rolled back with a write
that fails (PostgreSQL sends them as binary parameters, not in its batched literals)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from runwright.journal import open_journal
from runwright.journal._queries import events_of
from runwright.journal._tx import Tx
from runwright.journal.postgres._writer import BINARY_FROM

pytestmark = pytest.mark.anyio


async def test_large_and_small_payloads_in_one_batch(db_path: Path | str) -> None:
    payloads = [os.urandom(size) for size in (10, BINARY_FROM, 3 * BINARY_FROM, 0, 7)]
    failed = os.urandom(2 * BINARY_FROM)

    def append_all(tx: Tx) -> None:
        tx.create_run("r", "wf", b"args", 1.0, key=None, owner=None, lease_seconds=30)
        for index, payload in enumerate(payloads):
            tx.append("r", "message_sent", 1.0, name=f"m{index}", payload=payload)

    def append_then_fail(tx: Tx) -> None:
        tx.append("r", "message_sent", 1.0, name="lost", payload=failed)
        raise KeyError("boom")

    def append_more(tx: Tx) -> None:
        tx.append("r", "message_sent", 1.0, name="after", payload=failed[:BINARY_FROM])

    async with anyio.create_task_group() as tg:
        journal = await open_journal(str(db_path))
        await tg.start(journal.serve)
        await journal.write(append_all)
        errors: list[BaseException] = []

        async def attempt(fn: Any) -> None:
            try:
                await journal.write(fn)
            except KeyError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as writers:  # one batch, most likely
            writers.start_soon(attempt, append_then_fail)
            writers.start_soon(attempt, append_more)
        journal.stop_writing()
    events = await journal.read(lambda c: events_of(c, "r"))
    await journal.close()
    assert len(errors) == 1
    names = [event.name for event in events]
    assert names == ["wf", "m0", "m1", "m2", "m3", "m4", "after"]
    assert [bytes(e.payload) if e.payload is not None else None for e in events[1:6]] == payloads
    assert events[-1].payload == failed[:BINARY_FROM]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
