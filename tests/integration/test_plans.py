"""The claim, backlog(), demand() and oldest_ready_age() touch only due rows, however big the
table: 1,000,000 finished jobs and 100,000 future jobs of a higher priority are skipped by
index descents, never scanned. These tests count rows and buffers in EXPLAIN ANALYZE output
(deterministic), not time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from bigtable import (
    CLAIM_LIMIT,
    DUE,
    RUNNING,
    claim_call,
    explain_claim,
    explain_function,
    explain_generic,
    fill,
    jobs_touched,
    prepare_claim,
)

from pgjobs import db
from pgjobs.testing import DatabaseFactory
from pgjobs.types import JobStatus

pytestmark = pytest.mark.slow

#: Far below the 1.1M rows and ~25k pages of the table; far above what a correct plan needs.
ROW_BUDGET = 200
BUFFER_BUDGET = 400


@pytest.fixture(scope="module")
def big(pgjobs_databases: DatabaseFactory) -> Iterator[psycopg.Connection[Any]]:
    dsn = pgjobs_databases.create()
    with psycopg.connect(dsn, autocommit=True) as conn:
        fill(conn)
        yield conn
    pgjobs_databases.drop(dsn)


@pytest.mark.parametrize("statement", ["lean", "full", "lean+told", "full+told"])
@pytest.mark.parametrize("queues", [None, ["default"], ["default", "emails", "held", "none"]])
def test_claim_touches_only_what_it_claims(
    big: psycopg.Connection[Any], queues: list[str] | None, statement: str
) -> None:
    plan = explain_claim(big, "pgjobs", queues, statement)
    seen = jobs_touched(plan)
    assert seen["seq_scans"] == 0, seen
    # jobs_running_idx appears in the plan for limited queues (none here: never executed).
    assert set(seen["indexes"]) <= {"jobs_ready_idx", "jobs_pkey", "jobs_running_idx"}, seen  # type: ignore[arg-type]
    assert seen["removed"] == 0, f"rows filtered out after being read: {seen}"
    assert seen["rows"] <= ROW_BUDGET, seen
    assert seen["buffers"] <= BUFFER_BUDGET, seen
    assert plan["Actual Rows"] == CLAIM_LIMIT


def test_backlog_counts_due_rows_only(big: psycopg.Connection[Any]) -> None:
    plan = explain_function(big, "pgjobs", "backlog", None)
    seen = jobs_touched(plan)
    assert seen["seq_scans"] == 0 and seen["removed"] == 0, seen
    assert seen["indexes"] == ["jobs_ready_idx"], seen
    # DUE counted rows, plus a handful of index descents per (queue, priority) level.
    assert DUE <= seen["rows"] <= DUE + ROW_BUDGET, seen
    assert big.execute("SELECT pgjobs.backlog()").fetchone() == (DUE,)


def test_demand_adds_running_jobs_cheaply(big: psycopg.Connection[Any]) -> None:
    body = explain_function(big, "pgjobs", "demand", ["default"])
    seen = jobs_touched(body)
    assert seen["seq_scans"] == 0, seen
    assert seen["rows"] <= RUNNING + ROW_BUDGET, seen
    assert set(seen["indexes"]) <= {"jobs_running_idx", "jobs_ready_idx"}, seen  # type: ignore[arg-type]
    assert big.execute("SELECT pgjobs.demand(ARRAY['default'])").fetchone() == (DUE // 2 + RUNNING,)
    assert big.execute("SELECT pgjobs.demand()").fetchone() == (DUE + RUNNING,)


def test_oldest_ready_age_reads_one_row_per_level(big: psycopg.Connection[Any]) -> None:
    plan = explain_function(big, "pgjobs", "oldest_ready_age", None)
    seen = jobs_touched(plan)
    assert seen["seq_scans"] == 0 and seen["removed"] == 0, seen
    assert seen["rows"] <= ROW_BUDGET, seen
    age = big.execute("SELECT pgjobs.oldest_ready_age()").fetchone()
    assert age is not None and 60 <= age[0] < 600


@pytest.mark.parametrize("limit", [1, 7, 250])
@pytest.mark.parametrize("queues", [None, ["emails"], ["default", "emails", "none"]])
def test_the_lean_claim_takes_the_jobs_the_full_one_would(
    pgjobs_conn: psycopg.Connection[Any], queues: list[str] | None, limit: int
) -> None:
    """claim() runs its lean statement when no queue is paused or limited (migration 0002):
    it must pick exactly the rows, in the order, that the full statement picks then."""
    conn = pgjobs_conn
    conn.execute(
        """INSERT INTO pgjobs.jobs (task, queue, priority, not_before, max_attempts)
           SELECT 't', (ARRAY['default', 'emails', 'other'])[g % 3 + 1], g % 4 - 1,
                  now() + (g % 5 - 3) * interval '1 minute', 3
             FROM generate_series(1, 300) AS g"""
    )
    names = {s: prepare_claim(conn, "pgjobs", s) for s in ("lean", "full")}
    try:
        picked = {}
        for statement, name in names.items():
            with conn.transaction(force_rollback=True):
                rows = conn.execute(claim_call(name, queues, limit)).fetchall()
            picked[statement] = [(r[0], r[1], r[4]) for r in rows]  # id, queue, priority
        due = {None: 240, "emails": 80, "default,emails,none": 160}  # 4 of 5 start times due
        assert len(picked["lean"]) == min(limit, due[",".join(queues) if queues else None])
        assert picked["lean"] == picked["full"]
    finally:
        for name in names.values():
            conn.execute(f"DEALLOCATE {name}")


def test_claim_skips_a_paused_queue_with_the_full_statement(big: psycopg.Connection[Any]) -> None:
    """The fixture's 'held' queue is paused: claim() must not take its due jobs."""
    with big.transaction(force_rollback=True):
        queues = big.execute(
            "SELECT DISTINCT queue FROM pgjobs.claim(ARRAY['held', 'default'], 1000, gen_random_uuid(), 30)"
        ).fetchall()
    assert queues == [("default",)]


def test_claim_of_a_limited_queue_stays_cheap(big: psycopg.Connection[Any]) -> None:
    with big.transaction(force_rollback=True):
        big.execute(
            "INSERT INTO pgjobs.queues (name, concurrency_limit, rate_limit, rate_period)"
            " VALUES ('default', 100, 1000, '1 minute')"
        )
        plan = explain_claim(big, "pgjobs", ["default", "emails"], "full")
    seen = jobs_touched(plan)
    assert seen["seq_scans"] == 0, seen
    # The concurrency budget counts the 50 running jobs of 'default' through jobs_running_idx.
    assert seen["rows"] <= ROW_BUDGET + RUNNING, seen
    assert seen["buffers"] <= BUFFER_BUDGET, seen
    assert plan["Actual Rows"] == CLAIM_LIMIT


def tuples_read(conn: psycopg.Connection[Any]) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables"
        " WHERE relid = 'pgjobs.jobs'::regclass"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_claim_function_as_workers_call_it_reads_few_rows(big: psycopg.Connection[Any]) -> None:
    """EXPLAIN cannot see inside a function call, and a function's statements may be planned
    differently (generic plans): count the rows the call reads instead (deterministic)."""
    big.execute("SELECT pg_stat_force_next_flush()")
    before = tuples_read(big)
    with big.transaction(force_rollback=True):
        big.execute("SELECT pg_stat_force_next_flush()")
        claimed = big.execute(
            "SELECT count(*) FROM pgjobs.claim(NULL, %s, gen_random_uuid(), 30)", (CLAIM_LIMIT,)
        ).fetchone()
    assert claimed == (CLAIM_LIMIT,)
    read = tuples_read(big) - before
    assert read <= ROW_BUDGET, f"claim() read {read} rows of a 1.1M-row table"


def test_lease_fenced_statements_stay_on_the_primary_key(big: psycopg.Connection[Any]) -> None:
    """finish, heartbeat, touch and progress find their rows by id, also in the generic plan
    a prepared statement ends up with. A status test in them let the planner pick
    jobs_running_idx (estimated tiny after an ANALYZE with nothing running), whose dead
    entries pile up between vacuums: finish went from 1 ms to 200 ms during a drain."""
    rows = big.execute(
        "SELECT id, lease_token FROM pgjobs.jobs WHERE status = 'running' LIMIT 10"
    ).fetchall()
    ids = [r[0] for r in rows]
    tokens = [r[1] for r in rows]
    count = len(ids)
    statements = {
        "finish": db.finish(
            "pgjobs",
            [db.Outcome(i, t, JobStatus.SUCCEEDED, result="null") for i, t in rows],
        ),
        "heartbeat": db.heartbeat("pgjobs", dict(zip(ids, tokens, strict=True)), 30),
        "touch": db.touch("pgjobs", ids[0], tokens[0], 30),
        "progress": db.set_progress("pgjobs", ids[0], tokens[0], 50, "half"),
    }
    for name, call in statements.items():
        plan = explain_generic(big, call.query, call.params)
        seen = jobs_touched(plan)
        assert seen["indexes"] == ["jobs_pkey"], (name, seen)
        assert seen["seq_scans"] == 0, (name, seen)
        assert seen["rows"] <= 3 * count, (name, seen)
