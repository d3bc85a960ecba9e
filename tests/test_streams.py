"""Streams: what steps write reaches readers in order, durably, from any index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import query_journal

import runwright as rw
from runwright.testing import FakeClock

pytestmark = pytest.mark.anyio

gates: dict[str, anyio.Event] = {}
failures: dict[str, int] = {}


@rw.step
async def produce(count: int, name: str = "default") -> int:
    async with rw.writable(name) as out:
        for i in range(count):
            await out.write(f"chunk {i}")
    return count


@rw.step
async def produce_gated(gate: str, count: int) -> int:
    out = rw.writable()
    for i in range(count):
        await out.write(i)
        if i == count // 2:
            await out.flush()
            await gates[gate].wait()
    return count


@rw.workflow
async def one_stream(count: int) -> int:
    return await produce(count)


@rw.workflow
async def gated_stream(gate: str, count: int) -> int:
    return await produce_gated(gate, count)


@rw.step
async def write_to(out: rw.Writable, text: str) -> None:
    await out.write(text)


@rw.step
async def close_it(out: rw.Writable) -> None:
    await out.close()


@rw.workflow
async def handed_over(parts: list[str]) -> str:
    out = rw.writable("story")
    for part in parts:
        await write_to(out, part)
    await close_it(out)
    await rw.sleep(60)  # the run goes on after its stream closed
    return "done"


@rw.step(retries=2, backoff=rw.Backoff(initial=0.0))
async def flaky_writer(key: str) -> str:
    info = rw.step_info()
    async with rw.writable() as out:
        await out.write(f"attempt {info.attempt} begins")
        if failures.get(key, 0) > 0:
            failures[key] -= 1
            raise RuntimeError("the model hung up")
        await out.write(f"attempt {info.attempt} ends")
    return info.step_id


@rw.workflow
async def retried(key: str) -> str:
    return await flaky_writer(key)


async def collect(reader: Any) -> list[rw.Chunk]:
    return [chunk async for chunk in reader]


async def test_a_reader_after_the_run_sees_every_chunk_in_order(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(one_stream, 50)
        assert await run.result() == 50
        chunks = await collect(run.stream())
    assert [c.index for c in chunks] == list(range(50))
    assert [c.data for c in chunks] == [f"chunk {i}" for i in range(50)]
    assert {c.attempt for c in chunks} == {1}
    assert chunks[0].writer == f"{run.id}:0"


@pytest.mark.parametrize("start", [0, 7, 49, 50, 80, -1, -5, -50, -90])
async def test_any_start_index_gives_the_rest_without_gaps(
    make_runtime: Callable[..., rw.Runtime], start: int
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(one_stream, 50)
        await run.result()
        chunks = await collect(run.stream(start=start))
    first = min(max(0, 50 + start if start < 0 else start), 50)
    assert [c.index for c in chunks] == list(range(first, 50))


async def test_readers_before_during_and_after_the_writing_agree(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    gates["mid"] = anyio.Event()
    results: dict[str, list[int]] = {}
    async with make_runtime() as runtime:
        run = await runtime.start(gated_stream, "mid", 200)

        async def read(label: str, start: int) -> None:
            results[label] = [c.data for c in await collect(run.stream(start=start))]

        async with anyio.create_task_group() as tg:
            tg.start_soon(read, "before", 0)
            # Wait until half is durable, then join during the writing.
            while (await run.stream_info()).chunks < 101:  # noqa: ASYNC110 (another task writes)
                await anyio.sleep(0.001)
            tg.start_soon(read, "during", 0)
            tg.start_soon(read, "during-tail", 150)
            await anyio.sleep(0.01)
            gates["mid"].set()
        assert await run.result() == 200
        results["after"] = [c.data for c in await collect(run.stream())]
    for label in ("before", "during", "after"):
        assert results[label] == list(range(200)), label
    assert results["during-tail"] == list(range(150, 200))


async def test_a_stream_handed_to_steps_collects_their_writes_and_close_ends_readers(
    make_runtime: Callable[..., rw.Runtime], clock: FakeClock
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(handed_over, ["once", "upon", "a time"])
        chunks = await collect(run.stream("story"))
        assert [c.data for c in chunks] == ["once", "upon", "a time"]
        assert await run.status() == rw.RunStatus.RUNNING
        info = await run.stream_info("story")
        assert (info.chunks, info.bytes, info.closed) == (3, 14, True)
        await clock.wait_for_sleeper()
        clock.advance(60)
        assert await run.result() == "done"


async def test_writes_after_close_are_refused_and_lose_nothing(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    @rw.step(name="tests.streams.close_then_write")
    async def close_then_write() -> str:
        out = rw.writable("s")
        await out.write("kept")
        await out.close()
        await out.close()  # closing twice is harmless
        with pytest.raises(rw.StreamClosed, match="was closed"):
            await out.write("lost")
        return "ok"

    @rw.workflow(name="tests.streams.closer")
    async def closer() -> str:
        return await close_then_write()

    async with make_runtime() as runtime:
        run = await runtime.start(closer)
        assert await run.result() == "ok"
        assert [c.data for c in await collect(run.stream("s"))] == ["kept"]


async def test_a_failed_attempts_chunks_stay_and_are_told_apart(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    failures["r1"] = 1
    async with make_runtime() as runtime:
        run = await runtime.start(retried, "r1")
        step_id = await run.result()
        chunks = await collect(run.stream())
    assert [(c.data, c.attempt) for c in chunks] == [
        ("attempt 1 begins", 1),
        ("attempt 2 begins", 2),
        ("attempt 2 ends", 2),
    ]
    assert {c.writer for c in chunks} == {step_id}
    # What a reader that keeps only the final attempt's output is left with:
    final: dict[str | None, list[rw.Chunk]] = {}
    for chunk in chunks:
        kept = final.setdefault(chunk.writer, [])
        if kept and kept[-1].attempt != chunk.attempt:
            kept.clear()
        kept.append(chunk)
    assert [c.data for c in final[step_id]] == ["attempt 2 begins", "attempt 2 ends"]


async def test_values_bytes_and_text_round_trip(make_runtime: Callable[..., rw.Runtime]) -> None:
    values: list[Any] = [
        "tekst ✓",
        b"\x00\x01raw",
        {"token": "hi", "n": 3},
        (1, 2),
        "x" * 100_000,  # large: compressed on disk
        bytes(range(256)) * 400,
    ]

    @rw.step(name="tests.streams.mixed")
    async def mixed() -> None:
        out = rw.writable()
        for value in values:
            await out.write(value)
        await out.write(bytearray(b"copied"))

    @rw.workflow(name="tests.streams.mixed_flow")
    async def mixed_flow() -> None:
        await mixed()

    async with make_runtime() as runtime:
        run = await runtime.start(mixed_flow)
        live = run.stream()
        await run.result()
        assert [c.data for c in await collect(live)] == [*values, b"copied"]
        assert [c.data for c in await collect(run.stream())] == [*values, b"copied"]


async def test_large_chunks_are_compressed_in_the_file(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(one_stream, 1)
        await run.result()

    @rw.step(name="tests.streams.big_text")
    async def big_text() -> None:
        await rw.writable().write("abc" * 50_000)

    @rw.workflow(name="tests.streams.big_text_flow")
    async def big_text_flow() -> None:
        await big_text()

    async with make_runtime() as runtime:
        run = await runtime.start(big_text_flow)
        await run.result()
        info = await run.stream_info()
    assert info.bytes == 150_000
    [(stored,)] = query_journal(
        db_path, "SELECT length(data) FROM stream_chunks WHERE run_id = ?", (run.id,)
    )
    assert stored < 5_000


async def test_a_chunk_over_the_limit_gets_a_clear_error_and_nothing_is_lost(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    @rw.step(name="tests.streams.too_big", retries=0)
    async def too_big() -> str:
        out = rw.writable()
        await out.write("fine")
        try:
            await out.write(b"\x00" * (rw.MAX_CHUNK_BYTES + 1))
        except ValueError as exc:  # ChunkTooLarge is a ValueError too
            return f"{type(exc).__name__}: {exc}"
        return "no error"

    @rw.workflow(name="tests.streams.too_big_flow")
    async def too_big_flow() -> str:
        return await too_big()

    async with make_runtime() as runtime:
        run = await runtime.start(too_big_flow)
        message = await run.result()
        assert message.startswith("ChunkTooLarge: ")
        assert "rw.MAX_CHUNK_BYTES" in message
        assert str(rw.MAX_CHUNK_BYTES) in message
        assert [c.data for c in await collect(run.stream())] == ["fine"]


async def test_an_unencodable_chunk_fails_at_the_write(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    @rw.step(name="tests.streams.bad_value", retries=0)
    async def bad_value() -> str:
        out = rw.writable()
        await out.write("before")
        with pytest.raises(rw.EncodeError, match="chunk"):
            await out.write(object())
        return "ok"

    @rw.workflow(name="tests.streams.bad_value_flow")
    async def bad_value_flow() -> str:
        return await bad_value()

    async with make_runtime() as runtime:
        run = await runtime.start(bad_value_flow)
        assert await run.result() == "ok"
        assert [c.data for c in await collect(run.stream())] == ["before"]


async def test_streams_are_only_written_from_steps(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    @rw.workflow(name="tests.streams.writes_itself")
    async def writes_itself() -> None:
        await rw.writable().write("nope")

    with pytest.raises(rw.NotInWorkflowError):
        rw.writable()
    with pytest.raises(rw.NotInStepError):
        rw.readable()
    with pytest.raises(ValueError, match="non-empty str"):
        rw.writable("")
    async with make_runtime() as runtime:
        run = await runtime.start(writes_itself)
        with pytest.raises(rw.RunFailed) as failed:
            await run.result()
        assert "hands the writable to a step" in failed.value.message
        with pytest.raises(rw.NotInStepError):
            await rw.Writable(run.id, "x").write("outside")
        with pytest.raises(rw.RunNotFound):
            await collect(runtime.get_run("no-such-run").stream())
        with pytest.raises(rw.RunNotFound):
            await runtime.get_run("no-such-run").stream_info()
        with pytest.raises(TypeError):
            run.stream(start="0")  # type: ignore[arg-type]


async def test_a_reader_of_a_stream_nobody_writes_ends_with_the_run(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(one_stream, 3)
        silent = await collect(run.stream("never-written"))
        assert silent == []
        info = await run.stream_info("never-written")
        assert (info.chunks, info.closed) == (0, True)
        infos = await run.streams()
        assert [(i.name, i.chunks, i.closed) for i in infos] == [("default", 3, True)]


async def test_steps_can_read_streams_the_pipeline_way(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    @rw.step(name="tests.streams.upper")
    async def upper(source: str, target: str) -> int:
        count = 0
        async with rw.writable(target) as out:
            async for chunk in rw.readable(source):
                await out.write(chunk.data.upper())
                count += 1
                if count == 20:
                    break
            await out.close()
        return count

    @rw.step(name="tests.streams.slow_source")
    async def slow_source() -> None:
        out = rw.writable("source")
        for i in range(20):
            await out.write(f"w{i}")
            await out.flush()

    @rw.workflow(name="tests.streams.pipeline")
    async def pipeline() -> int:
        _, count = await rw.gather(slow_source(), upper("source", "upper"))
        return count

    async with make_runtime() as runtime:
        run = await runtime.start(pipeline)
        assert await run.result() == 20
        assert [c.data for c in await collect(run.stream("upper"))] == [f"W{i}" for i in range(20)]


async def test_a_second_runtime_reads_what_the_first_writes(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    gates["cross"] = anyio.Event()
    async with make_runtime() as writer, make_runtime(execute=False) as client:
        run = await writer.start(gated_stream, "cross", 100)
        seen: list[int] = []

        async def read() -> None:
            async for chunk in client.get_run(run.id).stream():
                seen.append(chunk.data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            with anyio.fail_after(10):
                while len(seen) < 51:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            gates["cross"].set()
        assert seen == list(range(100))


async def test_a_step_is_completed_only_after_its_chunks_are_durable(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(one_stream, 30)
        await run.result()
    rows = query_journal(
        db_path,
        "SELECT kind, payload FROM events WHERE run_id = ? AND kind IN "
        "('stream_appended', 'step_completed') ORDER BY seq",
        (run.id,),
    )
    kinds = [kind for kind, _ in rows]
    assert kinds[-1] == "step_completed"
    covered = [payload.decode() for kind, payload in rows if kind == "stream_appended"]
    assert covered[0].startswith("0-")
    assert covered[-1].endswith("-29")


async def test_chunks_of_many_writers_share_transactions(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    @rw.step(name="tests.streams.chatty")
    async def chatty(name: str) -> None:
        out = rw.writable(name)
        for i in range(100):
            await out.write(f"{name}:{i}")
            await anyio.lowlevel.checkpoint()  # let the other writers and the drains run

    @rw.workflow(name="tests.streams.chorus")
    async def chorus() -> None:
        await rw.gather(*(chatty(f"s{k}") for k in range(10)))

    async with make_runtime() as runtime:
        run = await runtime.start(chorus)
        await run.result()
        for k in range(10):
            chunks = await collect(run.stream(f"s{k}"))
            assert [c.data for c in chunks] == [f"s{k}:{i}" for i in range(100)]
        # Nothing of the streams stays in memory once their steps are done.
        hub = runtime.supervisor.streams
        assert hub._streams == {}
        assert hub._signals == {}
    [(appends,)] = query_journal(
        db_path,
        "SELECT count(*) FROM events WHERE run_id = ? AND kind = 'stream_appended'",
        (run.id,),
    )
    # 1,000 chunks; one write per chunk would make 1,000 appends.
    assert appends <= 200


@rw.step(name="tests.streams.write_n")
async def write_n(out: rw.Writable, label: str, count: int) -> None:
    for i in range(count):
        await out.write(f"{label}{i}")
        await out.flush()


@rw.step(name="tests.streams.write_around_gate")
async def write_around_gate(gate: str) -> None:
    out = rw.writable("shared")
    await out.write("a0")
    await out.flush()
    await gates[gate].wait()  # the stream stays written here meanwhile
    await out.write("a1")


@rw.workflow(name="tests.streams.own_half")
async def own_half(gate: str) -> None:
    await write_around_gate(gate)


@rw.workflow(name="tests.streams.other_half")
async def other_half(target: rw.Writable) -> None:
    await write_n(target, "b", 10)


async def test_a_stream_written_here_and_elsewhere_reads_whole_here(
    make_runtime: Callable[..., rw.Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run X's step writes here while a step of run Y, driven by another runtime
    # (as another process would), writes to X's stream too: a reader here that
    # has caught up with this process's writes must still hear of the others'
    # (without the once-a-second look, which is turned off).
    monkeypatch.setattr("runwright.streams._hub.SAFETY_POLL", 600.0)
    gates["shared"] = anyio.Event()
    async with make_runtime() as here, make_runtime() as elsewhere:
        run = await here.start(own_half, "shared")
        seen: list[str] = []

        async def read() -> None:
            async for chunk in run.stream("shared"):
                seen.append(chunk.data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            with anyio.fail_after(10):
                while not seen:  # noqa: ASYNC110 (filled by the reader task)
                    await anyio.sleep(0.001)
            other = await elsewhere.start(other_half, rw.Writable(run.id, "shared"))
            await other.result()
            with anyio.fail_after(10):
                while len(seen) < 11:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
            gates["shared"].set()
        await run.result()
    assert seen == ["a0", *(f"b{i}" for i in range(10)), "a1"]


async def test_flush_returns_once_what_was_written_is_in_the_file(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    def on_disk(run_id: str) -> list[int]:
        rows = query_journal(  # another connection: sees only commits
            db_path, "SELECT idx FROM stream_chunks WHERE run_id = ? ORDER BY idx", (run_id,)
        )
        return [int(idx) for (idx,) in rows]

    seen: list[tuple[int, list[int]]] = []

    @rw.step(name="tests.streams.flusher", retries=0)
    async def flusher() -> None:
        out = rw.writable()
        for round_ in range(5):
            for i in range(round_ * 10, round_ * 10 + 10):
                await out.write(i)
            await out.flush()
            indexes = await anyio.to_thread.run_sync(on_disk, rw.step_info().run_id)
            seen.append((round_, indexes))

    @rw.workflow(name="tests.streams.flushes")
    async def flushes() -> None:
        await flusher()

    async with make_runtime() as runtime:
        run = await runtime.start(flushes)
        await run.result()
    assert [round_ for round_, _ in seen] == list(range(5))
    for round_, indexes in seen:
        assert indexes[: (round_ + 1) * 10] == list(range((round_ + 1) * 10))


async def test_a_reader_behind_the_ring_reads_the_rest_from_the_file(
    make_runtime: Callable[..., rw.Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ring holds about one chunk; without the once-a-second look, a reader
    # that waited for chunks the ring no longer holds would wait for good.
    monkeypatch.setattr("runwright.streams._hub.RING_BYTES", 100_000)
    monkeypatch.setattr("runwright.streams._hub.SAFETY_POLL", 600.0)
    gates["behind-go"] = anyio.Event()
    gates["behind-end"] = anyio.Event()

    @rw.step(name="tests.streams.overrun")
    async def overrun() -> None:
        out = rw.writable()
        await out.write(b"0" * 65536)
        await out.flush()
        await gates["behind-go"].wait()  # the reader waits for chunk 1 meanwhile
        for i in range(1, 10):  # one batch: the ring keeps only the last
            await out.write(str(i).encode() * 65536)
        await out.flush()
        await gates["behind-end"].wait()  # the stream stays written here, and open

    @rw.workflow(name="tests.streams.overrun_flow")
    async def overrun_flow() -> None:
        await overrun()

    seen: list[bytes] = []

    async def read(reader: rw.StreamReader) -> None:
        async for chunk in reader:
            seen.append(chunk.data[:1])
            if len(seen) == 10:
                return

    async with make_runtime() as runtime:
        run = await runtime.start(overrun_flow)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read, run.stream())
                while not seen:  # noqa: ASYNC110 (the reader task fills it)
                    await anyio.sleep(0.001)
                await anyio.sleep(0.05)  # let it look at the file and wait
                gates["behind-go"].set()
        gates["behind-end"].set()
        await run.result()
    assert seen == [str(i).encode() for i in range(10)]


async def test_a_step_writing_in_a_tight_loop_lets_readers_run_and_can_be_cancelled(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    @rw.step(name="tests.streams.endless")
    async def endless() -> None:
        out = rw.writable()
        i = 0
        while True:  # awaits nothing but the writes
            await out.write(i)
            i += 1

    @rw.workflow(name="tests.streams.endless_flow")
    async def endless_flow() -> None:
        await endless()

    async with make_runtime() as runtime:
        run = await runtime.start(endless_flow)
        reader = run.stream()
        with anyio.fail_after(10):
            first = [(await anext(reader)).data for _ in range(3)]
            await run.cancel()
            with pytest.raises(rw.RunCancelled):
                await run.result()
        rest = [chunk.data async for chunk in reader]
    assert first == [0, 1, 2]
    assert rest == list(range(3, 3 + len(rest)))


async def test_closing_a_stream_another_step_closed_is_harmless(
    make_runtime: Callable[..., rw.Runtime],
) -> None:
    async with make_runtime() as runtime:
        run = await runtime.start(handed_over_twice, ["x"])
        await collect(run.stream("story"))
        assert await run.result() == "closed twice"


@rw.workflow(name="tests.streams.handed_over_twice")
async def handed_over_twice(parts: list[str]) -> str:
    out = rw.writable("story")
    for part in parts:
        await write_to(out, part)
    await close_it(out)
    await close_it(out)  # another step, another attempt: still harmless
    return "closed twice"
