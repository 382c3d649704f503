"""The executor: runs one claimed job's handler and turns what happened into an outcome.

``async def`` handlers run on the event loop, each in its own task; sync handlers run in a
thread pool under a copy of the caller's context (so ``current_job()`` and other context
variables follow them). A handler that outlives its task's ``timeout`` is stopped if async;
a sync one cannot be killed, so its run is fenced instead (the outcome is written at once,
which clears the lease token; whatever the thread does later is refused) and its slot stays
taken until the thread returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from pgjobs import client, db, outcomes, tracing
from pgjobs.backoff import DEFAULT_POLICY
from pgjobs.callbacks import CALLBACK_TASK
from pgjobs.control import Cancel, Fail, Retry, Snooze
from pgjobs.errors import InvalidInput
from pgjobs.log import get_logger
from pgjobs.registry import Task
from pgjobs.types import JobStatus
from pgjobs.worker.batches import per_job
from pgjobs.worker.completer import Finished
from pgjobs.worker.context import JobContext, LeaseLost, bind, unbind
from pgjobs.worker.metrics import outcome_label

if TYPE_CHECKING:
    from pgjobs.worker.metrics import WorkerMetrics

R = TypeVar("R")


class TaskTimedOut(TimeoutError):
    """The task's ``timeout`` elapsed. Its own class: a ``TimeoutError`` the handler raises
    itself (a third party did not answer) is an ordinary error of the handler, with its
    message and traceback, and goes through the task's retry policy like any other."""


async def within(awaitable: Awaitable[R], timeout: float) -> R:
    """``asyncio.wait_for``, raising :class:`TaskTimedOut` only when the deadline passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError as exc:
        if loop.time() >= deadline:
            raise TaskTimedOut(f"ran longer than {timeout:g}s") from exc
        raise


@dataclass(frozen=True)
class Recorded:
    """The handler's success was written in its own transaction (``current_job().transaction()``);
    ``status`` is None when the run had lost its lease and everything rolled back."""

    status: JobStatus | None


def _success(context: JobContext, result: Any) -> db.Outcome:
    outcome = outcomes.succeeded(context.job, result)
    if context.progress is not None:
        outcome = dataclasses.replace(
            outcome, progress=context.progress[0], progress_message=context.progress[1]
        )
    return outcome


def record_in_transaction(context: JobContext, result: Any) -> Recorded:
    """Write the job's success (and follow-ups) in the handler's open transaction, commit."""
    conn = context.transaction_conn
    assert isinstance(conn, psycopg.Connection)
    statuses = db.run(conn, db.finish(context.app.schema, [_success(context, result)]))
    if context.job.id not in statuses:
        conn.rollback()
        return Recorded(None)
    if context.follow_ups:
        client.enqueue_many(client.PsycopgTarget(conn), context.app.schema, context.follow_ups)
    conn.commit()
    return Recorded(statuses[context.job.id])


async def record_in_transaction_async(context: JobContext, result: Any) -> Recorded:
    conn = context.transaction_conn
    assert isinstance(conn, psycopg.AsyncConnection)
    statuses = await db.run_async(conn, db.finish(context.app.schema, [_success(context, result)]))
    if context.job.id not in statuses:
        await conn.rollback()
        return Recorded(None)
    if context.follow_ups:
        await client.enqueue_many_async(
            client.AsyncPsycopgTarget(conn), context.app.schema, context.follow_ups
        )
    await conn.commit()
    return Recorded(statuses[context.job.id])


def abandon_transaction(context: JobContext) -> None:
    """Roll back a transaction the handler left open (it raised after the block ended)."""
    conn = context.transaction_conn
    context.transaction_conn = None
    if isinstance(conn, psycopg.Connection) and not conn.closed:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        conn.close()


async def abandon_transaction_async(context: JobContext) -> None:
    conn = context.transaction_conn
    context.transaction_conn = None
    if isinstance(conn, psycopg.AsyncConnection) and not conn.closed:
        with contextlib.suppress(psycopg.Error):
            await conn.rollback()
        await conn.close()


def describe(error: BaseException) -> str:
    """The error as stored on the job: the traceback, ending with ``Type: message``."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()


def last_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[-1] if text and text.strip() else ""


@dataclass
class Run:
    """A job being run: its context, and the asyncio task of its handler (async only)."""

    context: JobContext
    task: Task[Any, Any] | None
    started: float = field(default_factory=time.monotonic)
    handler: asyncio.Future[Any] | None = None
    submitted: bool = False  # an outcome was already written (timeout, hand-back)
    #: The asyncio task running this job (set by the worker when it starts the job).
    own_task: asyncio.Task[Any] | None = None
    #: How the run ended, once counted in the metrics (see Executor._ended): counted once,
    #: whichever of the paths (outcome, timeout, hand-back, lost lease) comes first.
    ended_as: str | None = None


class Executor:
    def __init__(
        self,
        concurrency: int,
        submit: Callable[[Finished], None],
        *,
        log_jobs: bool,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pgjobs-job")
        self._submit = submit
        self._log_jobs = log_jobs
        self._log = get_logger("pgjobs.worker")
        self._metrics = metrics
        self.stuck_threads = 0

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    @property
    def busy_threads(self) -> int:
        return self.stuck_threads

    async def run(self, run: Run) -> None:
        """Run the job and submit its outcome (unless one was submitted for it already)."""
        job = run.context.job
        if self._log_jobs:
            self._log.debug(
                "job.started", job_id=job.id, task=job.task, queue=job.queue, attempt=job.attempts
            )
        if job.task != CALLBACK_TASK and tracing.active():  # deliveries: see builtins
            with tracing.job_span(job) as span:
                finished = await self._outcome(run)
                self._ended(run, finished.outcome)
                tracing.ended(span, run.ended_as or "", finished.outcome.error)
        else:
            finished = await self._outcome(run)
        self._ended(run, finished.outcome)
        if run.submitted:
            return
        if (
            run.context.progress is not None
            and run.context.progress != run.context.progress_written
        ):
            percent, message = run.context.progress
            finished.outcome = dataclasses.replace(
                finished.outcome, progress=percent, progress_message=message
            )
        run.submitted = True
        self._submit(finished)
        if self._log_jobs:
            self._log_end(run, finished.outcome)

    def _ended(self, run: Run, outcome: db.Outcome | str) -> None:
        """Count the run's end in the metrics, once (the first path to report it wins)."""
        if run.ended_as is not None:
            return
        run.ended_as = outcome if isinstance(outcome, str) else outcome_label(outcome)
        if self._metrics is not None:
            self._metrics.job_ended(
                run.context.job.task, run.ended_as, time.monotonic() - run.started
            )
            if run.ended_as == "lease_lost":
                self._metrics.lease_lost += 1

    def hand_back(self, run: Run, reason: str) -> None:
        """Give the job back now (shutdown): fences the handler's own later outcome."""
        if run.submitted:
            return
        run.submitted = True
        self._ended(run, "handed_back")
        self._submit(Finished(outcomes.handed_back(run.context.job, reason)))
        if run.handler is not None and not run.handler.done():
            run.handler.cancel()
        self._log.warning(
            "job.handed_back", job_id=run.context.job.id, task=run.context.job.task, reason=reason
        )

    def _log_end(self, run: Run, outcome: db.Outcome) -> None:
        job = run.context.job
        fields: dict[str, Any] = {
            "job_id": job.id, "task": job.task, "queue": job.queue, "attempt": job.attempts,
            "duration_ms": round((time.monotonic() - run.started) * 1000, 2),
            "outcome": outcome.status.value if not outcome.refund else "snoozed",
        }  # fmt: skip
        if outcome.error and outcome.status.value != "succeeded":
            fields["error"] = last_line(outcome.error)
            self._log.warning("job.ended", **fields)
        else:
            self._log.info("job.ended", **fields)

    async def _outcome(self, run: Run) -> Finished:
        job = run.context.job
        task = run.task
        if task is None:
            return Finished(
                outcomes.errored(
                    job, run.context.app.unknown_task_message(job.task), DEFAULT_POLICY
                )
            )
        try:
            result = await self._call(run, task)
        except asyncio.CancelledError:
            if run.context.cancelled:
                return Finished(outcomes.cancelled(job, "cancelled on request while running"))
            raise
        except LeaseLost as error:
            run.submitted = True  # nothing can be recorded without the lease
            self._ended(run, "lease_lost")
            self._log.warning("job.fenced", job_id=job.id, task=job.task, reason=str(error))
            return Finished(outcomes.failed(job, str(error)))
        except Exception as error:
            return self._error_outcome(run, task, error)
        if isinstance(result, Recorded):
            run.submitted = True
            if result.status is None:
                self._ended(run, "lease_lost")
                self._log.warning(
                    "job.fenced",
                    job_id=job.id,
                    task=job.task,
                    reason="lease lost: the handler's transaction was rolled back",
                )
            elif self._log_jobs:
                self._log_end(run, outcomes.succeeded(job, None))
            return Finished(outcomes.succeeded(job, None))
        if run.context.cancelled:
            # A sync handler that saw current_job().cancelled and returned: the job ends
            # cancelled, as the cancel asked.
            return Finished(outcomes.cancelled(job, "cancelled on request while running"))
        try:
            return Finished(outcomes.succeeded(job, result), run.context.follow_ups)
        except InvalidInput as error:
            return Finished(outcomes.failed(job, f"the handler's result cannot be stored: {error}"))

    def _error_outcome(self, run: Run, task: Task[Any, Any], error: BaseException) -> Finished:
        """What an exception raised (or, in a batch, returned) for a job makes of it."""
        job = run.context.job
        if isinstance(error, Retry):
            return Finished(outcomes.errored(job, f"Retry: {error}", task.retry, delay=error.after))
        if isinstance(error, Snooze):
            return Finished(outcomes.snoozed(job, error.delay))
        if isinstance(error, Fail):
            return Finished(outcomes.failed(job, f"Fail: {error}"))
        if isinstance(error, Cancel):
            return Finished(outcomes.cancelled(job, f"Cancel: {error}"))
        if isinstance(error, TaskTimedOut):
            return Finished(
                outcomes.errored(
                    job,
                    f"TimeoutError: ran longer than the task's timeout ({task.timeout})",
                    task.retry,
                )
            )
        if run.context.cancelled:
            return Finished(
                outcomes.cancelled(
                    job, f"cancelled on request; the handler then raised: {describe(error)}"
                )
            )
        policy = task.policy_for(error)
        if policy is None:
            return Finished(outcomes.failed(job, describe(error)))
        return Finished(outcomes.errored(job, describe(error), policy))

    async def run_batch(self, runs: list[Run], task: Task[Any, Any]) -> None:
        """Call a batch task's handler once with the jobs' contexts, then submit one outcome
        per job (see :mod:`pgjobs.worker.batches`)."""
        contexts = [run.context for run in runs]
        timeout = task.timeout.total_seconds() if task.timeout is not None else None
        items: list[Any]
        try:
            if task.is_async:
                call = task.fn(contexts)
                result = await (within(call, timeout) if timeout is not None else call)
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(
                    self._threads, contextvars.copy_context().run, task.fn, contexts
                )
            items = per_job(result, len(runs), [c.id for c in contexts])
        except asyncio.CancelledError:
            if not all(run.context.cancelled for run in runs):
                raise
            items = [asyncio.CancelledError()] * len(runs)
        except Exception as error:
            items = [error] * len(runs)
        for run, item in zip(runs, items, strict=True):
            if run.submitted:
                continue
            if isinstance(item, asyncio.CancelledError):
                finished = Finished(
                    outcomes.cancelled(run.context.job, "cancelled on request while running")
                )
            elif isinstance(item, BaseException):
                finished = self._error_outcome(run, task, item)
            else:
                try:
                    finished = Finished(
                        outcomes.succeeded(run.context.job, item), run.context.follow_ups
                    )
                except InvalidInput as error:
                    finished = Finished(
                        outcomes.failed(
                            run.context.job, f"the handler's result cannot be stored: {error}"
                        )
                    )
            run.submitted = True
            self._ended(run, finished.outcome)
            self._submit(finished)
            if self._log_jobs:
                self._log_end(run, finished.outcome)

    async def _call(self, run: Run, task: Task[Any, Any]) -> Any:
        context = run.context
        timeout = task.timeout.total_seconds() if task.timeout is not None else None
        sync_hooks = context.app.sync_middlewares
        async_hooks = context.app.async_middlewares
        if task.is_async:

            async def handler() -> Any:
                token = bind(context)
                try:
                    if not context.app.middlewares:
                        result = await task.fn(**context.job.args)
                    else:
                        async with contextlib.AsyncExitStack() as stack:
                            for hook in context.app.middlewares:
                                if hook in async_hooks:
                                    await stack.enter_async_context(
                                        contextlib.asynccontextmanager(hook)(context)
                                    )
                                else:
                                    stack.enter_context(contextlib.contextmanager(hook)(context))
                            result = await task.fn(**context.job.args)
                    if context.transaction_conn is not None:
                        return await record_in_transaction_async(context, result)
                    return result
                finally:
                    unbind(token)
                    await abandon_transaction_async(context)

            if timeout is None:
                # The job's own task runs the handler: a cancel (request, shutdown) raises
                # CancelledError at the handler's await, caught by _outcome like any other
                # ending. A second task per job was a measurable cost of a drain.
                run.handler = run.own_task or asyncio.current_task()
                return await handler()
            run.handler = asyncio.ensure_future(handler())
            return await within(run.handler, timeout)

        def in_thread() -> Any:
            token = bind(context)
            try:
                with contextlib.ExitStack() as stack:
                    for hook in sync_hooks:
                        stack.enter_context(contextlib.contextmanager(hook)(context))
                    result = task.fn(**context.job.args)
                if context.transaction_conn is not None:
                    return record_in_transaction(context, result)
                return result
            finally:
                unbind(token)
                abandon_transaction(context)

        if async_hooks:
            async with contextlib.AsyncExitStack() as stack:
                for hook in async_hooks:
                    await stack.enter_async_context(contextlib.asynccontextmanager(hook)(context))
                return await self._thread(run, task, in_thread, timeout)
        return await self._thread(run, task, in_thread, timeout)

    async def _thread(
        self, run: Run, task: Task[Any, Any], in_thread: Callable[[], Any], timeout: float | None
    ) -> Any:
        context = run.context
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._threads, contextvars.copy_context().run, in_thread)
        if timeout is None:
            return await future
        try:
            return await within(asyncio.shield(future), timeout)
        except TaskTimedOut:
            # The thread cannot be stopped: record the timeout now (which fences the run),
            # and keep the slot taken until the thread returns.
            run.submitted = True
            finished = Finished(
                outcomes.errored(
                    context.job,
                    f"TimeoutError: ran longer than the task's timeout ({task.timeout}); the thread was left to finish and its outcome ignored",
                    task.retry,
                )
            )
            self._ended(run, finished.outcome)
            self._submit(finished)
            if self._log_jobs:
                self._log_end(run, finished.outcome)
            self.stuck_threads += 1
            try:
                await asyncio.shield(future)
            except BaseException:
                pass
            finally:
                self.stuck_threads -= 1
            raise
