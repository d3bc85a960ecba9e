"""The PostgreSQL writer binds values into its statements itself: every value must
come back from the server exactly as it went in, and none may end its literal early."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.postgres_only("the literals are the PostgreSQL writer's")

psycopg = pytest.importorskip("psycopg")
from runwright.journal.postgres._writer import bind as _bind  # noqa: E402
from runwright.journal.postgres._writer import literal as _literal  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from conftest import PG_URL, _require_postgres

    _require_postgres()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        yield conn


def roundtrip(conn: Any, value: Any, cast: str = "") -> Any:
    return conn.execute(f"SELECT {_literal(value)}{cast}").fetchone()[0]


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",))))
def test_any_text_comes_back_as_it_went(journal_backend: str, server: Any, text: str):
    for standard in ("on", "off"):
        server.execute(f"SET standard_conforming_strings = {standard}")
        assert roundtrip(server, text) == text


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512))
def test_any_bytes_come_back_as_they_went(journal_backend: str, server: Any, data: bytes):
    assert roundtrip(server, data) == data


@settings(max_examples=300, deadline=None)
@given(number=st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False)))
def test_numbers_come_back_exactly(journal_backend: str, server: Any, number: float):
    cast = "::float8" if isinstance(number, float) else "::numeric"
    assert roundtrip(server, number, cast) == number
    # A negative number after a minus sign is still a number, not a comment.
    assert server.execute(f"SELECT 0 - {_literal(number)}{cast}").fetchone()[0] == -number


def test_specials_nul_and_unknown_types(journal_backend: str, server: Any):
    assert roundtrip(server, None) is None
    assert roundtrip(server, True) is True
    assert roundtrip(server, float("inf")) == math.inf
    assert roundtrip(server, float("-inf")) == -math.inf
    assert math.isnan(roundtrip(server, float("nan")))
    with pytest.raises(ValueError, match="NUL"):
        _literal("a\x00b")
    with pytest.raises(TypeError, match="no SQL literal"):
        _literal(object())


def test_an_injection_attempt_is_a_value(journal_backend: str, server: Any):
    server.execute("CREATE TEMP TABLE victims (name text)")
    server.execute("INSERT INTO victims VALUES ('kept')")
    hostile = "x'); DROP TABLE victims; --\\'"
    sql = _bind("SELECT ? , ?", (hostile, b"'; DROP TABLE victims; --"))
    assert server.execute(sql).fetchone() == (hostile, b"'; DROP TABLE victims; --")
    assert server.execute("SELECT name FROM victims").fetchall() == [("kept",)]
    with pytest.raises(ValueError, match="placeholders"):
        _bind("SELECT ?", (1, 2))
