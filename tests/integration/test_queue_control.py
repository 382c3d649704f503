"""Queue controls with real workers: pause and resume, a concurrency limit across five
workers, a rate limit, and the bad input the setters refuse."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from workers import Running, max_overlap

import pgjobs
from pgjobs import db, queue_control
from pgjobs.errors import InvalidInput
from pgjobs.testing import wait_for

Conn = psycopg.Connection[Any]


def count(conn: Conn, query: str, *params: Any) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


def statuses(conn: Conn, queue: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM pgjobs.jobs WHERE queue = %s GROUP BY status", (queue,)
    ).fetchall()
    return dict(rows)


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("2/s", 2, 1),
        ("100/m", 100, 60),
        ("5/10s", 5, 10),
        ("1000 / h", 1000, 3600),
        ("3/1d", 3, 86400),
    ],
)
def test_rates_parse(text: str, limit: int, period: float) -> None:
    rate = queue_control.parse_rate(text)
    assert (rate.limit, rate.period) == (limit, timedelta(seconds=period))


@pytest.mark.parametrize("text", ["0/s", "abc", "2/0s", "-1/s", "2/", "/s", "2/fortnight", "2.5/s"])
def test_bad_rates_get_one_line(text: str) -> None:
    with pytest.raises(InvalidInput, match="invalid rate") as info:
        queue_control.parse_rate(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [0, -1, "x", 2.5, True])
def test_bad_concurrency_limits_change_nothing(pgjobs_conn: Conn, value: Any) -> None:
    with pytest.raises(InvalidInput, match="invalid concurrency limit"):
        queue_control.set_limits(pgjobs_conn, "pgjobs", "api", concurrency=value)
    assert count(pgjobs_conn, "SELECT count(*) FROM pgjobs.queues") == 0


def test_pause_holds_jobs_backlog_ignores_them_and_resume_starts_them(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="noop")
    def noop() -> None:
        return None

    queue_control.set_paused(pgjobs_conn, "pgjobs", "held", True)  # no row yet: created
    held = [app.enqueue("noop", queue="held").id for _ in range(5)]
    free = app.enqueue("noop", queue="free")
    assert count(pgjobs_conn, "SELECT pgjobs.backlog()") == 1
    assert count(pgjobs_conn, "SELECT pgjobs.backlog(ARRAY['held'])") == 0
    start()
    wait_for(lambda: statuses(pgjobs_conn, "free") == {"succeeded": 1}, message="free job not run")
    # The worker has claimed since the pause: the held jobs were passed over, not missed.
    assert statuses(pgjobs_conn, "held") == {"queued": 5}
    assert free.refresh().status.value == "succeeded"
    queue_control.set_paused(pgjobs_conn, "pgjobs", "held", False)
    wait_for(
        lambda: statuses(pgjobs_conn, "held") == {"succeeded": 5},
        message=lambda: f"after resume: {statuses(pgjobs_conn, 'held')}",
    )
    assert (
        count(
            pgjobs_conn,
            "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY(%s) AND started_at IS NOT NULL",
            held,
        )
        == 5
    )


class Recorder:
    """Start and end instants of handlers (one process, one monotonic clock)."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float, str]] = []
        self.lock = threading.Lock()

    def add(self, start: float, end: float, queue: str) -> None:
        with self.lock:
            self.spans.append((start, end, queue))

    def max_overlap(self, queue: str) -> int:
        return max_overlap([(s, e) for s, e, q in self.spans if q == queue])


def test_a_concurrency_limit_holds_across_five_workers_while_other_queues_flow(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    recorder = Recorder()

    @app.task(name="call_partner", queue="partner")
    async def call_partner() -> None:
        begun = time.monotonic()
        await asyncio.sleep(0.05)
        recorder.add(begun, time.monotonic(), "partner")

    @app.task(name="local", queue="local")
    async def local() -> None:
        now = time.monotonic()
        recorder.add(now, now, "local")

    queue_control.set_limits(pgjobs_conn, "pgjobs", "partner", concurrency=2)
    app.enqueue_many([call_partner.spec() for _ in range(40)])
    app.enqueue_many([local.spec() for _ in range(300)])
    for _ in range(5):
        start(concurrency=10)
    wait_for(
        lambda: statuses(pgjobs_conn, "partner") == {"succeeded": 40},
        timeout=60,
        message=lambda: f"partner jobs: {statuses(pgjobs_conn, 'partner')}",
    )
    wait_for(lambda: statuses(pgjobs_conn, "local") == {"succeeded": 300}, timeout=30)
    assert recorder.max_overlap("partner") == 2  # reached, never exceeded
    partner_spans = [(s, e) for s, e, q in recorder.spans if q == "partner"]
    first, last = min(s for s, _ in partner_spans), max(e for _, e in partner_spans)
    assert any(first < s < last for s, _, q in recorder.spans if q == "local"), (
        "the unlimited queue waited for the limited one"
    )


def test_a_rate_limit_gives_at_most_n_starts_in_any_window(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="ping", queue="api")
    async def ping() -> None:
        return None

    queue_control.set_limits(pgjobs_conn, "pgjobs", "api", rate=queue_control.parse_rate("2/s"))
    app.enqueue_many([ping.spec() for _ in range(7)])
    for _ in range(3):
        start(concurrency=5)
    wait_for(
        lambda: statuses(pgjobs_conn, "api") == {"succeeded": 7},
        timeout=30,
        message=lambda: f"api jobs: {statuses(pgjobs_conn, 'api')}",
    )
    starts = [
        row[0]
        for row in pgjobs_conn.execute(
            "SELECT started_at FROM pgjobs.jobs WHERE queue = 'api' ORDER BY started_at"
        )
    ]
    crowded = [
        (a, c) for a, c in zip(starts, starts[2:], strict=False) if c - a < timedelta(seconds=1)
    ]
    assert not crowded, f"3 starts within 1 s: {crowded}"


def test_limits_can_be_removed_one_at_a_time(pgjobs_conn: Conn) -> None:
    rate = queue_control.parse_rate("5/m")
    queue_control.set_limits(pgjobs_conn, "pgjobs", "api", concurrency=3, rate=rate)
    queue_control.set_limits(pgjobs_conn, "pgjobs", "api", concurrency=None)
    row = pgjobs_conn.execute(
        "SELECT concurrency_limit, rate_limit, rate_period FROM pgjobs.queues WHERE name = 'api'"
    ).fetchone()
    assert row == (None, 5, timedelta(minutes=1))
    with pytest.raises(InvalidInput, match="nothing to change"):
        queue_control.set_limits(pgjobs_conn, "pgjobs", "api")
    with pytest.raises(InvalidInput, match="invalid queue name"):
        queue_control.set_paused(pgjobs_conn, "pgjobs", "bad queue", True)


def test_a_job_whose_lease_expired_no_longer_holds_a_slot(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    queue_control.set_limits(pgjobs_conn, "pgjobs", "one", concurrency=1)
    first = app.enqueue("t", queue="one")
    second = app.enqueue("t", queue="one")

    def claim() -> list[int]:
        jobs = db.claim(pgjobs_conn, "pgjobs", queues=["one"], limit=5, worker_id=uuid.uuid4(),
                        lease_seconds=30)  # fmt: skip
        return [j.id for j in jobs]

    assert claim() == [first.id]
    assert claim() == [], "the slot is held by a live lease"
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (first.id,),
    )
    assert claim() == [second.id], "a dead worker's job must not keep the slot"
