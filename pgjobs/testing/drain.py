"""Running jobs inline in a test: :func:`drain` and its twin :func:`drain_async`.

A drain is a worker cut down to what a test needs: it claims one job at a time with the
worker's own claim (priority, ``not_before``, paused and limited queues, lock keys and
dependencies all apply), runs it with the worker's executor (middleware, ``current_job()``,
``transaction()``, timeouts, retry policies) and records its outcome with the worker's
completer (follow-up jobs committed with their parent's success), in the test's process.
What it leaves out is what makes a worker a daemon: no LISTEN, no heartbeat, no rescue, no
cron, no worker row, no signal handlers.

It stops when nothing is ready, and returns one :class:`JobRun` per run, in the order the
runs happened. A run that failed and was rescheduled with a backoff delay is reported as
``retried`` and not waited for (``retries=True`` makes retries due at once, so that they run
in the same drain; ``scheduled=True`` does the same for every job scheduled for later).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
import uuid
from collections.abc import Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from psycopg import sql

from pgjobs import db, outcomes, validation
from pgjobs.app import App, Job
from pgjobs.errors import InvalidInput
from pgjobs.types import JobRecord, JobStatus
from pgjobs.worker.completer import Completer, Finished
from pgjobs.worker.connections import Reconnecting
from pgjobs.worker.context import JobContext, LeaseLost
from pgjobs.worker.executor import Executor, Run, last_line

if TYPE_CHECKING:
    from pgjobs.registry import Task

#: A drain that has run this many jobs while more are still ready fails: a handler that
#: enqueues a job like itself for ever would otherwise keep the test running for ever.
MAX_JOBS_DEFAULT = 1000
#: Seconds a whole drain may take before it fails (None: no limit).
TIMEOUT_DEFAULT = 60.0
#: Nothing extends leases during a drain (no heartbeat): a lease long enough for any test's
#: handler, so that a worker running next to the test never rescues a job the drain holds.
LEASE_SECONDS = 3600.0

RunOutcome = Literal["succeeded", "retried", "snoozed", "failed", "cancelled", "lost"]

#: True while a drain runs, in its task and in the handler threads and tasks it starts (they
#: copy the context): eager mode leaves the jobs enqueued there to the drain under way.
_draining: ContextVar[bool] = ContextVar("pgjobs_testing_draining", default=False)

_MAKE_DUE = sql.SQL(
    "UPDATE {}.jobs SET not_before = now()"
    " WHERE status = 'queued' AND not_before > now()"
    " AND (%(queues)s::text[] IS NULL OR queue = ANY (%(queues)s::text[]))"
)
_BACKLOG = sql.SQL("SELECT {}.backlog(%(queues)s::text[]) AS ready")


def draining() -> bool:
    """Whether the caller runs inside a drain (in a handler, a middleware, a follow-up)."""
    return _draining.get()


@dataclass(frozen=True, repr=False)
class JobRun:
    """One run of one job during a drain, as the database recorded it.

    ``outcome`` says what the run did: ``succeeded``, ``failed`` or ``cancelled`` (the job
    ended), ``retried`` (it raised and will run again after its backoff: ``not_before``),
    ``snoozed`` (``pgjobs.Snooze``: again later, the attempt given back), or ``lost`` (its
    outcome was refused because another worker took the job over). ``status`` is the job's
    status right after the run; ``job`` the whole row then, as a :class:`pgjobs.Job`.
    """

    id: int
    task: str
    queue: str
    args: dict[str, Any]
    #: 1 for the first run of the job, 2 for its first retry...
    attempt: int
    outcome: RunOutcome
    status: JobStatus
    #: The handler's return value, as stored (JSON); None unless the run succeeded.
    result: Any
    #: What the run recorded (the traceback ending with ``Type: message``); None on success.
    error: str | None
    #: When a retried or snoozed job is due again.
    not_before: datetime | None
    parent_id: int | None
    job: Job = field(compare=False)

    @property
    def ok(self) -> bool:
        return self.outcome == "succeeded"

    @property
    def error_line(self) -> str:
        """The last line of the error (``ValueError: no such user``), or ``""``."""
        return last_line(self.error)

    def __repr__(self) -> str:
        detail = repr(self.result) if self.ok else self.error_line
        return (
            f"<JobRun #{self.id} {self.task} attempt {self.attempt}: {self.outcome} {detail}".rstrip()
            + ">"
        )


class DrainIncomplete(AssertionError):
    """A drain stopped with work left: it reached ``max_jobs`` while jobs were still ready,
    or its ``timeout``. ``runs`` holds what ran until then."""

    def __init__(self, message: str, runs: list[JobRun]) -> None:
        super().__init__(message)
        self.runs = runs


def _queues(queue: str | Sequence[str] | None) -> list[str] | None:
    if queue is None:
        return None
    names = [queue] if isinstance(queue, str) else list(queue)
    if not names:
        raise InvalidInput("drain: give a queue name, a list of queue names, or None (every queue)")
    return [validation.queue_name(name) for name in names]


def check_app(app: App, what: str) -> None:
    if not app.tasks:
        raise InvalidInput(
            f"{what}: this App has no tasks registered: pass the App your tasks are "
            "registered on (with pytest, override the pgjobs_app fixture: docs/testing.md)"
        )


_ENDED: dict[JobStatus, RunOutcome] = {
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def _run_outcome(record: JobRecord, claimed: db.ClaimedJob, fenced: bool) -> RunOutcome:
    """What a run did, from the row it left: back in the queue with its attempt counted is
    a retry, with the attempt given back a snooze; still running means someone else has it."""
    if fenced or record.status is JobStatus.RUNNING:
        return "lost"
    if record.status is JobStatus.QUEUED:
        return "snoozed" if record.attempts < claimed.attempts else "retried"
    return _ENDED[record.status]


@dataclass(frozen=True)
class DrainOptions:
    """How a drain runs (see :func:`drain`)."""

    queues: list[str] | None = None
    retries: bool = False
    scheduled: bool = False
    max_jobs: int = MAX_JOBS_DEFAULT
    timeout: float | None = TIMEOUT_DEFAULT

    def __post_init__(self) -> None:
        if isinstance(self.max_jobs, bool) or not isinstance(self.max_jobs, int):
            raise InvalidInput(f"drain: max_jobs must be a whole number, got {self.max_jobs!r}")
        if self.max_jobs < 1:
            raise InvalidInput(f"drain: max_jobs must be at least 1, got {self.max_jobs}")
        if self.timeout is not None and not self.timeout > 0:
            raise InvalidInput(
                f"drain: timeout must be a positive number of seconds or None, got {self.timeout!r}"
            )


class Drain:
    """One drain. Its methods ``touch``, ``progress_changed``, ``dsn`` and ``lease_seconds``
    are the services a running job's :class:`JobContext` asks of its worker."""

    def __init__(self, app: App, options: DrainOptions) -> None:
        self.app = app
        self.options = options
        self.schema = app.schema
        self.id = uuid.uuid4()  # the claim records it as the job's worker_id
        self.runs: list[JobRun] = []
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by run()
        self._dsn = ""  # checked by run()
        # One connection, used in turn by the claim, the completer, touch() and the read-back:
        # jobs run one at a time and each outcome is written before the next claim.
        self.connection = Reconnecting(
            "drain", lambda: self._dsn, connect_timeout=app.settings.connect_timeout,
            prepare_threshold=app.prepare_threshold,
        )  # fmt: skip
        self.completer = Completer(self.schema, self.connection, on_fenced=self._on_fenced)
        self.executor = Executor(1, self._submit, log_jobs=False)
        self._claimed = 0
        self._fenced: set[int] = set()
        self._deadline: float | None = None
        #: Jobs of batch tasks, gathered per task until their batch is full or nothing else
        #: is ready (as a worker with enough free slots gathers them).
        self._gathering: dict[str, list[Run]] = {}

    # --- services of JobContext -----------------------------------------------------------

    @property
    def lease_seconds(self) -> float:
        return LEASE_SECONDS

    def dsn(self) -> str:
        return self._dsn

    def progress_changed(self, context: JobContext) -> None:
        """Progress is written with the run's outcome (a worker also writes it meanwhile)."""

    async def touch(self, context: JobContext, seconds: float | None) -> datetime:
        async with self.connection.use() as conn:
            touched = await db.run_async(
                conn,
                db.touch(self.schema, context.job.id, context.job.lease_token, seconds or LEASE_SECONDS),
            )  # fmt: skip
        if touched is None:
            raise LeaseLost(f"job {context.job.id}: the lease was lost")
        context.lease_expires_at = touched.lease_expires_at
        return touched.lease_expires_at

    # --- the drain ---------------------------------------------------------------------------

    async def run(self, read: Sequence[int] = ()) -> dict[int, JobRecord]:
        """Run every ready job; ``self.runs`` gets one entry per run. Returns the rows of the
        jobs listed in ``read`` as they are at the end (eager mode returns them)."""
        self.loop = asyncio.get_running_loop()
        if self.options.timeout is not None:
            self._deadline = time.monotonic() + self.options.timeout
        try:
            self._dsn = await asyncio.to_thread(self.app._checked_dsn)
        except BaseException:
            self.executor.close()
            raise
        token = _draining.set(True)
        self.completer.start()
        try:
            await self._drain()
            rows = {}
            async with self.connection.use() as conn:
                for job_id in read:
                    record = await db.run_async(conn, db.get_job(self.schema, job_id))
                    if record is not None:
                        rows[job_id] = record
            return rows
        finally:
            _draining.reset(token)
            for runs in self._gathering.values():
                for run in runs:
                    self.executor.hand_back(run, "handed back: the drain stopped before running it")
            self._gathering.clear()
            await self.completer.stop()
            await self.connection.close()
            self.executor.close()

    async def _drain(self) -> None:
        options = self.options
        while True:
            if self._claimed >= options.max_jobs:
                await self._run_gathered()
                ready = await self._ready()
                if ready:
                    last = f" (the last run: {self.runs[-1]!r})" if self.runs else ""
                    raise DrainIncomplete(
                        f"drain stopped after {self._claimed} jobs (max_jobs) with {ready} "
                        f"still ready: does a handler enqueue jobs for ever?{last}",
                        self.runs,
                    )
                return
            self._check_deadline()
            if options.scheduled:
                await self._make_due()
            async with self.connection.use() as conn:
                claimed = await db.run_async(
                    conn,
                    db.claim_call(
                        self.schema, queues=options.queues, limit=1, worker_id=self.id,
                        lease_seconds=LEASE_SECONDS,
                    ),
                )  # fmt: skip
            if not claimed:
                if not self._gathering:
                    return
                await self._run_gathered()
                continue
            self._claimed += 1
            job = claimed[0]
            run = Run(JobContext(job, self.app, self), self.app.tasks.get(job.task))
            task = run.task
            if task is not None and task.batch_size is not None:
                gathered = self._gathering.setdefault(task.name, [])
                gathered.append(run)
                if len(gathered) >= task.batch_size:
                    await self._run_batch(task, self._gathering.pop(task.name))
                continue
            await self._execute([run], self.executor.run(run))

    async def _run_gathered(self) -> None:
        while self._gathering:
            name = next(iter(self._gathering))
            runs = self._gathering.pop(name)
            task = runs[0].task
            assert task is not None
            await self._run_batch(task, runs)

    async def _run_batch(self, task: Task[Any, Any], runs: list[Run]) -> None:
        await self._execute(runs, self.executor.run_batch(runs, task))

    async def _execute(self, runs: list[Run], work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (the executor running these runs) to its end in a task of its own (as
        a worker does: a cancel or the timeout stops that task), wait until the outcomes are
        written, and read back what the database recorded."""
        running = asyncio.create_task(work, name=f"pgjobs-drain-{runs[0].context.job.id}")
        for run in runs:
            run.own_task = running
        try:
            if self._deadline is None:
                await running
            else:
                await asyncio.wait_for(running, max(self._deadline - time.monotonic(), 0.0))
        except asyncio.TimeoutError:
            for run in runs:
                if not run.submitted:
                    run.submitted = True
                    self.completer.submit(
                        Finished(outcomes.failed(run.context.job, self._timeout_text()))
                    )
            await self.completer.drained()
            jobs = ", ".join(f"#{r.context.job.id} ({r.context.job.task})" for r in runs)
            raise DrainIncomplete(
                f"{self._timeout_text()} while job {jobs} was running", self.runs
            ) from None
        await self.completer.drained()
        async with self.connection.use() as conn:
            for run in runs:
                claimed = run.context.job
                record = await db.run_async(conn, db.get_job(self.schema, claimed.id))
                if record is not None:
                    self.runs.append(self._job_run(record, claimed))

    def _job_run(self, record: JobRecord, claimed: db.ClaimedJob) -> JobRun:
        outcome = _run_outcome(record, claimed, claimed.id in self._fenced)
        self._fenced.discard(claimed.id)
        job = Job(**{name: getattr(record, name) for name in JobRecord.__dataclass_fields__})
        job.app = self.app
        return JobRun(
            id=record.id, task=record.task, queue=record.queue, args=claimed.args,
            attempt=claimed.attempts, outcome=outcome, status=record.status,
            result=record.result if outcome == "succeeded" else None,
            error=None if outcome == "succeeded" else record.error,
            not_before=record.not_before if outcome in ("retried", "snoozed") else None,
            parent_id=record.parent_id, job=job,
        )  # fmt: skip

    def _submit(self, finished: Finished) -> None:
        """The executor's outcomes go to the completer; with ``retries``, a retry is made
        due at once instead of after its backoff (snoozes keep their delay)."""
        outcome = finished.outcome
        if self.options.retries and outcome.status is JobStatus.QUEUED and not outcome.refund:
            finished.outcome = dataclasses.replace(outcome, delay=timedelta(0), not_before=None)
        self.completer.submit(finished)

    def _on_fenced(self, outcome: db.Outcome) -> None:
        self._fenced.add(outcome.job_id)

    def _timeout_text(self) -> str:
        return f"drain timed out after {self.options.timeout:g}s (timeout)"

    def _check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise DrainIncomplete(
                f"{self._timeout_text()}, after {len(self.runs)} runs and before the next claim",
                self.runs,
            )

    async def _make_due(self) -> None:
        async with self.connection.use() as conn:
            await conn.execute(
                _MAKE_DUE.format(sql.Identifier(self.schema)), {"queues": self.options.queues}
            )

    async def _ready(self) -> int:
        if self.options.scheduled:
            await self._make_due()
        async with self.connection.use() as conn:
            cursor = await conn.execute(
                _BACKLOG.format(sql.Identifier(self.schema)), {"queues": self.options.queues}
            )
            row = await cursor.fetchone()
        return int(row[0]) if row else 0


def _options(
    queue: str | Sequence[str] | None,
    retries: bool,
    scheduled: bool,
    max_jobs: int,
    timeout: float | None,
) -> DrainOptions:
    return DrainOptions(
        queues=_queues(queue), retries=retries, scheduled=scheduled, max_jobs=max_jobs,
        timeout=timeout,
    )  # fmt: skip


async def drain_async(
    app: App,
    queue: str | Sequence[str] | None = None,
    *,
    retries: bool = False,
    scheduled: bool = False,
    max_jobs: int = MAX_JOBS_DEFAULT,
    timeout: float | None = TIMEOUT_DEFAULT,
) -> list[JobRun]:
    """The async twin of :func:`drain`, for code already inside an event loop (async
    handlers run on that loop)."""
    __tracebackhide__ = True
    check_app(app, "drain_async")
    runner = Drain(app, _options(queue, retries, scheduled, max_jobs, timeout))
    try:
        await runner.run()
    except DrainIncomplete as error:
        raise error.with_traceback(None) from None  # the test's line, not the drain's insides
    return runner.runs


def drain(
    app: App,
    queue: str | Sequence[str] | None = None,
    *,
    retries: bool = False,
    scheduled: bool = False,
    max_jobs: int = MAX_JOBS_DEFAULT,
    timeout: float | None = TIMEOUT_DEFAULT,
) -> list[JobRun]:
    """Run every job that is ready now, inline, and return one :class:`JobRun` per run.

    ``queue``: a queue name or a list of them (default: every queue). Jobs run one at a time,
    in the order a worker claims them (priority, highest first, then ``not_before``, then
    id), through the worker's own claim, executor and completer; jobs that become ready
    meanwhile (follow-ups, dependents, the next job of a lock key) run in the same drain.
    Jobs of batch tasks are gathered per task and handed over together when the batch is
    full or nothing else is ready.

    A run that raised is recorded as a worker records it: ``retried`` with its backoff
    delay while attempts remain (not waited for), then ``failed``. ``retries=True`` makes
    each retry due at once, so a job runs until it succeeds or spends its attempts within
    the drain. ``scheduled=True`` also runs jobs scheduled for later (a ``delay``, a
    backoff, a snooze) by moving their ``not_before`` to now.

    Bounded: more than ``max_jobs`` runs with jobs still ready, or a drain longer than
    ``timeout`` seconds, raises :class:`DrainIncomplete` (an ``AssertionError``, with
    ``.runs``). Paused queues are left alone, as by a worker. ::

        send_email.enqueue(to="a@example.com")
        [run] = drain(app)
        assert run.outcome == "succeeded" and run.result == {"sent": True}
    """
    __tracebackhide__ = True
    check_app(app, "drain")
    options = _options(queue, retries, scheduled, max_jobs, timeout)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        runner = Drain(app, options)
        try:
            asyncio.run(runner.run())
        except DrainIncomplete as error:
            raise error.with_traceback(None) from None  # the test's line, not the drain's
        return runner.runs
    raise InvalidInput(
        "drain() cannot run inside a running event loop: use `await drain_async(...)` there"
    )


async def run_drain(
    app: App, options: DrainOptions, read: Sequence[int] = ()
) -> tuple[list[JobRun], dict[int, JobRecord]]:
    """A drain, and the rows of the jobs listed in ``read`` at its end (for eager mode)."""
    runner = Drain(app, options)
    rows = await runner.run(read)
    return runner.runs, rows


def run_drain_blocking(
    app: App, options: DrainOptions, read: Sequence[int] = ()
) -> tuple[list[JobRun], dict[int, JobRecord]]:
    """:func:`run_drain` from sync code. Inside a running event loop (sync code called from
    async code), on a loop of its own in another thread: the caller blocks its own loop
    meanwhile, as a sync enqueue there would anyway."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_drain(app, options, read))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pgjobs-drain") as thread:
        return thread.submit(asyncio.run, run_drain(app, options, read)).result()


__all__ = ["DrainIncomplete", "JobRun", "drain", "drain_async"]
