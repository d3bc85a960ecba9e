from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import enum
import math
import random
import socket
import threading
import typing
import uuid
import zoneinfo
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runwright._exceptions import DecodeError, EncodeError, RetryableError, StepFailed
from runwright.journal._codec import (
    Codec,
    CodecRemoteError,
    DefaultCodec,
    encode_exception,
    is_immutable,
    rebuild_exception,
)

CODEC = DefaultCodec()


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    CRIMSON = "red"  # noqa: PIE796 (an alias, on purpose)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class FrozenPoint:
    x: int
    y: int


@dataclasses.dataclass(kw_only=True)
class Order:
    id: uuid.UUID
    items: list[Point]
    placed: dt.datetime
    tags: frozenset[str] = frozenset()
    total: Decimal = Decimal(0)
    label: str = dataclasses.field(init=False, default="")

    def __post_init__(self) -> None:
        self.label = f"order {self.id}"


@dataclasses.dataclass(init=False)
class HandInit:
    value: int

    def __init__(self, raw: str) -> None:
        self.value = int(raw)


@dataclasses.dataclass
class Node:
    name: str
    children: list[Node] = dataclasses.field(default_factory=list)


@attrs.define
class Account:
    owner: str
    _secret: str = "hidden"
    balance: Decimal = Decimal(0)
    history: list[int] = attrs.field(init=False, factory=list)


@attrs.frozen
class FrozenAccount:
    owner: str
    opened: dt.date


class Pair(typing.NamedTuple):
    left: object
    right: object


Coord = collections.namedtuple("Coord", ["lat", "lon"])


class QuotaError(Exception):
    def __init__(self, user: str, *, limit: int) -> None:
        super().__init__(f"{user} is over the limit of {limit}")
        self.user = user
        self.limit = limit


@dataclasses.dataclass
class DataError(Exception):
    code: int
    detail: str


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def assert_same(got: object, want: object) -> None:
    """Equal, with the same types all the way down (and -0.0 / nan told apart)."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, float):
        assert repr(got) == repr(want)
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple)
        assert len(got) == len(want)
        for got_item, want_item in zip(got, want, strict=True):
            assert_same(got_item, want_item)
    elif isinstance(want, dict):
        assert isinstance(got, dict)
        assert list(got) == list(want)
        for (got_key, got_value), (want_key, want_value) in zip(
            got.items(), want.items(), strict=True
        ):
            assert_same(got_key, want_key)
            assert_same(got_value, want_value)
    elif isinstance(want, set | frozenset):
        assert isinstance(got, set | frozenset)
        assert got == want
        by_value = {item: item for item in got}
        for item in want:
            assert_same(by_value[item], item)
    else:
        assert got == want


def _id(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return f"int of {value.bit_length()} bits"
    return repr(value)[:40]


def roundtrip(value: object, codec: DefaultCodec = CODEC) -> object:
    decoded = codec.decode(codec.encode(value))
    assert_same(decoded, value)
    return decoded


# Scalars and containers


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**63,
        -(2**64) - 1,
        2**1024 - 1,
        2**1024,
        -(2**4000),
        10**5000,
        0.0,
        -0.0,
        1.5,
        1e300,
        5e-324,
        math.inf,
        -math.inf,
        "",
        "plain",
        "héllo ☃ 𝄞",
        'quote " backslash \\ newline \n nul \x00',
        "lone \ud800 surrogate",
        "$t",
        b"",
        b"\x00\xff raw",
        bytearray(b"mutable"),
    ],
    ids=_id,
)
def test_scalars_round_trip(value: object) -> None:
    roundtrip(value)


def test_nan_round_trips() -> None:
    decoded = CODEC.decode(CODEC.encode(math.nan))
    assert isinstance(decoded, float)
    assert math.isnan(decoded)
    nested = CODEC.decode(CODEC.encode([math.nan]))
    assert isinstance(nested, list)
    assert math.isnan(nested[0])


@pytest.mark.parametrize(
    "value",
    [
        [],
        [1, [2, [3, []]]],
        (),
        (1,),
        ((1, 2), [3, (4,)]),
        {},
        {"a": 1, "b": [1, 2], "c": {"d": None}},
        {"b": 1, "a": 2},
        {1: "int", (1, "t"): "tuple", None: "none", 2.5: "float", b"k": "bytes"},
        {frozenset({1, 2}): "frozenset", Level.LOW: "enum", uuid.UUID(int=7): "uuid"},
        {"text": 1, 2: "mixed"},
        set(),
        {1, 2, 3},
        {"a", (1, 2), None},
        frozenset(),
        frozenset({"x", frozenset({1})}),
        [{"k": (1, {2})}, frozenset({(b"x", 1)})],
    ],
    ids=_id,
)
def test_containers_round_trip(value: object) -> None:
    roundtrip(value)


@pytest.mark.parametrize(
    "value",
    [
        {"$t": 1},
        {"$": "x"},
        {"$d": [[1, 2]]},
        {"$b": "AAAA"},
        {"$exc": None},
        {"$t": {"$t": [1]}},
        {"$x": 1, "y": 2},
        [{"$s": []}, ({"$fs": []},)],
        {1: {"$i": "0x1"}},
    ],
    ids=_id,
)
def test_dicts_that_look_like_tags_round_trip(value: object) -> None:
    roundtrip(value)


def test_shared_references_are_copied() -> None:
    inner = [1]
    decoded = CODEC.decode(CODEC.encode([inner, inner]))
    assert decoded == [[1], [1]]
    assert isinstance(decoded, list)
    assert decoded[0] is not decoded[1]


def test_each_decode_returns_fresh_mutable_values() -> None:
    data = CODEC.encode({"a": [1]})
    assert CODEC.decode(data) is not CODEC.decode(data)


def test_sets_encode_deterministically() -> None:
    assert CODEC.encode({"b", "a", "c"}) == b'\x01{"$s":["a","b","c"]}'
    assert CODEC.encode(frozenset({2, 1})) == b'\x01{"$fs":[1,2]}'
    roundtrip({1, "a", None})


# Dates, times and friends

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2024, 2, 29, 13, 45, 1, 123456),
        dt.datetime(1, 1, 1),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")),
        dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=1, microseconds=7))),
        dt.datetime(2024, 7, 1, 9, 30, tzinfo=PARIS),
        dt.date(2024, 2, 29),
        dt.date(1, 1, 1),
        dt.time(23, 59, 59, 999999),
        dt.time(8, 0, tzinfo=dt.UTC),
        dt.time(8, 0, tzinfo=PARIS),
        dt.timedelta(0),
        dt.timedelta(days=-3, seconds=5, microseconds=1),
        dt.timedelta(days=999999999),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        uuid.uuid4(),
        Decimal("1.10"),
        Decimal("-0"),
        Decimal("1E+10"),
        Decimal("-Infinity"),
        Decimal("3.14159265358979323846264338327950288419716939937510"),
    ],
    ids=_id,
)
def test_time_and_number_types_round_trip(value: object) -> None:
    decoded = roundtrip(value)
    if isinstance(value, dt.datetime | dt.time):
        assert isinstance(decoded, dt.datetime | dt.time)
        assert decoded.tzinfo == value.tzinfo
        assert decoded.tzname() == value.tzname()
        assert decoded.utcoffset() == value.utcoffset()
    if isinstance(value, Decimal):
        assert str(decoded) == str(value)


def test_timezones_come_back_as_the_same_objects() -> None:
    utc = CODEC.decode(CODEC.encode(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)))
    assert isinstance(utc, dt.datetime)
    assert utc.tzinfo is dt.UTC
    paris = CODEC.decode(CODEC.encode(dt.datetime(2024, 1, 1, tzinfo=PARIS)))
    assert isinstance(paris, dt.datetime)
    assert paris.tzinfo is PARIS


def test_fold_is_kept_for_ambiguous_times() -> None:
    first = dt.datetime(2021, 10, 31, 2, 30, tzinfo=PARIS)
    second = first.replace(fold=1)
    for value in (first, second, dt.time(2, 30, fold=1)):
        decoded = CODEC.decode(CODEC.encode(value))
        assert isinstance(decoded, dt.datetime | dt.time)
        assert decoded.fold == value.fold
        assert decoded.utcoffset() == value.utcoffset()


def test_nan_decimals_round_trip() -> None:
    for text in ("NaN", "-sNaN"):
        decoded = CODEC.decode(CODEC.encode(Decimal(text)))
        assert isinstance(decoded, Decimal)
        assert str(decoded) == text


# Enums, named tuples, dataclasses, attrs classes


@pytest.mark.parametrize(
    "value",
    [
        Color.RED,
        Color.CRIMSON,
        Level.HIGH,
        Mode.FAST,
        Perm.R,
        Perm.R | Perm.W,
        Perm(0),
        [Level.LOW, {Mode.FAST: Color.GREEN}],
    ],
    ids=_id,
)
def test_enums_round_trip(value: object) -> None:
    decoded = roundtrip(value)
    if isinstance(value, enum.Enum):
        assert decoded is value


def test_named_tuples_round_trip() -> None:
    roundtrip(Pair(1, [Pair("a", None)]))
    roundtrip(Coord(lat=1.5, lon=-2.25))
    roundtrip({Coord(0, 0): "origin"})


def test_dataclasses_round_trip() -> None:
    roundtrip(Point(1))
    roundtrip(FrozenPoint(1, 2))
    roundtrip([Point(1, 2), {"p": FrozenPoint(3, 4)}, (Point(5),)])
    roundtrip(Node("root", [Node("leaf"), Node("other", [Node("deep")])]))


def test_dataclass_init_false_fields_keep_their_stored_value() -> None:
    order = Order(
        id=uuid.UUID(int=1),
        items=[Point(1, 2)],
        placed=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        tags=frozenset({"gift"}),
        total=Decimal("9.99"),
    )
    order.label = "changed after init"
    decoded = roundtrip(order)
    assert isinstance(decoded, Order)
    assert decoded.label == "changed after init"


def test_dataclass_with_its_own_init_is_rebuilt_without_calling_it() -> None:
    decoded = roundtrip(HandInit("42"))
    assert isinstance(decoded, HandInit)
    assert decoded.value == 42


def test_attrs_classes_round_trip() -> None:
    account = Account("ann", "s3cret", Decimal("10.5"))
    account.history.append(3)
    decoded = roundtrip(account)
    assert isinstance(decoded, Account)
    assert decoded._secret == "s3cret"
    assert decoded.history == [3]
    roundtrip(FrozenAccount("bob", dt.date(2020, 5, 17)))


def test_decoding_ignores_stored_fields_a_class_no_longer_has() -> None:
    data = b'\x01{"$dc":["%s:Point",{"x":1,"removed":2}]}' % __name__.encode()
    assert CODEC.decode(data) == Point(1, 0)


# Exceptions


def _raise_value_error() -> None:
    raise ValueError("bad value", 3)


def _caught(fn: typing.Callable[[], object]) -> BaseException:
    with pytest.raises(BaseException) as info:
        fn()
    return info.value


def test_exception_round_trips_with_traceback_text() -> None:
    exc = _caught(_raise_value_error)
    decoded = CODEC.decode(CODEC.encode(exc))
    assert type(decoded) is ValueError
    assert decoded.args == ("bad value", 3)
    text = decoded.__runwright_traceback__
    assert text.startswith("Traceback (most recent call last):")
    assert "_raise_value_error" in text
    assert text.rstrip().endswith("ValueError: ('bad value', 3)")


def test_exception_without_traceback_has_empty_traceback_text() -> None:
    decoded = CODEC.decode(CODEC.encode(KeyError("k")))
    assert type(decoded) is KeyError
    assert decoded.args == ("k",)
    assert decoded.__runwright_traceback__ == ""


def test_traceback_text_survives_a_second_round_trip() -> None:
    once = CODEC.decode(CODEC.encode(_caught(_raise_value_error)))
    assert isinstance(once, BaseException)
    twice = CODEC.decode(CODEC.encode(once))
    assert twice.__runwright_traceback__ == once.__runwright_traceback__ != ""


def test_exception_attributes_and_notes_are_restored() -> None:
    exc = RetryableError("try later", retry_after=2.5)
    exc.add_note("seen twice")
    decoded = CODEC.decode(CODEC.encode(exc))
    assert type(decoded) is RetryableError
    assert str(decoded) == "try later"
    assert decoded.retry_after == 2.5
    assert decoded.__notes__ == ["seen twice"]


@pytest.mark.parametrize(
    "exc",
    [
        QuotaError("ann", limit=3),
        StepFailed("charge", "x:Y", "boom", "tb"),
        DataError(7, "broken"),
    ],
    ids=_id,
)
def test_exception_that_rejects_its_args_is_rebuilt_from_its_attributes(
    exc: BaseException,
) -> None:
    decoded = CODEC.decode(CODEC.encode(exc))
    assert type(decoded) is type(exc)
    assert str(decoded) == str(exc)
    assert vars(decoded) == {**vars(exc), "__runwright_traceback__": ""}


def test_base_exceptions_are_values_too() -> None:
    decoded = CODEC.decode(CODEC.encode([KeyboardInterrupt(), SystemExit(3)]))
    assert isinstance(decoded, list)
    assert type(decoded[0]) is KeyboardInterrupt
    assert type(decoded[1]) is SystemExit
    assert decoded[1].code == 3


def test_exception_of_a_local_class_falls_back_to_codec_remote_error() -> None:
    class LocalError(Exception):
        pass

    def fail() -> None:
        raise LocalError("lost type")

    exc = _caught(fail)
    decoded = CODEC.decode(CODEC.encode(exc))
    assert type(decoded) is CodecRemoteError
    assert decoded.type_name.endswith("<locals>.LocalError")
    assert decoded.type_name.startswith(f"{__name__}:")
    assert decoded.message == "lost type"
    assert "LocalError: lost type" in decoded.traceback
    assert decoded.__runwright_traceback__ == decoded.traceback
    assert str(decoded) == f"{decoded.type_name}: lost type"


def test_exception_with_unencodable_args_falls_back_to_codec_remote_error() -> None:
    exc = ValueError(object())
    decoded = CODEC.decode(CODEC.encode(exc))
    assert type(decoded) is CodecRemoteError
    assert decoded.type_name == "builtins:ValueError"
    assert decoded.message == str(exc)


def test_codec_remote_error_round_trips() -> None:
    roundtrip_error = CodecRemoteError("a.b:C", "message", "tb text")
    decoded = CODEC.decode(CODEC.encode(roundtrip_error))
    assert type(decoded) is CodecRemoteError
    assert (decoded.type_name, decoded.message, decoded.traceback) == (
        "a.b:C",
        "message",
        "tb text",
    )


def test_unencodable_exception_attribute_is_dropped() -> None:
    exc = ValueError("keep me")
    exc.conn = object()  # type: ignore[attr-defined]
    exc.code = 5  # type: ignore[attr-defined]
    decoded = CODEC.decode(CODEC.encode(exc))
    assert type(decoded) is ValueError
    assert decoded.args == ("keep me",)
    assert decoded.code == 5
    assert not hasattr(decoded, "conn")


def test_exception_that_contains_itself_is_encoded_without_args() -> None:
    exc = ValueError()
    exc.args = ("self", exc)
    decoded = CODEC.decode(CODEC.encode(exc))
    assert type(decoded) is CodecRemoteError
    assert decoded.type_name == "builtins:ValueError"


def test_unprintable_exception_is_encoded() -> None:
    decoded = CODEC.decode(CODEC.encode(UnprintableError("x")))
    assert type(decoded) is UnprintableError
    assert decoded.args == ("x",)
    info = encode_exception(UnprintableError("x"))
    assert info["message"] == "<unprintable UnprintableError object>"


def test_exceptions_nested_in_values() -> None:
    decoded = CODEC.decode(CODEC.encode({"errors": [KeyError("a"), (OSError(2, "gone"),)]}))
    assert isinstance(decoded, dict)
    key_error, (os_error,) = decoded["errors"]
    assert type(key_error) is KeyError
    assert type(os_error) is FileNotFoundError
    assert os_error.errno == 2


def test_encode_exception_describes_the_exception() -> None:
    exc = _caught(_raise_value_error)
    info = encode_exception(exc)
    assert info["type"] == "builtins:ValueError"
    assert info["message"] == "('bad value', 3)"
    assert info["args"] == ["bad value", 3]
    assert isinstance(info["traceback"], str)
    assert "_raise_value_error" in info["traceback"]
    assert info["attributes"] == {}
    assert info["attributes_complete"] is True
    assert CODEC.decode(CODEC.encode(info)) == info

    unencodable = encode_exception(ValueError(object()))
    assert unencodable["args"] is None
    assert unencodable["traceback"] == ""


def test_rebuild_exception() -> None:
    rebuilt = rebuild_exception(encode_exception(QuotaError("ann", limit=3)))
    assert type(rebuilt) is QuotaError
    assert rebuilt.limit == 3
    assert rebuilt.__runwright_traceback__ == ""

    base = {"message": "m", "traceback": "", "attributes": {}, "attributes_complete": True}
    assert rebuild_exception({**base, "type": "no_such_module_xyz:Error", "args": []}) is None
    assert rebuild_exception({**base, "type": "builtins:int", "args": []}) is None
    assert rebuild_exception({**base, "type": "builtins:ValueError", "args": None}) is None
    assert rebuild_exception({**base, "type": 3, "args": []}) is None
    assert (
        rebuild_exception({**base, "type": "builtins:ValueError", "args": [], "attributes": 1})
        is None
    )
    incomplete = {**base, "type": f"{__name__}:QuotaError", "args": ["x"]}
    assert rebuild_exception({**incomplete, "attributes_complete": False}) is None


# Format, prefix byte and compression


def test_format_bytes_are_stable() -> None:
    assert CODEC.encode(None) == b"\x01null"
    assert CODEC.encode({"a": 1, "b": [True, 1.5]}) == b'\x01{"a":1,"b":[true,1.5]}'
    assert CODEC.encode((1, "é")) == b'\x01{"$t":[1,"\xc3\xa9"]}'
    assert CODEC.encode({"$t": 1}) == b'\x01{"$d":[["$t",1]]}'
    assert CODEC.encode(math.inf) == b"\x01Infinity"
    assert CODEC.encode(b"raw") == b"\x03raw"
    assert CODEC.encode("text") == b"\x05text"
    assert CODEC.encode(bytearray(b"\x00")) == b'\x01{"$ba":"AA=="}'


@pytest.mark.parametrize(
    ("value", "plain", "packed"),
    [
        ({"data": "x" * 5000}, 0x01, 0x02),
        (b"\x00" * 5000, 0x03, 0x04),
        ("abc" * 2000, 0x05, 0x06),
    ],
)
def test_payloads_above_the_threshold_are_compressed(
    value: object, plain: int, packed: int
) -> None:
    data = CODEC.encode(value)
    assert data[0] == packed
    assert len(data) < 200
    assert CODEC.decode(data) == value
    uncompressed = DefaultCodec(compress_threshold=10**9).encode(value)
    assert uncompressed[0] == plain
    assert len(uncompressed) > 5000
    assert CODEC.decode(uncompressed) == value


def test_threshold_is_exclusive() -> None:
    codec = DefaultCodec(compress_threshold=100)
    assert codec.encode("a" * 100)[0] == 0x05
    assert codec.encode("a" * 101)[0] == 0x06


def test_incompressible_payload_is_stored_uncompressed() -> None:
    noise = random.Random(0).randbytes(10_000)
    data = CODEC.encode(noise)
    assert data[0] == 0x03
    assert CODEC.decode(data) == noise


def test_codec_settings() -> None:
    assert DefaultCodec() == DefaultCodec(compress_threshold=2048, level=3)
    assert "_zstd" not in repr(DefaultCodec())
    with pytest.raises(ValueError):
        DefaultCodec(compress_threshold=-1)
    with pytest.raises(ValueError):
        DefaultCodec(level=99)
    fast = DefaultCodec(compress_threshold=0, level=1)
    assert fast.decode(fast.encode("abc" * 100)) == "abc" * 100
    codec: Codec = fast
    assert CODEC.decode(codec.encode([1])) == [1]


def test_codec_is_safe_to_share_between_threads() -> None:
    values = [{"n": n, "blob": bytes([n % 256]) * 4000, "text": str(n) * 3000} for n in range(64)]
    barrier = threading.Barrier(8)

    def work(value: dict[str, object]) -> object:
        if value["n"] < 8:
            barrier.wait()
        return CODEC.decode(CODEC.encode(value))

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(work, values)) == values


# Decode errors


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty payload"),
        (b"\x00null", "unknown codec format byte 0x00; written by a newer runwright"),
        (b"\x08null", "unknown codec format byte 0x08"),
        (b"\x07", "it has no segments"),
        (b"\x07\x00\x00", "segment header is cut short"),
        (b"\x07\x00" + (9).to_bytes(8, "big") + b"[]", "segment is cut short"),
        (b"\x07\x05" + (2).to_bytes(8, "big") + b"[]", "unknown segment kind 5"),
        (b"\x07\x01" + (2).to_bytes(8, "big") + b"[]", "corrupt compressed payload"),
        (b"\x07\x00" + (8).to_bytes(8, "big") + b'{"$p":0}', "binary part 0, which it lacks"),
        (b'\x01{"$p":0}', "binary part 0, which it lacks"),
        (b'\x01{"$pa":"0"}', "expected a JSON number, got str"),
        (b"\xffnull", "unknown codec format byte 0xff"),
        (b"\x01", "not valid JSON"),
        (b"\x01{", "not valid JSON"),
        (b"\x01{} x", "data after the JSON value"),
        (b"\x01\xff", "not valid UTF-8"),
        (b"\x05\xff", "not valid UTF-8"),
        (b"\x02not zstd", "corrupt compressed payload"),
        (b"\x04", "corrupt compressed payload"),
        (b"\x06\x28\xb5\x2f\xfd", "corrupt compressed payload"),
        (b'\x01{"$zz":1}', "unknown tag '\\$zz'"),
        (b'\x01[{"$nope":[]}]', "unknown tag '\\$nope'"),
        (b'\x01{"$t":"abc"}', "expected a JSON array, got str"),
        (b'\x01{"$b":[1]}', "expected a JSON string, got list"),
        (b'\x01{"$b":"!!"}', "corrupt '\\$b' value"),
        (b'\x01{"$dt":["yesterday",0,null]}', "corrupt '\\$dt' value"),
        (b'\x01{"$dt":["2024-01-01T00:00:00",0,["mars",1]]}', "unknown time zone kind 'mars'"),
        (b'\x01{"$time":["12:00",0,["zone","No/Such_Zone"]]}', "corrupt '\\$time' value"),
        (b'\x01{"$s":[[1]]}', "corrupt '\\$s' value"),
        (b'\x01{"$dec":"one"}', "corrupt '\\$dec' value"),
        (b'\x01{"$i":"0xZZ"}', "corrupt '\\$i' value"),
        (
            b'\x01{"$dc":["no_such_module_xyz:Thing",{}]}',
            "cannot import 'no_such_module_xyz:Thing'",
        ),
        (b'\x01{"$dc":["builtins:NoSuchThing",{}]}', "cannot import 'builtins:NoSuchThing'"),
        (b'\x01{"$dc":["no_colon",{}]}', "malformed import path 'no_colon'"),
        (b'\x01{"$dc":["builtins:int",{}]}', "'builtins:int' is no longer a dataclass"),
        (b'\x01{"$attrs":["builtins:int",{}]}', "no longer an attrs class"),
        (b'\x01{"$nt":["builtins:tuple",[]]}', "no longer a named tuple"),
        (b'\x01{"$enum":["builtins:int","X"]}', "no longer an enum"),
    ],
    ids=_id,
)
def test_decode_errors(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        CODEC.decode(data)


def test_decode_errors_for_classes_that_changed() -> None:
    module = __name__.encode()
    with pytest.raises(DecodeError, match="has no member 'BLUE'"):
        CODEC.decode(b'\x01{"$enum":["%s:Color","BLUE"]}' % module)
    with pytest.raises(DecodeError, match=r"cannot rebuild '.*:Point' from its stored fields"):
        CODEC.decode(b'\x01{"$dc":["%s:Point",{"y":1}]}' % module)
    with pytest.raises(DecodeError, match="corrupt '\\$flag' value"):
        CODEC.decode(b'\x01{"$flag":["%s:Perm","R"]}' % module)


def test_decode_error_for_deeply_nested_payload() -> None:
    with pytest.raises(DecodeError, match="nested too deeply"):
        CODEC.decode(b"\x01" + b"[" * 100_000 + b"]" * 100_000)


# Encode errors


def _generator() -> typing.Iterator[int]:
    yield 1


class Opaque:
    pass


@pytest.mark.parametrize(
    ("factory", "type_name"),
    [
        (lambda: lambda: None, "function"),
        (_generator, "generator"),
        (Opaque, "Opaque"),
        (lambda: collections.OrderedDict(a=1), "OrderedDict"),
        (lambda: memoryview(b"x"), "memoryview"),
        (lambda: 1j, "complex"),
        (lambda: Point, "type"),
    ],
    ids=lambda arg: arg if isinstance(arg, str) else "",
)
def test_unencodable_values_name_their_type(
    factory: typing.Callable[[], object], type_name: str
) -> None:
    with pytest.raises(EncodeError) as info:
        CODEC.encode(factory())
    assert info.value.path == ""
    assert info.value.reason == (
        f"cannot encode object of type {type_name!r}; use JSON types, bytes, tuples, sets, "
        "datetime, UUID, Decimal, dataclasses, attrs classes or exceptions"
    )
    assert isinstance(info.value, TypeError)


def test_unencodable_socket_and_file(tmp_path: typing.Any) -> None:
    with socket.socket() as sock, pytest.raises(EncodeError, match="'socket'") as info:
        CODEC.encode([1, {"items": [0, sock]}])
    assert info.value.path == "[1]['items'][1]"
    with (tmp_path / "f.txt").open("w") as file, pytest.raises(EncodeError) as info:
        CODEC.encode({"log": file})
    assert info.value.path == "['log']"
    assert "'TextIOWrapper'" in info.value.reason


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ((1, 2, Opaque()), "[2]"),
        ({5: [Opaque()]}, "[5][0]"),
        ({"a": {"b": (0, {"c": Opaque()})}}, "['a']['b'][1]['c']"),
        ([{1, Opaque()}], "[0]{...}"),
        ({"p": Pair(1, Opaque())}, "['p'][1]"),
        ([Node("a", [Node("b"), Opaque()])], "[0].children[1]"),  # type: ignore[list-item]
        ([Account(Opaque())], "[0].owner"),  # type: ignore[arg-type]
        ([Perm.R, Level.LOW, Color.RED, {"$t": Opaque()}], "[3]['$t']"),
    ],
    ids=_id,
)
def test_encode_error_path_locates_the_value(value: object, path: str) -> None:
    with pytest.raises(EncodeError, match="'Opaque'") as info:
        CODEC.encode(value)
    assert info.value.path == path
    assert str(info.value) == f"at {path}: {info.value.reason}"


def test_unencodable_dict_key() -> None:
    with pytest.raises(EncodeError) as info:
        CODEC.encode({"ok": 1, Opaque(): 2})
    assert info.value.reason.startswith("dict key: cannot encode object of type 'Opaque'")
    assert info.value.path.startswith("[<")


def test_unsupported_tzinfo() -> None:
    class Custom(dt.tzinfo):
        def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
            return dt.timedelta(0)

    with pytest.raises(EncodeError, match="tzinfo of type 'Custom'") as info:
        CODEC.encode({"at": dt.datetime(2024, 1, 1, tzinfo=Custom())})
    assert info.value.path == "['at']"
    with pytest.raises(EncodeError, match="ZoneInfo"):
        CODEC.encode(dt.time(1, tzinfo=Custom()))


@pytest.mark.parametrize("kind", ["list", "dict", "dataclass"])
def test_reference_cycles_are_refused(kind: str) -> None:
    value: object
    if kind == "list":
        loop: list[object] = [1]
        loop.append(loop)
        value, path = loop, "[1]"
    elif kind == "dict":
        mapping: dict[str, object] = {}
        mapping["self"] = [mapping]
        value, path = {"top": mapping}, "['top']['self'][0]"
    else:
        node = Node("a")
        node.children.append(node)
        value, path = node, ".children[0]"
    with pytest.raises(EncodeError, match="value contains a reference cycle") as info:
        CODEC.encode(value)
    assert info.value.path == path


def test_too_deep_nesting_is_an_encode_error() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(EncodeError, match="nested too deeply"):
        CODEC.encode(value)
    assert CODEC.decode(CODEC.encode([[[1]]])) == [[[1]]]


def test_classes_defined_in_a_function_are_refused() -> None:
    @dataclasses.dataclass
    class Local:
        x: int

    class LocalEnum(enum.Enum):
        A = 1

    with pytest.raises(EncodeError) as info:
        CODEC.encode({"v": [Local(1)]})
    assert info.value.reason == (
        "class test_classes_defined_in_a_function_are_refused.<locals>.Local is defined "
        "inside a function; define it at module level so it can be decoded"
    )
    assert info.value.path == "['v'][0]"
    with pytest.raises(EncodeError, match="defined inside a function"):
        CODEC.encode(LocalEnum.A)


def test_classes_not_found_at_their_path_are_refused() -> None:
    ghost = dataclasses.make_dataclass("Ghost", ["x"])
    with pytest.raises(EncodeError, match=r"cannot be found again as '.*:Ghost'"):
        CODEC.encode(ghost(1))


def test_encode_error_leaves_the_codec_usable() -> None:
    with pytest.raises(EncodeError):
        CODEC.encode([[1], Opaque()])
    assert CODEC.decode(CODEC.encode([[1], [2]])) == [[1], [2]]


# Property tests

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**1020, max_value=2**1030)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
_hashables = st.recursive(
    _scalars,
    lambda inner: (
        st.tuples(inner, inner)
        | st.lists(inner, max_size=3).map(tuple)
        | st.frozensets(inner, max_size=3)
    ),
    max_leaves=6,
)
_text_keys = st.sampled_from(["$t", "$d", "$", "$exc", "t$"]) | st.text()
_values = st.recursive(
    _scalars | _hashables,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(_text_keys, inner, max_size=4)
        | st.dictionaries(_hashables, inner, max_size=4)
        | st.sets(_hashables, max_size=4)
        | st.frozensets(_hashables, max_size=4)
    ),
    max_leaves=25,
)


@settings(deadline=None)
@given(_values)
def test_property_round_trip(value: object) -> None:
    roundtrip(value)


@settings(deadline=None)
@given(_values)
def test_property_round_trip_always_compressing(value: object) -> None:
    roundtrip(value, DefaultCodec(compress_threshold=0))


@settings(deadline=None)
@given(st.binary())
def test_property_decode_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(data)


# is_immutable


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        7,
        2.5,
        "s",
        b"b",
        Decimal("1"),
        uuid.UUID(int=0),
        dt.datetime(2024, 1, 1, tzinfo=PARIS),
        dt.date(2024, 1, 1),
        dt.time(1),
        dt.timedelta(1),
        Color.RED,
        Perm.R | Perm.W,
        (),
        (1, ("a", b"b"), frozenset({(1, 2)})),
        frozenset({1, "a"}),
        Pair(1, (2, 3)),
        Coord(1, 2),
    ],
    ids=_id,
)
def test_is_immutable(value: object) -> None:
    assert is_immutable(value)


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        set(),
        bytearray(b"x"),
        (1, [2]),
        ((1, {}),),
        frozenset({Pair(1, Opaque())}),
        Pair(1, []),
        Point(1),
        FrozenPoint(1, 2),
        ValueError("x"),
        Opaque(),
    ],
    ids=_id,
)
def test_is_not_immutable(value: object) -> None:
    assert not is_immutable(value)
