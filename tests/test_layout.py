"""The package layout keeps the journal's backends behind one contract."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "runwright"
DRIVERS = {"sqlite3", "psycopg", "psycopg_binary", "psycopg_pool"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_nothing_above_the_journal_imports_a_database_driver():
    above = [p for p in PACKAGE.rglob("*.py") if "journal" not in p.relative_to(PACKAGE).parts]
    assert len(above) > 10
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(imported_modules(p) & DRIVERS)
        for p in above
        if imported_modules(p) & DRIVERS
    }
    assert offenders == {}


def test_only_the_postgres_backend_imports_psycopg():
    users = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if imported_modules(p) & {"psycopg"}
    }
    assert users
    assert all(user.startswith("journal/postgres/") for user in users), users


def test_importing_runwright_and_opening_sqlite_loads_no_postgres_driver(tmp_path: Path):
    code = (
        "import sys, anyio, runwright as rw\n"
        "async def main():\n"
        "    async with rw.Runtime(sys.argv[1]):\n"
        "        pass\n"
        "anyio.run(main)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "j.db")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
