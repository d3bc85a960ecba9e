"""OpenTelemetry traces of runs: one trace per run, from the caller's span at start()
to every step attempt, sleep and hook wait, in whichever process records them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import otel_worker
import pytest
from conftest import query_journal, resume_when_live
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import runwright as rw
from runwright._cli._timeline import build_view
from runwright.testing import FakeClock, skip_time

pytestmark = pytest.mark.anyio

FAILURES: dict[str, int] = {}


@rw.step(retries=3, backoff=rw.Backoff(initial=5.0))
async def flaky(key: str) -> int:
    """Fails twice, then succeeds on attempt 3."""
    FAILURES[key] = FAILURES.get(key, 0) + 1
    if FAILURES[key] < 3:
        raise ValueError(f"failure {FAILURES[key]}")
    return FAILURES[key]


@rw.step
async def settle(value: int) -> int:
    return value * 2


@rw.workflow
async def traced_flow(key: str) -> str:
    tries = await flaky(key)
    await rw.sleep(60)
    answer = await rw.hook(token=f"otel:{key}")
    doubled = await settle(tries)
    return f"{answer}:{doubled}"


@rw.workflow
async def nap(key: str) -> int:
    await rw.sleep(30)
    return await settle(len(key))


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def named(finished: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    """The spans whose name starts with *prefix* (after it, a step or workflow's name
    ends as *prefix* does: ``runwright.step flaky``)."""
    kind, _, name = prefix.partition(" ")
    return [
        span for span in finished if span.name.split(" ")[0] == kind and span.name.endswith(name)
    ]


async def test_a_run_is_one_trace_under_the_callers_span(
    make_runtime: Callable[..., rw.Runtime],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    key = f"k-{id(exporter)}"
    async with make_runtime(tracing=provider) as runtime, skip_time(runtime):
        with provider.get_tracer("caller").start_as_current_span("caller") as caller:
            run = await runtime.start(traced_flow, key)
        await resume_when_live(runtime, f"otel:{key}", "yes")
        assert await run.result(timeout=10) == "yes:6"
        # The journaled context is no moment of the run: runs show and the web view
        # do not list it.
        row = await runtime.journal.run(run.id)
        assert row is not None
        events = await runtime.journal.events(run.id, after=0)
        assert "trace_context" in [event.kind for event in events]
        view = build_view(row, events, {}, None, rw.DefaultCodec())
        assert "trace_context" not in [getattr(entry, "kind", "") for entry in view.timeline]
    finished = exporter.get_finished_spans()
    trace_id = caller.get_span_context().trace_id
    assert {span.context.trace_id for span in finished} == {trace_id}

    (start,) = named(finished, "runwright.start")
    assert start.parent is not None
    assert start.parent.span_id == caller.get_span_context().span_id
    assert attributes(start)["runwright.run_id"] == run.id
    # Every span the runtime records for the run is a child of the journaled context.
    others = [span for span in finished if span.name not in ("caller", start.name)]
    assert {span.parent.span_id for span in others if span.parent} == {start.context.span_id}
    assert all(span.parent is not None for span in others)

    attempts = named(finished, "runwright.step flaky")
    assert [attributes(s)["runwright.attempt"] for s in attempts] == [1, 2, 3]
    assert [attributes(s)["runwright.outcome"] for s in attempts] == [
        "retrying",
        "retrying",
        "ok",
    ]
    for span in attempts:
        assert attributes(span)["runwright.run_id"] == run.id
        assert attributes(span)["runwright.workflow"] == traced_flow.name
        assert attributes(span)["runwright.step"] == flaky.name
    assert attempts[0].events[0].name == "exception"
    (settled,) = named(finished, "runwright.step settle")
    assert attributes(settled)["runwright.outcome"] == "ok"

    (sleep,) = named(finished, "runwright.sleep")
    assert attributes(sleep)["runwright.outcome"] == "fired"
    assert sleep.end_time is not None
    assert sleep.start_time is not None
    assert sleep.end_time - sleep.start_time == 60 * 10**9  # journal times, fake clock
    (hook,) = named(finished, "runwright.hook")
    assert attributes(hook)["runwright.outcome"] == "received"
    assert hook.start_time is not None
    assert sleep.end_time <= hook.start_time

    (whole,) = named(finished, "runwright.run")
    assert attributes(whole)["runwright.outcome"] == "completed"
    assert whole.start_time is not None
    assert whole.end_time is not None
    assert whole.start_time <= attempts[0].start_time  # type: ignore[operator]
    assert whole.end_time >= settled.end_time  # type: ignore[operator]


async def test_a_step_the_workflow_stops_waiting_for_is_cancelled(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with make_runtime(tracing=provider) as runtime:
        run = await runtime.start(racing)
        await clock.jump()
        assert await run.result(timeout=10) == "timer"
    finished = exporter.get_finished_spans()
    (slow,) = named(finished, "runwright.step forever")
    assert attributes(slow)["runwright.outcome"] == "cancelled"
    (sleep,) = named(finished, "runwright.sleep")
    assert attributes(sleep)["runwright.outcome"] == "fired"


@rw.step
async def forever() -> None:
    await anyio.sleep_forever()


@rw.workflow
async def racing() -> str:
    which, _ = await rw.select(step=forever(), timer=rw.sleep(5))
    return which


@rw.workflow
async def parent(key: str) -> int:
    child = await rw.start_child(nap, key)
    return await child.result() + 1


async def test_a_child_run_joins_its_parents_trace(
    make_runtime: Callable[..., rw.Runtime],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with make_runtime(tracing=provider) as runtime, skip_time(runtime):
        run = await runtime.start(parent, "ab")
        assert await run.result(timeout=10) == 5
    finished = exporter.get_finished_spans()
    (start,) = named(finished, "runwright.start")
    assert {span.context.trace_id for span in finished} == {start.context.trace_id}
    runs = {attributes(s)["runwright.run_id"]: s for s in named(finished, "runwright.run")}
    assert set(runs) == {run.id, f"{run.id}.0"}
    (step,) = named(finished, "runwright.step settle")
    assert attributes(step)["runwright.run_id"] == f"{run.id}.0"
    assert step.parent is not None
    assert step.parent.span_id == start.context.span_id


SEEN_SPANS: dict[str, int] = {}


@rw.step
async def looks_async(key: str) -> None:
    from opentelemetry import trace

    SEEN_SPANS[f"{key}:async"] = trace.get_current_span().get_span_context().span_id


@rw.step
def looks_sync(key: str) -> None:
    from opentelemetry import trace

    SEEN_SPANS[f"{key}:sync"] = trace.get_current_span().get_span_context().span_id


@rw.workflow
async def looks(key: str) -> None:
    await looks_async(key)
    await looks_sync(key)


async def test_the_attempts_span_is_current_while_the_step_runs(
    make_runtime: Callable[..., rw.Runtime],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    key = f"k-{id(exporter)}"
    async with make_runtime(tracing=provider) as runtime:
        await (await runtime.start(looks, key)).result(timeout=10)
    (in_async,) = named(exporter.get_finished_spans(), "runwright.step looks_async")
    (in_sync,) = named(exporter.get_finished_spans(), "runwright.step looks_sync")
    assert SEEN_SPANS[f"{key}:async"] == in_async.context.span_id
    assert SEEN_SPANS[f"{key}:sync"] == in_sync.context.span_id


async def test_a_start_that_finds_its_key_taken_names_the_run_it_found(
    make_runtime: Callable[..., rw.Runtime],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with make_runtime(tracing=provider, execute=False) as runtime:
        first = await runtime.start(nap, "k", key="same")
        again = await runtime.start(nap, "k", key="same")
    assert again.id == first.id
    starts = named(exporter.get_finished_spans(), "runwright.start")
    assert [attributes(s)["runwright.run_id"] for s in starts] == [first.id, first.id]
    assert [attributes(s).get("runwright.existing") for s in starts] == [None, True]


async def test_a_restart_continues_the_trace_with_times_from_the_journal(
    make_runtime: Callable[..., rw.Runtime],
    clock: FakeClock,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with make_runtime(tracing=provider) as runtime:
        run = await runtime.start(nap, "abc")
        created = clock.now()
        await clock.wait_for_sleeper()
    (start,) = exporter.get_finished_spans()  # nothing else ended before the shutdown
    clock.advance(45)
    async with make_runtime(tracing=provider) as runtime:
        assert await runtime.get_run(run.id).result(timeout=10) == 6
    finished = exporter.get_finished_spans()
    assert {span.context.trace_id for span in finished} == {start.context.trace_id}
    (sleep,) = named(finished, "runwright.sleep")
    assert sleep.start_time == int(created * 1e9)  # from the journal, written before the restart
    assert sleep.parent is not None
    assert sleep.parent.span_id == start.context.span_id
    (whole,) = named(finished, "runwright.run")
    assert whole.start_time == int(created * 1e9)
    (step,) = named(finished, "runwright.step settle")
    assert attributes(step)["runwright.attempt"] == 1


async def test_no_tracer_provider_means_no_tracing(
    make_runtime: Callable[..., rw.Runtime], db_path: Path | str
) -> None:
    from opentelemetry import trace

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    async with make_runtime() as runtime:
        assert runtime.supervisor.tracing is None
        run = await runtime.start(nap, "x")
        async with skip_time(runtime):
            assert await run.result(timeout=10) == 2
    kinds = query_journal(db_path, "SELECT kind FROM events WHERE run_id = ?", (run.id,))
    assert ("trace_context",) not in kinds


async def test_tracing_false_turns_it_off_and_a_bad_setting_is_refused(
    make_runtime: Callable[..., rw.Runtime],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with make_runtime(tracing=False) as runtime:
        assert runtime.supervisor.tracing is None
    with pytest.raises(TypeError, match="TracerProvider"):
        async with make_runtime(tracing="yes"):
            pass
    assert exporter.get_finished_spans() == ()
    del provider


async def test_a_worker_process_continues_the_clients_trace(
    db_path: Path | str,
    tmp_path: Path,
    anyio_backend: str,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with rw.Runtime(db_path, execute=False, tracing=provider) as client:
        with provider.get_tracer("client").start_as_current_span("client") as span:
            run = await client.start(otel_worker.remote_order, "o-7")
    trace_id = f"{span.get_span_context().trace_id:032x}"
    (start,) = named(exporter.get_finished_spans(), "runwright.start")
    out = tmp_path / "spans.jsonl"
    worker = Path(otel_worker.__file__)
    done = await anyio.run_process(
        [sys.executable, str(worker), str(db_path), str(out), run.id, anyio_backend],
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    import json

    recorded = [json.loads(line) for line in out.read_text().splitlines()]
    assert {span["trace_id"] for span in recorded} == {trace_id}
    assert {span["parent_id"] for span in recorded} == {f"{start.context.span_id:016x}"}
    steps = [
        (s["attributes"]["runwright.step"].rpartition(".")[2], s["attributes"]["runwright.attempt"],
         s["attributes"]["runwright.outcome"])
        for s in recorded
        if s["name"].startswith("runwright.step")
    ]  # fmt: skip
    assert steps == [("fetch", 1, "retrying"), ("fetch", 2, "ok"), ("store", 1, "ok")]
    (whole,) = [s for s in recorded if s["name"].startswith("runwright.run ")]
    assert whole["attributes"]["runwright.run_id"] == run.id


def test_runwright_runs_without_opentelemetry(tmp_path: Path) -> None:
    """Without the API installed, a runtime runs untraced, and tracing=True says what
    to install."""
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if it were not installed\n"
        "import anyio, runwright as rw\n"
        "@rw.step\n"
        "async def one() -> int:\n"
        "    return 1\n"
        "@rw.workflow\n"
        "async def flow() -> int:\n"
        "    return await one()\n"
        "async def main():\n"
        "    async with rw.Runtime(sys.argv[1]) as runtime:\n"
        "        assert runtime.supervisor.tracing is None\n"
        "        print(await (await runtime.start(flow)).result(timeout=10))\n"
        "    try:\n"
        "        async with rw.Runtime(sys.argv[1], tracing=True):\n"
        "            pass\n"
        "    except RuntimeError as exc:\n"
        "        print(exc)\n"
        "anyio.run(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "j.db")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.splitlines() == [
        "1",
        "Runtime(tracing=...) needs OpenTelemetry: pip install 'runwright[otel]'",
    ]
