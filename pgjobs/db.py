"""The hot path: plain psycopg calls of the named statements in :mod:`pgjobs.sql`.

Nothing here imports SQLAlchemy, alembic, click or httpx (an import-linter contract checks
it). Each operation is described once as a :class:`Call` (statement, parameters, and how to
shape the rows), and run by :func:`run` on a sync connection or :func:`run_async` on an async
one, so that sync and async callers share every line of SQL and every rule.

Statements run in the connection's current transaction: in autocommit mode each is its own
transaction; inside a caller's transaction they commit or roll back with it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

import psycopg
from psycopg import pq, sql
from psycopg.rows import dict_row, tuple_row

from pgjobs import sql as queries
from pgjobs.encoding import loads_own
from pgjobs.types import JobRecord, JobStatus

R = TypeVar("R")
Row = dict[str, Any]


def jobs_channel(schema: str) -> str:
    """Where inserts and re-queues are announced (the insert trigger uses the same name)."""
    return f"{schema}_jobs"


def events_channel(schema: str) -> str:
    """Where status and progress changes are announced (``wait``, SSE)."""
    return f"{schema}_events"


def control_channel(schema: str) -> str:
    """Where workers are told to stop a running job."""
    return f"{schema}_control"


@dataclass(frozen=True)
class Call(Generic[R]):
    """One statement to run and the function that turns its rows into the result."""

    query: bytes
    params: Mapping[str, Any] | Sequence[Any]  # by name (%(x)s) or by position (%s)
    shape: Callable[[list[Any]], R]  # dict rows, or tuples when ``tuples``
    #: Rows as tuples instead of dicts, for the hot path (the claim: a dict per job costs).
    tuples: bool = False


def _returns_rows(cursor: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    """Whether the statement returned rows (``cursor.description`` would build a Column
    object per column just to say so)."""
    result = cursor.pgresult
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK


def run(conn: psycopg.Connection[Any], call: Call[R]) -> R:
    with conn.cursor(row_factory=tuple_row if call.tuples else dict_row) as cursor:
        cursor.execute(call.query, call.params)
        rows = cursor.fetchall() if _returns_rows(cursor) else []
    return call.shape(rows)


async def run_async(conn: psycopg.AsyncConnection[Any], call: Call[R]) -> R:
    async with conn.cursor(row_factory=tuple_row if call.tuples else dict_row) as cursor:
        await cursor.execute(call.query, call.params)
        rows = await cursor.fetchall() if _returns_rows(cursor) else []
    return call.shape(rows)


# --- producing --------------------------------------------------------------------------


class NewJob(NamedTuple):
    """A validated, encoded job ready to insert (see :mod:`pgjobs.client`).

    A named tuple, not a dataclass: a bulk enqueue builds one per row, and its first nine
    fields are, in order, the COPY columns after ``id`` (see :data:`COPY_COLUMNS`), so that
    a row is one slice of it."""

    task: str
    args: str  # JSON text of an object
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    dedupe_key: str | None = None
    callback_url: str | None = None
    parent_id: int | None = None
    meta: str | None = None  # JSON text
    not_before: datetime | None = None
    #: Start this long after the database's now() (used when not_before is None).
    delay: timedelta = timedelta(0)
    #: At most one job of a lock key runs at a time, in enqueue order (migration 0003).
    lock_key: str | None = None
    #: Ids of jobs that must succeed before this one starts (sorted, without repeats).
    depends_on: tuple[int, ...] | None = None
    #: With a dedupe key: a job of the key created this recently holds it even if finished.
    dedupe_for: timedelta | None = None
    #: With a dedupe key: a holder that has not started takes this job's args and start.
    dedupe_replace: bool = False

    def start_at(self, server_now: datetime) -> datetime | None:
        """The explicit start time for a bulk row, or None for "the database's now()"."""
        if self.not_before is not None:
            return self.not_before
        return server_now + self.delay if self.delay else None


def _params(job: NewJob) -> dict[str, Any]:
    return {
        "task": job.task,
        "args": job.args,
        "queue": job.queue,
        "priority": job.priority,
        "not_before": job.not_before,
        "delay": job.delay,
        "max_attempts": job.max_attempts,
        "dedupe_key": job.dedupe_key,
        "callback_url": job.callback_url,
        "parent_id": job.parent_id,
        "meta": job.meta,
        "lock_key": job.lock_key,
        "dedupe_for": job.dedupe_for or timedelta(0),
        "replace": job.dedupe_replace,
        "depends_on": list(job.depends_on) if job.depends_on is not None else None,
    }


@dataclass(frozen=True)
class Inserted:
    """The row of an enqueued job, and whether it was an existing job holding the key."""

    record: JobRecord
    existing: bool
    #: Read before a concurrent change (a replace that found its holder claimed meanwhile):
    #: read the job again for its current state.
    stale: bool = False


def _first_inserted(rows: list[Row]) -> Inserted | None:
    if not rows:
        return None
    row = rows[0]
    return Inserted(JobRecord.from_row(row), bool(row.get("existing")), bool(row.get("stale")))


def _new_record(job: NewJob, rows: list[tuple[Any, ...]]) -> Inserted:
    """The record of a job just inserted, from what was sent and the few columns returned
    (id and created_at, then queue, priority and max_attempts when the trigger filled them)."""
    row = rows[0]
    created_at: datetime = row[1]
    if len(row) > 2:
        queue, priority, max_attempts = row[2], row[3], row[4]
    else:
        assert job.queue is not None and job.priority is not None and job.max_attempts is not None
        queue, priority, max_attempts = job.queue, job.priority, job.max_attempts
    # The record's fields set directly on a copy of the defaults: the dataclass __init__ of
    # thirty fields is a visible part of an enqueue's Python time.
    values = _NEW_RECORD.copy()
    values.update(
        id=row[0], queue=queue, task=job.task, args=loads_own(job.args), priority=priority,
        not_before=(  # in the connection's time zone, as the database would return it
            job.not_before.astimezone(created_at.tzinfo)
            if job.not_before is not None
            else created_at + job.delay
        ),
        max_attempts=max_attempts, created_at=created_at, callback_url=job.callback_url,
        parent_id=job.parent_id, lock_key=job.lock_key,
        meta=loads_own(job.meta) if job.meta is not None else None,
    )  # fmt: skip
    record = JobRecord.__new__(JobRecord)
    record.__dict__ = values
    return Inserted(record, False)


#: A queued job's record before its own values (see _new_record).
_NEW_RECORD: dict[str, Any] = {
    **{
        f.name: f.default
        for f in dataclasses.fields(JobRecord)
        if f.default is not dataclasses.MISSING
    },
    "status": JobStatus.QUEUED,
    "attempts": 0,
}


_RETURNING_DEFAULTS = b"\nRETURNING j.id, j.created_at, j.queue, j.priority, j.max_attempts"
_RETURNING_KNOWN = b"\nRETURNING j.id, j.created_at"

#: Columns a single enqueue sends only when they are set: a plain job is then the same short
#: INSERT as a hand-written one (every parameter costs on both sides).
_OPTIONAL_COLUMNS = (
    "queue", "priority", "max_attempts", "callback_url", "parent_id", "meta", "lock_key",
)  # fmt: skip


@functools.lru_cache(maxsize=256)
def _insert_statement(schema: str, columns: tuple[str, ...], start: str, returning: bytes) -> bytes:
    """The INSERT of one job with these optional columns (the rest take their defaults; the
    defaults trigger fills queue, priority and max_attempts from pgjobs.tasks), its
    parameters in the order task, args, ``columns``, then the start. ``start`` is "now" (the
    column default), "at" (an explicit not_before) or "delay" (the database's now() plus a
    delay)."""
    names = ["task", "args", *columns]
    values = ["%s", "%s::jsonb"] + ["%s::jsonb" if c == "meta" else "%s" for c in columns]
    if start != "now":
        names.append("not_before")
        values.append("%s::timestamptz" if start == "at" else "now() + %s::interval")
    statement = sql.SQL("INSERT INTO {}.jobs AS j ({}) VALUES ({})").format(
        sql.Identifier(schema),
        sql.SQL(", ").join(sql.Identifier(n) for n in names),
        sql.SQL(", ".join(values)),
    )
    return statement.as_bytes(None) + returning


def enqueue(schema: str, job: NewJob) -> Call[Inserted | None]:
    """Insert one job. With a dedupe key, ``None`` means: try again (see enqueue_dedupe.sql);
    with dependencies, that one of them does not exist (see enqueue_dependent.sql)."""
    if job.depends_on:
        return Call(queries.query("enqueue_dependent", schema), _params(job), _first_inserted)
    if job.dedupe_key is not None:
        variant = (
            "enqueue_dedupe_window" if job.dedupe_for or job.dedupe_replace else "enqueue_dedupe"
        )
        return Call(queries.query(variant, schema), _params(job), _first_inserted)
    statement, tail = _insert_plan(schema, job[2:])
    return Call(
        statement, (job.task, job.args, *tail), lambda rows: _new_record(job, rows), tuples=True
    )


@functools.lru_cache(maxsize=1024)
def _insert_plan(schema: str, options: tuple[Any, ...]) -> tuple[bytes, tuple[Any, ...]]:
    """The INSERT of a job with these options (a NewJob's fields after task and args) and its
    parameters after task and args. Cached: a program enqueues the same few shapes again and
    again, and choosing the columns was most of the statement runner's Python time."""
    job = NewJob("", "", *options)
    known = job.queue is not None and job.priority is not None and job.max_attempts is not None
    columns = tuple(c for c in _OPTIONAL_COLUMNS if getattr(job, c) is not None)
    params: list[Any] = [getattr(job, c) for c in columns]
    if job.not_before is not None:
        start = "at"
        params.append(job.not_before)
    elif job.delay:
        start = "delay"
        params.append(job.delay)
    else:
        start = "now"
    statement = _insert_statement(
        schema, columns, start, _RETURNING_KNOWN if known else _RETURNING_DEFAULTS
    )
    return statement, tuple(params)


def existing_ids(schema: str, ids: Sequence[int]) -> Call[set[int]]:
    return Call(
        queries.query("existing_ids", schema),
        {"ids": list(ids)},
        lambda rows: {row["id"] for row in rows},
    )


def get_job(schema: str, job_id: int) -> Call[JobRecord | None]:
    return Call(
        queries.query("get_job", schema),
        {"id": job_id},
        lambda rows: JobRecord.from_row(rows[0]) if rows else None,
    )


def reserve_ids(schema: str, count: int) -> Call[tuple[list[int], datetime]]:
    """``count`` new ids, and the database's clock (bulk rows with a delay start from it)."""
    return Call(
        queries.query("reserve_ids", schema),
        {"table": f"{schema}.jobs", "n": count},
        lambda rows: (list(rows[0]["ids"]), rows[0]["now"]),
    )


def dedupe_holders(schema: str, keys: Sequence[str]) -> Call[dict[str, int]]:
    return Call(
        queries.query("dedupe_holders", schema),
        {"keys": list(keys)},
        lambda rows: {r["dedupe_key"]: r["id"] for r in rows},
    )


#: Columns written by a bulk COPY, in order: the id, the first nine fields of
#: :class:`NewJob`, and ``not_before`` (left out for rows that use the database's ``now()``).
COPY_COLUMNS = ("id", *NewJob._fields[:9], "not_before")


def copy_row(job_id: int, job: NewJob, start_at: datetime | None) -> tuple[Any, ...]:
    """One row for :func:`copy_statement` (``start_at`` only when the statement has it)."""
    row = (job_id, *job[:9])
    return row if start_at is None else (*row, start_at)


def copy_statement(schema: str, table: str | None, *, with_not_before: bool) -> sql.Composed:
    columns = COPY_COLUMNS if with_not_before else COPY_COLUMNS[:-1]
    target = (
        sql.SQL("{}.jobs").format(sql.Identifier(schema))
        if table is None
        else sql.Identifier(table)
    )
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )


STAGING_TABLE = "pgjobs_staging"


def create_staging(schema: str) -> sql.Composed:
    """A temporary table with the bulk columns of jobs and none of its constraints (the
    defaults trigger fills NULLs when rows move in), dropped at commit (pgbouncer-safe)."""
    return sql.SQL(
        "CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DROP AS SELECT {} FROM {}.jobs WITH NO DATA"
    ).format(
        sql.Identifier(STAGING_TABLE),
        sql.SQL(", ").join(sql.Identifier(c) for c in COPY_COLUMNS),
        sql.Identifier(schema),
    )


def move_staged(schema: str) -> Call[set[int]]:
    return Call(queries.query("enqueue_staged", schema), {}, lambda rows: {r["id"] for r in rows})


def publish_tasks(
    schema: str,
    worker_id: uuid.UUID | None,
    tasks: Sequence[tuple[str, str | None, int | None, int | None]],
) -> Call[int]:
    names, queues, priorities, attempts = (
        (list(col) for col in zip(*tasks, strict=True)) if tasks else ([], [], [], [])
    )
    return Call(
        queries.query("publish_tasks", schema),
        {
            "worker_id": worker_id,
            "names": names,
            "queues": queues,
            "priorities": priorities,
            "max_attempts": attempts,
        },
        len,
    )


# --- the lifecycle of a claimed job -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker now holds under ``lease_token`` until ``lease_expires_at``."""

    id: int
    queue: str
    task: str
    args: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    lease_token: uuid.UUID
    lease_expires_at: datetime
    not_before: datetime
    created_at: datetime
    parent_id: int | None
    meta: dict[str, Any] | None


def _claim_params(
    queues: list[str] | None, limit: int, worker_id: uuid.UUID, lease_seconds: float
) -> dict[str, Any]:
    return {
        "queues": queues,
        "limit": limit,
        "worker_id": worker_id,
        "lease_seconds": lease_seconds,
    }


def claim(
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    queues: list[str] | None,
    limit: int,
    worker_id: uuid.UUID,
    lease_seconds: float,
) -> list[ClaimedJob]:
    """Claim up to ``limit`` due jobs of ``queues`` (``None``: every queue), in one statement
    (claim() locks limited queues itself, see migration 0003). ``conn`` in autocommit mode."""
    return run(
        conn,
        claim_call(
            schema, queues=queues, limit=limit, worker_id=worker_id, lease_seconds=lease_seconds
        ),
    )


def claim_call(
    schema: str, *, queues: list[str] | None, limit: int, worker_id: uuid.UUID, lease_seconds: float
) -> Call[list[ClaimedJob]]:
    """The claim as a single autocommit statement (limits included: claim() locks the rows
    of the limited queues it serves before its statement takes its snapshot)."""
    return Call(
        queries.query("claim", schema),
        _claim_params(queues, limit, worker_id, lease_seconds),
        lambda rows: [ClaimedJob(*row) for row in rows],
        tuples=True,  # claim()'s columns are ClaimedJob's fields, in order
    )


def next_due(schema: str, queues: list[str] | None) -> Call[datetime | None]:
    return Call(
        queries.query("next_due", schema),
        {"queues": queues},
        lambda rows: rows[0]["next_due"] if rows else None,
    )


@dataclass(frozen=True)
class Tick:
    limited: bool
    #: Some served queue has a rate limit (a claim held back by it arms a timer).
    rate_limited: bool
    forgotten: int
    #: Earliest fire time of an active cron schedule.
    next_fire_at: datetime | None


def worker_tick(
    schema: str,
    *,
    worker_id: uuid.UUID,
    hostname: str,
    pid: int,
    queues: list[str] | None,
    concurrency: int,
    version: str,
    info: str,
    forget_after: float,
) -> Call[Tick]:
    return Call(
        queries.query("worker_tick", schema),
        {
            "id": worker_id,
            "hostname": hostname,
            "pid": pid,
            "queues": queues,
            "concurrency": concurrency,
            "version": version,
            "info": info,
            "forget_after": forget_after,
        },
        lambda rows: Tick(
            bool(rows[0]["limited"]),
            bool(rows[0]["rate_limited"]),
            int(rows[0]["forgotten"]),
            rows[0]["next_fire_at"],
        ),
    )


def rate_window(schema: str, queues: list[str] | None) -> Call[float | None]:
    """When a rate-limited queue holding back due jobs can start one again (epoch seconds)."""
    return Call(
        queries.query("rate_window", schema),
        {"queues": queues},
        lambda rows: rows[0]["at"] if rows else None,
    )


def worker_leave(schema: str, worker_id: uuid.UUID) -> Call[None]:
    return Call(queries.query("worker_leave", schema), {"id": worker_id}, lambda rows: None)


@dataclass(frozen=True)
class Outcome:
    """What happened to one run, to be written with its lease token.

    ``status`` is the new status. ``queued`` means the job goes back to its queue, due at
    ``not_before``, or ``delay`` after the database's clock when ``not_before`` is None
    (retry, snooze, hand-back); ``refund`` gives the attempt back (snooze, hand-back at
    shutdown). :mod:`pgjobs.outcomes` builds them.
    """

    job_id: int
    lease_token: uuid.UUID
    status: JobStatus
    result: str | None = None  # JSON text, for succeeded
    error: str | None = None
    not_before: datetime | None = None
    delay: timedelta | None = None
    refund: bool = False
    progress: float | None = None
    progress_message: str | None = None


def _outcome_object(outcome: Outcome) -> dict[str, Any]:
    """One outcome as finish.sql reads it; keys left out are NULL."""
    item: dict[str, Any] = {
        "id": outcome.job_id,
        "token": str(outcome.lease_token),
        "status": outcome.status.value,
    }
    if outcome.result is not None:
        item["result"] = outcome.result
    if outcome.error is not None:
        item["error"] = outcome.error
    if outcome.not_before is not None:
        item["not_before"] = outcome.not_before.isoformat()
    if outcome.delay is not None:
        item["delay"] = outcome.delay.total_seconds()
    if outcome.refund:
        item["refund"] = True
    if outcome.progress is not None:
        item["progress"] = outcome.progress
    if outcome.progress_message is not None:
        item["message"] = outcome.progress_message
    return item


def finish(schema: str, outcomes: Sequence[Outcome]) -> Call[dict[int, JobStatus]]:
    """Write a batch of outcomes; the result maps the ids that were written to their new
    status. Ids absent from it were fenced: their lease was lost, nothing changed."""
    return Call(
        queries.query("finish", schema),
        {
            "outcomes": json.dumps([_outcome_object(o) for o in outcomes], separators=(",", ":")),
            "jobs_channel": jobs_channel(schema),
            "events_channel": events_channel(schema),
        },
        lambda rows: {r["id"]: JobStatus(r["status"]) for r in rows},
    )


def heartbeat(
    schema: str, leases: Mapping[int, uuid.UUID], lease_seconds: float
) -> Call[dict[int, bool]]:
    """Extend the leases still held; the result maps extended ids to "cancel requested"."""
    return Call(
        queries.query("heartbeat", schema),
        {"ids": list(leases), "tokens": list(leases.values()), "lease_seconds": lease_seconds},
        lambda rows: {r["id"]: r["cancel_requested"] for r in rows},
    )


@dataclass(frozen=True)
class Touched:
    lease_expires_at: datetime
    cancel_requested: bool


def touch(
    schema: str, job_id: int, lease_token: uuid.UUID, lease_seconds: float
) -> Call[Touched | None]:
    """Extend one lease; ``None`` when the lease is no longer held."""
    return Call(
        queries.query("touch", schema),
        {"id": job_id, "token": lease_token, "lease_seconds": lease_seconds},
        lambda rows: (
            Touched(rows[0]["lease_expires_at"], rows[0]["cancel_requested"]) if rows else None
        ),
    )


def set_progress(
    schema: str, job_id: int, lease_token: uuid.UUID, progress: float, message: str | None
) -> Call[bool]:
    """Record progress; False when the lease is no longer held."""
    return Call(
        queries.query("progress", schema),
        {
            "id": job_id,
            "token": lease_token,
            "progress": progress,
            "message": message,
            "events_channel": events_channel(schema),
        },
        bool,
    )


#: How long one watch_starts() keeps claims announcing starts; callers renew it every
#: WATCH_STARTS_RENEW seconds while they watch, so it never lapses under them.
WATCH_STARTS_SECONDS = 60.0
WATCH_STARTS_RENEW = WATCH_STARTS_SECONDS / 3


def watch_starts(schema: str, seconds: float = WATCH_STARTS_SECONDS) -> Call[None]:
    """Have claims announce the jobs they start for the next ``seconds`` (migration 0005:
    announcing costs every claim a NOTIFY, so claims do it only while someone watches)."""
    return Call(queries.query("watch_starts", schema), {"seconds": seconds}, lambda rows: None)


def rescue(schema: str, limit: int = 500) -> Call[dict[int, JobStatus]]:
    """Put back (or fail) up to ``limit`` jobs whose lease expired."""
    return Call(
        queries.query("rescue", schema),
        {
            "limit": limit,
            "jobs_channel": jobs_channel(schema),
            "events_channel": events_channel(schema),
        },
        lambda rows: {r["id"]: JobStatus(r["status"]) for r in rows},
    )


# --- managing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelResult:
    job_id: int
    previous_status: JobStatus
    outcome: str  # cancelled | cancel_requested | already_requested | finished


def cancel(
    schema: str, job_ids: Sequence[int], reason: str = "cancelled"
) -> Call[list[CancelResult]]:
    return Call(
        queries.query("cancel", schema),
        {
            "ids": list(job_ids),
            "reason": reason,
            "events_channel": events_channel(schema),
            "control_channel": control_channel(schema),
        },
        lambda rows: [
            CancelResult(r["id"], JobStatus(r["previous_status"]), r["outcome"]) for r in rows
        ],
    )


@dataclass(frozen=True)
class RetryResult:
    job_id: int
    previous_status: JobStatus
    retried: bool
    dedupe_holder: int | None


def retry(schema: str, job_ids: Sequence[int]) -> Call[list[RetryResult]]:
    return Call(
        queries.query("retry", schema),
        {
            "ids": list(job_ids),
            "jobs_channel": jobs_channel(schema),
            "events_channel": events_channel(schema),
        },
        lambda rows: [
            RetryResult(r["id"], JobStatus(r["previous_status"]), r["retried"], r["holder"])
            for r in rows
        ],
    )
