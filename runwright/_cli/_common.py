"""What every command shares: which journal it works on, a read-only look at it, a
client runtime on it, and how a failure is told.

The journal is ``--db`` (else ``$RUNWRIGHT_DB``, else ``./runwright.db``): an
SQLite file path, or a ``postgresql://`` URL whose ``?schema=`` (or
``--schema``) names the schema holding it. A URL is shown only without its
password, in output and in errors alike.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from .._runtime import DEFAULT_DB, Runtime
from ..journal import describe, is_postgres_url, sqlite
from ..journal import postgres as pg
from ..journal._tx import Connection

__all__ = [
    "CommandError",
    "Target",
    "check_journal",
    "client",
    "import_modules",
    "raw_target",
    "read_only",
    "target_of",
]


class CommandError(Exception):
    """A problem the command reports on stderr before exiting with status 1."""


@attrs.frozen
class Target:
    """The journal a command works on, as the command line names it."""

    db: str
    schema: str | None = None

    @property
    def backend(self) -> str:
        return "postgresql" if is_postgres_url(self.db) else "sqlite"

    @property
    def display(self) -> str:
        """The journal as messages name it: a path, or a URL without its password."""
        return describe(self.db, self.schema)

    @property
    def address(self) -> str:
        """The file path, or the server and database (the URL without its password
        or schema)."""
        if self.backend == "sqlite":
            return self.db
        return pg.redact(pg.PgTarget(self.db, self.schema).conninfo)

    @property
    def schema_name(self) -> str | None:
        """The PostgreSQL schema that holds the journal (None for an SQLite file)."""
        if self.backend == "sqlite":
            return None
        return pg.PgTarget(self.db, self.schema).schema

    def hide_password(self, text: str) -> str:
        return pg.hide_password(text, self.db)


def raw_target(args: argparse.Namespace) -> Target:
    """``--db``/``$RUNWRIGHT_DB`` and ``--schema`` as given, not yet checked."""
    db = args.db if args.db is not None else os.environ.get("RUNWRIGHT_DB", DEFAULT_DB)
    return Target(db, getattr(args, "schema", None))


def target_of(args: argparse.Namespace) -> Target:
    """The command's journal; a bad schema name is refused before anything is sent."""
    target = raw_target(args)
    if target.backend == "postgresql":
        try:
            pg.PgTarget(target.db, target.schema)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    elif target.schema is not None:
        raise CommandError(
            f"--schema is for a PostgreSQL journal; {target.db} is an SQLite file, "
            "which has no schemas"
        )
    return target


@contextlib.contextmanager
def read_only(target: Target) -> Iterator[Connection]:
    """The journal at *target*, read-only, inside one read transaction (one snapshot).

    It must already be a runwright journal of a version this code reads: a
    missing SQLite file or a PostgreSQL schema with no journal is an error,
    never a new, empty journal.
    """
    if target.backend == "postgresql":
        conn: Any = pg.connect_read_only(target.db, target.schema)
        close = conn.raw.close
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    else:
        if not os.path.lexists(target.db):
            raise CommandError(f"no runwright database at {target.db}")
        conn = sqlite.connect_read_only(target.db)
        close = conn.close
        begin = "BEGIN"
    try:
        conn.execute(begin)
        yield conn
    finally:
        close()


def check_journal(target: Target) -> None:
    """Fail unless *target* is an existing runwright journal that this version can read
    (a client runtime would create a missing one)."""
    with read_only(target):
        pass


def client(target: Target, **options: Any) -> Runtime:
    """A runtime that runs no steps, on a journal that must already exist."""
    return Runtime(target.db, schema=target.schema, execute=False, migrate=False, **options)


def import_modules(modules: Sequence[str]) -> None:
    """Import *modules* (registering their workflows), from the current directory too."""
    sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CommandError(f"cannot import {module!r}: {exc}") from None
