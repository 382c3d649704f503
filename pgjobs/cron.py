"""Fire times of cron schedules: validation, the next fire time, and what a late scheduler
fires (pure functions; :mod:`pgjobs.schedules` stores and fires them).

Expressions are croniter's: five fields (minute hour day month weekday), an optional sixth
field for seconds (*last*, not first: ``"* * * * * */10"`` is every ten seconds), and the
``@hourly``-style nicknames. Fire times are computed in the schedule's time zone.

Daylight saving time, in the schedule's zone:

- spring forward: a wall-clock time that does not exist that day (02:30 in Paris on the last
  Sunday of March) fires once, at the first existing time after it (03:00);
- fall back: a wall-clock time that happens twice fires once, at its first occurrence, for
  schedules with a fixed hour (``30 2 * * *``); schedules whose hour field has a ``*``
  (``*/15 * * * *``, ``0 * * * *``) keep their rhythm in real time and fire in both passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from pgjobs.errors import InvalidInput

#: A fire time more than this late when a scheduler reaches it counts as missed (everything
#: was down): the schedule's ``missed`` policy decides. Shorter delays (a worker restarting, a
#: database failover) only make the job late, never lost.
MISSED_AFTER = timedelta(minutes=1)

MISSED_POLICIES = ("skip", "run_once")
OVERLAP_POLICIES = ("allow", "skip")

_NICKNAMES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


@dataclass(frozen=True)
class Cron:
    """A validated cron expression in a time zone."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        check_expression(self.expression)
        zone(self.timezone)

    @property
    def _fixed_hour(self) -> bool:
        """Whether the hour field names fixed hours (no ``*``): such a schedule fires once in
        a repeated DST hour."""
        text = self.expression.strip()
        if text.startswith("@"):
            return text != "@hourly"
        return "*" not in text.split()[1]

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (aware), in the schedule's zone."""
        local = moment.astimezone(zone(self.timezone))
        fires = croniter(self.expression, local)
        candidate: datetime = fires.get_next(datetime)
        if self._fixed_hour:
            wall = local.replace(tzinfo=None)
            # The fall-back pass repeats wall times already behind us: skip them.
            while candidate.replace(tzinfo=None) <= wall:
                candidate = fires.get_next(datetime)
        return candidate

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last fire time at or before ``moment``."""
        local = moment.astimezone(zone(self.timezone))
        fires = croniter(self.expression, local + timedelta(microseconds=1))
        latest: datetime = fires.get_prev(datetime)
        return latest


def check_expression(expression: object) -> str:
    """The expression, or a one-line error saying what a cron expression looks like."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput("a cron expression is required, e.g. '*/5 * * * *'")
    text = expression.strip()
    fields = text.split()
    valid = (
        text in _NICKNAMES
        if text.startswith("@")
        else len(fields) in (5, 6) and croniter.is_valid(text)
    )
    if not valid:
        raise InvalidInput(
            f"invalid cron expression {expression!r}: use 5 fields (minute hour day month "
            "weekday), an optional 6th for seconds, or @hourly/@daily/@weekly/@monthly/@yearly; "
            "e.g. '*/5 * * * *'"
        )
    return text


@lru_cache(maxsize=256)
def zone(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Paris``), or a one-line error."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise InvalidInput(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}: use an IANA name such as Europe/Paris or UTC"
        ) from None


@dataclass(frozen=True)
class FirePlan:
    """What one scheduler pass does for a due schedule."""

    #: Start times of the jobs to insert, oldest first (each is a job's ``not_before``).
    fire_at: tuple[datetime, ...]
    #: The schedule's next fire time once these are inserted.
    next_fire_at: datetime
    #: Fire times dropped because they were missed (``skip``) or folded into one (``run_once``).
    missed: int


def plan(cron: Cron, due: datetime, now: datetime, missed_policy: str) -> FirePlan:
    """The jobs to insert for a schedule whose stored next fire time ``due`` has come.

    Fire times from ``due`` to ``now`` are on time unless older than :data:`MISSED_AFTER`;
    missed ones insert nothing (``skip``) or one job for the latest of them (``run_once``).
    """
    fires: list[datetime] = []
    missed = 0
    horizon = now - MISSED_AFTER
    start = due
    if due < horizon:
        latest_missed = cron.latest_at_or_before(horizon)
        missed = _count_between(cron, due, latest_missed)
        if missed_policy == "run_once" and latest_missed >= due:
            fires.append(latest_missed)
        start = cron.next_after(max(horizon, latest_missed))
    moment = start
    while moment <= now:  # at most a minute of fire times: the rest were missed
        fires.append(moment)
        moment = cron.next_after(moment)
    return FirePlan(tuple(fires), moment, missed)


def _count_between(cron: Cron, first: datetime, last: datetime, cap: int = 1000) -> int:
    """Fire times in [first, last], counted up to ``cap`` (only shown in logs)."""
    count = 0
    moment = first
    while moment <= last and count < cap:
        count += 1
        moment = cron.next_after(moment)
    return count
