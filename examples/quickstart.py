"""An order workflow: a payment step that fails twice before it succeeds, a
durable sleep, and shipping. Run it twice: the second run finds the first
order already done (same key) and prints its result without charging again.

    python examples/quickstart.py
"""

from __future__ import annotations

import anyio

import runwright as rw


@rw.step(retries=3, backoff=rw.Backoff(initial=0.2))
async def charge(order_id: str, cents: int) -> str:
    attempt = rw.step_info().attempt
    print(f"  charge {order_id}: attempt {attempt}")
    if attempt < 3:
        raise ConnectionError("payment gateway timed out")
    return f"receipt-{order_id}-{cents}"


@rw.step
async def reserve(order_id: str, item: str) -> str:
    print(f"  reserve {item} for {order_id}")
    return f"{item}-reserved"


@rw.step
def ship(order_id: str) -> str:
    print(f"  ship {order_id}")
    return f"tracking-{order_id}"


@rw.workflow(name="quickstart.process_order")
async def process_order(order_id: str) -> dict[str, object]:
    receipt = await charge(order_id, 500)
    items = await rw.gather(reserve(order_id, "book"), reserve(order_id, "pen"))
    print("  waiting 1s before shipping (a durable sleep: survives restarts)")
    await rw.sleep(1)
    tracking = await ship(order_id)
    return {"receipt": receipt, "items": items, "tracking": tracking}


async def main() -> None:
    async with rw.Runtime("quickstart.db") as runtime:
        run = await runtime.start(process_order, "o-1", key="order-o-1")
        print(f"run {run.id}")
        result = await run.result()
        print(f"result: {result}")
        print(f"status: {(await run.status()).value}")


if __name__ == "__main__":
    anyio.run(main)
