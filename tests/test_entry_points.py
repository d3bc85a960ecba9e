"""rw.run for scripts, and where a Runtime finds its database."""

from __future__ import annotations

from pathlib import Path

import pytest

import runwright as rw


@rw.step
async def double(x: int) -> int:
    return 2 * x


@rw.workflow
async def doubled(x: int) -> int:
    return await double(x)


def test_run_starts_waits_and_returns(tmp_path: Path):
    assert rw.run(doubled, 21, db=tmp_path / "script.db") == 42
    assert (tmp_path / "script.db").exists()


def test_run_with_a_key_runs_once(tmp_path: Path):
    db = tmp_path / "script.db"
    assert rw.run(doubled, 1, db=db, key="k") == 2
    assert rw.run(doubled, 5, db=db, key="k") == 2


def test_the_database_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RUNWRIGHT_DB", str(tmp_path / "env.db"))
    assert rw.Runtime().path == str(tmp_path / "env.db")
    monkeypatch.delenv("RUNWRIGHT_DB")
    monkeypatch.chdir(tmp_path)
    assert rw.Runtime().path == "runwright.db"
    assert rw.run(doubled, 2) == 4
    assert (tmp_path / "runwright.db").exists()
