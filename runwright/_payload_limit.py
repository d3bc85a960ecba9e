"""``max_payload_bytes``: no payload larger than that reaches the journal.

The runtime hands its supervisor (and through it every actor, step call,
hook, message, published event and stream value) a :class:`LimitedCodec`
around its codec. Every payload the runtime writes is encoded before the
write that holds it is queued, so a value over the limit fails where it was
given (``start()``, the step call, ``resume_hook()``, ...) with an
:class:`EncodeError` that names its size, the limit and the option, and
nothing is written. Decoding is not limited: a journal written with a higher
limit stays readable.
"""

from __future__ import annotations

import attrs

from ._exceptions import EncodeError
from .journal._codec import Codec, human_size

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "LimitedCodec", "check_limit"]

#: The default ``Runtime(max_payload_bytes=...)``: 64 MiB.
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"max_payload_bytes must be a positive int or None, got {limit!r}")
    return limit


@attrs.frozen
class LimitedCodec:
    """*inner*, refusing to encode a value into more than *limit* bytes."""

    inner: Codec
    limit: int

    def encode(self, value: object) -> bytes:
        data = self.inner.encode(value)
        if len(data) > self.limit:
            raise EncodeError(
                f"the encoded value is {human_size(len(data))} ({len(data):,} bytes), over "
                f"max_payload_bytes={self.limit:,} ({human_size(self.limit)}); nothing was "
                "written. Keep large data outside the journal and pass a reference to it "
                "(a path, a URL, an object key), or open the runtime with a larger "
                "Runtime(max_payload_bytes=...)"
            )
        return data

    def decode(self, data: bytes) -> object:
        return self.inner.decode(data)
