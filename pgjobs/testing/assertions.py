"""Asserting what a test enqueued: :func:`enqueued_jobs`, :func:`assert_enqueued`,
:func:`assert_not_enqueued`.

They read ``pgjobs.jobs``, so they see jobs however they were enqueued (Python, SQL, the
CLI, a follow-up). Arguments match as a *subset* of the job's: every key given must be
there with an equal value, and the job may have more keys (defaults the test does not care
about). The expected values are encoded as enqueue encodes arguments, so a ``datetime`` or a
``Decimal`` matches the text it was stored as. When nothing matches, the assertion's message
lists what the database holds, so that a misspelt task or a wrong argument shows at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgjobs import validation
from pgjobs.app import App, Job
from pgjobs.config import Settings
from pgjobs.encoding import dumps
from pgjobs.errors import InvalidInput
from pgjobs.registry import Task
from pgjobs.types import JobRecord, JobStatus

#: How many jobs a failed assertion lists (the most recent ones).
SHOWN_MAX = 20

Status = str | JobStatus
StatusFilter = Status | Iterable[Status] | None


def _statuses(status: StatusFilter) -> list[str] | None:
    if status is None:
        return None
    items = [status] if isinstance(status, str | JobStatus) else list(status)
    try:
        return [JobStatus(item).value for item in items]
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidInput(f"unknown status in {status!r}: use {known}, or None") from None


def _task_name(task: str | Task[Any, Any] | None) -> str | None:
    if task is None:
        return None
    if isinstance(task, Task):
        return task.name
    if isinstance(task, str):
        return validation.task_name(task)
    raise InvalidInput(f"task: a task name or a registered task, got {type(task).__name__}")


def _expected_args(args: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``args`` in the form they are stored (JSON), for comparison with stored jobs."""
    if args is None:
        return None
    if not isinstance(args, Mapping):
        raise InvalidInput(f"args: a mapping of names to values, got {type(args).__name__}")
    expected: dict[str, Any] = json.loads(dumps(args))
    return expected


def _args_match(job_args: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    return all(key in job_args and job_args[key] == value for key, value in expected.items())


def _read(
    source: App | psycopg.Connection[Any], schema: str | None, where: sql.Composable
) -> list[Job]:
    if isinstance(source, App):
        schema = schema or source.schema
        with source.connection() as conn:
            rows = _select(conn, schema, where)
        app: App | None = source
    elif isinstance(source, psycopg.Connection):
        rows = _select(source, schema or Settings.from_env().schema, where)
        app = None
    else:
        raise InvalidInput(
            f"an App or a psycopg Connection to read jobs from, got {type(source).__name__}"
        )
    jobs = []
    for row in rows:
        job = Job(**vars(JobRecord.from_row(row)))
        job.app = app
        jobs.append(job)
    return jobs


def _select(conn: psycopg.Connection[Any], schema: str, where: sql.Composable) -> list[Any]:
    query = sql.SQL("SELECT j.* FROM {}.jobs AS j WHERE {} ORDER BY j.id").format(
        sql.Identifier(schema), where
    )
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query).fetchall()


def _where(task: str | None, queue: str | None, statuses: list[str] | None) -> sql.Composable:
    clauses: list[sql.Composable] = [sql.SQL("true")]
    if task is not None:
        clauses.append(sql.SQL("j.task = {}").format(sql.Literal(task)))
    if queue is not None:
        clauses.append(sql.SQL("j.queue = {}").format(sql.Literal(queue)))
    if statuses is not None:
        clauses.append(sql.SQL("j.status = ANY({})").format(sql.Literal(statuses)))
    return sql.SQL(" AND ").join(clauses)


def enqueued_jobs(
    source: App | psycopg.Connection[Any],
    task: str | Task[Any, Any] | None = None,
    *,
    queue: str | None = None,
    status: StatusFilter = "queued",
    args: Mapping[str, Any] | None = None,
    schema: str | None = None,
) -> list[Job]:
    """The jobs in the database that match, oldest first, as :class:`pgjobs.Job` objects.

    ``source``: the App (its database and schema), or a psycopg connection (``schema``
    defaults to ``PGJOBS_SCHEMA``, else ``pgjobs``). ``task``: a name or a registered task.
    ``status``: one status, several, or None for any (default: ``queued``, the jobs waiting
    to run, including those scheduled for later). ``args``: a subset of the job's arguments.
    """
    name = _task_name(task)
    if queue is not None:
        validation.queue_name(queue)
    expected = _expected_args(args)
    jobs = _read(source, schema, _where(name, queue, _statuses(status)))
    if expected is None:
        return jobs
    return [job for job in jobs if _args_match(job.args, expected)]


def _describe(job: JobRecord) -> str:
    return (
        f"#{job.id} {job.task} args={json.dumps(job.args, sort_keys=True, default=str)} "
        f"queue={job.queue} status={job.status.value}"
    )


def _criteria(
    task: str | None, args: Mapping[str, Any] | None, queue: str | None, status: StatusFilter
) -> str:
    """``of emails.send with args including {...} in queue emails, status queued``."""
    parts = [f"of {task}"] if task else []
    if args is not None:
        parts.append(f"with args including {json.dumps(args, sort_keys=True, default=str)}")
    if queue is not None:
        parts.append(f"in queue {queue}")
    statuses = _statuses(status)
    return " ".join(parts) + (f", status {' or '.join(statuses)}" if statuses else ", any status")


def _report(
    source: App | psycopg.Connection[Any],
    schema: str | None,
    task: str | None,
    args: Mapping[str, Any] | None,
    queue: str | None,
    status: StatusFilter,
) -> str:
    """What the database holds, for a failed assertion: the latest jobs, and a hint when
    only the status kept a job from matching."""
    everything = _read(source, schema, sql.SQL("true"))
    if not everything:
        return "No job was enqueued at all."
    shown = everything[-SHOWN_MAX:]
    lines = [f"The database holds {len(everything)} job(s):"]
    if len(everything) > len(shown):
        lines.append(f"  ... {len(everything) - len(shown)} older ones, then:")
    lines.extend(f"  {_describe(job)}" for job in shown)
    if status is not None:
        other = enqueued_jobs(source, task, queue=queue, status=None, args=args, schema=schema)
        if other:
            found = sorted({job.status.value for job in other})
            lines.append(
                f"(matching job(s) exist with status {', '.join(found)}: pass status=None "
                "to match any status)"
            )
    return "\n".join(lines)


def assert_enqueued(
    source: App | psycopg.Connection[Any],
    task: str | Task[Any, Any] | None = None,
    args: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    count: int | None = None,
    status: StatusFilter = "queued",
    schema: str | None = None,
) -> list[Job]:
    """Assert that matching jobs were enqueued (at least one, or exactly ``count``), and
    return them, oldest first. Matching is :func:`enqueued_jobs`'s. ::

        signup(email="a@example.com")
        [job] = assert_enqueued(app, send_welcome, {"email": "a@example.com"}, queue="emails")
    """
    __tracebackhide__ = True  # pytest shows the failure at the caller's line
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise InvalidInput(f"count: a number of jobs (0 or more), got {count!r}")
    name = _task_name(task)
    jobs = enqueued_jobs(source, name, queue=queue, status=status, args=args, schema=schema)
    if (count is None and jobs) or (count is not None and len(jobs) == count):
        return jobs
    wanted = "no job" if count == 0 else f"{count} job(s)" if count is not None else "a job"
    raise AssertionError(
        f"expected {wanted} {_criteria(name, args, queue, status)}; found {len(jobs)}. "
        f"{_report(source, schema, name, args, queue, status)}"
    )


def assert_not_enqueued(
    source: App | psycopg.Connection[Any],
    task: str | Task[Any, Any] | None = None,
    args: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    status: StatusFilter = "queued",
    schema: str | None = None,
) -> None:
    """Assert that no job matches (see :func:`enqueued_jobs`)."""
    __tracebackhide__ = True
    name = _task_name(task)
    jobs = enqueued_jobs(source, name, queue=queue, status=status, args=args, schema=schema)
    if jobs:
        listed = "\n".join(f"  {_describe(job)}" for job in jobs[:SHOWN_MAX])
        raise AssertionError(
            f"expected no job {_criteria(name, args, queue, status)}; found {len(jobs)}:\n{listed}"
        )


__all__ = ["assert_enqueued", "assert_not_enqueued", "enqueued_jobs"]
