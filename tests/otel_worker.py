"""A worker process for tests/test_otel.py: it drives runs of the workflow below with
tracing decided the default way (a tracer provider is configured here, so it is on),
and writes every span it ends to a file, one JSON object a line.

Run as ``python otel_worker.py DB SPANS RUN_ID BACKEND``: it exits once that run ends.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import anyio

import runwright as rw

FAILED_ONCE: set[str] = set()


@rw.step(retries=2, backoff=rw.Backoff(initial=0.0))
async def fetch(order: str) -> str:
    if order not in FAILED_ONCE:
        FAILED_ONCE.add(order)
        raise ValueError("the first attempt fails")
    return f"fetched {order}"


@rw.step
async def store(text: str) -> int:
    return len(text)


@rw.workflow
async def remote_order(order: str) -> int:
    return await store(await fetch(order))


def main(db: str, spans: str, run_id: str, backend: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class JsonLines(SpanExporter):
        def export(self, batch: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(spans, "a") as out:
                for span in batch:
                    context = span.get_span_context()
                    assert context is not None
                    out.write(
                        json.dumps(
                            {
                                "name": span.name,
                                "trace_id": f"{context.trace_id:032x}",
                                "parent_id": None
                                if span.parent is None
                                else f"{span.parent.span_id:016x}",
                                "attributes": dict(span.attributes or {}),
                            }
                        )
                        + "\n"
                    )
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines()))
    trace.set_tracer_provider(provider)

    async def drive() -> None:
        async with rw.Runtime(db, synchronous="NORMAL") as runtime:
            assert runtime.supervisor.tracing is not None
            await runtime.get_run(run_id).result(timeout=30)

    anyio.run(drive, backend=backend)
    provider.shutdown()


if __name__ == "__main__":
    # The workflows must carry the names the client started them by (otel_worker.…).
    import otel_worker

    otel_worker.main(*sys.argv[1:])
