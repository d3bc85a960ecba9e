"""rw.run for scripts, where a Runtime finds its database, and the ``runwright`` command."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import runwright as rw
from runwright._cli import main
from runwright.journal import describe


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
    assert rw.run(doubled, 1, db=db, key="k") == 2
    with pytest.raises(rw.KeyConflict, match="other arguments"):
        rw.run(doubled, 5, db=db, key="k")


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


@pytest.mark.postgres_only("a URL in the environment; the SQLite case is above")
def test_the_database_url_comes_from_the_environment(
    db_path: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("RUNWRIGHT_DB", db_path)
    assert rw.Runtime().path == describe(db_path)
    assert main(["db", "migrate"]) == 0
    assert capsys.readouterr().out == f"{describe(db_path)}: created the journal at version 5\n"
    assert rw.run(doubled, 3) == 6
    assert main(["runs", "list", "--json"]) == 0
    [listed] = map(json.loads, capsys.readouterr().out.splitlines())
    assert (listed["workflow"], listed["status"]) == (doubled.name, "completed")


def test_the_runwright_command_is_the_cli_main():
    with (Path(__file__).parents[1] / "pyproject.toml").open("rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    module, _, name = scripts["runwright"].partition(":")
    assert getattr(importlib.import_module(module), name) is main


def test_python_m_runs_the_cli(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "runwright._cli", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"runwright {rw.__version__}\n", "")
