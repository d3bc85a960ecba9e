"""The durable event store, behind one contract and two backends.

Shared by both: events and their kinds (``_events``), lifecycles
(``_states``), the codec, the row records, the transactions the actors need
and what each is conditional on (``_tx``), the reads (``_queries``) and the
group-commit writer (``_journal``). Per backend: connection, schema, watcher.

- ``sqlite/``: one file on one host, the embedded default.
- ``postgres/``: many hosts on one PostgreSQL database (``runwright[postgres]``).
"""

from __future__ import annotations

from ._journal import Journal
from ._open import describe, driver_error_text, driver_errors, is_postgres_url, open_journal

__all__ = [
    "Journal",
    "describe",
    "driver_error_text",
    "driver_errors",
    "is_postgres_url",
    "open_journal",
]
