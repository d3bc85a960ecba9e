"""Names of runs and of the processes that own them.

A run id sorts by creation time. An owner is ``host:pid:token``: the host
part is the host name unless the runtime was given a ``host_id`` (one machine
may play several hosts), and a process of this host that no longer exists is
known dead at once, without waiting for its lease.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

__all__ = ["new_owner_id", "new_run_id", "owner_is_dead"]


def new_run_id() -> str:
    """Sortable by creation time (milliseconds), then 80 random bits."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def new_owner_id(host_id: str | None = None) -> str:
    host = socket.gethostname() if host_id is None else host_id
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


def owner_is_dead(owner: str) -> bool:
    """Whether *owner* names a process of this host that no longer exists (never
    true of another host's process: only a lease can tell of those)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
