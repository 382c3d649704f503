"""Every statement behind the dashboard stays index-driven and bounded on a big table:
checked with EXPLAIN ANALYZE (plans and rows read, never timings) on 220,000 jobs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql
from web_support import explain, nodes

from pgjobs import admin
from pgjobs.testing import DatabaseFactory
from pgjobs.types import JobStatus
from pgjobs.web.dashboard import queries
from pgjobs.web.dashboard.queries import Cursor, JobFilter

FINISHED = 200_000
FUTURE = 20_000
DUE = 300
RUNNING = 20
RECENT = 200
#: Rows a statement may read besides its window: far below the table, above a good plan.
BUDGET = 2_000
INDEXES = {
    "jobs_pkey",
    "jobs_ready_idx",
    "jobs_running_idx",
    "jobs_finished_idx",
    "jobs_parent_idx",
}


@pytest.fixture(scope="module")
def big(pgjobs_databases: DatabaseFactory) -> Iterator[psycopg.Connection[Any]]:
    """200,000 jobs that ended a day ago (a tenth failed), 20,000 future jobs, a few
    hundred due ones in two queues and three priorities, some running, some retrying, a
    few hundred endings of the last minutes, a chain, schedules and workers."""
    dsn = pgjobs_databases.create()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, status, attempts, max_attempts,
                                         error, started_at, finished_at, created_at, not_before)
                SELECT 'done.task', CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 0,
                       CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 3,
                       CASE WHEN g % 10 = 0 THEN 'boom' END,
                       now() - interval '1 day', now() - interval '1 day' + g * interval '1 ms',
                       now() - interval '2 days', now() - interval '2 days'
                  FROM generate_series(1, {FINISHED}) AS g"""
        )
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, not_before, max_attempts)
                SELECT 'later.task', 'a', 10, now() + interval '1 day', 3
                  FROM generate_series(1, {FUTURE})"""
        )
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, not_before, max_attempts,
                                         attempts, error)
                SELECT 'now.task', CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, g % 3,
                       now() - interval '1 minute', 3,
                       CASE WHEN g % 50 = 0 THEN 1 ELSE 0 END,
                       CASE WHEN g % 50 = 0 THEN 'TimeoutError' END
                  FROM generate_series(1, {DUE}) AS g"""
        )
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, status, attempts, max_attempts,
                                         lease_token, lease_expires_at, started_at)
                SELECT 'busy.task', 'a', 0, 'running', 1, 3, gen_random_uuid(),
                       now() + interval '1 hour', now()
                  FROM generate_series(1, {RUNNING})"""
        )
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, status, attempts, max_attempts,
                                         error, started_at, finished_at)
                SELECT 'recent.task', 'b', 0,
                       CASE WHEN g % 4 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 3,
                       CASE WHEN g % 4 = 0 THEN 'boom' END, now(), now() - g * interval '1 s'
                  FROM generate_series(1, {RECENT}) AS g"""
        )
        conn.execute(
            """UPDATE pgjobs.jobs SET parent_id = id - 1 WHERE id BETWEEN 1001 AND 1005;
               INSERT INTO pgjobs.schedules (name, cron, task, next_fire_at)
               SELECT 's' || g, '* * * * *', 'done.task', now() + interval '1 minute'
                 FROM generate_series(1, 5) AS g;
               UPDATE pgjobs.schedules SET last_job_id = 1000;
               INSERT INTO pgjobs.workers (id, hostname, pid, concurrency)
               SELECT gen_random_uuid(), 'host', g, 4 FROM generate_series(1, 3) AS g"""
        )
        conn.execute("VACUUM ANALYZE pgjobs.jobs")
        yield conn
    pgjobs_databases.drop(dsn)


def rows_read(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> int:
    """Rows of the jobs table the statement read (returned or filtered out), after
    checking that it reads them through the expected indexes only."""
    plan = explain(conn, query, params)
    scans = [n for n in nodes(plan) if n.get("Relation Name") == "jobs"]
    assert all(n["Node Type"] != "Seq Scan" for n in scans), scans
    assert {n["Index Name"] for n in scans if "Index Name" in n} <= INDEXES, scans
    return sum(
        (
            n["Actual Rows"]
            + n.get("Rows Removed by Filter", 0)
            + n.get("Rows Removed by Index Recheck", 0)
        )
        * n.get("Actual Loops", 1)
        for n in scans
    )


def test_overview(big: psycopg.Connection[Any]) -> None:
    read = rows_read(big, queries.QUEUES, queries.QUEUES_PARAMS)
    assert read <= DUE + RUNNING + RECENT + BUDGET, read
    assert rows_read(big, queries.RECENT_FAILED, {"limit": queries.RECENT_FAILURES}) <= 20
    rows = big.execute(
        sql.SQL(queries.QUEUES).format(schema=sql.Identifier("pgjobs")), queries.QUEUES_PARAMS
    ).fetchall()
    by_name = {r[0]: r for r in rows}
    assert by_name["a"][1] + by_name["b"][1] == DUE  # ready, all due jobs of both queues
    assert by_name["b"][6] == RECENT // 4  # failed within the hour


def test_overview_caps_the_depth_count(big: psycopg.Connection[Any]) -> None:
    params = {**queries.QUEUES_PARAMS, "depth_max": 10}
    rows = big.execute(
        sql.SQL(queries.QUEUES).format(schema=sql.Identifier("pgjobs")), params
    ).fetchall()
    a = next(r for r in rows if r[0] == "a")
    assert a[2] is True and a[1] <= 10 * 3  # capped per priority level
    assert rows_read(big, queries.QUEUES, params) <= 3 * 10 * 2 + RUNNING + RECENT + BUDGET


def cursors(conn: psycopg.Connection[Any]) -> dict[str, Cursor]:
    row = conn.execute(
        "SELECT max(id), (SELECT finished_at FROM pgjobs.jobs WHERE id = 150000) FROM pgjobs.jobs"
    ).fetchone()
    assert row is not None
    return {
        "first": Cursor(),
        "middle": Cursor(100_000, row[1]),
        "start": Cursor(row[0] + 1, datetime.now(timezone.utc) + timedelta(seconds=1)),
    }


FILTERS = {
    "everything": JobFilter(),
    "queue": JobFilter(queue="b"),
    "task (rare)": JobFilter(task="busy.task"),
    "queued": JobFilter(JobStatus.QUEUED),
    "running": JobFilter(JobStatus.RUNNING),
    "failed": JobFilter(JobStatus.FAILED),
    "succeeded of a queue": JobFilter(JobStatus.SUCCEEDED, queue="a"),
    "cancelled (none)": JobFilter(JobStatus.CANCELLED),
    "retrying": JobFilter(JobStatus.QUEUED, retrying=True),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_job_lists(big: psycopg.Connection[Any], name: str) -> None:
    where = FILTERS[name]
    for position, cursor in cursors(big).items():
        params = queries.page_params(
            where, cursor, limit=queries.PAGE_SIZE, window=queries.SCAN_WINDOW
        )
        read = rows_read(big, queries.page_statement(where), params)
        # A window of entries, the page's rows by id; lists by end time walk their window
        # twice (an index-only walk finds where it ends, then the range is read).
        window = queries.SCAN_WINDOW * (2 if where.by_finish_time else 1)
        assert read <= window + queries.PAGE_SIZE + 1 + BUDGET, (position, read)


def test_job_page(big: psycopg.Connection[Any]) -> None:
    assert rows_read(big, "SELECT j.* FROM {schema}.jobs AS j WHERE j.id = %(id)s", {"id": 7}) == 1
    assert rows_read(big, queries.RELATED, {"ids": [1, 2, 3], "limit": 100}) == 3
    assert rows_read(big, queries.DEPENDENTS, {"id": 1, "limit": 100}) == 0
    tree = {"id": 1003, "depth": admin.TREE_DEPTH_MAX, "size": admin.TREE_SIZE_MAX}
    assert rows_read(big, admin._TREE, tree) <= 50


def test_schedules_workers_and_bulk_start(big: psycopg.Connection[Any]) -> None:
    assert rows_read(big, queries.SCHEDULES, {"limit": queries.SCHEDULES_MAX}) <= 5
    alive = {"alive": queries.WORKER_ALIVE, "limit": queries.WORKERS_MAX}
    assert rows_read(big, queries.WORKERS, alive) <= RUNNING
    assert rows_read(big, queries.WORKERS_ALIVE, {"alive": queries.WORKER_ALIVE}) == 0
    start = "SELECT (SELECT max(j.id) FROM {schema}.jobs AS j), now()"
    assert rows_read(big, start, {}) <= 1
