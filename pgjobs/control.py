"""Exceptions a handler raises to choose its job's outcome (besides returning or failing).

::

    @app.task()
    def call_partner(order: int) -> None:
        response = httpx.post(...)
        if response.status_code == 429:
            raise pgjobs.Retry(after=response.headers.get("Retry-After", "30s"))
        if response.status_code == 404:
            raise pgjobs.Fail("order unknown to the partner")   # retrying cannot fix it
"""

from __future__ import annotations

from datetime import timedelta

from pgjobs.durations import parse_duration


class JobControl(Exception):
    """Base of the outcome signals; not an error of the handler."""


class Retry(JobControl):
    """Retry after ``after`` (a duration: "30s", seconds, timedelta), spending an attempt;
    ends ``failed`` if it was the last one. Without ``after``, the task's backoff applies."""

    def __init__(
        self, message: str = "retry requested", *, after: str | float | timedelta | None = None
    ) -> None:
        super().__init__(message)
        self.after = parse_duration(after, field="retry after") if after is not None else None


class Snooze(JobControl):
    """Run again after ``delay`` without spending an attempt (not ready yet, come back later)."""

    def __init__(self, delay: str | float | timedelta) -> None:
        self.delay = parse_duration(delay, field="snooze delay")
        super().__init__(f"snoozed for {self.delay}")


class Fail(JobControl):
    """End ``failed`` now, whatever attempts remain: an error that retrying cannot fix."""


class Cancel(JobControl):
    """End ``cancelled`` now (the work is no longer wanted)."""
