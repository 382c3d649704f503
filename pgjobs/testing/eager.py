"""Eager mode: in a test, ``enqueue`` runs the job at once and returns it finished.

A unit-test convenience for code that enqueues and whose test wants the effects at once.
Each enqueue through the App (``app.enqueue``, ``task.enqueue``, ``enqueue_many`` and their
async twins) inserts the job as usual, then drains (:mod:`pgjobs.testing.drain`) before
returning: the job runs through the worker's own claim, executor and completer, in the
caller's process. Jobs enqueued while a drain runs (by a handler, a middleware, or as
follow-ups) are left to that drain, which runs them next: eager mode never nests runs.

Its limits, which are those of a drain: one job at a time, no lease expiry, heartbeat or
rescue, no LISTEN wake-up, no cron, retries and delayed jobs not waited for (``retries=``,
``scheduled=``), and the drain runs every ready job, not only the one just enqueued. Jobs
enqueued by other producers (SQL, the CLI, another App) are not run until something
enqueues through this App, or the test drains.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import pq

from pgjobs.app import App, Job
from pgjobs.errors import InvalidInput
from pgjobs.testing.drain import (
    MAX_JOBS_DEFAULT,
    TIMEOUT_DEFAULT,
    DrainOptions,
    JobRun,
    check_app,
    draining,
    run_drain,
    run_drain_blocking,
)
from pgjobs.types import JobRecord


def _committed(connection: Any) -> bool:
    """Whether a job just enqueued through ``connection`` is visible to other sessions: no
    ``connection=``, or a psycopg connection in autocommit (no transaction left open)."""
    if connection is None:
        return True
    if isinstance(connection, psycopg.Connection | psycopg.AsyncConnection):
        return connection.info.transaction_status == pq.TransactionStatus.IDLE
    return False


def _refuse_uncommitted(connection: Any) -> None:
    if not _committed(connection):
        raise InvalidInput(
            "eager mode cannot run a job enqueued inside your transaction (connection=): no "
            "one else sees it until you commit; call drain(app) after the commit instead"
        )


class Eager:
    """Eager mode of one App, from :func:`eager`. ``runs`` lists every run it made, in order
    (the jobs just enqueued, their follow-ups, and whatever else was ready)."""

    def __init__(self, app: App, options: DrainOptions) -> None:
        self.app = app
        self.options = options
        self.runs: list[JobRun] = []

    def _finished(self, job: Job, rows: dict[int, JobRecord]) -> Job:
        record = rows.get(job.id)
        return job._update(record) if record is not None else job

    # The App calls these right after each insert while eager mode is on.

    def enqueued(self, job: Job, connection: Any) -> Job:
        if draining():
            return job  # the drain under way runs it next
        _refuse_uncommitted(connection)
        runs, rows = run_drain_blocking(self.app, self.options, [job.id])
        self.runs.extend(runs)
        return self._finished(job, rows)

    async def enqueued_async(self, job: Job, connection: Any) -> Job:
        if draining():
            return job
        _refuse_uncommitted(connection)
        runs, rows = await run_drain(self.app, self.options, [job.id])
        self.runs.extend(runs)
        return self._finished(job, rows)

    def enqueued_many(self, connection: Any) -> None:
        if draining():
            return
        _refuse_uncommitted(connection)
        runs, _ = run_drain_blocking(self.app, self.options)
        self.runs.extend(runs)

    async def enqueued_many_async(self, connection: Any) -> None:
        if draining():
            return
        _refuse_uncommitted(connection)
        runs, _ = await run_drain(self.app, self.options)
        self.runs.extend(runs)


@contextlib.contextmanager
def eager(
    app: App,
    *,
    retries: bool = False,
    scheduled: bool = False,
    max_jobs: int = MAX_JOBS_DEFAULT,
    timeout: float | None = TIMEOUT_DEFAULT,
) -> Iterator[Eager]:
    """Within the block, every enqueue through ``app`` runs the job before returning, and
    returns it finished (``succeeded``, ``failed``, ``cancelled``, or ``queued`` again when
    a retry or a delay is not due yet). A unit-test convenience: see the module's docstring
    and docs/testing.md for its limits. ::

        with pgjobs.testing.eager(app):
            job = send_email.enqueue(to="a@example.com")
        assert job.status == "succeeded" and job.result == {"sent": True}

    The options are :func:`~pgjobs.testing.drain`'s. A job enqueued inside your own
    transaction (``connection=``) cannot run before you commit: that enqueue raises
    :class:`~pgjobs.InvalidInput` (drain after the commit instead).
    """
    check_app(app, "eager")
    if app._eager is not None:
        raise InvalidInput("eager mode is already on for this App (eager() blocks do not nest)")
    mode = Eager(
        app,
        DrainOptions(retries=retries, scheduled=scheduled, max_jobs=max_jobs, timeout=timeout),
    )
    app._eager = mode
    try:
        yield mode
    finally:
        app._eager = None


__all__ = ["Eager", "eager"]
