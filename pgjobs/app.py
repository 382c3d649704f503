"""The Python API: :class:`App` (tasks, enqueue, lookups) and :class:`Job` (one job's state).

Sync methods have ``*_async`` twins. Connections come from a pool the App opens on first use
(after a direct connection has checked the database and the schema, so that a wrong DSN or a
missing migration fails at once with one line), or from the caller: pass ``connection=`` a
psycopg connection or a SQLAlchemy Connection/Session, and the job joins that transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from psycopg_pool import PoolTimeout as AsyncPoolTimeout

from pgjobs import client, db, tracing
from pgjobs.backoff import RetryPolicy
from pgjobs.compat import ensure_compatible
from pgjobs.config import Settings
from pgjobs.connection import connect, one_line, resolve_dsn
from pgjobs.errors import (
    DatabaseUnavailable,
    InvalidInput,
    JobCancelled,
    JobFailed,
    NotFound,
    WaitTimeout,
)
from pgjobs.log import get_logger
from pgjobs.pool import Pool, PoolTimeout
from pgjobs.registry import JobSpec, Task, check_options
from pgjobs.schedules import Schedule
from pgjobs.types import JobRecord, JobStatus
from pgjobs.validation import MAX_ARGS_BYTES_DEFAULT

if TYPE_CHECKING:
    from pgjobs.testing.eager import Eager

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

ENV_MAX_ARGS_BYTES = "PGJOBS_MAX_ARGS_BYTES"
POOL_SIZE_DEFAULT = 10
POOL_TIMEOUT_DEFAULT = 10.0
#: How often ``wait`` re-reads the job even without a notification (a missed one, or a
#: pooler that drops them): a safety net, not the mechanism.
WAIT_RECHECK_SECONDS = 5.0
#: With PGJOBS_LISTEN_DSN=off, how often a waiter re-reads the job instead.
WAIT_POLL_SECONDS = 0.5


@dataclass
class Job(JobRecord):
    """A job, as last read from the database. ``existing`` is True when the enqueue found an
    unfinished job holding the same dedupe key and returned it instead of inserting."""

    existing: bool = False
    app: App | None = field(default=None, repr=False, compare=False)

    def _app(self) -> App:
        if self.app is None:
            raise InvalidInput("this Job is not bound to an App")
        return self.app

    def _update(self, record: JobRecord) -> Job:
        for name in JobRecord.__dataclass_fields__:
            setattr(self, name, getattr(record, name))
        return self

    def refresh(self) -> Job:
        """Re-read this job from the database (in place) and return it."""
        return self._update(self._app()._get_record(self.id))

    async def refresh_async(self) -> Job:
        return self._update(await self._app()._get_record_async(self.id))

    def outcome(self) -> Any:
        """The result of a succeeded job; raises :class:`JobFailed`/:class:`JobCancelled`."""
        if self.status is JobStatus.SUCCEEDED:
            return self.result
        if self.status is JobStatus.CANCELLED:
            raise JobCancelled(
                self, f"job {self.id} ({self.task}) was cancelled: {self.error or ''}".rstrip(": ")
            )
        if self.status is JobStatus.FAILED:
            first_line = (self.error or "").strip().splitlines()[-1:] or [""]
            raise JobFailed(
                self,
                f"job {self.id} ({self.task}) failed after {self.attempts} attempt(s): {first_line[0]}",
            )
        raise InvalidInput(f"job {self.id} has not ended (status {self.status})")

    def wait(
        self,
        timeout: float | timedelta | None = None,
        *,
        on_update: Callable[[Job], None] | None = None,
    ) -> Any:
        """Block until the job ends and return its result (raise if it failed or was
        cancelled). Woken by the events channel (LISTEN), re-checked every few seconds.

        ``on_update`` is called with this job after each re-read while it has not ended (a
        start, a progress report, a retry): ``pgjobs wait`` draws its progress line with it.
        With it, claims are asked to announce the jobs they start (``watch_starts``), so a
        start is seen at once.
        """
        app = self._app()
        deadline = _deadline(timeout)
        if app.settings.listen_off:
            while not self.refresh().status.finished:
                if on_update is not None:
                    on_update(self)
                time.sleep(min(_remaining(deadline, self.id), WAIT_POLL_SECONDS))
            return self.outcome()
        with connect(app.settings, dsn=_listen_dsn(app.settings)) as listener:
            listener.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(db.events_channel(app.settings.schema)))
            )
            watch = StartsWatch(app) if on_update is not None else None
            while True:
                if watch is not None:
                    watch.keep()  # before the re-read: a start after it is announced
                if self.refresh().status.finished:
                    break
                if on_update is not None:
                    on_update(self)
                remaining = _remaining(deadline, self.id)
                for notice in listener.notifies(timeout=min(remaining, WAIT_RECHECK_SECONDS)):
                    if _mentions(notice.payload, self.id):
                        break
        return self.outcome()

    async def wait_async(
        self,
        timeout: float | timedelta | None = None,
        *,
        on_update: Callable[[Job], None] | None = None,
    ) -> Any:
        app = self._app()
        deadline = _deadline(timeout)
        if app.settings.listen_off:
            while not (await self.refresh_async()).status.finished:
                if on_update is not None:
                    on_update(self)
                await asyncio.sleep(min(_remaining(deadline, self.id), WAIT_POLL_SECONDS))
            return self.outcome()
        listener = await psycopg.AsyncConnection.connect(
            await asyncio.to_thread(_listen_dsn, app.settings),
            autocommit=True,
            connect_timeout=app.settings.connect_timeout,
        )
        async with listener:
            await listener.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(db.events_channel(app.settings.schema)))
            )
            watch = StartsWatch(app) if on_update is not None else None
            while True:
                if watch is not None:
                    await watch.keep_async()
                if (await self.refresh_async()).status.finished:
                    break
                if on_update is not None:
                    on_update(self)
                remaining = _remaining(deadline, self.id)
                async for notice in listener.notifies(timeout=min(remaining, WAIT_RECHECK_SECONDS)):
                    if _mentions(notice.payload, self.id):
                        break
        return self.outcome()


class StartsWatch:
    """Keeps claims announcing the jobs they start while someone follows jobs live (see
    ``db.watch_starts``): one statement every ``WATCH_STARTS_RENEW`` seconds at most, for
    ``Job.wait(on_update=...)`` and the API's SSE hub alike. Best effort: a failure (a role
    without EXECUTE on the function, a pool timeout) is logged once and retried at the next
    renewal; starts are then seen at the watcher's next re-check."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.until = 0.0
        self.warned = False

    @property
    def due(self) -> bool:
        return time.monotonic() >= self.until

    def keep(self) -> None:
        if self.due:
            try:
                with self.app.connection() as conn:
                    db.run(conn, db.watch_starts(self.app.schema))
            except Exception as exc:
                self._failed(exc)
            self.until = time.monotonic() + db.WATCH_STARTS_RENEW

    async def keep_async(self) -> None:
        if self.due:
            try:
                async with self.app.connection_async() as conn:
                    await db.run_async(conn, db.watch_starts(self.app.schema))
            except Exception as exc:
                self._failed(exc)
            self.until = time.monotonic() + db.WATCH_STARTS_RENEW

    def _failed(self, exc: Exception) -> None:
        if not self.warned:
            self.warned = True
            get_logger("pgjobs.watch").warning(
                "could not have claims announce job starts", error=one_line(exc)
            )


def _listen_dsn(settings: Settings) -> str:
    """Where a waiter LISTENs: ``PGJOBS_LISTEN_DSN`` (straight to PostgreSQL when the main
    DSN is a pooler in transaction mode, where a LISTEN would stay behind on a pooled server
    connection and never wake anyone), else the main DSN."""
    return settings.listen_dsn or resolve_dsn(settings)


def _deadline(timeout: float | timedelta | None) -> float | None:
    if timeout is None:
        return None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    return time.monotonic() + seconds


def _remaining(deadline: float | None, job_id: int) -> float:
    if deadline is None:
        return WAIT_RECHECK_SECONDS
    left = deadline - time.monotonic()
    if left <= 0:
        raise WaitTimeout(f"job {job_id} did not end in time")
    return left


def _mentions(payload: str, job_id: int) -> bool:
    try:
        return any(entry[0] == job_id for entry in json.loads(payload).get("jobs", ()))
    except (ValueError, TypeError, AttributeError, IndexError):
        return True  # an unexpected payload: re-read rather than miss the end


#: A pooled connection idle longer than this is checked before use (it may have died with a
#: server restart or a network cut); a busier one is trusted, which saves a round trip.
CHECK_IDLE_SECONDS = 5.0
_last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


#: Distinct (task, options) shapes whose validation an App remembers (see App._template).
TEMPLATE_CACHE_SIZE = 1024


def _template_key(name: Any, options: client.EnqueueOptions | Mapping[str, Any]) -> Any:
    """The cache key of a job's task and options: flat, since building it is on the path of
    every enqueue (it is not hashable when a value is not, e.g. a ``meta`` mapping). With
    the types of the values: ``True == 1``, yet only one of them is a valid priority."""
    values = options.__dict__ if isinstance(options, client.EnqueueOptions) else options
    return (name, *values.items(), *map(type, values.values()))


def _listed(specs: Any) -> Sequence[Any]:
    """The specs of a bulk enqueue as a sequence (a generator is read once), or a clear
    error when what was passed is not a collection of specs."""
    if isinstance(specs, Mapping | JobSpec):
        raise InvalidInput("enqueue_many takes a list of job specs, not a single one")
    if isinstance(specs, Sequence) and not isinstance(specs, str | bytes):
        return specs
    if isinstance(specs, Iterable) and not isinstance(specs, str | bytes):
        return list(specs)
    raise InvalidInput(f"enqueue_many takes a list of job specs, got {type(specs).__name__}")


async def _check_if_idle_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if time.monotonic() - _last_used.get(conn, 0.0) > CHECK_IDLE_SECONDS:
        await AsyncConnectionPool.check_connection(conn)


def max_args_bytes_setting() -> int:
    """The argument size limit: ``PGJOBS_MAX_ARGS_BYTES``, else 1 MiB."""
    value = os.environ.get(ENV_MAX_ARGS_BYTES)
    if not value:
        return MAX_ARGS_BYTES_DEFAULT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise InvalidInput(
            f"{ENV_MAX_ARGS_BYTES} must be a positive number of bytes, got {value!r}"
        )
    return limit


class _FromSettings:
    """The default of ``App(prepare_threshold=...)``: whatever the settings say."""


FROM_SETTINGS = _FromSettings()


class _PooledConnection:
    """The context manager of :meth:`App.connection`: a plain class, because a generator
    context manager costs a visible part of a single enqueue's Python time."""

    __slots__ = ("_app", "_conn", "_pool")

    def __init__(self, app: App) -> None:
        self._app = app

    def __enter__(self) -> psycopg.Connection[Any]:
        self._pool, self._conn = self._app._checkout()
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        # rolls back whatever a failure left open, and checks the connection before reuse
        self._pool.putconn(self._conn, clean=exc_type is None)


class App:
    """A pgjobs application: its tasks, and the database they run against.

    ::

        app = pgjobs.App()                      # PGJOBS_DSN, else the embedded server

        @app.task(queue="emails", max_attempts=5)
        def send_email(to: str) -> dict: ...

        job = send_email.enqueue(to="a@example.com")
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        home: str | os.PathLike[str] | None = None,
        max_args_bytes: int | None = None,
        pool_size: int = POOL_SIZE_DEFAULT,
        pool_timeout: float = POOL_TIMEOUT_DEFAULT,
        prepare_threshold: int | _FromSettings | None = FROM_SETTINGS,
    ) -> None:
        self.settings = Settings.from_env(dsn=dsn, schema=schema, home=home)
        self.max_args_bytes = max_args_bytes or max_args_bytes_setting()
        self.tasks: dict[str, Task[Any, Any]] = {}
        #: Cron schedules declared with :meth:`periodic`, stored by workers at start.
        self.schedules: dict[str, Schedule] = {}
        self._templates: dict[Any, tuple[db.NewJob, Task[Any, Any] | None]] = {}
        #: Middleware hooks in registration order, and the same split by kind (computed once:
        #: the worker reads them for every job).
        self.middlewares: list[Callable[..., Any]] = []
        self.sync_middlewares: list[Callable[..., Any]] = []
        self.async_middlewares: list[Callable[..., Any]] = []
        self.pool_size = pool_size
        self.pool_timeout = pool_timeout
        self._prepare_threshold = prepare_threshold
        self._pool: Pool | None = None
        self._apool: AsyncConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._dsn: str | None = None
        #: Set by ``pgjobs.testing.eager()`` only: enqueues then run their jobs at once.
        self._eager: Eager | None = None

    @property
    def schema(self) -> str:
        return self.settings.schema

    @property
    def prepare_threshold(self) -> int | None:
        """Executions of a statement on a connection before it is prepared on the server
        (None: never, for poolers in transaction mode that do not track prepared
        statements): ``App(prepare_threshold=...)``, else ``PGJOBS_PREPARE_THRESHOLD``,
        else psycopg's default of 5."""
        if isinstance(self._prepare_threshold, _FromSettings):
            return self.settings.prepare_threshold
        return self._prepare_threshold

    # --- tasks ----------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: str | float | timedelta | None = None,
        retry: RetryPolicy | Mapping[type[BaseException], RetryPolicy | None] | None = None,
        batch_size: int | None = None,
        batch_wait: str | float | timedelta | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: str | float | timedelta | None = None,
        retry: RetryPolicy | Mapping[type[BaseException], RetryPolicy | None] | None = None,
        batch_size: int | None = None,
        batch_wait: str | float | timedelta | None = None,
    ) -> Any:
        """Register a handler. Its name defaults to ``module.function``; keyword arguments
        set the defaults of its jobs, for every producer (workers publish them).

        With ``batch_size`` (and ``batch_wait``, default 1 s) the handler receives a list of
        jobs (see ``docs/workers.md``, batch tasks) instead of one job's arguments."""

        def register(handler: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name if name is not None else f"{handler.__module__}.{handler.__qualname__}"
            if name is None and "<" in task_name:
                raise InvalidInput(f"{task_name}: give nested or lambda handlers an explicit name=")
            if task_name in self.tasks:
                raise InvalidInput(f"task {task_name!r} is registered twice")
            task: Task[Any, Any] = Task(
                self,
                handler,
                name=task_name,
                queue=queue,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                retry=retry,
                batch_size=batch_size,
                batch_wait=batch_wait,
            )
            self.tasks[task.name] = task
            return task

        return register(fn) if fn is not None else register

    def middleware(self, hook: F) -> F:
        """Register a hook around every job this App's workers run: a generator function
        (sync) or async generator function taking the :class:`JobContext`, that yields once,
        like a ``contextlib.contextmanager``. The handler's exception, if any, is raised at
        the ``yield``::

            @app.middleware
            def db_session(job):
                session = Session()
                try:
                    yield
                    session.commit()
                finally:
                    session.close()

        Hooks nest in registration order (the first registered is the outermost). Sync hooks
        run in the handler's thread for sync handlers; async hooks run on the event loop.
        """
        if not (inspect.isgeneratorfunction(hook) or inspect.isasyncgenfunction(hook)):
            raise InvalidInput(
                "a middleware is a generator function (sync or async) that yields once"
            )
        self.middlewares.append(hook)
        (
            self.async_middlewares if inspect.isasyncgenfunction(hook) else self.sync_middlewares
        ).append(hook)
        return hook

    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        args: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        missed: str = "skip",
        overlap: str = "allow",
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
    ) -> Callable[[Any], Any]:
        """Run a task on a cron schedule, declared in code and stored by every worker at
        start (see :mod:`pgjobs.schedules`)::

            @app.periodic("0 3 * * *", timezone="Europe/Paris", missed="run_once")
            @app.task()
            def nightly_report() -> None: ...

        Applied to a plain function, it registers the task too. ``name`` defaults to the
        task's name; ``args`` are the jobs' keyword arguments. Each fire time gives exactly
        one job whose ``not_before`` is that time, however many workers run.
        """

        def declare(target: Any) -> Any:
            task = target if isinstance(target, Task) else self.task(target)
            schedule = Schedule(
                name=name or task.name, cron=cron, task=task.name, args=dict(args or {}),
                timezone=timezone, queue=queue, priority=priority, max_attempts=max_attempts,
                missed=missed, overlap=overlap, source="code",
            )  # fmt: skip
            if schedule.name in self.schedules:
                raise InvalidInput(f"schedule {schedule.name!r} is declared twice")
            self.schedules[schedule.name] = schedule
            return target

        return declare

    # --- connections ----------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": self.settings.connect_timeout,
            "application_name": "pgjobs",
            "prepare_threshold": self.prepare_threshold,
        }

    def _checked_dsn(self) -> str:
        """Resolve the DSN and check database and schema once, with a direct connection."""
        if self._dsn is None:
            dsn = resolve_dsn(self.settings)
            with connect(self.settings, dsn=dsn) as conn:
                ensure_compatible(conn, self.settings.schema)
            self._dsn = dsn
        return self._dsn

    def connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled autocommit connection (the pool opens on first use), for one operation:
        ``with app.connection() as conn: ...``."""
        return _PooledConnection(self)

    def _checkout(self) -> tuple[Pool, psycopg.Connection[Any]]:
        pool = self._pool  # once open, no lock: it is on the path of every single enqueue
        if pool is None:
            pool = self._open_pool()
        try:
            return pool, pool.getconn()
        except PoolTimeout as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: PoolTimeout | AsyncPoolTimeout) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"no database connection within {self.pool_timeout:g}s: {one_line(exc)}"
        )

    def _open_pool(self) -> Pool:
        with self._lock:
            if self._pool is None:
                dsn, prepare_threshold = self._checked_dsn(), self.prepare_threshold
                self._pool = Pool(
                    lambda: connect(self.settings, dsn=dsn, prepare_threshold=prepare_threshold),
                    max_size=self.pool_size,
                    timeout=self.pool_timeout,
                    check_after=CHECK_IDLE_SECONDS,
                )
            return self._pool

    @contextlib.asynccontextmanager
    async def connection_async(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._apool is None:
            dsn = await asyncio.to_thread(self._checked_dsn)
            if self._apool is None:
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    kwargs=self._connect_kwargs(),
                    check=_check_if_idle_async,
                    timeout=self.pool_timeout,
                    name="pgjobs-async",
                    open=False,
                )
                await pool.open()
                self._apool = pool
        try:
            async with self._apool.connection() as conn:
                yield conn
                _last_used[conn] = time.monotonic()
        except AsyncPoolTimeout as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        """Close the pools (the App can be used again afterwards: they reopen)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    async def close_async(self) -> None:
        if self._apool is not None:
            await self._apool.close()
            self._apool = None
        await asyncio.to_thread(self.close)

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()

    # --- producing ------------------------------------------------------------------

    def _prepare(
        self, task: str | Task[Any, Any], args: Mapping[str, Any] | None, options: Mapping[str, Any]
    ) -> db.NewJob:
        name = task.name if isinstance(task, Task) else task
        return self._new_job(name, args, options)

    def _new_job(
        self,
        name: Any,
        args: Mapping[str, Any] | None,
        options: client.EnqueueOptions | Mapping[str, Any],
    ) -> db.NewJob:
        """Validate and encode one job (the task and options through :meth:`_template`)."""
        template, registered = self._template(name, options)
        if registered is not None:
            registered.check_args(args or {})
        job = client.with_args(template, args, max_args_bytes=self.max_args_bytes)
        if tracing.ENABLED:  # OpenTelemetry installed: carry the current span's context
            return tracing.with_trace(job)
        return job

    def _template(
        self, name: Any, options: client.EnqueueOptions | Mapping[str, Any]
    ) -> tuple[db.NewJob, Task[Any, Any] | None]:
        """A job's validated task and options, without its arguments, and the registered
        task it names. Cached per distinct (task, options): validating them is most of the
        Python cost of an enqueue, and programs enqueue the same few shapes again and again.
        An entry holds the Task it was built from, so registering a task invalidates it."""
        registered = self.tasks.get(name) if isinstance(name, str) else None
        key = _template_key(name, options)
        try:
            cached = self._templates.get(key)
        except TypeError:  # an unhashable option value: validated each time
            key = cached = None
        if cached is not None and cached[1] is registered:
            return cached
        if name is None:
            raise InvalidInput("each job needs a 'task'")
        if not isinstance(options, client.EnqueueOptions):
            options = check_options(options)
        entry = (client.prepare_options(name, self._options(name, options)), registered)
        if key is not None:
            if len(self._templates) >= TEMPLATE_CACHE_SIZE:
                self._templates.clear()
            self._templates[key] = entry
        return entry

    def _job(self, inserted: db.Inserted) -> Job:
        # The record was just built for this enqueue and is not kept: the Job takes over its
        # fields rather than run the thirty-field __init__ again or copy them (it is on the
        # path of every enqueue).
        job = Job.__new__(Job)
        job.__dict__ = inserted.record.__dict__
        job.existing = inserted.existing
        job.app = self
        return job

    def enqueue(
        self,
        task: str | Task[Any, Any],
        args: Mapping[str, Any] | None = None,
        *,
        connection: Any = None,
        **options: Any,
    ) -> Job:
        """Enqueue a job of ``task`` (a name, or a registered task) with ``args``.

        Options: ``queue``, ``priority``, ``delay`` ("30s", seconds, timedelta) or
        ``not_before`` (datetime or ISO text), ``max_attempts``, ``dedupe_key``,
        ``callback_url``, ``meta``. With ``connection=`` (psycopg connection, SQLAlchemy
        Connection or Session) the job joins that transaction.
        """
        job = self._prepare(task, args, options)
        if connection is not None:
            enqueued = self._job(client.enqueue(client.as_target(connection), self.schema, job))
        else:
            with self.connection() as conn:
                enqueued = self._job(client.enqueue(client.PsycopgTarget(conn), self.schema, job))
        if self._eager is not None:  # a test's eager mode (pgjobs.testing)
            return self._eager.enqueued(enqueued, connection)
        return enqueued

    async def enqueue_async(
        self,
        task: str | Task[Any, Any],
        args: Mapping[str, Any] | None = None,
        *,
        connection: Any = None,
        **options: Any,
    ) -> Job:
        job = self._prepare(task, args, options)
        if connection is not None:
            enqueued = self._job(
                await client.enqueue_async(client.as_async_target(connection), self.schema, job)
            )
        else:
            async with self.connection_async() as conn:
                enqueued = self._job(
                    await client.enqueue_async(client.AsyncPsycopgTarget(conn), self.schema, job)
                )
        if self._eager is not None:  # a test's eager mode (pgjobs.testing)
            return await self._eager.enqueued_async(enqueued, connection)
        return enqueued

    def _options(self, name: str, options: client.EnqueueOptions) -> client.EnqueueOptions:
        registered = self.tasks.get(name)
        return (
            registered.defaults().merged(**options.__dict__) if registered is not None else options
        )

    def _prepare_many(self, specs: Iterable[JobSpec | Mapping[str, Any]]) -> Iterator[db.NewJob]:
        """Validate and encode each spec as the bulk enqueue consumes it (inside its
        transaction: a bad spec rolls the whole batch back). Task and options are validated
        once per distinct pair (:meth:`_template`): a batch of 100,000 jobs of one task pays
        for its arguments only."""
        options: client.EnqueueOptions | Mapping[str, Any]
        for position, spec in enumerate(specs):
            try:
                if type(spec) is not dict and isinstance(spec, JobSpec):
                    name, args, options = spec.task, spec.args, spec.options
                elif type(spec) is not dict and not isinstance(spec, Mapping):
                    raise InvalidInput(
                        f"each job is a JobSpec or a mapping with 'task', got {type(spec).__name__}"
                    )
                else:
                    values = dict(spec)
                    name = values.pop("task", None)
                    args = values.pop("args", None)
                    options = values
                job = self._new_job(name, args, options)
            except InvalidInput as exc:
                raise InvalidInput(f"job #{position}: {exc}") from None
            yield job

    def enqueue_many(
        self, specs: Iterable[JobSpec | Mapping[str, Any]], *, connection: Any = None
    ) -> list[client.Enqueued]:
        """Enqueue many jobs at once (COPY): a handful of round trips for 100,000 jobs.

        Each spec is a :class:`JobSpec` (``task.spec(**kwargs)``) or a mapping with ``task``,
        ``args`` and any enqueue option. Specs are validated and encoded while they are
        written, in one transaction: one bad spec raises and stores nothing. Returns, in
        input order, each job's id and whether it was an existing job holding the same
        dedupe key.
        """
        specs = _listed(specs)
        jobs = self._prepare_many(specs)
        if connection is not None:
            target = client.as_target(connection)
            results = client.enqueue_many(target, self.schema, jobs, len(specs))
        else:
            with self.connection() as conn:
                results = client.enqueue_many(
                    client.PsycopgTarget(conn), self.schema, jobs, len(specs)
                )
        if self._eager is not None:  # a test's eager mode (pgjobs.testing)
            self._eager.enqueued_many(connection)
        return results

    async def enqueue_many_async(
        self, specs: Iterable[JobSpec | Mapping[str, Any]], *, connection: Any = None
    ) -> list[client.Enqueued]:
        specs = _listed(specs)
        jobs = self._prepare_many(specs)
        if connection is not None:
            results = await client.enqueue_many_async(
                client.as_async_target(connection), self.schema, jobs, len(specs)
            )
        else:
            async with self.connection_async() as conn:
                results = await client.enqueue_many_async(
                    client.AsyncPsycopgTarget(conn), self.schema, jobs, len(specs)
                )
        if self._eager is not None:  # a test's eager mode (pgjobs.testing)
            await self._eager.enqueued_many_async(connection)
        return results

    def unknown_task_message(self, name: str) -> str:
        """Why a worker of this App cannot run a job of task ``name``."""
        known = ", ".join(sorted(self.tasks)) or "none"
        return (
            f"UnknownTask: no task named {name!r} is registered in this worker (it knows: "
            f"{known}); retried in case a worker that knows it comes up"
        )

    def publish_tasks(self, worker_id: uuid.UUID | None = None) -> int:
        """Record the defaults of this App's tasks in ``pgjobs.tasks`` (workers do it at
        start), so that jobs enqueued from SQL, the CLI or HTTP by task name get them too.
        Returns the number of tasks whose row changed."""
        rows = [(t.name, t.queue, t.priority, t.max_attempts) for t in self.tasks.values()]
        if not rows:
            return 0
        with self.connection() as conn:
            return db.run(conn, db.publish_tasks(self.schema, worker_id, rows))

    # --- reading --------------------------------------------------------------------

    def _get_record(self, job_id: int) -> JobRecord:
        with self.connection() as conn:
            record = db.run(conn, db.get_job(self.schema, job_id))
        if record is None:
            raise NotFound(f"no job with id {job_id}")
        return record

    async def _get_record_async(self, job_id: int) -> JobRecord:
        async with self.connection_async() as conn:
            record = await db.run_async(conn, db.get_job(self.schema, job_id))
        if record is None:
            raise NotFound(f"no job with id {job_id}")
        return record

    def get(self, job_id: int) -> Job:
        """The job with this id (raises :class:`~pgjobs.errors.NotFound`)."""
        return self._job(db.Inserted(self._get_record(job_id), False))

    async def get_async(self, job_id: int) -> Job:
        return self._job(db.Inserted(await self._get_record_async(job_id), False))
