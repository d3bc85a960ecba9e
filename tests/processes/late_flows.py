"""A workflow only some workers import (``tests/processes/test_unregistered.py``)."""

from __future__ import annotations

import runwright as rw


@rw.step(name="late.shout")
async def shout(word: str) -> str:
    return word.upper()


@rw.workflow(name="late.greet")
async def greet(name: str) -> str:
    return await shout(f"hello {name}")
