"""What the dashboard reads, each page in a few statements whose cost does not grow with the
jobs table.

The table keeps every finished job until it is pruned: millions of rows are normal, and a
page that counted them would get slower every day. So every statement here walks an index
over a bounded range, and its row count is capped by a ``LIMIT`` (``tests/web`` checks the
plans with ``EXPLAIN ANALYZE`` on a table of 220,000 jobs):

- queues: the names come from a loose scan of the ready index (one descent per queue), the
  ``queues`` table, the running jobs and the recent endings; ready jobs are counted per
  (queue, priority) level over the due range of the ready index, at most
  :data:`DEPTH_COUNT_MAX` per level (the page then says "10,000+"), whether the queue is
  paused or not (``backlog()`` counts 0 for a paused queue: the dashboard wants the depth);
- the rate is measured on the newest :data:`RATE_SAMPLE` endings of the last minute, read
  backwards from the finished-jobs index: over the last minute when there were fewer, else
  over the span those endings cover (a rate, not a count, so a busy system costs the same);
- failures are those of the last hour, at most :data:`FAILED_RECENT_MAX`, and the planner's
  estimate of every failed job kept (the statement of ``/metrics``);
- job lists are keyset-paged and read at most :data:`SCAN_WINDOW` index entries per page
  (see :func:`list_jobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgjobs.types import JobRecord, JobStatus
from pgjobs.web.metrics import GLOBAL

#: Ready jobs are counted up to this many per (queue, priority) level.
DEPTH_COUNT_MAX = 10_000
#: At most this many queues are shown (in name order).
QUEUES_MAX = 500
#: The rate is jobs ended per minute, measured over the last minute...
RATE_WINDOW = timedelta(minutes=1)
#: ...or over the newest this-many endings, when the last minute had more.
RATE_SAMPLE = 5_000
#: Failures per queue are counted over this last stretch, up to this many in all.
FAILED_RECENT = timedelta(hours=1)
FAILED_RECENT_MAX = 10_000
#: A worker whose last heartbeat is older than this is shown as silent.
WORKER_ALIVE = timedelta(seconds=60)
#: A list page reads at most this many index entries: a selective filter may fill a page
#: only partly, and the next page goes on from where the scan stopped.
SCAN_WINDOW = 5_000
PAGE_SIZE = 50
#: Larger than any job id: the cursor of a first page.
MAX_ID = 2**63 - 1
#: Rows of the small side lists of a job page (dependencies, dependents).
RELATED_MAX = 100
WORKERS_MAX = 500
SCHEDULES_MAX = 1000
RECENT_FAILURES = 10


def _q(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(schema=sql.Identifier(schema))


# --- the overview -------------------------------------------------------------------------

QUEUES = """
WITH RECURSIVE listed(queue, n) AS (
    SELECT (SELECT j.queue FROM {schema}.jobs AS j
             WHERE j.status = 'queued' AND j.blockers = 0
             ORDER BY j.queue LIMIT 1), 1
    UNION ALL
    SELECT (SELECT j.queue FROM {schema}.jobs AS j
             WHERE j.status = 'queued' AND j.blockers = 0 AND j.queue > l.queue
             ORDER BY j.queue LIMIT 1), l.n + 1
      FROM listed AS l
     WHERE l.queue IS NOT NULL AND l.n < %(queues_max)s
),
running AS (
    SELECT j.queue, count(*) AS running,
           count(*) FILTER (WHERE j.lease_expires_at < now()) AS expired
      FROM {schema}.jobs AS j
     WHERE j.status = 'running'
     GROUP BY j.queue
),
failed AS (
    SELECT f.queue, count(*) AS failed
      FROM (SELECT j.queue FROM {schema}.jobs AS j
             WHERE j.status = 'failed' AND j.finished_at > now() - %(failed_recent)s::interval
             ORDER BY j.finished_at DESC
             LIMIT %(failed_max)s) AS f
     GROUP BY f.queue
),
ended AS (
    SELECT e.queue, e.finished_at
      FROM ((SELECT j.queue, j.finished_at FROM {schema}.jobs AS j
              WHERE j.status = 'succeeded' AND j.finished_at > now() - %(rate_window)s::interval
              ORDER BY j.finished_at DESC LIMIT %(rate_sample)s)
            UNION ALL
            (SELECT j.queue, j.finished_at FROM {schema}.jobs AS j
              WHERE j.status = 'failed' AND j.finished_at > now() - %(rate_window)s::interval
              ORDER BY j.finished_at DESC LIMIT %(rate_sample)s)
            UNION ALL
            (SELECT j.queue, j.finished_at FROM {schema}.jobs AS j
              WHERE j.status = 'cancelled' AND j.finished_at > now() - %(rate_window)s::interval
              ORDER BY j.finished_at DESC LIMIT %(rate_sample)s)) AS e
     ORDER BY e.finished_at DESC
     LIMIT %(rate_sample)s
),
span AS (
    SELECT CASE WHEN count(*) >= %(rate_sample)s
                THEN greatest(extract(epoch FROM now() - min(e.finished_at)), 1)
                ELSE extract(epoch FROM %(rate_window)s::interval)
           END::float AS seconds
      FROM ended AS e
),
rates AS (
    SELECT e.queue, count(*) AS ended FROM ended AS e GROUP BY e.queue
),
names AS (
    SELECT l.queue FROM listed AS l WHERE l.queue IS NOT NULL
    UNION SELECT q.name FROM {schema}.queues AS q
    UNION SELECT r.queue FROM running AS r
    UNION SELECT f.queue FROM failed AS f
    UNION SELECT r.queue FROM rates AS r
),
shown AS (
    SELECT n.queue FROM names AS n ORDER BY n.queue LIMIT %(queues_max)s
),
levels(queue, priority) AS (
    SELECT s.queue,
           (SELECT j.priority FROM {schema}.jobs AS j
             WHERE j.queue = s.queue AND j.status = 'queued' AND j.blockers = 0
             ORDER BY j.priority DESC LIMIT 1)
      FROM shown AS s
    UNION ALL
    SELECT l.queue,
           (SELECT j.priority FROM {schema}.jobs AS j
             WHERE j.queue = l.queue AND j.status = 'queued' AND j.blockers = 0
               AND j.priority < l.priority
             ORDER BY j.priority DESC LIMIT 1)
      FROM levels AS l
     WHERE l.priority IS NOT NULL
),
depth AS (
    SELECT l.queue,
           sum(c.ready) AS ready,
           bool_or(c.ready >= %(depth_max)s) AS ready_capped,
           min((SELECT j.not_before FROM {schema}.jobs AS j
                 WHERE j.queue = l.queue AND j.priority = l.priority
                   AND j.status = 'queued' AND j.blockers = 0 AND j.not_before <= now()
                 ORDER BY j.not_before LIMIT 1)) AS oldest
      FROM levels AS l
     CROSS JOIN LATERAL (
           SELECT count(*) AS ready
             FROM (SELECT 1 FROM {schema}.jobs AS j
                    WHERE j.queue = l.queue AND j.priority = l.priority
                      AND j.status = 'queued' AND j.blockers = 0 AND j.not_before <= now()
                    LIMIT %(depth_max)s) AS due
           ) AS c
     WHERE l.priority IS NOT NULL
     GROUP BY l.queue
)
SELECT s.queue AS name,
       coalesce(d.ready, 0)::bigint AS ready,
       coalesce(d.ready_capped, false) AS ready_capped,
       extract(epoch FROM now() - d.oldest)::float AS oldest_ready_age,
       coalesce(r.running, 0)::bigint AS running,
       coalesce(r.expired, 0)::bigint AS expired,
       coalesce(f.failed, 0)::bigint AS failed_recent,
       coalesce(rt.ended, 0) * 60.0 / sp.seconds AS per_minute,
       coalesce(q.paused, false) AS paused,
       q.concurrency_limit,
       q.rate_limit,
       extract(epoch FROM q.rate_period)::float AS rate_period_seconds
  FROM shown AS s
  CROSS JOIN span AS sp
  LEFT JOIN depth AS d ON d.queue = s.queue
  LEFT JOIN running AS r ON r.queue = s.queue
  LEFT JOIN failed AS f ON f.queue = s.queue
  LEFT JOIN rates AS rt ON rt.queue = s.queue
  LEFT JOIN {schema}.queues AS q ON q.name = s.queue
 ORDER BY s.queue
"""

QUEUES_PARAMS: dict[str, Any] = {
    "queues_max": QUEUES_MAX,
    "failed_recent": FAILED_RECENT,
    "failed_max": FAILED_RECENT_MAX,
    "rate_window": RATE_WINDOW,
    "rate_sample": RATE_SAMPLE,
    "depth_max": DEPTH_COUNT_MAX,
}

RECENT_FAILED = """
SELECT j.* FROM {schema}.jobs AS j
 WHERE j.status = 'failed'
 ORDER BY j.finished_at DESC
 LIMIT %(limit)s
"""

WORKERS_ALIVE = """
SELECT count(*) FILTER (WHERE w.last_heartbeat_at > now() - %(alive)s::interval) AS alive,
       count(*) AS known
  FROM {schema}.workers AS w
"""


@dataclass(frozen=True)
class QueueRow:
    name: str
    ready: int
    ready_capped: bool
    oldest_ready_age: float | None
    running: int
    expired: int
    failed_recent: int
    per_minute: float
    paused: bool
    concurrency_limit: int | None
    rate_limit: int | None
    rate_period_seconds: float | None


@dataclass(frozen=True)
class Overview:
    queues: list[QueueRow]
    recent_failures: list[JobRecord]
    failed_estimate: float | None
    rows_estimate: float | None
    workers_alive: int
    workers_known: int
    #: Whether the failures of the last hour reached the cap (the counts are then minimums).
    failed_capped: bool


async def overview(conn: psycopg.AsyncConnection[Any], schema: str) -> Overview:
    """Everything the overview shows, in one read-only transaction (one snapshot)."""
    async with conn.transaction():
        # The loose scans' estimates cross jit_above_cost; compiling would cost more than
        # the statement (as for /metrics).
        await conn.execute("SET LOCAL jit = off")
        async with conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(_q(QUEUES, schema), QUEUES_PARAMS)
            queues = [QueueRow(**row) for row in await cursor.fetchall()]
            await cursor.execute(_q(RECENT_FAILED, schema), {"limit": RECENT_FAILURES})
            failures = [JobRecord.from_row(row) for row in await cursor.fetchall()]
            await cursor.execute(_q(GLOBAL, schema), {"table": f"{schema}.jobs", "schema": schema})
            overall = await cursor.fetchone() or {}
            await cursor.execute(_q(WORKERS_ALIVE, schema), {"alive": WORKER_ALIVE})
            workers = await cursor.fetchone() or {}
    return Overview(
        queues=queues,
        recent_failures=failures,
        failed_estimate=overall.get("failed_estimate"),
        rows_estimate=overall.get("rows_estimate"),
        workers_alive=int(workers.get("alive") or 0),
        workers_known=int(workers.get("known") or 0),
        failed_capped=sum(q.failed_recent for q in queues) >= FAILED_RECENT_MAX,
    )


# --- job lists ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list shows (every given field must match)."""

    status: JobStatus | None = None
    queue: str | None = None
    task: str | None = None
    #: Only jobs that failed an attempt and wait for the next one (queued, with an error).
    retrying: bool = False

    @property
    def by_finish_time(self) -> bool:
        """Lists of one finished status walk the finished-jobs index: newest ending first."""
        return self.status is not None and self.status.finished


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: strictly after (older than) this position. Lists in id order
    use ``before_id``; lists by finish time use ``(before_at, before_id)``."""

    before_id: int = MAX_ID
    before_at: datetime | None = None


@dataclass(frozen=True)
class Page:
    jobs: list[JobRecord]
    #: The next page's cursor, None on the last page.
    next: Cursor | None
    #: Index entries read for this page.
    scanned: int
    #: The page is not full because the scan window ended (more matches may be older).
    window_ended: bool = False


# Three ways in, chosen by the status filter; the same shape after that. ``scanned`` reads
# index entries in the list's order (at most a window of them) and tells which ones match;
# ``picked`` keeps the first page-plus-one matches; their rows are then read by id.
_SCAN_BY_ID = """
    SELECT j.id, j.finished_at, ({filters}) AS hit
      FROM {schema}.jobs AS j
     WHERE j.id < %(before_id)s
     ORDER BY j.id DESC
     LIMIT %(window)s
"""
# Running jobs are few (bounded by the workers' concurrency) and have their own index: an
# id-ordered walk would pass every queued job of a big backlog before the old ones running.
_SCAN_RUNNING = """
    SELECT j.id, j.finished_at, ({filters}) AS hit
      FROM {schema}.jobs AS j
     WHERE j.status = 'running' AND j.id < %(before_id)s
     ORDER BY j.id DESC
     LIMIT %(window)s
"""
# One finished status: a backward range of the finished-jobs index (status, finished_at),
# newest ending first. Outcomes written together share a finished_at, so the order (and the
# cursor) is the pair (finished_at, id); the index has no id, so "the next window entries in
# that order" cannot be a LIMIT over an index scan (the planner would sort every older
# failure to find them). Instead ``bound`` finds the finished_at a window of entries
# reaches: the rest of the cursor's own moment (``tie``: the jobs that ended at that very
# time, older by id), then an index-only walk backwards over what ended before it. The scan
# then takes the range down to that moment, ties included: a window, plus the jobs that
# ended at the very same time as its last one. (NULL: less than a window is left.)
_BOUND_FINISHED = """
tie AS MATERIALIZED (
    SELECT count(*) AS n FROM {schema}.jobs AS j
     WHERE j.status = %(status)s AND j.finished_at = %(before_at)s AND j.id < %(before_id)s
),
bound AS MATERIALIZED (
    SELECT CASE WHEN (SELECT t.n FROM tie AS t) >= %(window)s THEN %(before_at)s::timestamptz
           ELSE (SELECT j.finished_at FROM {schema}.jobs AS j
                  WHERE j.status = %(status)s AND j.finished_at < %(before_at)s
                  ORDER BY j.finished_at DESC
                 OFFSET %(window)s - (SELECT t.n FROM tie AS t) - 1 LIMIT 1)
           END AS finished_at
),"""
_SCAN_FINISHED = """
    SELECT j.id, j.finished_at, ({filters}) AS hit
      FROM {schema}.jobs AS j
     WHERE j.status = %(status)s
       AND j.finished_at <= %(before_at)s
       AND j.finished_at >= coalesce((SELECT b.finished_at FROM bound AS b), '-infinity')
       AND (j.finished_at, j.id) < (%(before_at)s, %(before_id)s)
"""

_PAGE = """
WITH {bound}
scanned AS MATERIALIZED ({scan}),
picked AS (
    SELECT s.id, s.finished_at FROM scanned AS s WHERE s.hit
     ORDER BY {order_s} LIMIT %(limit)s + 1
),
last AS (
    SELECT s.id, s.finished_at FROM scanned AS s ORDER BY {reverse_s} LIMIT 1
),
stats AS (
    SELECT (SELECT count(*) FROM scanned) AS scan_count,
           {full} AS scan_full,
           (SELECT l.id FROM last AS l) AS scan_last_id,
           (SELECT l.finished_at FROM last AS l) AS scan_last_at
)
SELECT st.scan_count, st.scan_full, st.scan_last_id, st.scan_last_at, j.*
  FROM stats AS st
  LEFT JOIN picked AS p ON true
  LEFT JOIN {schema}.jobs AS j ON j.id = p.id
 ORDER BY {order_p}
"""

_FILTERS = """
    (%(status)s::text IS NULL OR j.status = %(status)s::text)
    AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
    AND (%(task)s::text IS NULL OR j.task = %(task)s::text)
    AND (NOT %(retrying)s::boolean OR j.error IS NOT NULL)
"""


def page_statement(where: JobFilter) -> str:
    """The statement of a list page for this filter (``{schema}`` left to fill)."""
    if where.by_finish_time:
        bound = _BOUND_FINISHED
        scan = _SCAN_FINISHED
        full = "(SELECT b.finished_at FROM bound AS b) IS NOT NULL"
        order = "{t}.finished_at DESC, {t}.id DESC"
        reverse = "{t}.finished_at, {t}.id"
    else:
        bound = ""
        scan = _SCAN_RUNNING if where.status is JobStatus.RUNNING else _SCAN_BY_ID
        full = "(SELECT count(*) FROM scanned) >= %(window)s"
        order = "{t}.id DESC"
        reverse = "{t}.id"
    return _PAGE.format(
        bound=bound,
        scan=scan.replace("{filters}", _FILTERS),
        full=full,
        order_s=order.format(t="s"),
        reverse_s=reverse.format(t="s"),
        order_p=order.format(t="p"),
        schema="{schema}",
    )


def page_params(where: JobFilter, cursor: Cursor, *, limit: int, window: int) -> dict[str, Any]:
    return {
        "status": where.status.value if where.status is not None else None,
        "queue": where.queue,
        "task": where.task,
        "retrying": where.retrying,
        "before_id": cursor.before_id,
        "before_at": cursor.before_at if cursor.before_at is not None else "infinity",
        "limit": limit,
        "window": window,
    }


async def list_jobs(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    where: JobFilter,
    cursor: Cursor = Cursor(),
    *,
    limit: int = PAGE_SIZE,
    window: int = SCAN_WINDOW,
) -> Page:
    """One page of jobs, newest first (by id; by end time for a finished status).

    Keyset paging: a page starts strictly after the cursor, so rows inserted meanwhile
    (newer) never shift later pages: no duplicates, no gaps. At most ``window`` index
    entries are read: when the filter is selective and the window runs out before the
    page is full, the page is shorter and its ``next`` cursor goes on from where the scan
    stopped (``window_ended``)."""
    statement = _q(page_statement(where), schema)
    params = page_params(where, cursor, limit=limit, window=window)
    async with conn.transaction():
        await conn.execute("SET LOCAL jit = off")
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(statement, params)
            rows = await cur.fetchall()
    stats = rows[0]
    jobs = [JobRecord.from_row(row) for row in rows if row["id"] is not None]
    scanned = int(stats["scan_count"])
    if len(jobs) > limit:
        jobs = jobs[:limit]
        last = jobs[-1]
        return Page(jobs, Cursor(last.id, last.finished_at), scanned)
    if stats["scan_full"] and scanned:
        following = Cursor(stats["scan_last_id"], stats["scan_last_at"])
        return Page(jobs, following, scanned, window_ended=len(jobs) < limit)
    return Page(jobs, None, scanned)


async def start_cursor(conn: psycopg.AsyncConnection[Any], schema: str) -> Cursor:
    """A cursor that excludes what is created or ends from now on: what "all" means for a
    bulk action confirmed now (the newest id and the database's clock)."""
    row = await (
        await conn.execute(_q("SELECT (SELECT max(j.id) FROM {schema}.jobs AS j), now()", schema))
    ).fetchone()
    assert row is not None
    newest, now = row
    return Cursor((newest or 0) + 1, now)


async def matching_ids(
    conn: psycopg.AsyncConnection[Any],
    schema: str,
    where: JobFilter,
    cursor: Cursor,
    *,
    at_most: int,
    scan_max: int,
) -> tuple[list[int], Cursor | None]:
    """The ids of up to ``at_most`` jobs a list with this filter shows from ``cursor`` on,
    page after page, reading at most about ``scan_max`` index entries (each page as bounded
    as a list's); and where to go on from, None when nothing is left."""
    ids: list[int] = []
    position: Cursor | None = cursor
    scanned = 0
    while position is not None and len(ids) < at_most and scanned < scan_max:
        page = await list_jobs(
            conn, schema, where, position, limit=min(PAGE_SIZE * 20, at_most - len(ids))
        )
        ids.extend(job.id for job in page.jobs)
        scanned += page.scanned
        position = page.next
    return ids, position


# --- a job --------------------------------------------------------------------------------

RELATED = """
SELECT j.id, j.task, j.status FROM {schema}.jobs AS j
 WHERE j.id = ANY (%(ids)s::bigint[])
 ORDER BY j.id
 LIMIT %(limit)s
"""

DEPENDENTS = """
SELECT e.job_id AS id, j.task, j.status
  FROM {schema}.job_dependencies AS e
  LEFT JOIN {schema}.jobs AS j ON j.id = e.job_id
 WHERE e.depends_on = %(id)s
 ORDER BY e.job_id
 LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Related:
    id: int
    task: str | None
    status: JobStatus | None


@dataclass(frozen=True)
class JobDetail:
    job: JobRecord
    #: The jobs it was enqueued to wait for (``depends_on``), with their state now.
    depends_on: list[Related] = field(default_factory=list)
    #: Jobs still waiting for this one.
    dependents: list[Related] = field(default_factory=list)


def _related(rows: Sequence[dict[str, Any]]) -> list[Related]:
    return [
        Related(r["id"], r["task"], JobStatus(r["status"]) if r["status"] else None) for r in rows
    ]


async def job_detail(
    conn: psycopg.AsyncConnection[Any], schema: str, job_id: int
) -> JobDetail | None:
    """A job with its dependencies and dependents (primary-key lookups)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            _q("SELECT j.* FROM {schema}.jobs AS j WHERE j.id = %(id)s", schema), {"id": job_id}
        )
        row = await cursor.fetchone()
        if row is None:
            return None
        job = JobRecord.from_row(row)
        wanted = (job.meta or {}).get("depends_on") or []
        ids = [i for i in wanted if isinstance(i, int)][:RELATED_MAX]
        depends_on: list[Related] = []
        if ids:
            await cursor.execute(_q(RELATED, schema), {"ids": ids, "limit": RELATED_MAX})
            found = {r.id: r for r in _related(await cursor.fetchall())}
            depends_on = [found.get(i, Related(i, None, None)) for i in ids]
        await cursor.execute(_q(DEPENDENTS, schema), {"id": job_id, "limit": RELATED_MAX})
        dependents = _related(await cursor.fetchall())
    return JobDetail(job, depends_on, dependents)


# --- schedules and workers -----------------------------------------------------------------

SCHEDULES = """
SELECT s.*, j.status AS last_job_status
  FROM {schema}.schedules AS s
  LEFT JOIN {schema}.jobs AS j ON j.id = s.last_job_id
 ORDER BY s.name
 LIMIT %(limit)s
"""


async def schedules(conn: psycopg.AsyncConnection[Any], schema: str) -> list[dict[str, Any]]:
    """The schedules (a small table), each with the state of its last job (by id)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_q(SCHEDULES, schema), {"limit": SCHEDULES_MAX})
        return await cursor.fetchall()


WORKERS = """
WITH busy AS (
    SELECT j.worker_id, count(*) AS running
      FROM {schema}.jobs AS j
     WHERE j.status = 'running'
     GROUP BY j.worker_id
)
SELECT w.id, w.hostname, w.pid, w.queues, w.concurrency, w.version, w.started_at,
       w.last_heartbeat_at, w.info,
       w.last_heartbeat_at > now() - %(alive)s::interval AS alive,
       extract(epoch FROM now() - w.last_heartbeat_at)::float AS silent_seconds,
       coalesce(b.running, 0)::bigint AS running
  FROM {schema}.workers AS w
  LEFT JOIN busy AS b ON b.worker_id = w.id
 ORDER BY alive DESC, w.hostname, w.pid, w.id
 LIMIT %(limit)s
"""


async def workers(conn: psycopg.AsyncConnection[Any], schema: str) -> list[dict[str, Any]]:
    """Worker processes that ticked recently (workers forget silent ones after a while),
    with the jobs each runs now (the running-jobs index: as many rows as jobs running)."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_q(WORKERS, schema), {"alive": WORKER_ALIVE, "limit": WORKERS_MAX})
        return await cursor.fetchall()
