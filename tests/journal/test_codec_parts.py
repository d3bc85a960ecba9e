"""Large values in the default codec: binary parts stored raw, compression decided by
samples, size-bounded decoding (``peek``), and the JSON form of such payloads."""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from runwright.journal._codec import (
    SAMPLE_BYTES,
    SAMPLE_FROM,
    SAMPLES,
    DefaultCodec,
    Omitted,
    human_size,
)
from runwright.journal._json import from_json, payload_json
from runwright.journal._tagged import PART_FROM

CODEC = DefaultCodec()


@dataclasses.dataclass
class Upload:
    name: str
    data: bytes


class _CountingCompressor:
    """Wraps a zstd compressor and counts the bytes it is given."""

    def __init__(self, inner: zstandard.ZstdCompressor) -> None:
        self.inner = inner
        self.fed = 0

    def compress(self, data: Any) -> bytes:
        self.fed += len(data)
        return self.inner.compress(data)


def counting(codec: DefaultCodec) -> _CountingCompressor:
    spy = _CountingCompressor(codec._zstd.compressor)
    codec._zstd.compressor = spy  # type: ignore[assignment]
    return spy


def test_large_bytes_in_arguments_are_stored_raw_not_base64() -> None:
    data = os.urandom(2_000_000)
    encoded = CODEC.encode(((data,), {}))
    assert encoded[:1] == b"\x07"
    assert len(encoded) <= len(data) + 64  # was 4/3 of it, as base64
    assert data in encoded
    back = CODEC.decode(encoded)
    assert back == ((data,), {})
    assert type(back[0][0]) is bytes


def test_parts_keep_their_types_wherever_they_are() -> None:
    value = {
        "upload": Upload("a.bin", os.urandom(PART_FROM)),
        "buffer": bytearray(os.urandom(5000)),
        "list": [b"x" * 3000, b"small", (b"y" * PART_FROM,)],
        "error": ValueError(b"z" * 4000),
    }
    back: Any = CODEC.decode(CODEC.encode(value))
    assert back["upload"] == value["upload"]
    assert type(back["buffer"]) is bytearray
    assert back["buffer"] == value["buffer"]
    assert back["list"] == value["list"]
    assert back["error"].args == (b"z" * 4000,)


def test_small_bytes_stay_in_the_older_format() -> None:
    encoded = CODEC.encode(((b"x" * (PART_FROM - 1),), {}))
    assert encoded[:1] == b"\x01"  # readable by every runwright
    assert b'"$b"' in encoded


def test_payloads_of_the_older_formats_still_decode() -> None:
    data = os.urandom(100_000)
    encoded = base64.b64encode(data).decode()
    text = '{"$t":[{"$t":[{"$b":"' + encoded + '"}]},{}]}'
    assert CODEC.decode(b"\x01" + text.encode()) == ((data,), {})
    packed = zstandard.ZstdCompressor().compress(text.encode())
    assert CODEC.decode(b"\x02" + packed) == ((data,), {})


def test_compressible_parts_are_compressed_one_by_one() -> None:
    noise = os.urandom(300_000)
    value = ((b"a" * 1_000_000, noise), {})
    encoded = CODEC.encode(value)
    assert len(encoded) < len(noise) + 1000
    assert noise in encoded  # stored raw
    assert CODEC.decode(encoded) == value


def test_an_incompressible_large_body_gets_only_a_sample_compressed() -> None:
    codec = DefaultCodec()
    spy = counting(codec)
    data = os.urandom(4 * SAMPLE_FROM)
    for value in (data, ((data,), {}), {"blob": bytearray(data)}):
        spy.fed = 0
        encoded = codec.encode(value)
        assert spy.fed <= SAMPLES * SAMPLE_BYTES + 1000, type(value)
        assert codec.decode(encoded) == value


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param(lambda n: bytes(n), id="zeros"),
        pytest.param(lambda n: os.urandom(n // 2) + bytes(n - n // 2), id="half-random"),
        pytest.param(lambda n: b"".join(b"%08d," % i for i in range(n // 9)), id="counter"),
    ],
)
def test_a_compressible_large_body_is_compressed(layout: Any) -> None:
    data = layout(4 * SAMPLE_FROM)
    encoded = CODEC.encode(data)
    assert encoded[:1] == b"\x04"
    assert len(encoded) < len(data) * 0.9
    assert CODEC.decode(encoded) == data


def test_a_small_body_is_compressed_whenever_that_makes_it_smaller() -> None:
    value = b"ab" * 2000  # below SAMPLE_FROM: no sample, the whole body is tried
    assert CODEC.encode(value)[:1] == b"\x04"
    assert CODEC.encode(os.urandom(4000))[:1] == b"\x03"


@settings(max_examples=50, deadline=None)
@given(
    st.recursive(
        st.binary(min_size=PART_FROM - 2, max_size=PART_FROM + 3000)
        | st.binary(max_size=10).map(bytearray)
        | st.integers()
        | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_round_trip_with_parts(value: object) -> None:
    back = CODEC.decode(CODEC.encode(value))
    assert back == value
    assert repr(back) == repr(value)  # types too (bytes vs bytearray, tuple vs list)
    assert from_json(payload_json(CODEC.encode(value))) == value


def test_peek_leaves_large_values_unread() -> None:
    data = os.urandom(3_000_000)
    args = CODEC.encode(((data, b"x" * 2000, "name"), {"blob": bytearray(data)}))
    assert repr(CODEC.peek(args, 1_000_000)) == (
        "((<3.0 MB bytes>, " + repr(b"x" * 2000) + ", 'name'), {'blob': <3.0 MB bytearray>})"
    )
    assert CODEC.peek(CODEC.encode(data), 1_000_000) == Omitted("bytes", 3_000_000)
    assert CODEC.peek(CODEC.encode("é" * 1_000_000), 1_000_000) == Omitted("str", 2_000_000)
    numbers = list(range(400_000))
    size = len(str(numbers).replace(" ", ""))
    assert CODEC.peek(CODEC.encode(numbers), 1_000_000) == Omitted("value", size)
    compressed = CODEC.encode(bytes(3_000_000))
    assert compressed[:1] == b"\x04"
    assert CODEC.peek(compressed, 1_000_000) == Omitted("bytes", 3_000_000)
    small = CODEC.encode({"a": [1, 2], "b": b"xy"})
    assert CODEC.peek(small, 1_000_000) == {"a": [1, 2], "b": b"xy"}


def test_the_json_form_of_parts_and_of_omitted_values() -> None:
    data = os.urandom(3000)
    encoded = CODEC.encode(((data,), {"b": bytearray(b"q" * 5000)}))
    form: Any = payload_json(encoded)
    assert form == {
        "$t": [
            {"$t": [{"$b": base64.b64encode(data).decode()}]},
            {"b": {"$ba": base64.b64encode(b"q" * 5000).decode()}},
        ]
    }
    assert payload_json(encoded, 4000) == {
        "$t": [
            {"$t": [{"$b": base64.b64encode(data).decode()}]},
            {"b": {"$omitted": {"type": "bytearray", "size": 5000}}},
        ]
    }
    big = os.urandom(5000)
    assert payload_json(CODEC.encode(big), 4000) == {"$omitted": {"type": "bytes", "size": 5000}}
    assert payload_json(CODEC.encode([big.hex()]), 4000) == {
        "$omitted": {"type": "value", "size": 10004}
    }
    assert payload_json(b"\x07\x09") == {
        "$undecodable": "DecodeError: corrupt payload: a segment header is cut short"
    }


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (50_000_000, "50.0 MB"), (999_960, "1.0 MB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text
