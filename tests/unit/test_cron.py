"""Fire times of cron schedules (pgjobs.cron): next times, DST, late and missed fires."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from pgjobs.cron import MISSED_AFTER, Cron, check_expression, plan, zone
from pgjobs.errors import InvalidInput

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")


def at(text: str, tz: ZoneInfo | timezone = UTC) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


@pytest.mark.parametrize(
    "expression",
    ["*/0 * * * *", "61 * * * *", "* * * *", "* * * * * * *", "every minute", "", "@often", 5],
)
def test_invalid_expressions_get_one_line_naming_the_syntax(expression: object) -> None:
    with pytest.raises(InvalidInput) as info:
        check_expression(expression)
    assert "\n" not in str(info.value)
    assert "cron expression" in str(info.value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", 3])
def test_unknown_time_zones_are_refused(name: object) -> None:
    with pytest.raises(InvalidInput, match="unknown time zone"):
        zone(name)


def test_next_after_is_strictly_after() -> None:
    every_5 = Cron("*/5 * * * *")
    assert every_5.next_after(at("2026-01-01T10:00:00")) == at("2026-01-01T10:05:00")
    assert every_5.next_after(at("2026-01-01T10:04:59")) == at("2026-01-01T10:05:00")


def test_the_sixth_field_is_seconds() -> None:
    every_10s = Cron("* * * * * */10")
    assert every_10s.next_after(at("2026-01-01T10:00:00")) == at("2026-01-01T10:00:10")


def test_nicknames() -> None:
    assert Cron("@hourly").next_after(at("2026-01-01T10:20:00")) == at("2026-01-01T11:00:00")
    assert Cron("@daily", "Europe/Paris").next_after(at("2026-01-01T10:00:00")) == at(
        "2026-01-01T23:00:00"
    )


def test_fire_times_follow_the_schedules_time_zone() -> None:
    nine_in_paris = Cron("0 9 * * *", "Europe/Paris")
    assert nine_in_paris.next_after(at("2026-07-01T00:00:00")) == at("2026-07-01T07:00:00")
    assert nine_in_paris.next_after(at("2026-12-01T00:00:00")) == at("2026-12-01T08:00:00")


def test_spring_forward_a_missing_time_fires_once_at_the_next_existing_time() -> None:
    """Paris, 2026-03-29: 02:00 jumps to 03:00; a 02:30 daily schedule fires at 03:00."""
    daily = Cron("30 2 * * *", "Europe/Paris")
    fires = [daily.next_after(at("2026-03-28T12:00:00", PARIS))]
    for _ in range(2):
        fires.append(daily.next_after(fires[-1]))
    assert [f.astimezone(PARIS).isoformat() for f in fires] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_fall_back_a_repeated_time_fires_once_for_a_fixed_hour_schedule() -> None:
    """Paris, 2026-10-25: 03:00 falls back to 02:00; 02:30 happens twice, fires once."""
    daily = Cron("30 2 * * *", "Europe/Paris")
    fires = [daily.next_after(at("2026-10-24T12:00:00", PARIS))]
    for _ in range(2):
        fires.append(daily.next_after(fires[-1]))
    assert [f.astimezone(PARIS).isoformat() for f in fires] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_fall_back_an_interval_schedule_keeps_its_rhythm_in_real_time() -> None:
    every_30 = Cron("*/30 * * * *", "Europe/Paris")
    moment = at("2026-10-25T01:45:00", PARIS)
    fires = []
    for _ in range(5):
        moment = every_30.next_after(moment)
        fires.append(moment.astimezone(UTC))  # same-zone subtraction would use wall time
    gaps = {b - a for a, b in itertools.pairwise(fires)}
    assert gaps == {timedelta(minutes=30)}, fires


def test_plan_on_time_fires_every_due_time_and_points_past_now() -> None:
    every_min = Cron("* * * * *")
    due = at("2026-01-01T10:00:00")
    result = plan(every_min, due, at("2026-01-01T10:00:30"), "skip")
    assert result.fire_at == (due,)
    assert result.next_fire_at == at("2026-01-01T10:01:00")
    assert result.missed == 0


def test_plan_a_slightly_late_scheduler_fires_each_time_it_is_behind() -> None:
    every_10s = Cron("* * * * * */10")
    due = at("2026-01-01T10:00:00")
    result = plan(every_10s, due, at("2026-01-01T10:00:35"), "skip")
    assert result.fire_at == tuple(due + timedelta(seconds=s) for s in (0, 10, 20, 30))
    assert result.next_fire_at == at("2026-01-01T10:00:40")
    assert result.missed == 0


@pytest.mark.parametrize("policy", ["skip", "run_once"])
def test_plan_missed_fire_times_follow_the_policy(policy: str) -> None:
    hourly = Cron("0 * * * *")
    due = at("2026-01-01T01:00:00")
    now = at("2026-01-01T05:00:20")  # 01:00..04:00 missed; 05:00 is on time (20 s late)
    result = plan(hourly, due, now, policy)
    on_time = at("2026-01-01T05:00:00")
    if policy == "skip":
        assert result.fire_at == (on_time,)
    else:
        assert result.fire_at == (at("2026-01-01T04:00:00"), on_time)
    assert result.missed == 4
    assert result.next_fire_at == at("2026-01-01T06:00:00")


def test_plan_run_once_after_a_long_outage_inserts_one_job_for_the_latest_missed_time() -> None:
    daily = Cron("0 3 * * *")
    now = at("2026-01-10T12:00:00")
    result = plan(daily, at("2026-01-01T03:00:00"), now, "run_once")
    assert result.fire_at == (at("2026-01-10T03:00:00"),)
    assert result.missed == 10
    assert result.next_fire_at == at("2026-01-11T03:00:00")


def test_plan_a_seconds_schedule_far_behind_fires_at_most_the_last_minute() -> None:
    every_s = Cron("* * * * * *")
    due = at("2026-01-01T10:00:00")
    now = due + timedelta(minutes=10)
    result = plan(every_s, due, now, "skip")
    assert result.fire_at[0] == now - MISSED_AFTER + timedelta(seconds=1)
    assert result.fire_at[-1] == now
    assert len(result.fire_at) == MISSED_AFTER.total_seconds()
    assert result.missed == 9 * 60 + 1
    assert result.next_fire_at == now + timedelta(seconds=1)
