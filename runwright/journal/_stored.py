"""A payload as a query reads it: the stored bytes, or on SQLite a reference to a file.

An SQLite journal keeps payloads over 1 MiB in files beside it and a TEXT
reference in their place (``sqlite/_blobs.py``); every other payload, and
every payload on PostgreSQL, is the ``bytes`` the codec wrote. Readers that
hand payloads on pass each through :func:`stored` (or test ``type(value) is
str`` themselves where rows are many): small payloads pay one type check.
"""

from __future__ import annotations

from typing import Any

__all__ = ["stored"]


def stored(conn: Any, value: Any) -> Any:
    """*value*, a payload column as read through *conn*, as the bytes it stands for."""
    if type(value) is str:
        from .sqlite._blobs import read_reference

        return read_reference(conn, value)
    return value
