"""Workflows the web view's tests show: a run with every kind of span, one that waits
on a hook (to resume or cancel), and one that fails."""

from __future__ import annotations

import runwright as rw

#: Attempts of ``charge`` so far, by order: the first one fails.
ATTEMPTS: dict[str, int] = {}


@rw.step(retries=2, backoff=rw.Backoff(initial=1.0))
async def charge(order: str, cents: int) -> dict[str, object]:
    ATTEMPTS[order] = ATTEMPTS.get(order, 0) + 1
    rw.set_attribute("charged_by", "card")
    if ATTEMPTS[order] == 1:
        raise RuntimeError(f"card declined for <b>{order}</b>")
    return {"order": order, "cents": cents, "receipt": "r-" + order}


@rw.step
async def write_log(order: str) -> int:
    async with rw.writable("log") as out:
        for i in range(3):
            await out.write(f"line {i} of {order}\n")
        await out.close()
    return 3


@rw.workflow
async def pack(order: str) -> str:
    return f"packed {order}"


@rw.workflow
async def shop(order: str) -> str:
    rw.set_attribute("customer", "c-17")
    rw.set_attribute("order", order)
    await charge(order, 500)
    await write_log(order)
    child = await rw.start_child(pack, order)
    await child.result()
    if rw.patched("receipt-v2"):
        await rw.sleep(5)
    return "done"


@rw.workflow
async def waits(token: str) -> object:
    rw.set_attribute("customer", "c-99")
    return await rw.hook(token)


@rw.step(retries=0)
async def explode(text: str) -> None:
    raise ValueError(text)


@rw.workflow
async def fails(text: str) -> None:
    await explode(text)
