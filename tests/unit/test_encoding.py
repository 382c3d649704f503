"""JSON encoding of job arguments and results (pgjobs.encoding): the extra types, refusals
naming the path of the bad value, key handling and the argument size limit."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from pgjobs.encoding import dumps, encode_args, to_json_value
from pgjobs.errors import InvalidInput

UNSUPPORTED_HINT = (
    "(pass JSON types, datetimes, UUIDs, Decimals, enums, dataclasses or pydantic models)"
)


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


class Tier(str, enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


class Level(enum.IntEnum):
    HIGH = 3


class Raw(enum.Enum):
    BLOB = b"\x01"


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Outer:
    name: str
    inner: Any


class FakeModel:
    """Quacks like a pydantic v2 model: ``model_dump(mode=...)``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.modes: list[str] = []

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        self.modes.append(mode)
        if mode != "json":
            return {"mode": "was not json"}
        return self.data


def message(exc_info: pytest.ExceptionInfo[InvalidInput]) -> str:
    return str(exc_info.value)


# --- supported types ----------------------------------------------------------------------

UUID_VALUE = UUID("6f1c2a3e-9b7d-4e2f-8a1b-0c9d8e7f6a5b")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 1, 31, 9, 30, tzinfo=timezone.utc), "2026-01-31T09:30:00+00:00"),
        (
            datetime(2026, 1, 31, 9, 30, tzinfo=timezone(timedelta(hours=1))),
            "2026-01-31T09:30:00+01:00",
        ),
        (datetime(2026, 1, 31, 9, 30, 0, 123456), "2026-01-31T09:30:00.123456"),
        (date(2026, 1, 31), "2026-01-31"),
        (time(9, 30, 5), "09:30:05"),
        (UUID_VALUE, "6f1c2a3e-9b7d-4e2f-8a1b-0c9d8e7f6a5b"),
        (Decimal("12.30"), "12.30"),
        (Decimal("0.1000000000000000000000000001"), "0.1000000000000000000000000001"),
        (Decimal("-5"), "-5"),
        (Color.RED, "red"),
        (Color.PAIR, [1, 2]),
        (Tier.GOLD, "gold"),
        (Level.HIGH, 3),
        (Point(1, 2), {"x": 1, "y": 2}),
        (Outer("o", Point(3, 4)), {"name": "o", "inner": {"x": 3, "y": 4}}),
        ((1, "a", None), [1, "a", None]),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ([1.5, True, None, "x"], [1.5, True, None, "x"]),
        ({"nested": {"when": date(2026, 1, 1)}}, {"nested": {"when": "2026-01-01"}}),
    ],
)
def test_extra_types_encode_as_documented(value: Any, expected: Any) -> None:
    assert to_json_value(value) == expected
    assert json.loads(dumps({"v": value})) == {"v": expected}


def test_values_already_json_are_unchanged() -> None:
    value = {"a": [1, 2.5, "x", None, True, False], "b": {"c": -1}}
    assert to_json_value(value) == value
    assert dumps(value) == '{"a":[1,2.5,"x",null,true,false],"b":{"c":-1}}'


def test_dumps_is_compact_and_keeps_non_ascii() -> None:
    assert dumps({"name": "Zoë", "n": [1, 2]}) == '{"name":"Zoë","n":[1,2]}'


def test_str_enum_in_dumps_is_its_value() -> None:
    assert dumps({"tier": Tier.SILVER}) == '{"tier":"silver"}'


def test_pydantic_like_model_is_dumped_in_json_mode() -> None:
    model = FakeModel({"x": 1, "when": "2026-01-31"})
    assert to_json_value(model) == {"x": 1, "when": "2026-01-31"}
    assert model.modes == ["json"]
    model.modes.clear()
    assert json.loads(dumps({"m": model})) == {"m": {"x": 1, "when": "2026-01-31"}}
    assert model.modes == ["json"]


def test_model_dump_output_is_itself_checked() -> None:
    model = FakeModel({"x": b"raw"})
    with pytest.raises(InvalidInput) as info:
        dumps({"m": model})
    assert (
        message(info)
        == f"cannot encode args.m.x: bytes is not JSON-serialisable {UNSUPPORTED_HINT}"
    )


def test_unsortable_set_is_still_encoded() -> None:
    encoded = to_json_value({1, "a"})
    assert isinstance(encoded, list)
    assert sorted(encoded, key=str) == [1, "a"]
    assert sorted(json.loads(dumps({"s": {1, "a"}}))["s"], key=str) == [1, "a"]


def test_set_of_enums_encodes_their_values() -> None:
    assert to_json_value({Tier.SILVER, Tier.GOLD}) == ["gold", "silver"]


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "as_text"),
    [(1, "1"), (-7, "-7"), (None, "null"), (True, "true"), (False, "false"), (1.5, "1.5")],
)
def test_scalar_keys_become_strings_like_json_dumps(key: Any, as_text: str) -> None:
    value = {key: "v"}
    assert dumps(value) == json.dumps(value, separators=(",", ":"))
    assert json.loads(dumps(value)) == {as_text: "v"}


@pytest.mark.parametrize("key", [1, None, True])
def test_to_json_value_turns_scalar_keys_into_strings(key: Any) -> None:
    assert to_json_value({key: "v"}) == json.loads(json.dumps({key: "v"}))


def test_bad_value_under_an_int_key_is_named() -> None:
    with pytest.raises(InvalidInput) as info:
        dumps({1: object()})
    assert "object is not JSON-serialisable" in message(info)


@pytest.mark.parametrize("key", [(1, 2), frozenset({1})])
def test_non_scalar_keys_are_refused(key: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        dumps({"a": {key: 1}})
    assert message(info) == f"cannot encode args.a: object keys must be strings, got {key!r}"
    with pytest.raises(InvalidInput):
        to_json_value({key: 1})


def test_key_containing_nul_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        dumps({"a": {"k\x00": 1}})
    assert message(info) == "cannot encode args.a: strings must not contain NUL (\\u0000)"


# --- refusals name the path ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        (b"x", "args", "bytes"),
        ({"a": {"b": b"x"}}, "args.a.b", "bytes"),
        ({"a": [1, bytearray(b"x")]}, "args.a[1]", "bytearray"),
        ({"a": (0, 1, [object()])}, "args.a[2][0]", "object"),
        ({"a": {b"x"}}, "args.a[]", "bytes"),
        ({"p": Outer("o", object())}, "args.p.inner", "object"),
        ({"e": Raw.BLOB}, "args.e", "bytes"),
        ({"t": Point}, "args.t", "type"),
        ({"c": complex(1, 2)}, "args.c", "complex"),
        ({"g": (i for i in range(2))}, "args.g", "generator"),
    ],
)
def test_unsupported_values_are_refused_with_their_path(
    value: Any, path: str, type_name: str
) -> None:
    expected = f"cannot encode {path}: {type_name} is not JSON-serialisable {UNSUPPORTED_HINT}"
    with pytest.raises(InvalidInput) as info:
        dumps(value)
    assert message(info) == expected
    with pytest.raises(InvalidInput) as info:
        to_json_value(value)
    assert message(info) == expected


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (Decimal("NaN"), "NaN"),
        (Decimal("Infinity"), "Infinity"),
        (Decimal("-Infinity"), "-Infinity"),
        (Decimal("sNaN"), "sNaN"),
    ],
)
def test_non_finite_numbers_are_refused(bad: Any, shown: str) -> None:
    expected = f"cannot encode args.a[0].b: {shown} is not valid JSON"
    value = {"a": [{"b": bad}]}
    with pytest.raises(InvalidInput) as info:
        dumps(value)
    assert message(info) == expected
    with pytest.raises(InvalidInput) as info:
        to_json_value(value)
    assert message(info) == expected


def test_non_finite_float_inside_a_dataclass_is_refused_with_path() -> None:
    with pytest.raises(InvalidInput) as info:
        dumps({"p": Outer("o", float("nan"))})
    assert message(info) == "cannot encode args.p.inner: nan is not valid JSON"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("a\x00b", "args"),
        ({"a": "\x00"}, "args.a"),
        ({"a": ["ok", "x\x00"]}, "args.a[1]"),
        ({"a": {"b": {"c": "\x00tail"}}}, "args.a.b.c"),
        ({"a": {"x\x00"}}, "args.a[]"),
        ({"p": Outer("bad\x00", 1)}, "args.p.name"),
    ],
)
def test_strings_with_nul_are_refused_with_path(value: Any, path: str) -> None:
    expected = f"cannot encode {path}: strings must not contain NUL (\\u0000)"
    with pytest.raises(InvalidInput) as info:
        dumps(value)
    assert message(info) == expected
    with pytest.raises(InvalidInput) as info:
        to_json_value(value)
    assert message(info) == expected


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": "x\ud800y"}, "args.a"),
        ({"a": ["é", "\udfff"]}, "args.a[1]"),
        ({"\udc80": 1}, "args"),
    ],
)
def test_lone_surrogates_are_refused_with_path(value: Any, path: str) -> None:
    """JSON's "\\ud800" decodes to a str with no UTF-8 form: PostgreSQL cannot take it,
    and psycopg would fail with a bare UnicodeEncodeError."""
    expected = (
        f"cannot encode {path}: strings must be valid Unicode (no lone surrogate \\ud800-\\udfff)"
    )
    with pytest.raises(InvalidInput) as info:
        dumps(value)
    assert message(info) == expected


def test_non_ascii_text_is_kept() -> None:
    assert json.loads(dumps({"a": "café 🚀"})) == {"a": "café 🚀"}


def test_escaped_backslash_u0000_text_is_not_a_nul() -> None:
    # A literal backslash followed by "u0000" is fine: only a real NUL is refused.
    assert json.loads(dumps({"a": "\\u0000"})) == {"a": "\\u0000"}


def test_what_names_the_root_of_the_path() -> None:
    with pytest.raises(InvalidInput) as info:
        dumps({"x": b"1"}, what="meta")
    assert message(info).startswith("cannot encode meta.x: bytes")
    with pytest.raises(InvalidInput) as info:
        to_json_value([b"1"], what="result")
    assert message(info).startswith("cannot encode result[0]: bytes")


def test_circular_value_is_refused_cleanly() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidInput):
        dumps({"a": loop})


# --- encode_args ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "type_name"),
    [([1, 2], "list"), ("text", "str"), (None, "NoneType"), (5, "int"), ((("a", 1),), "tuple")],
)
def test_args_must_be_a_mapping(args: Any, type_name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        encode_args(args, max_bytes=1000)
    assert message(info) == (
        f"args must be a JSON object (a mapping of names to values), got {type_name}"
    )


def test_encode_args_returns_compact_json() -> None:
    assert encode_args({"to": "a@example.com", "n": 1}, max_bytes=1000) == (
        '{"to":"a@example.com","n":1}'
    )
    assert encode_args({}, max_bytes=2) == "{}"


def test_encode_args_accepts_any_mapping() -> None:
    args = types.MappingProxyType({"a": 1})
    assert encode_args(args, max_bytes=100) == '{"a":1}'


def test_size_limit_counts_utf8_bytes_exactly_at_the_boundary() -> None:
    args = {"a": "é" * 10}  # 2 bytes each in UTF-8
    text = '{"a":"' + "é" * 10 + '"}'
    size = len(text.encode())
    assert size == 28 and len(text) == 18  # bytes, not characters
    assert encode_args(args, max_bytes=size) == text
    with pytest.raises(InvalidInput) as info:
        encode_args(args, max_bytes=size - 1)
    assert message(info) == ("args take 28 bytes, over the limit of 27 (PGJOBS_MAX_ARGS_BYTES)")
    # Measuring characters instead of bytes would wrongly let this through.
    with pytest.raises(InvalidInput):
        encode_args(args, max_bytes=len(text))


def test_size_limit_with_ascii_boundary() -> None:
    args = {"k": "x" * 100}
    size = len(dumps(args))
    assert size == 108  # {"k":" + 100 + "}
    assert encode_args(args, max_bytes=108)
    with pytest.raises(InvalidInput, match="args take 108 bytes, over the limit of 107"):
        encode_args(args, max_bytes=107)


def test_encode_args_reports_bad_values_before_size() -> None:
    with pytest.raises(InvalidInput) as info:
        encode_args({"a": b"x" * 1000}, max_bytes=10)
    assert message(info).startswith("cannot encode args.a: bytes")
