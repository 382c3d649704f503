"""Dependencies (depends_on) and per-key serialisation (lock_key), with real workers: a
diamond runs in order, a failure cancels what depends on it, down the chain; jobs of one
lock key never overlap and start in enqueue order; bad input changes nothing."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from workers import Running, max_overlap

import pgjobs
from pgjobs import db
from pgjobs.errors import InvalidInput
from pgjobs.testing import wait_for
from pgjobs.types import JobStatus

Conn = psycopg.Connection[Any]


def row(conn: Conn, job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        found = cursor.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert found is not None
    return found


def ended(conn: Conn, *ids: int, timeout: float = 30) -> list[dict[str, Any]]:
    def all_ended() -> list[dict[str, Any]] | None:
        rows = [row(conn, i) for i in ids]
        return (
            rows if all(r["status"] in ("succeeded", "failed", "cancelled") for r in rows) else None
        )

    return wait_for(
        all_ended, timeout=timeout,
        message=lambda: f"not ended: {[(i, row(conn, i)['status']) for i in ids]}",
    )  # fmt: skip


def test_a_diamond_runs_its_last_job_after_both_middles_succeed(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="step")
    async def step(name: str) -> str:
        return name

    a = app.enqueue("step", {"name": "a"})
    b = app.enqueue("step", {"name": "b"}, depends_on=[a.id])
    c = app.enqueue("step", {"name": "c"}, depends_on=[a.id])
    d = app.enqueue("step", {"name": "d"}, depends_on=[b.id, c.id])
    assert row(pgjobs_conn, d.id)["blockers"] == 2
    start(concurrency=10)
    ra, rb, rc, rd = ended(pgjobs_conn, a.id, b.id, c.id, d.id)
    assert [r["status"] for r in (ra, rb, rc, rd)] == ["succeeded"] * 4
    assert rb["started_at"] >= ra["finished_at"] and rc["started_at"] >= ra["finished_at"]
    assert rd["started_at"] >= max(rb["finished_at"], rc["finished_at"])
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.job_dependencies").fetchone() == (0,)


def test_a_failed_dependency_cancels_its_dependents_down_the_chain(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="ok")
    def ok() -> None:
        return None

    @app.task(name="boom", max_attempts=1)
    def boom() -> None:
        raise RuntimeError("the middle fails")

    a = app.enqueue("ok")
    b = app.enqueue("boom", depends_on=[a.id])
    c = app.enqueue("ok", depends_on=[a.id])
    d = app.enqueue("ok", depends_on=[b.id, c.id])
    e = app.enqueue("ok", depends_on=[d.id])
    start(concurrency=10)
    ra, rb, rc, rd, re = ended(pgjobs_conn, a.id, b.id, c.id, d.id, e.id)
    assert (ra["status"], rb["status"], rc["status"]) == ("succeeded", "failed", "succeeded")
    assert (rd["status"], re["status"]) == ("cancelled", "cancelled")
    assert rd["error"] == f"cancelled: dependency {b.id} ended failed"
    assert re["error"] == f"cancelled: dependency {d.id} ended cancelled"
    assert rd["started_at"] is None and rd["attempts"] == 0
    with pytest.raises(pgjobs.JobCancelled):
        app.get(e.id).wait(timeout=5)


def test_depending_on_a_job_that_already_failed_stores_the_job_cancelled(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    failed = app.enqueue("t")
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'failed', attempts = 1, finished_at = now() WHERE id = %s",
        (failed.id,),
    )
    done = app.enqueue("t")
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', attempts = 1, finished_at = now() WHERE id = %s",
        (done.id,),
    )
    late = app.enqueue("t", depends_on=[done.id, failed.id])
    stored = row(pgjobs_conn, late.id)
    assert stored["status"] == "cancelled"
    assert (
        stored["error"]
        == f"cancelled: dependency {failed.id} ended failed before this job was enqueued"
    )
    only_done = app.enqueue("t", depends_on=[done.id])
    assert row(pgjobs_conn, only_done.id)["blockers"] == 0  # runnable at once


@pytest.mark.parametrize(
    ("depends_on", "message"),
    [
        ([999_999], "depends_on names job(s) that do not exist: 999999"),
        ([0], "is not a job id"),
        (["1"], "is not a job id"),
        ("12", "must be a list of job ids"),
    ],
)
def test_bad_dependencies_change_nothing(
    app: pgjobs.App, pgjobs_conn: Conn, depends_on: Any, message: str
) -> None:
    existing = app.enqueue("t")
    with pytest.raises(InvalidInput, match=re.escape(message)):
        app.enqueue("t", depends_on=depends_on)
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (1,)
    assert row(pgjobs_conn, existing.id)["has_dependents"] is False


def test_dependencies_with_a_dedupe_key_are_refused(app: pgjobs.App) -> None:
    first = app.enqueue("t")
    with pytest.raises(InvalidInput, match="depends_on and dedupe_key cannot be combined"):
        app.enqueue("t", depends_on=[first.id], dedupe_key="k")


class Spans:
    def __init__(self) -> None:
        self.items: list[tuple[float, float, int, str]] = []
        self.lock = threading.Lock()

    def add(self, begun: float, key: str, n: int) -> None:
        with self.lock:
            self.items.append((begun, time.monotonic(), n, key))

    def max_overlap(self, key: str) -> int:
        return max_overlap([(s, e) for s, e, _, k in self.items if k == key])


def test_jobs_of_one_lock_key_never_overlap_and_start_in_enqueue_order(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    spans = Spans()

    @app.task(name="sync_customer")
    async def sync_customer(customer: str, n: int) -> None:
        begun = time.monotonic()
        await asyncio.sleep(0.01)
        spans.add(begun, customer, n)

    specs = []
    for n in range(12):
        for customer in ("42", "43"):
            keyed = sync_customer.options(lock_key=f"customer:{customer}")
            specs.append(keyed.spec(customer=customer, n=n))
    ids = [e.id for e in app.enqueue_many(specs)]
    for _ in range(3):
        start(concurrency=10)
    ended(pgjobs_conn, *ids)
    for customer in ("42", "43"):
        assert spans.max_overlap(customer) == 1
        order = [n for _, _, n, k in sorted(spans.items) if k == customer]
        assert order == list(range(12)), f"customer {customer} ran out of order: {order}"
    assert (
        max(sum(1 for s, e, _, _ in spans.items if s <= t < e) for t, _, _, _ in spans.items) >= 2
    ), "the two keys never ran at the same time"


def test_concurrent_enqueues_of_one_key_leave_exactly_one_runnable(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn
) -> None:
    barrier = threading.Barrier(8)

    def enqueue_one() -> None:
        with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
            barrier.wait()
            app.enqueue("t", connection=conn, lock_key="only-one")

    threads = [threading.Thread(target=enqueue_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = pgjobs_conn.execute(
        "SELECT id, lock_waiting, blockers FROM pgjobs.jobs WHERE lock_key = 'only-one' ORDER BY id"
    ).fetchall()
    assert len(rows) == 8
    # Concurrent enqueues have no order among themselves (ids come from the sequence before
    # the lock is taken): exactly one of them may run, the others wait.
    assert sorted(r[1] for r in rows) == [False] + [True] * 7, rows
    assert all(r[2] == (1 if r[1] else 0) for r in rows), rows


def test_cancelling_a_waiting_job_keeps_the_line_and_cancelling_the_holder_releases_the_next(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    first, second, third = (app.enqueue("t", lock_key="k") for _ in range(3))
    db.run(pgjobs_conn, db.cancel("pgjobs", [second.id]))
    assert row(pgjobs_conn, third.id)["lock_waiting"] is True, "released while the holder is queued"
    db.run(pgjobs_conn, db.cancel("pgjobs", [first.id]))
    released = row(pgjobs_conn, third.id)
    assert (released["lock_waiting"], released["blockers"]) == (False, 0)


# --- retries (migration 0007) ----------------------------------------------------------


def _claim(conn: Conn, limit: int = 10) -> list[db.ClaimedJob]:
    return db.claim(
        conn, "pgjobs", queues=None, limit=limit, worker_id=uuid.uuid4(), lease_seconds=30
    )


def _end(conn: Conn, job: db.ClaimedJob, status: JobStatus) -> None:
    outcome = db.Outcome(job.id, job.lease_token, status, result="null", error="ended by the test")
    assert db.run(conn, db.finish("pgjobs", [outcome])) == {job.id: status}


def _retry(conn: Conn, job_id: int) -> None:
    [result] = db.run(conn, db.retry("pgjobs", [job_id]))
    assert result.retried, result


def test_a_retried_job_waits_for_the_holder_of_its_lock_key(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    """Two jobs of one key never run together, retries included."""
    failed = app.enqueue("t", lock_key="k")
    [first] = _claim(pgjobs_conn)
    _end(pgjobs_conn, first, JobStatus.FAILED)
    holder = app.enqueue("t", lock_key="k")
    [running] = _claim(pgjobs_conn)
    assert running.id == holder.id
    _retry(pgjobs_conn, failed.id)
    again = row(pgjobs_conn, failed.id)
    assert (again["status"], again["lock_waiting"], again["blockers"]) == ("queued", True, 1)
    assert _claim(pgjobs_conn) == [], "the retried job ran beside the key's holder"
    _end(pgjobs_conn, running, JobStatus.SUCCEEDED)
    assert [j.id for j in _claim(pgjobs_conn)] == [failed.id]


def test_a_job_cancelled_while_waiting_for_its_key_runs_when_retried(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    holder = app.enqueue("t", lock_key="k")
    waiting = app.enqueue("t", lock_key="k")
    [running] = _claim(pgjobs_conn)
    db.run(pgjobs_conn, db.cancel("pgjobs", [waiting.id]))
    _end(pgjobs_conn, running, JobStatus.SUCCEEDED)
    assert running.id == holder.id
    _retry(pgjobs_conn, waiting.id)
    again = row(pgjobs_conn, waiting.id)
    assert (again["lock_waiting"], again["blockers"]) == (False, 0), "stuck behind nobody"
    assert [j.id for j in _claim(pgjobs_conn)] == [waiting.id]


def test_a_retried_dependent_waits_only_for_its_unfinished_dependencies(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    """Cancelled because a dependency failed: retried, it runs (that dependency's edge is
    gone). Cancelled while a dependency is still queued: retried, it waits for it."""
    failing = app.enqueue("t")
    pending = app.enqueue("t", queue="later")
    dependent = app.enqueue("t", depends_on=[failing.id])
    patient = app.enqueue("t", depends_on=[pending.id])
    [first] = db.claim(
        pgjobs_conn, "pgjobs", queues=["default"], limit=1, worker_id=uuid.uuid4(), lease_seconds=30
    )
    assert first.id == failing.id
    _end(pgjobs_conn, first, JobStatus.FAILED)
    assert row(pgjobs_conn, dependent.id)["status"] == "cancelled"
    db.run(pgjobs_conn, db.cancel("pgjobs", [patient.id]))
    _retry(pgjobs_conn, dependent.id)
    _retry(pgjobs_conn, patient.id)
    assert row(pgjobs_conn, dependent.id)["blockers"] == 0
    assert row(pgjobs_conn, patient.id)["blockers"] == 1
    claimed = _claim(pgjobs_conn)
    assert sorted(j.id for j in claimed) == sorted([dependent.id, pending.id])
    _end(pgjobs_conn, next(j for j in claimed if j.id == pending.id), JobStatus.SUCCEEDED)
    assert [j.id for j in _claim(pgjobs_conn)] == [patient.id]


def test_two_jobs_of_one_key_retried_together_leave_one_runnable(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    first, second = app.enqueue("t", lock_key="k"), app.enqueue("t", lock_key="k")
    db.run(pgjobs_conn, db.cancel("pgjobs", [second.id, first.id]))
    results = db.run(pgjobs_conn, db.retry("pgjobs", [first.id, second.id]))
    assert all(r.retried for r in results)
    states = [(row(pgjobs_conn, j.id)["lock_waiting"], row(pgjobs_conn, j.id)["blockers"])
              for j in (first, second)]  # fmt: skip
    assert sorted(states) == [(False, 0), (True, 1)], states
    [runnable] = _claim(pgjobs_conn)
    _end(pgjobs_conn, runnable, JobStatus.SUCCEEDED)
    assert len(_claim(pgjobs_conn)) == 1, "the other one was not released"
