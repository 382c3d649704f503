"""Cron schedules stored in ``pgjobs.schedules``: adding, listing, pausing, and firing them.

Every worker takes part in firing; none is a leader. A pass locks the due schedule rows
(``FOR UPDATE SKIP LOCKED``), inserts one job per fire time and moves ``next_fire_at`` past
them in the same transaction. A second worker either skips the locked row or, once the first
committed, no longer sees it due: each fire time yields exactly one job, enforced by the row
lock, whatever the number of workers, and a worker that dies mid-pass rolls both writes back.
Nothing depends on the jobs table's history, so pruning old jobs or removing and re-adding a
schedule cannot fire a time twice. Fire times come from :mod:`pgjobs.cron`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgjobs import cron as cron_rules
from pgjobs import db, validation
from pgjobs.encoding import dumps
from pgjobs.errors import InvalidInput, NotFound
from pgjobs.log import get_logger

log = get_logger("pgjobs.schedules")

#: dedupe_key of the jobs of a schedule with overlap "skip": while one of them is unfinished,
#: the unique index on unfinished keys refuses the next one.
OVERLAP_KEY_PREFIX = "pgjobs:schedule:"


@dataclass(frozen=True)
class Schedule:
    """A cron schedule: every fire time of ``cron`` (in ``timezone``) enqueues ``task``."""

    name: str
    cron: str
    task: str
    args: Mapping[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    #: Fire times missed while nothing ran: "skip" them, or "run_once" for the latest.
    missed: str = "skip"
    #: "skip": no new job while the previous one of this schedule is unfinished.
    overlap: str = "allow"
    source: str = "cli"
    paused: bool = False
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    last_job_id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInput("a schedule needs a name")
        try:
            validation.task_name(self.name)
        except InvalidInput:
            raise InvalidInput(
                f"invalid schedule name {self.name!r}: use 1-{validation.TASK_NAME_MAX} "
                f"characters among {validation.NAME_CHARACTERS}"
            ) from None
        object.__setattr__(self, "cron", cron_rules.check_expression(self.cron))
        cron_rules.zone(self.timezone)
        validation.task_name(self.task)
        if not isinstance(self.args, Mapping):
            raise InvalidInput(f"schedule args must be a JSON object, got {self.args!r}")
        if self.queue is not None:
            validation.queue_name(self.queue)
        if self.priority is not None:
            validation.priority(self.priority)
        if self.max_attempts is not None:
            validation.max_attempts(self.max_attempts)
        validation.one_of(self.missed, "missed policy", cron_rules.MISSED_POLICIES)
        validation.one_of(self.overlap, "overlap policy", cron_rules.OVERLAP_POLICIES)

    @property
    def when(self) -> cron_rules.Cron:
        return cron_rules.Cron(self.cron, self.timezone)

    def definition(self) -> tuple[Any, ...]:
        """What a code declaration sets (not the state: paused, fire times)."""
        return (
            self.cron, self.timezone, self.task, dict(self.args), self.queue, self.priority,
            self.max_attempts, self.missed, self.overlap,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["args"] = dict(self.args)
        for key in ("next_fire_at", "last_fire_at"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        return out

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Schedule:
        try:
            return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})
        except InvalidInput as exc:  # stored by plain SQL: say which one
            raise InvalidInput(
                f"stored schedule {row.get('name')!r}: {exc} (fix it with 'pgjobs schedules add"
                " ... --replace' or remove it)"
            ) from None


_COLUMNS = (
    "name", "cron", "timezone", "task", "args", "queue", "priority", "max_attempts", "missed",
    "overlap", "source", "paused", "next_fire_at",
)  # fmt: skip


def _values(schedule: Schedule, next_fire_at: datetime) -> list[Any]:
    row = replace(schedule, next_fire_at=next_fire_at)
    return [
        dumps(dict(row.args), what="schedule args") if c == "args" else getattr(row, c)
        for c in _COLUMNS
    ]


def _upsert(schema: str, on_conflict: str) -> sql.Composed:
    """INSERT of a schedule row (values from :func:`_values`) with this conflict clause."""
    return sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values}) " + on_conflict).format(
        table=sql.Identifier(schema, "schedules"),
        columns=sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)),
    )


#: Rewrites every stored column of a schedule of the same name.
_OVERWRITE = "ON CONFLICT (name) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in _COLUMNS if c != "name"
)


def _changed(conn: psycopg.Connection[Any], schema: str) -> None:
    """Tell running workers to re-read the schedules (their next wake-up may have moved)."""
    conn.execute("SELECT pg_notify(%s, %s)", (db.control_channel(schema), '{"schedules": true}'))


def _server_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def add(
    conn: psycopg.Connection[Any],
    schema: str,
    schedule: Schedule,
    *,
    replace_existing: bool = False,
) -> Schedule:
    """Store ``schedule``; its first fire time is the first one after now. A name in use is
    an error unless ``replace_existing`` (the old definition is replaced, its state reset)."""
    with conn.transaction():
        first = schedule.when.next_after(_server_now(conn))
        statement = _upsert(
            schema,
            _OVERWRITE + ", last_fire_at = NULL, last_job_id = NULL, updated_at = now() RETURNING *"
            if replace_existing
            else "ON CONFLICT (name) DO NOTHING RETURNING *",
        )
        with conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(statement, _values(schedule, first)).fetchone()
        if row is None:
            raise InvalidInput(
                f"schedule {schedule.name!r} exists already: use --replace to overwrite it, "
                "or pick another name"
            )
        _changed(conn, schema)
    return Schedule.from_row(row)


def list_schedules(conn: psycopg.Connection[Any], schema: str) -> list[Schedule]:
    query = sql.SQL("SELECT * FROM {} ORDER BY name").format(sql.Identifier(schema, "schedules"))
    with conn.cursor(row_factory=dict_row) as cursor:
        return [Schedule.from_row(row) for row in cursor.execute(query)]


def remove(conn: psycopg.Connection[Any], schema: str, name: str) -> None:
    with conn.transaction():
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE name = %s").format(sql.Identifier(schema, "schedules")),
            (name,),
        ).rowcount
        if not deleted:
            raise NotFound(f"no schedule named {name!r} (see: pgjobs schedules ls)")
        _changed(conn, schema)


def set_paused(conn: psycopg.Connection[Any], schema: str, name: str, paused: bool) -> Schedule:
    """Pause or resume. Resuming starts from the next fire time after now: fire times that
    passed while paused are not made up."""
    with conn.transaction():
        with conn.cursor(row_factory=dict_row) as cursor:
            row = cursor.execute(
                sql.SQL("SELECT * FROM {} WHERE name = %s FOR UPDATE").format(
                    sql.Identifier(schema, "schedules")
                ),
                (name,),
            ).fetchone()
            if row is None:
                raise NotFound(f"no schedule named {name!r} (see: pgjobs schedules ls)")
            current = Schedule.from_row(row)
            next_fire_at = current.next_fire_at
            if not paused and current.paused:
                next_fire_at = current.when.next_after(_server_now(conn))
            row = cursor.execute(
                sql.SQL(
                    "UPDATE {} SET paused = %s, next_fire_at = %s, updated_at = now()"
                    " WHERE name = %s RETURNING *"
                ).format(sql.Identifier(schema, "schedules")),
                (paused, next_fire_at, name),
            ).fetchone()
        _changed(conn, schema)
    assert row is not None
    return Schedule.from_row(row)


# --- in the worker ----------------------------------------------------------------------


async def sync_declared(
    conn: psycopg.AsyncConnection[Any], schema: str, declared: Sequence[Schedule]
) -> None:
    """Store the schedules declared in code (``@app.periodic``). An unchanged one keeps its
    state (next fire time, pause); a changed one is rewritten and starts from now; one of the
    same name added from the command line is replaced (and logged)."""
    if not declared:
        return
    async with conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                sql.SQL("SELECT * FROM {} WHERE name = ANY(%s) FOR UPDATE").format(
                    sql.Identifier(schema, "schedules")
                ),
                ([s.name for s in declared],),
            )
            stored = {row["name"]: Schedule.from_row(row) for row in await cursor.fetchall()}
            await cursor.execute("SELECT now() AS now")
            now_row = await cursor.fetchone()
        assert now_row is not None
        now = now_row["now"]
        for schedule in declared:
            old = stored.get(schedule.name)
            if (
                old is not None
                and old.source == "code"
                and old.definition() == schedule.definition()
            ):
                continue
            if old is not None and old.source != "code":
                log.warning("schedule.replaced_by_code", schedule=schedule.name)
            paused = old.paused if old is not None else False
            row = replace(schedule, source="code", paused=paused)
            await conn.execute(
                _upsert(schema, _OVERWRITE + ", updated_at = now()"),
                _values(row, row.when.next_after(now)),
            )


@dataclass(frozen=True)
class Fired:
    schedule: str
    fire_at: datetime
    job_id: int


@dataclass(frozen=True)
class Pass:
    """The outcome of one firing pass."""

    fired: list[Fired]
    #: Fire times skipped: missed while nothing ran, or overlapping an unfinished job.
    skipped: int
    #: The earliest next fire time of any active schedule (None: no active schedule).
    next_fire_at: datetime | None
    #: The database's clock at the end of the pass (fire times follow it, not the worker's).
    now: datetime


_DUE = """
SELECT s.*, now() AS now
  FROM {schema}.schedules AS s
 WHERE NOT s.paused AND s.next_fire_at <= now()
 ORDER BY s.next_fire_at
 LIMIT 100
   FOR UPDATE SKIP LOCKED
"""

_FIRE = """
WITH fired AS (
    INSERT INTO {schema}.jobs AS j
           (task, args, queue, priority, max_attempts, not_before, dedupe_key, meta)
    SELECT s.task, s.args, s.queue, s.priority, s.max_attempts, f.at,
           CASE WHEN s.overlap = 'skip' THEN %(overlap_prefix)s || s.name END,
           jsonb_build_object('schedule', s.name, 'fire_at', f.at)
      FROM {schema}.schedules AS s, unnest(%(fire_at)s::timestamptz[]) AS f(at)
     WHERE s.name = %(name)s
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running')
    DO NOTHING
    RETURNING j.id, j.not_before
),
moved AS (
    UPDATE {schema}.schedules AS s
       SET next_fire_at = %(next_fire_at)s,
           last_fire_at = coalesce((SELECT max(f.not_before) FROM fired AS f), s.last_fire_at),
           last_job_id = coalesce((SELECT max(f.id) FROM fired AS f), s.last_job_id),
           updated_at = now()
     WHERE s.name = %(name)s
)
SELECT f.id, f.not_before FROM fired AS f ORDER BY f.id
"""

_PAUSE_INVALID = """
UPDATE {schema}.schedules SET paused = true, updated_at = now() WHERE name = %(name)s
"""

_NEXT = """
SELECT min(next_fire_at) AS next_fire_at, clock_timestamp() AS now
  FROM {schema}.schedules WHERE NOT paused
"""


def _query(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(schema=sql.Identifier(schema))


async def fire_due(conn: psycopg.AsyncConnection[Any], schema: str) -> Pass:
    """One pass: insert the jobs of every due schedule (see the module's docstring), in one
    transaction; returns what was fired and the next fire time to wake up for."""
    fired: list[Fired] = []
    skipped = 0
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_query(_DUE, schema))
        due = await cursor.fetchall()
        for row in due:
            try:
                schedule = Schedule.from_row(row)
                fire_plan = cron_rules.plan(
                    schedule.when, row["next_fire_at"], row["now"], schedule.missed
                )
            except InvalidInput as exc:
                # Stored by other means (plain SQL, a zone missing from this machine's tzdata):
                # left due, it would be read again at every wake-up. Paused, it waits for a fix.
                log.error("schedule.invalid_paused", schedule=row["name"], error=str(exc))
                await cursor.execute(_query(_PAUSE_INVALID, schema), {"name": row["name"]})
                continue
            await cursor.execute(
                _query(_FIRE, schema),
                {
                    "name": schedule.name,
                    "fire_at": list(fire_plan.fire_at),
                    "next_fire_at": fire_plan.next_fire_at,
                    "overlap_prefix": OVERLAP_KEY_PREFIX,
                },
            )
            inserted = await cursor.fetchall()
            fired.extend(Fired(schedule.name, r["not_before"], r["id"]) for r in inserted)
            skipped += fire_plan.missed + len(fire_plan.fire_at) - len(inserted)
            if fire_plan.missed:
                log.warning(
                    "schedule.missed", schedule=schedule.name, missed=fire_plan.missed,
                    policy=schedule.missed,
                )  # fmt: skip
        await cursor.execute(_query(_NEXT, schema))
        next_row = await cursor.fetchone()
    assert next_row is not None
    return Pass(fired, skipped, next_row["next_fire_at"], next_row["now"])
