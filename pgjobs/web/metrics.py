"""``GET /metrics``: the Prometheus text format (version 0.0.4), written by hand (a dozen
families do not need a client library).

Every number read from the database stays cheap at any table size, because Prometheus asks
every 15-30 s, and several Prometheus servers may ask:

- per queue, ready jobs and the age of the oldest one come from the schema's ``backlog()``
  and ``oldest_ready_age()`` (index descents per priority level, see docs/design.md);
  the queues themselves from a loose scan of the ready index, the ``queues`` table and the
  running jobs (``jobs_running_idx``: as many rows as jobs running);
- failures per queue are those of the last hour (a range of ``jobs_finished_idx``); the
  failed jobs kept, all queues together, and the size of the table are the planner's
  estimates (failed jobs may sit on every page of the table: counting them is not cheap);
- the enqueue counter is the jobs id sequence.

Counters of job endings come from the events channel this process listens to anyway for
SSE (:class:`~pgjobs.web.events.EventHub`): counting them in the table would mean counting
rows that pruning deletes. They are per process, from its start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from pgjobs.app import App
from pgjobs.connection import one_line
from pgjobs.log import get_logger
from pgjobs.metrics_text import CONTENT_TYPE, Family
from pgjobs.metrics_text import Exposition as _Exposition
from pgjobs.types import FINISHED_STATUSES
from pgjobs.web.events import EventHub

log = get_logger("pgjobs.web.metrics")

__all__ = ["CONTENT_TYPE", "FAMILIES", "Collector", "Exposition", "Family"]

#: ``pgjobs_queue_recently_failed_jobs`` counts the failures of this last stretch of time.
RECENT_FAILURES = timedelta(hours=1)
#: Queues seen once keep being reported (with zeros) for the life of the process, so that
#: a drained queue's series go to 0 instead of vanishing; at most this many are remembered.
REMEMBERED_QUEUES_MAX = 1000
#: The whole collection gives up after this long (the database is then reported down).
COLLECT_TIMEOUT_SECONDS = 10.0

QUEUES = """
WITH RECURSIVE listed(queue) AS (
    SELECT (SELECT j.queue FROM {schema}.jobs AS j
             WHERE j.status = 'queued' AND j.blockers = 0
             ORDER BY j.queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM {schema}.jobs AS j
             WHERE j.status = 'queued' AND j.blockers = 0 AND j.queue > l.queue
             ORDER BY j.queue LIMIT 1)
      FROM listed AS l
     WHERE l.queue IS NOT NULL
),
running AS (
    SELECT j.queue, count(*) AS running,
           count(*) FILTER (WHERE j.lease_expires_at < now()) AS expired
      FROM {schema}.jobs AS j
     WHERE j.status = 'running'
     GROUP BY j.queue
),
failed AS (
    SELECT j.queue, count(*) AS failed
      FROM {schema}.jobs AS j
     WHERE j.status = 'failed' AND j.finished_at > now() - %(recent)s::interval
     GROUP BY j.queue
),
names AS (
    SELECT l.queue FROM listed AS l WHERE l.queue IS NOT NULL
    UNION SELECT q.name FROM {schema}.queues AS q
    UNION SELECT r.queue FROM running AS r
    UNION SELECT f.queue FROM failed AS f
)
SELECT n.queue,
       {schema}.backlog(ARRAY[n.queue]) AS ready,
       {schema}.oldest_ready_age(ARRAY[n.queue]) AS oldest_ready_age,
       coalesce(r.running, 0) AS running,
       coalesce(r.expired, 0) AS expired,
       coalesce(f.failed, 0) AS recently_failed,
       coalesce(q.paused, false) AS paused
  FROM names AS n
  LEFT JOIN running AS r ON r.queue = n.queue
  LEFT JOIN failed AS f ON f.queue = n.queue
  LEFT JOIN {schema}.queues AS q ON q.name = n.queue
 ORDER BY n.queue
"""

GLOBAL = """
WITH seq AS (SELECT pg_get_serial_sequence(%(table)s, 'id')::regclass AS id)
SELECT
    -- The planner's statistics, not a count: failed jobs may be spread over the whole
    -- table, and counting them would read every page they sit on.
    (SELECT round(greatest(c.reltuples, 0) * coalesce(
                (SELECT st.most_common_freqs[
                            array_position(st.most_common_vals::text::text[], 'failed')]
                   FROM pg_stats AS st
                  WHERE st.schemaname = %(schema)s AND st.tablename = 'jobs'
                    AND st.attname = 'status'), 0))
       FROM pg_class AS c WHERE c.oid = %(table)s::regclass) AS failed_estimate,
    (SELECT CASE WHEN has_sequence_privilege(s.id, 'USAGE, SELECT')
                 THEN coalesce(pg_sequence_last_value(s.id), 0) END
       FROM seq AS s) AS enqueued,
    (SELECT greatest(c.reltuples, 0) FROM pg_class AS c WHERE c.oid = %(table)s::regclass)
        AS rows_estimate,
    greatest(
        (SELECT extract(epoch FROM now() - min(a.xact_start))
           FROM pg_stat_activity AS a
          WHERE a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL),
        (SELECT extract(epoch FROM now() - min(p.prepared)) FROM pg_prepared_xacts AS p),
        0
    )::float AS oldest_transaction_age,
    greatest(
        (SELECT max(age(a.backend_xmin)) FROM pg_stat_activity AS a
          WHERE a.datname = current_database() OR a.backend_type = 'walsender'),
        (SELECT max(greatest(age(r.xmin), age(r.catalog_xmin))) FROM pg_replication_slots AS r),
        (SELECT max(age(p.transaction)) FROM pg_prepared_xacts AS p),
        0
    ) AS xmin_horizon_age
"""


FAMILIES = {
    f.name: f
    for f in (
        Family("pgjobs_up", "gauge", "Whether the database answered this scrape (1) or not (0)."),
        Family(
            "pgjobs_queue_ready_jobs",
            "gauge",
            "Jobs ready to run now: queued, due, not blocked (0 while the queue is paused, "
            "as backlog() counts).",
        ),
        Family(
            "pgjobs_queue_oldest_ready_age_seconds",
            "gauge",
            "Seconds the oldest ready job of the queue has waited since it became due.",
        ),
        Family("pgjobs_queue_running_jobs", "gauge", "Jobs running now."),
        Family(
            "pgjobs_queue_expired_lease_jobs",
            "gauge",
            "Running jobs whose lease has expired, not rescued yet (their worker stopped "
            "renewing it).",
        ),
        Family(
            "pgjobs_queue_recently_failed_jobs",
            "gauge",
            "Jobs of the queue that ended failed within the last hour.",
        ),
        Family("pgjobs_queue_paused", "gauge", "Whether the queue is paused (1) or not (0)."),
        Family(
            "pgjobs_failed_jobs_estimate",
            "gauge",
            "Failed jobs kept for inspection, all queues: the planner's estimate (statistics "
            "refreshed by autovacuum), not a count.",
        ),
        Family(
            "pgjobs_jobs_enqueued_total",
            "counter",
            "Job ids issued by the jobs sequence: every job enqueued (and a few ids spent by "
            "dedupe collisions).",
        ),
        Family(
            "pgjobs_jobs_ended_total",
            "counter",
            "Jobs announced as ended on the events channel, by final status, since this "
            "server process started.",
        ),
        Family(
            "pgjobs_jobs_requeued_total",
            "counter",
            "Jobs announced as put back in their queue (retry with backoff, lease expired, "
            "hand-back, manual retry) since this server process started.",
        ),
        Family(
            "pgjobs_jobs_rows_estimate",
            "gauge",
            "Rows of the jobs table, the planner's estimate (finished jobs included).",
        ),
        Family(
            "pgjobs_oldest_transaction_age_seconds",
            "gauge",
            "Age of the oldest open transaction of the server (vacuum keeps every row "
            "version younger than it).",
        ),
        Family(
            "pgjobs_xmin_horizon_age_xids",
            "gauge",
            "Transactions between now and the xmin horizon of this database (backends, "
            "replication slots, prepared transactions).",
        ),
        Family("pgjobs_sse_streams", "gauge", "SSE streams open in this server process."),
        Family(
            "pgjobs_events_listener_up",
            "gauge",
            "Whether this process listens to the events channel (1) or is reconnecting (0).",
        ),
        Family(
            "pgjobs_scrape_duration_seconds",
            "gauge",
            "Time this scrape spent reading the database.",
        ),
    )
}


class Exposition(_Exposition):
    """An exposition of the server's :data:`FAMILIES` (the writer is shared with the
    worker's metrics port: :mod:`pgjobs.metrics_text`)."""

    def __init__(self) -> None:
        super().__init__(FAMILIES)


class Collector:
    """Reads the numbers of one scrape. Remembers the queues it has seen (see
    :data:`REMEMBERED_QUEUES_MAX`)."""

    def __init__(self, app: App, hub: EventHub) -> None:
        self.app = app
        self.hub = hub
        self.known_queues: set[str] = set()

    async def _read(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        schema = sql.Identifier(self.app.schema)
        table = f"{self.app.schema}.jobs"
        async with self.app.connection_async() as conn, conn.transaction():
            # The loose scans' estimates are pessimistic enough to cross jit_above_cost;
            # compiling would cost tens of milliseconds for a query that takes a few.
            await conn.execute("SET LOCAL jit = off")
            async with conn.cursor(row_factory=dict_row) as cursor:
                await cursor.execute(
                    sql.SQL(QUEUES).format(schema=schema), {"recent": RECENT_FAILURES}
                )
                queues = await cursor.fetchall()
                await cursor.execute(
                    sql.SQL(GLOBAL).format(schema=schema),
                    {"table": table, "schema": self.app.schema},
                )
                overall = await cursor.fetchone() or {}
        return queues, overall

    async def collect(self) -> str:
        out = Exposition()
        started = time.monotonic()
        try:
            queues, overall = await asyncio.wait_for(self._read(), COLLECT_TIMEOUT_SECONDS)
        except Exception as exc:  # the scrape still answers: pgjobs_up 0 is the alert
            log.warning("metrics: database unavailable", error=one_line(exc))
            out.add("pgjobs_up", 0)
        else:
            out.add("pgjobs_up", 1)
            self._queues(out, queues)
            out.add("pgjobs_failed_jobs_estimate", overall.get("failed_estimate"))
            if overall.get("enqueued") is not None:
                out.add("pgjobs_jobs_enqueued_total", overall["enqueued"])
            out.add("pgjobs_jobs_rows_estimate", overall.get("rows_estimate"))
            out.add("pgjobs_oldest_transaction_age_seconds", overall.get("oldest_transaction_age"))
            out.add("pgjobs_xmin_horizon_age_xids", overall.get("xmin_horizon_age"))
            out.add("pgjobs_scrape_duration_seconds", round(time.monotonic() - started, 6))
        for status in sorted(s.value for s in FINISHED_STATUSES):
            out.add("pgjobs_jobs_ended_total", self.hub.ended[status], status=status)
        out.add("pgjobs_jobs_requeued_total", self.hub.requeued)
        out.add("pgjobs_sse_streams", self.hub.streams)
        out.add("pgjobs_events_listener_up", int(self.hub.listening))
        return out.render()

    def _queues(self, out: Exposition, rows: Iterable[dict[str, Any]]) -> None:
        seen = {row["queue"]: row for row in rows}
        for name in seen:
            if len(self.known_queues) < REMEMBERED_QUEUES_MAX:
                self.known_queues.add(name)
        empty = {
            "ready": 0, "oldest_ready_age": 0, "running": 0, "expired": 0,
            "recently_failed": 0, "paused": False,
        }  # fmt: skip
        for name in sorted(self.known_queues | set(seen)):
            row = seen.get(name, empty)
            out.add("pgjobs_queue_ready_jobs", row["ready"], queue=name)
            out.add("pgjobs_queue_oldest_ready_age_seconds", row["oldest_ready_age"], queue=name)
            out.add("pgjobs_queue_running_jobs", row["running"], queue=name)
            out.add("pgjobs_queue_expired_lease_jobs", row["expired"], queue=name)
            out.add("pgjobs_queue_recently_failed_jobs", row["recently_failed"], queue=name)
            out.add("pgjobs_queue_paused", row["paused"], queue=name)
