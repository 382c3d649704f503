"""Pruning of finished jobs: ``pgjobs prune`` and the workers' automatic pruning.

Deletes run in small batches, each its own short transaction, walking the index on
``(status, finished_at)`` oldest first: a batch locks only the finished rows it deletes, which
no claim, heartbeat or completion touches, so pruning a million rows never blocks the hot
path (it costs I/O and WAL, spread over many small commits). Workers prune at most once per
interval across the whole fleet: a row in ``pgjobs.settings`` holds the time before which no
other worker starts a run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgjobs.errors import InvalidInput
from pgjobs.types import FINISHED_STATUSES, JobStatus

#: Rows deleted per statement: small enough that each commit is quick, large enough that a
#: million rows take a thousand statements rather than a million.
BATCH_SIZE = 1000
#: What workers keep by default: succeeded and cancelled jobs a week, failed ones a month
#: (someone may still want to read the error or retry them).
KEEP_DEFAULT = timedelta(days=7)
KEEP_FAILED_DEFAULT = timedelta(days=30)
PRUNE_EVERY_DEFAULT = timedelta(hours=1)
#: A pause between batches of an automatic run, so that it never hogs the server.
AUTO_PAUSE = 0.01

_PRUNE = """
WITH doomed AS (
    SELECT j.id
      FROM {schema}.jobs AS j
     WHERE j.status = %(status)s AND j.finished_at < now() - %(age)s::interval
     ORDER BY j.finished_at
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM {schema}.jobs AS j USING doomed AS d WHERE j.id = d.id RETURNING j.id
),
edges AS (
    DELETE FROM {schema}.job_dependencies AS e USING gone AS g WHERE e.depends_on = g.id
),
waits AS (
    DELETE FROM {schema}.job_dependencies AS e USING gone AS g WHERE e.job_id = g.id
)
SELECT count(*) FROM gone
"""

_CLAIM_RUN = """
INSERT INTO {schema}.settings AS s (name, value)
VALUES ('pruner', jsonb_build_object('next_run_after', now() + %(every)s::interval, 'by', %(by)s::text))
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = now()
 WHERE (s.value->>'next_run_after')::timestamptz <= now()
RETURNING s.name
"""


@dataclass(frozen=True)
class Policy:
    """How long finished jobs are kept, by status (None: kept for ever)."""

    keep: dict[JobStatus, timedelta]

    @classmethod
    def default(cls) -> Policy:
        return cls.of(KEEP_DEFAULT, KEEP_FAILED_DEFAULT)

    @classmethod
    def older_than(cls, age: timedelta, statuses: Sequence[JobStatus]) -> Policy:
        """One age for these statuses (``pgjobs prune``); unfinished ones are refused: a
        queued or running job is never pruned."""
        unfinished = [s for s in statuses if s not in FINISHED_STATUSES]
        if unfinished:
            raise InvalidInput(
                "only finished jobs can be pruned (succeeded, failed, cancelled), not "
                f"{', '.join(s.value for s in unfinished)}"
            )
        return cls(dict.fromkeys(statuses, age))

    @classmethod
    def of(cls, keep: timedelta | None, keep_failed: timedelta | None) -> Policy:
        ages: dict[JobStatus, timedelta] = {}
        if keep is not None:
            ages[JobStatus.SUCCEEDED] = ages[JobStatus.CANCELLED] = keep
        if keep_failed is not None:
            ages[JobStatus.FAILED] = keep_failed
        return cls(ages)


def _statement(schema: str) -> sql.Composed:
    return sql.SQL(_PRUNE).format(schema=sql.Identifier(schema))


def _params(status: JobStatus, age: timedelta, batch: int) -> dict[str, Any]:
    return {"status": status.value, "age": age, "batch": batch}


def prune(
    conn: psycopg.Connection[Any], schema: str, policy: Policy, *, batch_size: int = BATCH_SIZE
) -> dict[JobStatus, int]:
    """Delete the finished jobs ``policy`` says are old enough, in batches of ``batch_size``
    (autocommit: one transaction each). Returns the count per status."""
    statement = _statement(schema)
    deleted: dict[JobStatus, int] = {}
    for status, age in policy.keep.items():
        total = 0
        while True:
            row = conn.execute(statement, _params(status, age, batch_size)).fetchone()
            count = int(row[0]) if row else 0
            total += count
            if count < batch_size:
                break
        deleted[status] = total
    return deleted


async def claim_run(
    conn: psycopg.AsyncConnection[Any], schema: str, every: timedelta, worker_id: uuid.UUID
) -> bool:
    """Whether this worker runs the fleet's next pruning (at most one run per ``every``)."""
    cursor = await conn.execute(
        sql.SQL(_CLAIM_RUN).format(schema=sql.Identifier(schema)),
        {"every": every, "by": str(worker_id)},
    )
    return await cursor.fetchone() is not None


async def prune_async(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    policy: Policy,
    *,
    batch_size: int = BATCH_SIZE,
    pause: float = AUTO_PAUSE,
    stop: Callable[[], bool] = lambda: False,
) -> dict[JobStatus, int]:
    """The workers' run: :func:`prune`, pausing between batches and stopping early when
    ``stop()`` says so (shutdown)."""
    statement = _statement(schema)
    deleted: dict[JobStatus, int] = {}
    for status, age in policy.keep.items():
        total = 0
        while not stop():
            cursor = await conn.execute(statement, _params(status, age, batch_size))
            row = await cursor.fetchone()
            count = int(row[0]) if row else 0
            total += count
            if count < batch_size:
                break
            await asyncio.sleep(pause)
        deleted[status] = total
    return deleted
