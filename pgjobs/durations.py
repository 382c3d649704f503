"""Parsing of durations (``30``, ``30s``, ``5m``, ``2h``, ``1d``) and timestamps."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from pgjobs.errors import InvalidInput

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
#: Far enough for any real schedule, and far from timestamp overflow.
DURATION_MAX = timedelta(days=3650)
#: Start times outside this range are refused (the table's CHECK says the same): Python
#: cannot represent years past 9999, so such a row could not even be read back.
TIMESTAMP_MIN_YEAR = 1900
TIMESTAMP_MAX_YEAR = 9998


def parse_duration(value: str | float | timedelta, *, field: str = "duration") -> timedelta:
    """``30`` and ``30s`` are seconds; ``ms``, ``m``, ``h``, ``d``, ``w`` are also accepted."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidInput(f"invalid {field} {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise InvalidInput(
                f"invalid {field} {value!r}: use a number with an optional unit, "
                "e.g. 30, 30s, 5m, 2h, 1d"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if math.isnan(seconds):
        raise InvalidInput(f"invalid {field} {value!r}: not a number")
    if seconds < 0:
        raise InvalidInput(f"invalid {field} {value!r}: must not be negative")
    if seconds > DURATION_MAX.total_seconds():
        raise InvalidInput(f"invalid {field} {value!r}: at most {DURATION_MAX.days} days")
    return timedelta(seconds=seconds)


def parse_timestamp(value: str | datetime, *, field: str = "timestamp") -> datetime:
    """An ISO 8601 timestamp; one without a UTC offset is taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                f"invalid {field} {value!r}: use ISO 8601, e.g. 2026-01-31T09:30:00+01:00"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        year = moment.astimezone(timezone.utc).year
    except OverflowError:
        year = 0
    if not TIMESTAMP_MIN_YEAR <= year <= TIMESTAMP_MAX_YEAR:
        raise InvalidInput(
            f"invalid {field} {value!r}: use a time between the years "
            f"{TIMESTAMP_MIN_YEAR} and {TIMESTAMP_MAX_YEAR}"
        )
    return moment


def format_duration(delta: timedelta | float) -> str:
    """A short human form: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{sign}{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{sign}{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d{hours:02d}h"
