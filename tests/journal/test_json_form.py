"""The JSON form of values (runwright.journal._json): one mapping for every codec type,
strict JSON, the same from a value and from its stored payload, and lossless."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import typing
import uuid
import zoneinfo
from decimal import Decimal

import attrs
import pytest

from runwright.journal._codec import DefaultCodec
from runwright.journal._json import from_json, payload_json, to_json

CODEC = DefaultCodec(compress_threshold=64)  # long values are stored compressed


class Shade(enum.Enum):
    DARK = "dark"


class Bits(enum.Flag):
    A = 1
    B = 2


class Pair(typing.NamedTuple):
    left: int
    right: str


@dataclasses.dataclass
class Spot:
    x: int
    tags: list[str]


@attrs.define
class Box:
    size: int


class Refused(Exception):
    pass


BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")

#: One value of every type the default codec knows, with the tag it gets.
SAMPLES: list[tuple[object, str | None]] = [
    (None, None),
    (True, None),
    (42, None),
    (2**1100, "$i"),
    (1.5, None),
    (math.inf, "$f"),
    (-math.inf, "$f"),
    ("text ☃", None),
    ("long " * 40, None),
    (b"\x00\xffbytes", "$b"),
    (b"long bytes " * 20, "$b"),
    (bytearray(b"ba"), "$ba"),
    ([1, "two", [3.0]], None),
    ({"a": 1, "b": [2]}, None),
    ({1: "int key"}, "$d"),
    ({"$t": "looks like a tag"}, "$d"),
    ((1, "x"), "$t"),
    ({3, 1, 2}, "$s"),
    (frozenset({"f"}), "$fs"),
    (dt.datetime(2026, 11, 30, 8, 0, tzinfo=BERLIN), "$dt"),
    (dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC), "$dt"),
    (dt.date(2026, 11, 30), "$date"),
    (dt.time(8, 30), "$time"),
    (dt.timedelta(days=1, seconds=2), "$td"),
    (uuid.UUID(int=7), "$uuid"),
    (Decimal("1.10"), "$dec"),
    (Shade.DARK, "$enum"),
    (Bits.A | Bits.B, "$flag"),
    (Pair(1, "r"), "$nt"),
    (Spot(1, ["a"]), "$dc"),
    (Box(3), "$attrs"),
    (Refused("no"), "$exc"),
]


@pytest.mark.parametrize(("value", "tag"), SAMPLES, ids=lambda v: type(v).__name__)
def test_every_codec_type_has_one_strict_lossless_json_form(value: object, tag: str | None):
    form = to_json(value)
    text = json.dumps(form, allow_nan=False)  # strict JSON, whatever the value
    if tag is not None:
        assert isinstance(form, dict)
        assert list(form) == [tag]
    # The same form from the stored payload, compressed or not, without decoding it.
    assert payload_json(CODEC.encode(value)) == form
    back = from_json(json.loads(text))
    if isinstance(value, Refused):
        assert type(back) is Refused
        assert back.args == ("no",)
    else:
        assert back == value
        assert type(back) is type(value)


def test_nan_reads_back_as_nan():
    assert to_json(math.nan) == {"$f": "nan"}
    back = from_json(to_json([math.nan]))
    assert isinstance(back, list)
    assert math.isnan(back[0])


def test_what_the_codec_cannot_encode_shows_its_repr():
    class Local:
        def __repr__(self) -> str:
            return "<local>"

    assert to_json(Local()) == {"$repr": "<local>"}
    assert to_json([1, Local()]) == {"$repr": "[1, <local>]"}


def test_a_payload_that_cannot_be_read_says_so():
    assert payload_json(b"\x09junk") == {"$undecodable": "not a payload this runwright can read"}
    form = payload_json(b"\x02not zstd")
    assert isinstance(form, dict)
    assert list(form) == ["$undecodable"]
    assert payload_json(None) is None
