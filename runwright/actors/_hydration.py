"""The hydration cache: decoded payloads, keyed by event seq, bounded in bytes.

Replaying a run decodes every result it has seen so far. The cache keeps the
decoded values so that a second replay does not decode them again. It holds
only deep-immutable values (strings, numbers, bytes, tuples of those, ...):
a value the workflow could mutate is decoded afresh for every replay, so two
replays never share one mutable object. Size is the encoded payload's length,
a cheap and stable stand-in for the decoded size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ..journal._codec import is_immutable

__all__ = ["HydrationCache"]


class HydrationCache:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[int, tuple[object, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, seq: int, payload: bytes, decode: Callable[[bytes], object]) -> object:
        """The decoded *payload* of event *seq*, from the cache when possible."""
        entry = self._entries.get(seq)
        if entry is not None:
            self._entries.move_to_end(seq)
            self.hits += 1
            return entry[0]
        self.misses += 1
        value = decode(payload)
        self.put(seq, value, len(payload))
        return value

    def put(self, seq: int, value: object, size: int) -> None:
        """Keep *value* if it is immutable and fits; evict the least recently used."""
        if size > self.max_bytes or not is_immutable(value) or seq in self._entries:
            return
        self._entries[seq] = (value, size)
        self.size += size
        while self.size > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.size -= evicted
