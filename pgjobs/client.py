"""Producing jobs: validating and encoding them, and writing them through whatever connection
the caller has.

A *target* is where statements run: a psycopg connection (sync or async), or a SQLAlchemy
``Connection``/``Session`` (sync or async) whose transaction the job joins, so that it exists
if and only if that transaction commits. The SQL itself always comes from :mod:`pgjobs.db`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, TypeVar

import psycopg
from psycopg import errors as pg_errors

from pgjobs import db, validation
from pgjobs.durations import parse_duration, parse_timestamp
from pgjobs.encoding import dumps, encode_args
from pgjobs.errors import InvalidInput, PgjobsError, SchemaNotMigrated

R = TypeVar("R")
#: A dedupe collision can race with the holder finishing; a few rounds always settle it.
DEDUPE_ROUNDS = 5


class Enqueued(NamedTuple):
    """The id a bulk enqueue gave one job, and whether it was an existing job holding the
    same dedupe key (then nothing was inserted for it)."""

    id: int
    existing: bool


@dataclass(frozen=True)
class EnqueueOptions:
    """Options of one enqueue, as a caller writes them (validated by :func:`prepare`)."""

    queue: str | None = None
    priority: int | None = None
    delay: str | float | timedelta | None = None
    not_before: str | datetime | None = None
    max_attempts: int | None = None
    dedupe_key: str | None = None
    callback_url: str | None = None
    parent_id: int | None = None
    meta: Mapping[str, Any] | None = None
    #: At most one job with this key runs at a time, in enqueue order.
    lock_key: str | None = None
    #: Jobs that must succeed first; if one fails or is cancelled, this one is cancelled.
    depends_on: Sequence[int] | None = None
    #: With dedupe_key: no second job of the key within this long, finished or not.
    dedupe_for: str | float | timedelta | None = None
    #: With dedupe_key: "skip" (default: the holder stays as it is) or "replace" (a holder
    #: that has not started yet takes the new args and start time: debounce).
    dedupe_mode: str | None = None

    def merged(self, **overrides: Any) -> EnqueueOptions:
        values = {k: v for k, v in overrides.items() if v is not None}
        return EnqueueOptions(**{**self.__dict__, **values})


OPTION_NAMES = frozenset(EnqueueOptions.__dataclass_fields__)


def prepare(
    task: str, args: Mapping[str, Any] | None, options: EnqueueOptions, *, max_args_bytes: int
) -> db.NewJob:
    """Validate and encode one job; raises :class:`InvalidInput` naming the bad field."""
    return with_args(prepare_options(task, options), args, max_args_bytes=max_args_bytes)


def with_args(
    template: db.NewJob, args: Mapping[str, Any] | None, *, max_args_bytes: int
) -> db.NewJob:
    """``template`` (from :func:`prepare_options`) with these arguments, encoded."""
    encoded = encode_args({} if args is None else args, max_bytes=max_args_bytes)
    return db.NewJob._make((template[0], encoded, *template[2:]))


def prepare_options(task: str, options: EnqueueOptions) -> db.NewJob:
    """Validate a task name and options once (bulk enqueue reuses the result per row); the
    arguments are left empty for :func:`with_args`."""
    validation.task_name(task)
    if options.delay is not None and options.not_before is not None:
        raise InvalidInput("give either a delay or a start time (not_before), not both")
    delay = (
        parse_duration(options.delay, field="delay") if options.delay is not None else timedelta(0)
    )
    not_before = (
        parse_timestamp(options.not_before, field="not_before")
        if options.not_before is not None
        else None
    )
    return db.NewJob(
        task=task,
        args="{}",
        queue=validation.queue_name(options.queue) if options.queue is not None else None,
        priority=validation.priority(options.priority) if options.priority is not None else None,
        not_before=not_before,
        delay=delay,
        max_attempts=validation.max_attempts(options.max_attempts)
        if options.max_attempts is not None
        else None,
        dedupe_key=validation.key(options.dedupe_key, "dedupe_key")
        if options.dedupe_key is not None
        else None,
        callback_url=validation.callback_url(options.callback_url)
        if options.callback_url is not None
        else None,
        parent_id=options.parent_id,
        meta=dumps(dict(options.meta), what="meta") if options.meta else None,
        lock_key=validation.key(options.lock_key, "lock_key")
        if options.lock_key is not None
        else None,
        depends_on=_dependencies(options),
        **_dedupe_variants(options),
    )


DEDUPE_MODES = ("skip", "replace")


def _dedupe_variants(options: EnqueueOptions) -> dict[str, Any]:
    if options.dedupe_for is None and options.dedupe_mode is None:
        return {}
    if options.dedupe_key is None:
        raise InvalidInput("dedupe_for and dedupe_mode need a dedupe_key")
    if options.dedupe_mode is not None:
        validation.one_of(options.dedupe_mode, "dedupe_mode", DEDUPE_MODES)
    window = (
        parse_duration(options.dedupe_for, field="dedupe_for")
        if options.dedupe_for is not None
        else None
    )
    return {"dedupe_for": window or None, "dedupe_replace": options.dedupe_mode == "replace"}


def _dependencies(options: EnqueueOptions) -> tuple[int, ...] | None:
    if options.depends_on is None:
        return None
    ids = validation.job_ids(options.depends_on, "depends_on")
    if ids and options.dedupe_key is not None:
        raise InvalidInput("depends_on and dedupe_key cannot be combined (yet): use one of them")
    return ids or None


# --- translating database errors --------------------------------------------------------

_CONSTRAINT_HINTS = {
    "jobs_task_name_valid": f"invalid task name: use 1-200 characters among {validation.NAME_CHARACTERS}",
    "jobs_queue_name_valid": f"invalid queue name: use 1-100 characters among {validation.NAME_CHARACTERS}",
    "jobs_args_is_object": "args must be a JSON object",
    "jobs_args_too_large": "args are over the size limit (setting pgjobs.max_args_bytes)",
    "jobs_priority_range": "priority is out of range: use -1000..1000",
    "jobs_not_before_range": "start time out of range: use a time between the years 1900 and 9998",
    "jobs_attempts_valid": "max_attempts must be at least 1",
    "jobs_callback_url_valid": "invalid callback URL: http(s), at most 2048 characters",
}


def translate(exc: BaseException) -> BaseException:
    """Turn a driver error into the pgjobs error a caller can act on (or return it as is)."""
    if isinstance(exc, PgjobsError):
        return exc
    original = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps driver errors
    if isinstance(original, pg_errors.CheckViolation):
        name = original.diag.constraint_name or ""
        return InvalidInput(_CONSTRAINT_HINTS.get(name, f"refused by the database: {name}"))
    if isinstance(
        original,
        pg_errors.UndefinedTable | pg_errors.UndefinedFunction | pg_errors.InvalidSchemaName,
    ):
        return SchemaNotMigrated(
            f"the pgjobs schema is missing in this database: run `pgjobs migrate` ({original.diag.message_primary})"
        )
    if isinstance(original, pg_errors.RaiseException) and (
        original.diag.message_primary or ""
    ).startswith("pgjobs: "):
        return InvalidInput((original.diag.message_primary or "")[len("pgjobs: ") :])
    return exc


# --- targets ----------------------------------------------------------------------------


class Target(Protocol):
    def run(self, call: db.Call[R]) -> R: ...
    def driver(self) -> psycopg.Connection[Any]: ...


class AsyncTarget(Protocol):
    async def run(self, call: db.Call[R]) -> R: ...
    async def driver(self) -> psycopg.AsyncConnection[Any]: ...


class PsycopgTarget:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def run(self, call: db.Call[R]) -> R:
        return db.run(self.conn, call)

    def driver(self) -> psycopg.Connection[Any]:
        return self.conn


class AsyncPsycopgTarget:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def run(self, call: db.Call[R]) -> R:
        return await db.run_async(self.conn, call)

    async def driver(self) -> psycopg.AsyncConnection[Any]:
        return self.conn


def _is_sqlalchemy(obj: Any) -> bool:
    return type(obj).__module__.startswith("sqlalchemy.")


def _require_psycopg(dialect: Any) -> None:
    if getattr(dialect, "driver", None) != "psycopg":
        raise InvalidInput(
            "enqueue in a SQLAlchemy transaction needs the psycopg (3) driver: use a "
            f"postgresql+psycopg:// URL (this engine uses {getattr(dialect, 'driver', '?')!r})"
        )


class SQLAlchemyTarget:
    """A SQLAlchemy ``Connection`` or ``Session``: statements join its transaction (starting
    it if needed, as SQLAlchemy's autobegin does), through the psycopg driver underneath."""

    def __init__(self, obj: Any) -> None:
        self.conn = obj.connection() if hasattr(obj, "get_bind") else obj
        _require_psycopg(self.conn.dialect)

    def run(self, call: db.Call[R]) -> R:
        text = call.query.decode()
        result = self.conn.exec_driver_sql(text, _driver_params(call.params))
        rows = _sqlalchemy_rows(result, call.tuples)
        return call.shape(rows)

    def driver(self) -> psycopg.Connection[Any]:
        raw: psycopg.Connection[Any] = self.conn.connection.driver_connection
        return raw


def _driver_params(params: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any] | tuple[Any, ...]:
    """Parameters as SQLAlchemy hands them to the driver unchanged."""
    return dict(params) if isinstance(params, Mapping) else tuple(params)


def _sqlalchemy_rows(result: Any, tuples: bool) -> list[Any]:
    """Rows shaped as :func:`pgjobs.db.run` shapes them."""
    if not result.returns_rows:
        return []
    return (
        [tuple(r) for r in result.all()] if tuples else [dict(r) for r in result.mappings().all()]
    )


class AsyncSQLAlchemyTarget:
    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self._conn: Any = None

    async def _connection(self) -> Any:
        if self._conn is None:
            self._conn = await self.obj.connection() if hasattr(self.obj, "get_bind") else self.obj
            _require_psycopg(self._conn.dialect)
        return self._conn

    async def run(self, call: db.Call[R]) -> R:
        conn = await self._connection()
        result = await conn.exec_driver_sql(call.query.decode(), _driver_params(call.params))
        rows = _sqlalchemy_rows(result, call.tuples)
        return call.shape(rows)

    async def driver(self) -> psycopg.AsyncConnection[Any]:
        conn = await self._connection()
        raw = await conn.get_raw_connection()
        driver: psycopg.AsyncConnection[Any] = raw.driver_connection
        return driver


def as_target(obj: Any) -> Target:
    """The sync target for a caller's connection or session."""
    if isinstance(obj, psycopg.Connection):
        return PsycopgTarget(obj)
    if _is_sqlalchemy(obj) and not type(obj).__name__.startswith("Async"):
        return SQLAlchemyTarget(obj)
    raise InvalidInput(
        f"cannot enqueue through a {type(obj).__name__}: pass a psycopg Connection or a "
        "SQLAlchemy Connection/Session (use the *_async methods for async ones)"
    )


def as_async_target(obj: Any) -> AsyncTarget:
    """The async target for a caller's async connection or session."""
    if isinstance(obj, psycopg.AsyncConnection):
        return AsyncPsycopgTarget(obj)
    if _is_sqlalchemy(obj) and type(obj).__name__.startswith("Async"):
        return AsyncSQLAlchemyTarget(obj)
    raise InvalidInput(
        f"cannot enqueue through a {type(obj).__name__} from async code: pass a psycopg "
        "AsyncConnection or a SQLAlchemy AsyncConnection/AsyncSession"
    )


# --- enqueue ----------------------------------------------------------------------------


def _missing_dependencies(job: db.NewJob, existing: set[int]) -> InvalidInput:
    missing = [i for i in job.depends_on or () if i not in existing]
    return InvalidInput(
        f"depends_on names job(s) that do not exist: {', '.join(map(str, missing))}"
        " (never enqueued, or pruned)"
    )


def enqueue(target: Target, schema: str, job: db.NewJob) -> db.Inserted:
    call = db.enqueue(schema, job)
    try:
        for _ in range(DEDUPE_ROUNDS):
            inserted = target.run(call)
            if inserted is not None and inserted.stale:
                current = target.run(db.get_job(schema, inserted.record.id))
                return db.Inserted(current or inserted.record, True)
            if inserted is not None:
                return inserted
            if job.depends_on:
                existing = target.run(db.existing_ids(schema, job.depends_on))
                raise _missing_dependencies(job, existing)
    except Exception as exc:
        raise translate(exc) from exc
    raise PgjobsError(f"dedupe key {job.dedupe_key!r} kept changing hands; try again")


async def enqueue_async(target: AsyncTarget, schema: str, job: db.NewJob) -> db.Inserted:
    call = db.enqueue(schema, job)
    try:
        for _ in range(DEDUPE_ROUNDS):
            inserted = await target.run(call)
            if inserted is not None and inserted.stale:
                current = await target.run(db.get_job(schema, inserted.record.id))
                return db.Inserted(current or inserted.record, True)
            if inserted is not None:
                return inserted
            if job.depends_on:
                existing = await target.run(db.existing_ids(schema, job.depends_on))
                raise _missing_dependencies(job, existing)
    except Exception as exc:
        raise translate(exc) from exc
    raise PgjobsError(f"dedupe key {job.dedupe_key!r} kept changing hands; try again")


class _Bulk:
    """One bulk enqueue as it streams. Rows that can go straight into the table (no dedupe
    key, starting at the database's now()) come out of :meth:`direct_rows` while the jobs
    are still being validated and encoded, so that Python's work overlaps the server's;
    the others are set aside for a second COPY (explicit start) or for the staging table
    (dedupe keys)."""

    def __init__(self, jobs: Iterable[db.NewJob], ids: list[int], now: datetime) -> None:
        self.jobs = jobs
        self.ids = ids
        self.now = now
        self.explicit: list[tuple[Any, ...]] = []
        self.keyed: list[tuple[int, int, db.NewJob]] = []  # (position, id, job)
        #: Rows the database must look at one by one (a lock key: its enqueue order; the
        #: dependencies to lock and count): inserted singly, in order, in the transaction.
        self.singles: list[tuple[int, db.NewJob]] = []
        self.single_results: dict[int, Enqueued] = {}

    def direct_rows(self) -> Iterator[tuple[Any, ...]]:
        now = self.now
        for position, (job_id, job) in enumerate(zip(self.ids, self.jobs, strict=True)):
            if job.dedupe_key is None and job.lock_key is None and not job.depends_on:
                if job.not_before is None and not job.delay:
                    yield (job_id, *job[:9])  # db.copy_row, inlined: this runs per row
                else:
                    self.explicit.append(db.copy_row(job_id, job, job.start_at(now)))
            elif job.lock_key is not None or job.depends_on or job.dedupe_for or job.dedupe_replace:
                self.singles.append((position, job))
            else:
                self.keyed.append((position, job_id, job))

    def keyed_rows(self) -> list[tuple[Any, ...]]:
        return [
            db.copy_row(job_id, job, job.start_at(self.now) or self.now)
            for _, job_id, job in self.keyed
        ]

    def missing_keys(self, inserted: set[int]) -> list[str]:
        """The dedupe keys of keyed rows that were not inserted (another job holds them)."""
        return [job.dedupe_key for _, i, job in self.keyed if i not in inserted and job.dedupe_key]

    def result(
        self, inserted: set[int], holders: Mapping[str, int]
    ) -> tuple[list[Enqueued], list[tuple[int, db.NewJob]]]:
        """Per input row: (id, existing). Also the rows whose key holder vanished in between,
        to enqueue again one by one."""
        # tuple.__new__ mapped over the ids: a third of the cost of calling Enqueued per row,
        # and this runs after the COPY, where nothing overlaps it.
        out: list[Enqueued] = list(
            map(
                tuple.__new__,
                itertools.repeat(Enqueued),
                zip(self.ids, itertools.repeat(False), strict=False),
            )
        )
        for position, done in self.single_results.items():
            out[position] = done
        retry: list[tuple[int, db.NewJob]] = []
        for position, job_id, job in self.keyed:
            if job_id in inserted:
                continue
            holder = holders.get(job.dedupe_key or "")
            if holder is not None:
                out[position] = Enqueued(holder, True)
            else:
                out[position] = Enqueued(0, False)
                retry.append((position, job))
        return out, retry


def _staging_statements(schema: str) -> list[psycopg.sql.Composed]:
    return [
        db.create_staging(schema),
        psycopg.sql.SQL("TRUNCATE {}").format(psycopg.sql.Identifier(db.STAGING_TABLE)),
    ]


def _counted(jobs: Iterable[db.NewJob], count: int | None) -> tuple[Iterable[db.NewJob], int]:
    if count is not None:
        return jobs, count
    listed = list(jobs)
    return listed, len(listed)


def _copy(conn: psycopg.Connection[Any], statement: Any, rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY these rows, if there is at least one (an empty COPY is a wasted round trip)."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write_row(first)
        for row in rows:
            copy.write_row(row)


async def _copy_async(
    conn: psycopg.AsyncConnection[Any], statement: Any, rows: Iterable[tuple[Any, ...]]
) -> None:
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        return
    async with conn.cursor() as cursor, cursor.copy(statement) as copy:
        await copy.write_row(first)
        for row in rows:
            await copy.write_row(row)


def enqueue_many(
    target: Target, schema: str, jobs: Iterable[db.NewJob], count: int | None = None
) -> list[Enqueued]:
    """Insert many jobs in a handful of round trips: ids reserved in one statement, rows
    without dedupe keys COPYed straight into the table, rows with keys COPYed into a
    temporary table and moved with ON CONFLICT DO NOTHING.

    ``jobs`` may be a lazy iterable of exactly ``count`` jobs, validated as it is consumed:
    it is consumed inside the transaction, and an error it raises rolls everything back.
    """
    jobs, count = _counted(jobs, count)
    if not count:
        return []
    try:
        ids, now = target.run(db.reserve_ids(schema, count))
        bulk = _Bulk(jobs, ids, now)
        conn = target.driver()
        inserted: set[int] = set()
        holders: dict[str, int] = {}
        with conn.transaction():
            _copy(conn, db.copy_statement(schema, None, with_not_before=False), bulk.direct_rows())
            _copy(conn, db.copy_statement(schema, None, with_not_before=True), bulk.explicit)
            if bulk.keyed:
                for statement in _staging_statements(schema):
                    conn.execute(statement)
                staging = db.copy_statement(schema, db.STAGING_TABLE, with_not_before=True)
                _copy(conn, staging, bulk.keyed_rows())
                inserted = db.run(conn, db.move_staged(schema))
                missing = bulk.missing_keys(inserted)
                if missing:
                    holders = db.run(conn, db.dedupe_holders(schema, missing))
            for position, job in bulk.singles:
                single = enqueue(PsycopgTarget(conn), schema, job)
                bulk.single_results[position] = Enqueued(single.record.id, single.existing)
        out, retry = bulk.result(inserted, holders)
        for position, job in retry:
            again = enqueue(target, schema, job)
            out[position] = Enqueued(again.record.id, again.existing)
        return out
    except Exception as exc:
        raise translate(exc) from exc


async def enqueue_many_async(
    target: AsyncTarget, schema: str, jobs: Iterable[db.NewJob], count: int | None = None
) -> list[Enqueued]:
    """The async twin of :func:`enqueue_many`."""
    jobs, count = _counted(jobs, count)
    if not count:
        return []
    try:
        ids, now = await target.run(db.reserve_ids(schema, count))
        bulk = _Bulk(jobs, ids, now)
        conn = await target.driver()
        inserted: set[int] = set()
        holders: dict[str, int] = {}
        async with conn.transaction():
            await _copy_async(
                conn, db.copy_statement(schema, None, with_not_before=False), bulk.direct_rows()
            )
            await _copy_async(
                conn, db.copy_statement(schema, None, with_not_before=True), bulk.explicit
            )
            if bulk.keyed:
                for statement in _staging_statements(schema):
                    await conn.execute(statement)
                staging = db.copy_statement(schema, db.STAGING_TABLE, with_not_before=True)
                await _copy_async(conn, staging, bulk.keyed_rows())
                inserted = await db.run_async(conn, db.move_staged(schema))
                missing = bulk.missing_keys(inserted)
                if missing:
                    holders = await db.run_async(conn, db.dedupe_holders(schema, missing))
            for position, job in bulk.singles:
                single = await enqueue_async(AsyncPsycopgTarget(conn), schema, job)
                bulk.single_results[position] = Enqueued(single.record.id, single.existing)
        out, retry = bulk.result(inserted, holders)
        for position, job in retry:
            again = await enqueue_async(target, schema, job)
            out[position] = Enqueued(again.record.id, again.existing)
        return out
    except Exception as exc:
        raise translate(exc) from exc
