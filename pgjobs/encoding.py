"""The JSON encoding of job arguments and results.

Arguments and results are stored as ``jsonb``. Beyond JSON's own types, these are encoded:

=====================  ==========================================  ====================
Python                 stored as                                   example
=====================  ==========================================  ====================
``datetime``           ISO 8601 string (offset kept)               ``"2026-01-31T09:30:00+00:00"``
``date``, ``time``     ISO 8601 string                             ``"2026-01-31"``
``UUID``               canonical string                            ``"6f1c…"``
``Decimal``            string (no precision lost)                  ``"12.30"``
``Enum``               its value, encoded recursively              ``"gold"``
dataclass instance     object of its fields (``dataclasses.asdict``)  ``{"x": 1}``
pydantic model         ``model_dump(mode="json")``                 ``{"x": 1}``
tuple, set, frozenset  array (sets sorted when their items allow)  ``[1, 2]``
=====================  ==========================================  ====================

The encoding is one way: a handler receives plain JSON values (a datetime arrives as its ISO
string). Object keys must be strings; numbers, booleans and None used as keys become strings,
as with :func:`json.dumps`. Anything else (bytes, arbitrary objects, NaN and infinities, strings containing
NUL or a lone surrogate, which PostgreSQL cannot store, non-string keys) raises :class:`~pgjobs.errors.InvalidInput`
naming where in the value it was found.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from pgjobs.errors import InvalidInput


def string_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text`` (in ``text`` or ``jsonb``), or None: a NUL, or a
    lone UTF-16 surrogate (``"\\ud800"`` decoded from JSON), which has no UTF-8 form."""
    if "\x00" in text:
        return "strings must not contain NUL (\\u0000)"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "strings must be valid Unicode (no lone surrogate \\ud800-\\udfff)"
    return None


def _to_json(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        problem = string_problem(value)
        if problem is not None:
            raise InvalidInput(f"cannot encode {path}: {problem}")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"cannot encode {path}: {value} is not valid JSON")
        return value
    if isinstance(value, Enum):
        return _to_json(value.value, path)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidInput(f"cannot encode {path}: {value} is not valid JSON")
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for raw_key, item in value.items():
            # As json.dumps does: 1 -> "1", None -> "null".
            key = (
                json.dumps(raw_key)
                if raw_key is None or isinstance(raw_key, bool | int | float)
                else raw_key
            )
            if not isinstance(key, str):
                raise InvalidInput(
                    f"cannot encode {path}: object keys must be strings, got {key!r}"
                )
            out[_to_json(key, path)] = _to_json(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_to_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, set | frozenset):
        items = [_to_json(item, f"{path}[]") for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_json(dataclasses.asdict(value), path)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # pydantic v2
        return _to_json(model_dump(mode="json"), path)
    raise InvalidInput(
        f"cannot encode {path}: {type(value).__name__} is not JSON-serialisable "
        "(pass JSON types, datetimes, UUIDs, Decimals, enums, dataclasses or pydantic models)"
    )


def to_json_value(value: Any, *, what: str = "args") -> Any:
    """Convert ``value`` to plain JSON types (see the module docstring), or raise."""
    try:
        return _to_json(value, what)
    except RecursionError:
        raise InvalidInput(
            f"cannot encode {what}: it contains itself (a circular reference)"
        ) from None


def _default(value: Any) -> Any:
    """The C encoder's hook for the types JSON lacks: same rules as :func:`_to_json`."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json")
    raise TypeError(type(value).__name__)


def _make_encoder() -> Callable[[Any], str]:
    """Compact JSON, NaN refused, :func:`_default` for the extra types.

    ``JSONEncoder.encode`` builds a new C encoder on every call (about half the cost of
    encoding a small object); this one is built once. Without circular-reference markers a
    value that contains itself overflows the stack, which :func:`dumps` catches and reports.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_default
        ).encode
    chunks = c_make_encoder(
        None, _default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    return lambda value: "".join(chunks(value, 0))


_encode = _make_encoder()
_NUL = "\\u0000"


def dumps(value: Any, *, what: str = "args") -> str:
    """Encode ``value`` as compact JSON text, ready to be cast to ``jsonb``.

    The C encoder does the work; only when it refuses a value (or the result needs a second
    look: NUL characters, lone surrogates) does the slower walk of :func:`_to_json` run, to
    raise with the place in the value where the problem is. An ASCII text (the common case)
    needs no UTF-8 check.
    """
    try:
        text: str = _encode(value)
    except (TypeError, ValueError, RecursionError):
        # Refused by the C encoder: the walk raises with the path, or converts what the
        # encoder does not know (any Mapping, not only dicts) so that it can be encoded.
        text = _encode(to_json_value(value, what=what))
    if _NUL in text or (not text.isascii() and string_problem(text) is not None):
        to_json_value(value, what=what)
    return text


#: The decoder's scanner (set in its __init__, so not in the type stubs).
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads_own(text: str) -> Any:
    """Decode JSON text that :func:`dumps` produced (compact: no whitespace around it),
    with the decoder's C scanner alone: ``json.loads`` adds two regular-expression passes
    and Python frames, a visible part of building a just-enqueued job's record."""
    value, end = _scan_once(text, 0)
    if end != len(text):
        raise ValueError(f"trailing data after the JSON value at {end}")
    return value


def encode_args(args: Any, *, max_bytes: int) -> str:
    """Encode job arguments: a JSON object of at most ``max_bytes`` bytes once encoded."""
    if type(args) is not dict and not isinstance(args, Mapping):
        raise InvalidInput(
            f"args must be a JSON object (a mapping of names to values), got {type(args).__name__}"
        )
    text = dumps(args)
    size = len(text) if text.isascii() else len(text.encode())
    if size > max_bytes:
        raise InvalidInput(
            f"args take {size} bytes, over the limit of {max_bytes} (PGJOBS_MAX_ARGS_BYTES)"
        )
    return text
