"""``pgjobs.current_job()``: what a running handler knows about its job and can do with it.

The context travels in a :mod:`contextvars` variable. Sync handlers run in worker threads
under a copy of the context, so ``current_job()`` works there too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import psycopg

from pgjobs import db
from pgjobs.errors import InvalidInput, PgjobsError

if TYPE_CHECKING:
    from pgjobs.app import App

_current: ContextVar[JobContext | None] = ContextVar("pgjobs_current_job", default=None)
#: How long a sync handler's ``touch()`` waits for the database before giving up.
TOUCH_TIMEOUT = 30.0


class Services(Protocol):
    """What the worker offers to a running job's context."""

    loop: asyncio.AbstractEventLoop

    @property
    def lease_seconds(self) -> float: ...
    def dsn(self) -> str: ...

    async def touch(self, context: JobContext, seconds: float | None) -> datetime: ...
    def progress_changed(self, context: JobContext) -> None: ...


class LeaseLost(PgjobsError):
    """This run no longer holds its job's lease: another worker may own the job now."""


class JobContext:
    """The running job, as its handler sees it."""

    def __init__(self, job: db.ClaimedJob, app: App, services: Services) -> None:
        self.job = job
        self.app = app
        self._services = services
        # A plain flag: set by the event loop, read by the handler's thread (a bool store is
        # atomic), and a threading.Event per job was a measurable cost of a drain.
        self._cancelled = False
        self.progress: tuple[float, str | None] | None = None
        self.progress_written: tuple[float, str | None] | None = None
        self.follow_ups: list[db.NewJob] = []
        self.lease_expires_at = job.lease_expires_at
        #: The open transaction of ``transaction()``, committed with the job's success.
        self.transaction_conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any] | None = None

    def __repr__(self) -> str:
        return f"<JobContext {self.job.task} #{self.job.id} attempt {self.job.attempts}>"

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def task(self) -> str:
        return self.job.task

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 for the first retry..."""
        return self.job.attempts

    @property
    def max_attempts(self) -> int:
        return self.job.max_attempts

    @property
    def args(self) -> dict[str, Any]:
        return self.job.args

    @property
    def parent_id(self) -> int | None:
        return self.job.parent_id

    @property
    def cancelled(self) -> bool:
        """True once someone asked to cancel this job: a sync handler should stop soon (an
        async one is cancelled for it)."""
        return self._cancelled

    def request_cancel(self) -> None:
        self._cancelled = True

    def set_progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0-100, and an optional message). Cheap to call in a tight loop:
        the worker writes the latest value at most about once a second, and at the end."""
        if (
            isinstance(percent, bool)
            or not isinstance(percent, int | float)
            or not 0 <= percent <= 100
        ):
            raise InvalidInput(f"progress must be a number between 0 and 100, got {percent!r}")
        if message is not None and not isinstance(message, str):
            raise InvalidInput("progress message must be text")
        self.progress = (float(percent), message)
        self._services.progress_changed(self)

    async def touch_async(self, seconds: float | None = None) -> datetime:
        """Extend this job's lease by ``seconds`` (default: the worker's lease) from now.
        Raises :class:`LeaseLost` if the lease was lost."""
        return await self._services.touch(self, seconds)

    def touch(self, seconds: float | None = None) -> datetime:
        """The sync form of :meth:`touch_async`, for sync handlers."""
        expires: datetime = self._call(self.touch_async(seconds))
        return expires

    def enqueue(self, task: Any, args: dict[str, Any] | None = None, **options: Any) -> None:
        """Enqueue a follow-up job, recorded with this job as its parent. It is written in the
        same transaction as this job's success, so it exists if and only if this run
        succeeds (a failed attempt's follow-ups are dropped; the retry enqueues them again)."""
        options.setdefault("parent_id", self.job.id)
        self.follow_ups.append(self.app._prepare(task, args, options))

    def _lease_claim(self) -> Any:
        return db.touch(
            self.app.schema, self.job.id, self.job.lease_token, self._services.lease_seconds
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a transaction that also records this job's success.

        Writes made through it commit together with the job's ``succeeded`` when the handler
        returns, or not at all: if the handler raises, or if this run lost its lease (another
        worker took the job over), they roll back. Exactly-once effects on this database::

            with pgjobs.current_job().transaction() as conn:
                conn.execute("UPDATE accounts SET balance = balance - 10 WHERE id = %s", (1,))

        The job's row is locked for the rest of the run, which also keeps its lease alive.
        """
        if self.transaction_conn is not None:
            raise PgjobsError("current_job().transaction() is already open for this job")
        conn = psycopg.connect(
            self._services.dsn(), autocommit=False, prepare_threshold=self.app.prepare_threshold
        )
        try:
            if db.run(conn, self._lease_claim()) is None:
                raise LeaseLost(
                    f"job {self.job.id}: the lease was lost before the transaction began"
                )
            self.transaction_conn = conn
            yield conn
        except BaseException:
            self.transaction_conn = None
            conn.rollback()
            conn.close()
            raise

    @contextlib.asynccontextmanager
    async def transaction_async(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """The async form of :meth:`transaction`, for async handlers."""
        if self.transaction_conn is not None:
            raise PgjobsError("current_job().transaction_async() is already open for this job")
        conn = await psycopg.AsyncConnection.connect(
            self._services.dsn(), autocommit=False, prepare_threshold=self.app.prepare_threshold
        )
        try:
            if await db.run_async(conn, self._lease_claim()) is None:
                raise LeaseLost(
                    f"job {self.job.id}: the lease was lost before the transaction began"
                )
            self.transaction_conn = conn
            yield conn
        except BaseException:
            self.transaction_conn = None
            await conn.rollback()
            await conn.close()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        loop = self._services.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coroutine.close()
            raise PgjobsError("in an async handler, use `await current_job().touch_async()`")
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, loop)
        return future.result(timeout=TOUCH_TIMEOUT)


def current_job() -> JobContext:
    """The job the calling handler is running (sync and async handlers alike)."""
    context = _current.get()
    if context is None:
        raise PgjobsError("current_job() is only available inside a handler run by a pgjobs worker")
    return context


def bind(context: JobContext | None) -> Any:
    """Make ``context`` current; returns the token to reset it."""
    return _current.set(context)


def unbind(token: Any) -> None:
    _current.reset(token)
