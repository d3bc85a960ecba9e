"""Run attributes: what ``rw.set_attribute`` journals, and how runs are found by them.

An attribute is a key and a small value (str, int, float or bool) that a run
sets to be shown and filtered by (``customer=c-17``). Each setting is an event
(``attribute_set`` from a workflow body, ``step_attribute_set`` from a step);
the ``run_attributes`` table holds the latest value of each key per run, in
its text form, written in the same transaction. It is a materialized view
like ``runs``: filtering by attribute reads its index, never the events.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._events import Kind
from ._tx import Connection, Tx

__all__ = ["ATTRIBUTES_VERSION", "attributes_of", "write_attributes"]

#: The journal schema version that added ``run_attributes``.
ATTRIBUTES_VERSION = 5

#: One attribute as journaled: key, text form, type name (str/int/float/bool), payload.
Attribute = tuple[str, str, str, bytes]


def write_attributes(
    tx: Tx,
    run_id: str,
    attributes: Sequence[Attribute],
    at: float,
    *,
    cid: int | None = None,
    attempt: int | None = None,
) -> None:
    """Record *attributes* of *run_id*: one event each, and the latest value per key.

    With *attempt*, they were set by the step attempt at position *cid*; without,
    by the workflow body, as the command at position *cid* (one attribute).
    """
    kind = Kind.ATTRIBUTE_SET if attempt is None else Kind.STEP_ATTRIBUTE_SET
    for key, text, type_name, payload in attributes:
        tx.append(run_id, kind, at, cid=cid, attempt=attempt, name=key, payload=payload)
        tx.conn.execute(
            "INSERT INTO run_attributes (run_id, key, value, type, run_created_at, set_at) "
            "SELECT ?, ?, ?, ?, created_at, ? FROM runs WHERE run_id = ? "
            "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, "
            "type = excluded.type, set_at = excluded.set_at",
            (run_id, key, text, type_name, at, run_id),
        )


def attributes_of(conn: Connection, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """The attributes of each run in *run_ids* (text forms, by key, in key order)."""
    found: dict[str, dict[str, str]] = {run_id: {} for run_id in run_ids}
    if run_ids:
        rows = conn.execute(
            "SELECT run_id, key, value FROM run_attributes "
            f"WHERE run_id IN ({','.join('?' * len(run_ids))}) ORDER BY run_id, key",
            list(run_ids),
        ).fetchall()
        for run_id, key, value in rows:
            found[str(run_id)][str(key)] = str(value)
    return found
