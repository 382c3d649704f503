"""Pause, resume and limit queues (``pgjobs.queues``), for the CLI, the HTTP API and Python.

The limits are enforced by the claim, in the database (see ``claim()`` in the migrations): a
queue limited to N holds at most N live leases across every worker and machine, and a rate
of N per period starts at most N jobs in any window of that period. These functions only
store the settings and tell running workers at once (a resumed queue's jobs start without
waiting for a poll; a newly limited queue is watched for freed slots from then on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgjobs import db, validation
from pgjobs.durations import parse_duration
from pgjobs.errors import InvalidInput

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\S+)\s*$")
_PERIOD_WORDS = {"s": "1s", "sec": "1s", "second": "1s", "m": "1m", "min": "1m",
                 "minute": "1m", "h": "1h", "hour": "1h", "d": "1d", "day": "1d"}  # fmt: skip
CONCURRENCY_MAX = 1_000_000
RATE_MAX = 1_000_000


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` starts in any window of ``period``."""

    limit: int
    period: timedelta

    def __str__(self) -> str:
        seconds = self.period.total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if seconds % size == 0:
                count = int(seconds // size)
                return f"{self.limit}/{unit}" if count == 1 else f"{self.limit}/{count}{unit}"
        return f"{self.limit}/{seconds:g}s"


def parse_rate(text: str, *, field: str = "rate") -> Rate:
    """``2/s``, ``100/m``, ``5/10s``, ``1000/h``: a positive count per positive period."""
    match = _RATE.match(text) if isinstance(text, str) else None
    hint = "use N/PERIOD with N >= 1, e.g. 2/s, 100/m, 5/10s, 1000/h"
    if not match:
        raise InvalidInput(f"invalid {field} {text!r}: {hint}")
    limit = int(match.group(1))
    if not 1 <= limit <= RATE_MAX:
        raise InvalidInput(f"invalid {field} {text!r}: {hint} (N at most {RATE_MAX})")
    unit = match.group(2).lower()
    try:
        period = parse_duration(_PERIOD_WORDS.get(unit, unit), field=f"{field} period")
    except InvalidInput:
        raise InvalidInput(f"invalid {field} {text!r}: {hint}") from None
    if period <= timedelta(0):
        raise InvalidInput(f"invalid {field} {text!r}: the period must be positive")
    return Rate(limit, period)


def parse_concurrency(value: Any) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= CONCURRENCY_MAX:
        raise InvalidInput(
            f"invalid concurrency limit {value!r}: use a whole number from 1 to {CONCURRENCY_MAX} "
            "(or 'none' to remove the limit)"
        )
    return value


def _upsert(
    conn: psycopg.Connection[Any], schema: str, name: str, assignments: dict[str, Any]
) -> None:
    validation.queue_name(name)
    columns = list(assignments)
    statement = sql.SQL(
        "INSERT INTO {table} (name, {columns}) VALUES (%s, {values})"
        " ON CONFLICT (name) DO UPDATE SET {updates}, updated_at = now()"
    ).format(
        table=sql.Identifier(schema, "queues"),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        updates=sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in columns
        ),
    )
    conn.execute(statement, [name, *assignments.values()])


def _tell_workers(
    conn: psycopg.Connection[Any], schema: str, name: str, *, limited: bool, rate: bool
) -> None:
    """Wake the workers of ``name`` (its jobs may start now) and, when it gained a limit,
    tell them at once rather than at their next tick (they then claim again as soon as
    outcomes free slots, and, for a rate, arm a timer on the window's opening)."""
    conn.execute(
        "SELECT pg_notify(%s, json_build_object('queue', %s::text)::text),"
        "       pg_notify(%s, json_build_object('limited', %s, 'rate', %s)::text)",
        (db.jobs_channel(schema), name, db.control_channel(schema), limited, rate),
    )


def set_paused(conn: psycopg.Connection[Any], schema: str, name: str, paused: bool) -> None:
    """A paused queue keeps accepting jobs; none of them starts until it is resumed."""
    with conn.transaction():
        _upsert(conn, schema, name, {"paused": paused})
        _tell_workers(conn, schema, name, limited=False, rate=False)


_UNSET: Any = object()


def set_limits(
    conn: psycopg.Connection[Any],
    schema: str,
    name: str,
    *,
    concurrency: int | None = _UNSET,
    rate: Rate | None = _UNSET,
) -> None:
    """Change the limits given (``None`` removes one; an omitted one is left as it is)."""
    assignments: dict[str, Any] = {}
    if concurrency is not _UNSET:
        assignments["concurrency_limit"] = (
            parse_concurrency(concurrency) if concurrency is not None else None
        )
    if rate is not _UNSET:
        assignments["rate_limit"] = rate.limit if rate is not None else None
        assignments["rate_period"] = rate.period if rate is not None else None
    if not assignments:
        raise InvalidInput("nothing to change: give a concurrency limit, a rate, or both")
    with conn.transaction():
        _upsert(conn, schema, name, assignments)
        _tell_workers(
            conn, schema, name, limited=any(v is not None for v in assignments.values()),
            rate=assignments.get("rate_limit") is not None,
        )  # fmt: skip
