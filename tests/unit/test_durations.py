"""Durations and timestamps (pgjobs.durations): parse_duration with its units and refusals,
parse_timestamp with offsets and naive values, and the short human form of format_duration."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pgjobs.durations import DURATION_MAX, format_duration, parse_duration, parse_timestamp
from pgjobs.errors import InvalidInput

UNIT_HINT = "use a number with an optional unit, e.g. 30, 30s, 5m, 2h, 1d"

# --- parse_duration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30", timedelta(seconds=30)),
        ("30s", timedelta(seconds=30)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("1.5m", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("250ms", timedelta(milliseconds=250)),
        ("1500ms", timedelta(seconds=1.5)),
        ("0.5", timedelta(milliseconds=500)),
        (" 5 m ", timedelta(minutes=5)),
        ("3650d", timedelta(days=3650)),
        ("521w", timedelta(weeks=521)),
    ],
)
def test_duration_text(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, timedelta(0)),
        (30, timedelta(seconds=30)),
        (2.5, timedelta(seconds=2.5)),
        (0.001, timedelta(milliseconds=1)),
        (timedelta(minutes=3), timedelta(minutes=3)),
        (timedelta(0), timedelta(0)),
        (DURATION_MAX, DURATION_MAX),
        (DURATION_MAX.total_seconds(), DURATION_MAX),
    ],
)
def test_duration_numbers_are_seconds_and_timedeltas_pass_through(
    value: Any, expected: timedelta
) -> None:
    result = parse_duration(value)
    assert isinstance(result, timedelta)
    assert result == expected


def test_duration_max_is_ten_years_of_days() -> None:
    assert timedelta(days=3650) == DURATION_MAX


@pytest.mark.parametrize(
    "text", ["", "   ", "5x", "abc", "-5", "-5s", "5 mins", "5M", "s", "1e3", "5.s", ".5", "5 5"]
)
def test_malformed_duration_text_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(text, field="delay")
    assert str(info.value) == f"invalid delay {text!r}: {UNIT_HINT}"


def test_default_field_name_is_duration() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration("soon")
    assert str(info.value) == f"invalid duration 'soon': {UNIT_HINT}"


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_refused(value: bool) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(value, field="timeout")
    assert str(info.value) == f"invalid timeout {value!r}"


@pytest.mark.parametrize("value", [-1, -0.5, timedelta(seconds=-1)])
def test_negative_numbers_are_refused(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(value, field="delay")
    assert str(info.value) == f"invalid delay {value!r}: must not be negative"


@pytest.mark.parametrize(
    "value",
    [
        "3651d",
        "522w",
        "87601h",
        DURATION_MAX.total_seconds() + 1,
        DURATION_MAX + timedelta(seconds=1),
        float("inf"),
        "9" * 400,  # overflows to inf as a float
    ],
)
def test_durations_over_3650_days_are_refused(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(value, field="retry maximum")
    assert str(info.value) == f"invalid retry maximum {value!r}: at most 3650 days"


def test_nan_duration_is_refused() -> None:
    with pytest.raises(InvalidInput, match="invalid delay"):
        parse_duration(float("nan"), field="delay")


# --- parse_timestamp --------------------------------------------------------------------------

UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T09:30:00Z", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("2026-01-31T09:30:00z", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("  2026-01-31T09:30:00Z  ", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("2026-01-31T09:30:00+00:00", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        (
            "2026-01-31T09:30:00+01:00",
            datetime(2026, 1, 31, 9, 30, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            "2026-01-31T09:30:00-05:30",
            datetime(2026, 1, 31, 9, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        ),
        ("2026-01-31T09:30:00", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("2026-01-31 09:30:00.250", datetime(2026, 1, 31, 9, 30, 0, 250000, tzinfo=UTC)),
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
    ],
)
def test_timestamp_text(text: str, expected: datetime) -> None:
    result = parse_timestamp(text)
    assert result == expected
    assert result.utcoffset() == expected.utcoffset()


def test_offset_is_kept_not_converted() -> None:
    result = parse_timestamp("2026-01-31T09:30:00+01:00")
    assert result.hour == 9
    assert result.utcoffset() == timedelta(hours=1)
    assert result == datetime(2026, 1, 31, 8, 30, tzinfo=UTC)


def test_naive_datetime_is_taken_as_utc() -> None:
    result = parse_timestamp(datetime(2026, 1, 31, 9, 30))
    assert result == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_aware_datetime_is_returned_as_is() -> None:
    moment = datetime(2026, 1, 31, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    assert parse_timestamp(moment) is moment


@pytest.mark.parametrize(
    "text", ["", "tomorrow", "2026-13-01", "2026-01-31T25:00", "31/01/2026", "Z"]
)
def test_bad_timestamps_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_timestamp(text, field="not_before")
    assert str(info.value) == (
        f"invalid not_before {text!r}: use ISO 8601, e.g. 2026-01-31T09:30:00+01:00"
    )


def test_default_timestamp_field_name() -> None:
    with pytest.raises(InvalidInput, match=r"^invalid timestamp 'x': use ISO 8601"):
        parse_timestamp("x")


# --- format_duration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0ms"),
        (0.25, "250ms"),
        (0.85, "850ms"),
        (1, "1.0s"),
        (12.3, "12.3s"),
        (59.9, "59.9s"),
        (60, "1m00s"),
        (245, "4m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (2 * 3600 + 3 * 60, "2h03m"),
        (2 * 3600 + 3 * 60 + 59, "2h03m"),
        (86399, "23h59m"),
        (86400, "1d00h"),
        (3 * 86400 + 4 * 3600, "3d04h"),
        (400 * 86400, "400d00h"),
        (-0.25, "-250ms"),
        (-12.3, "-12.3s"),
        (-245, "-4m05s"),
        (-(2 * 3600 + 3 * 60), "-2h03m"),
        (-(3 * 86400 + 4 * 3600), "-3d04h"),
    ],
)
def test_format_duration(value: float, expected: str) -> None:
    assert format_duration(value) == expected
    assert format_duration(timedelta(seconds=value)) == expected


def test_format_then_parse_round_trips_whole_minutes() -> None:
    assert parse_duration("245s") == timedelta(seconds=245)
    assert format_duration(parse_duration("245s")) == "4m05s"
    assert format_duration(parse_duration("1w")) == "7d00h"
