"""Order and completeness, as a property: whatever the writes, flushes and
reader starts, every reader sees each chunk from its start on, once, in order.

Every example is a run of its own in the test's one journal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import runwright as rw

pytestmark = pytest.mark.anyio


@rw.step(name="tests.stream_order.write_and_read")
async def write_and_read(
    writes: list[tuple[int, bool, bool]], readers: list[tuple[int, int]]
) -> list[list[tuple[int, str]]]:
    """Write the chunks; readers join (inside the step) after the writes they name."""
    out = rw.writable("p")
    seen: list[list[tuple[int, str]]] = [[] for _ in readers]

    async def read(slot: int, start: int) -> None:
        async for chunk in rw.readable("p", start=start):
            seen[slot].append((chunk.index, chunk.data))

    async with anyio.create_task_group() as tg:
        for k, (size, flush, pause) in enumerate([*writes, (0, False, False)]):
            for slot, (start, after) in enumerate(readers):
                if after == k:
                    tg.start_soon(read, slot, start)
            if k == len(writes):
                break
            await out.write(f"{k}:" + "x" * size)
            if flush:
                await out.flush()
            if pause:
                await anyio.lowlevel.checkpoint()
        await out.close()
    return seen


@rw.workflow(name="tests.stream_order.flow")
async def flow(
    writes: list[tuple[int, bool, bool]], readers: list[tuple[int, int]]
) -> list[list[tuple[int, str]]]:
    return await write_and_read(writes, readers)


def check(seen: list[tuple[int, str]], start: int, total: int) -> None:
    indexes = [index for index, _ in seen]
    if start >= 0:
        assert indexes == list(range(min(start, total), total))
    else:
        # Where a negative start lands depends on how much was durable at the
        # first read; from there on, nothing may be missing or repeated.
        # first read, between 0 and the final length plus start.
        first = indexes[0] if indexes else total
        assert first <= max(0, total + start)
        assert indexes == list(range(first, total))
    for index, data in seen:
        assert data.startswith(f"{index}:")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # The target phase imports its module lazily, deep in the event loop's stack,
    # where CPython 3.11's compiler can fail ("AST constructor recursion depth
    # mismatch"); this test uses no targets anyway.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(data=st.data())
async def test_every_reader_sees_every_chunk_once_in_order(
    db_path: Path | str,
    data: st.DataObject,
    anyio_backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small ring makes readers fall behind it; without the once-a-second
    # look, a reader that waits for a wake-up that never comes hangs (and fails).
    monkeypatch.setattr("runwright.streams._hub.RING_BYTES", 100_000)
    monkeypatch.setattr("runwright.streams._hub.SAFETY_POLL", 600.0)
    writes = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from([0, 10, 2000, 70_000]),  # small, compressed, batched aside
                st.booleans(),
                st.booleans(),
            ),
            max_size=40,
        ),
        label="writes",
    )
    total = len(writes)
    starts = st.integers(min_value=-total - 3, max_value=total + 3)
    inside = data.draw(
        st.lists(st.tuples(starts, st.integers(0, total)), max_size=4), label="inside"
    )
    after = data.draw(st.lists(starts, min_size=1, max_size=3), label="after")
    with anyio.fail_after(30):
        await one_example(db_path, writes, total, inside, after)


async def one_example(
    db: Path | str,
    writes: list[tuple[int, bool, bool]],
    total: int,
    inside: list[tuple[int, int]],
    after: list[int],
) -> None:
    async with rw.Runtime(db, synchronous="NORMAL") as runtime:
        run = await runtime.start(flow, writes, inside)
        outside = run.stream("p", start=after[0])  # made before the run writes
        results: Any = await run.result()
        for (start, _), seen in zip(inside, results, strict=True):
            check([tuple(pair) for pair in seen], start, total)
        check([(c.index, c.data) async for c in outside], after[0], total)
        for start in after[1:]:
            check([(c.index, c.data) async for c in run.stream("p", start=start)], start, total)
