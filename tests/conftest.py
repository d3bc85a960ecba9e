"""Shared fixtures: every async test runs on asyncio and trio, and every runtime
test runs with hot interpreters and with ``cache_runs=0`` (every step by replay)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import blockbuster_ctx

import runwright as rw
from runwright.testing import FakeClock


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _no_blocking_calls_on_the_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any blocking call runwright makes on the event loop thread (asyncio only:
    blockbuster cannot see trio's loop). Test code itself may block."""
    if (
        "anyio_backend" in request.fixturenames
        and request.getfixturevalue("anyio_backend") == "asyncio"
    ):
        with blockbuster_ctx("runwright"):
            yield
    else:
        yield


@pytest.fixture(params=[1000, 0], ids=["hot", "replay"])
def cache_runs(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_runtime(db_path: Path, clock: FakeClock, cache_runs: int) -> Callable[..., rw.Runtime]:
    """A Runtime on the test's database file and fake clock; keywords override."""

    def make(**overrides: Any) -> rw.Runtime:
        options: dict[str, Any] = {
            "clock": clock,
            "cache_runs": cache_runs,
            "synchronous": "NORMAL",
        }
        options.update(overrides)
        return rw.Runtime(db_path, **options)

    return make
