"""Batch tasks: jobs handed to the handler as one list, each keeping its own outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from workers import Running

import pgjobs
from pgjobs.errors import InvalidInput
from pgjobs.testing import wait_for

Conn = psycopg.Connection[Any]


def statuses(conn: Conn, task: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM pgjobs.jobs WHERE task = %s GROUP BY 1", (task,)
    ).fetchall()
    return dict(rows)


def test_250_jobs_in_batches_of_100_give_100_100_then_50_after_the_wait(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    calls: list[tuple[float, float, int]] = []  # (called, returned, size)

    @app.task(name="index_docs", batch_size=100, batch_wait="1s")
    async def index_docs(jobs: list[pgjobs.JobContext]) -> list[int]:
        called = time.monotonic()
        results = [job.args["doc"] * 2 for job in jobs]
        calls.append((called, time.monotonic(), len(jobs)))
        return results

    app.enqueue_many([index_docs.spec(doc=i) for i in range(250)])
    start(concurrency=100)
    wait_for(lambda: statuses(pgjobs_conn, "index_docs") == {"succeeded": 250}, timeout=30,
             message=lambda: f"{statuses(pgjobs_conn, 'index_docs')}, batches {[c[2] for c in calls]}")  # fmt: skip
    assert [size for _, _, size in calls] == [100, 100, 50]
    # The last batch could not fill up: it went after batch_wait (1 s), not at once.
    assert calls[2][0] - calls[1][1] >= 0.9
    results = pgjobs_conn.execute(
        "SELECT (args->>'doc')::int, result FROM pgjobs.jobs WHERE task = 'index_docs'"
    ).fetchall()
    assert all(result == doc * 2 for doc, result in results)


def test_a_batch_handler_can_fail_some_of_its_jobs(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="charge", batch_size=10, batch_wait="50ms", max_attempts=1)
    def charge(jobs: list[pgjobs.JobContext]) -> dict[int, Any]:  # sync: a thread
        return {
            job.id: ValueError(f"card {job.args['card']} declined")
            if job.args["card"] % 2
            else "ok"
            for job in jobs
        }

    app.enqueue_many([charge.spec(card=i) for i in range(10)])
    start(concurrency=10)
    wait_for(lambda: sum(statuses(pgjobs_conn, "charge").values()) == 10
             and "queued" not in statuses(pgjobs_conn, "charge")
             and "running" not in statuses(pgjobs_conn, "charge"), timeout=20)  # fmt: skip
    rows = pgjobs_conn.execute(
        "SELECT (args->>'card')::int, status, result, error FROM pgjobs.jobs WHERE task = 'charge'"
    ).fetchall()
    for card, status, result, error in rows:
        if card % 2:
            assert status == "failed" and error.endswith(f"ValueError: card {card} declined")
        else:
            assert status == "succeeded" and result == "ok"


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (RuntimeError("the bulk API is down"), "RuntimeError: the bulk API is down"),
        ([1], "returned 1 results for 3 jobs"),
        ("oops", "not str"),
    ],
)
def test_a_failing_or_malformed_batch_fails_each_of_its_jobs(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, returned: Any, message: str
) -> None:
    @app.task(name="sync_all", batch_size=3, batch_wait="5s", max_attempts=1)
    async def sync_all(jobs: list[pgjobs.JobContext]) -> Any:
        if isinstance(returned, BaseException):
            raise returned
        return returned

    app.enqueue_many([sync_all.spec() for _ in range(3)])
    start(concurrency=10)
    wait_for(lambda: statuses(pgjobs_conn, "sync_all") == {"failed": 3}, timeout=20,
             message=lambda: str(statuses(pgjobs_conn, "sync_all")))  # fmt: skip
    errors = [r[0] for r in pgjobs_conn.execute("SELECT error FROM pgjobs.jobs")]
    assert all(message in error for error in errors), errors


def test_a_worker_with_fewer_slots_than_batch_size_hands_over_full_slots(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    sizes: list[int] = []
    lock = threading.Lock()

    @app.task(name="small", batch_size=100, batch_wait="1s")
    async def small(jobs: list[pgjobs.JobContext]) -> None:
        with lock:
            sizes.append(len(jobs))

    app.enqueue_many([small.spec() for _ in range(25)])
    start(concurrency=10)
    wait_for(lambda: statuses(pgjobs_conn, "small") == {"succeeded": 25}, timeout=20,
             message=lambda: f"batches so far: {sizes}")  # fmt: skip
    # A full worker cannot grow a batch: it hands it over; the last five wait for batch_wait.
    assert sizes == [10, 10, 5], sizes


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be"),
        ({"batch_size": 5, "batch_wait": "soon"}, "batch_wait"),
    ],
)
def test_bad_batch_options_are_refused(
    app: pgjobs.App, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        app.task(name="bad", **options)(lambda jobs: None)
