"""Dependencies (depends_on) and per-key serialisation (lock_key), with real workers: a
diamond runs in order, a failure cancels what depends on it, down the chain; jobs of one
lock key never overlap and start in enqueue order; bad input changes nothing."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from workers import Running, max_overlap

import pgjobs
from pgjobs import db
from pgjobs.errors import InvalidInput
from pgjobs.testing import wait_for

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
