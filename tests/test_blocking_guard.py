"""The conftest guard really fails blocking calls runwright makes on the loop."""

from __future__ import annotations

from pathlib import Path

import pytest
from blockbuster import BlockingError

from runwright.journal.sqlite._schema import check_file

pytestmark = pytest.mark.anyio


async def test_a_blocking_call_from_runwright_on_the_loop_fails(anyio_backend: str, tmp_path: Path):
    path = tmp_path / "x.db"
    path.write_bytes(b"")
    if anyio_backend != "asyncio":
        pytest.skip("blockbuster sees only asyncio's loop")
    with pytest.raises(BlockingError):
        check_file(str(path))
