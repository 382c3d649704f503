"""Pruning of finished jobs: only what it should, on a million-row table while claims go on,
and by the workers themselves (one run per interval for the whole fleet)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from workers import Running

import pgjobs
from pgjobs import db, retention
from pgjobs.errors import InvalidInput
from pgjobs.testing import wait_for
from pgjobs.types import JobStatus

Conn = psycopg.Connection[Any]

#: (status, finished how long ago, rows): 1,000,000 rows in all.
POPULATION = [
    ("succeeded", "10 days", 600_000),  # pruned
    ("cancelled", "10 days", 100_000),  # pruned
    ("succeeded", "1 day", 100_000),  # too recent
    ("failed", "10 days", 100_000),  # failed: not asked for
    ("queued", None, 100_000),  # never pruned
]


def populate(conn: Conn) -> None:
    for status, ago, rows in POPULATION:
        conn.execute(
            "INSERT INTO pgjobs.jobs (task, queue, priority, max_attempts, status, attempts,"
            " finished_at, created_at, not_before)"
            " SELECT 'report', 'bulk', 0, 3, %(status)s, %(attempts)s,"
            "        now() - %(ago)s::interval - make_interval(secs => i %% 3600),"
            "        now() - interval '11 days', now() - interval '11 days'"
            "   FROM generate_series(1, %(rows)s) AS i",
            {"status": status, "ago": ago, "rows": rows, "attempts": 0 if ago is None else 1},
        )
    conn.execute("ANALYZE pgjobs.jobs")


def counts(conn: Conn) -> dict[tuple[str, bool], int]:
    rows = conn.execute(
        "SELECT status, finished_at < now() - interval '7 days', count(*) FROM pgjobs.jobs"
        " WHERE queue = 'bulk' GROUP BY 1, 2"
    ).fetchall()
    return {(status, bool(old)): n for status, old, n in rows}


@pytest.mark.slow
def test_pruning_a_million_rows_removes_only_what_it_should_and_never_blocks_claims(
    pgjobs_conn: Conn, pgjobs_dsn: str
) -> None:
    populate(pgjobs_conn)
    before = counts(pgjobs_conn)
    assert sum(before.values()) == 1_000_000
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, queue) SELECT 'work', 'live' FROM generate_series(1, 100000)"
    )

    result: dict[JobStatus, int] = {}

    def run_prune() -> None:
        with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
            result.update(
                retention.prune(
                    conn,
                    "pgjobs",
                    retention.Policy.older_than(
                        timedelta(days=7), [JobStatus.SUCCEEDED, JobStatus.CANCELLED]
                    ),
                )
            )

    pruner = threading.Thread(target=run_prune)
    claimed = 0
    with psycopg.connect(pgjobs_dsn, autocommit=True) as claimer:
        # A claim that had to wait for a lock held by the pruner would fail here.
        claimer.execute("SET lock_timeout = '200ms'")
        worker = uuid.uuid4()
        pruner.start()
        while pruner.is_alive():
            jobs = db.claim(claimer, "pgjobs", queues=["live"], limit=2, worker_id=worker,
                            lease_seconds=30)  # fmt: skip
            assert jobs, "the live queue ran dry before the pruning ended: make it longer"
            db.run(claimer, db.finish("pgjobs", [
                db.Outcome(job_id=j.id, lease_token=j.lease_token, status=JobStatus.SUCCEEDED)
                for j in jobs
            ]))  # fmt: skip
            claimed += len(jobs)
        pruner.join()
    assert claimed > 0
    assert result == {JobStatus.SUCCEEDED: 600_000, JobStatus.CANCELLED: 100_000}
    assert counts(pgjobs_conn) == {
        ("succeeded", False): 100_000,
        ("failed", True): 100_000,
        ("queued", False): 100_000,  # finished_at is NULL
    }


def test_prune_refuses_unfinished_statuses() -> None:
    with pytest.raises(InvalidInput, match="only finished jobs can be pruned"):
        retention.Policy.older_than(timedelta(0), [JobStatus.QUEUED])


def test_workers_prune_once_per_interval_for_the_whole_fleet(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    old = app.enqueue("report")
    recent = app.enqueue("report")
    failed = app.enqueue("report")
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', attempts = 1,"
        " finished_at = now() - interval '2 hours' WHERE id = %s",
        (old.id,),
    )
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', attempts = 1, finished_at = now()"
        " WHERE id = %s",
        (recent.id,),
    )
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'failed', attempts = 1,"
        " finished_at = now() - interval '2 hours' WHERE id = %s",
        (failed.id,),
    )
    for _ in range(2):
        start(keep=3600, keep_failed=None, prune_every=3600)

    def ids() -> set[int]:
        return {r[0] for r in pgjobs_conn.execute("SELECT id FROM pgjobs.jobs")}

    wait_for(lambda: old.id not in ids(), message="the old succeeded job was not pruned")
    assert {recent.id, failed.id} <= ids(), "pruned too much"
    row = pgjobs_conn.execute(
        "SELECT (value->>'next_run_after')::timestamptz - now() FROM pgjobs.settings"
        " WHERE name = 'pruner'"
    ).fetchone()
    assert row is not None and timedelta(minutes=59) < row[0] <= timedelta(hours=1), row
