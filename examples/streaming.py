"""A step that streams what it produces while the run goes on.

A fake model writes tokens to the run's "tokens" stream; the program prints
them as they become durable, then reads the last three again from the
journal. ``runwright.asgi.stream_response`` serves the same stream over HTTP.

    python examples/streaming.py
"""

from __future__ import annotations

import anyio

import runwright as rw

WORDS = [
    "durable", "streams", "survive", "crashes", "and", "resume", "where", "the", "reader",
    "left", "off",
]  # fmt: skip


@rw.step
async def generate(prompt: str) -> int:
    async with rw.writable("tokens") as out:
        for word in WORDS:
            await out.write(word + " ")
            await anyio.sleep(0.02)  # a model takes its time
    return len(WORDS)


@rw.workflow(name="streaming.chat")
async def chat(prompt: str) -> int:
    return await generate(prompt)


async def main() -> None:
    async with rw.Runtime("streaming.db") as runtime:
        run = await runtime.start(chat, "tell me about runwright")
        print(f"run {run.id}")
        print("live:   ", end="", flush=True)
        async for chunk in run.stream("tokens"):
            print(chunk.data, end="", flush=True)
        print()
        print(f"tokens: {await run.result()}")
        tail = [chunk.data async for chunk in run.stream("tokens", start=-3)]
        print(f"last 3: {''.join(tail)}")
        info = await run.stream_info("tokens")
        print(f"stream: {info.chunks} chunks, {info.bytes} bytes, closed={info.closed}")


if __name__ == "__main__":
    anyio.run(main)
