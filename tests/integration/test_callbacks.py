"""Completion callbacks against a real PostgreSQL and a real HTTP receiver: exactly one
callback per ending whatever ended the job, delivered by workers through pgjobs' own retries,
signed, and visible on the job."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from receiver import Receiver
from structlog.testing import capture_logs
from workers import Running

import pgjobs
from pgjobs import callbacks, db
from pgjobs.testing import wait_for

Conn = psycopg.Connection[Any]
SCHEMA = "pgjobs"
SECRET = "a-test-secret"
FAST = pgjobs.RetryPolicy.of(base="0.05s", maximum="0.2s", jitter=0)
FINAL = ("delivered", "failed", "cancelled")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def quick_and_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short backoff between delivery attempts, and a secret: set before a worker starts,
    which is when it reads them."""
    monkeypatch.setattr(callbacks, "RETRY_POLICY", FAST)
    monkeypatch.setenv(callbacks.WEBHOOK_SECRET_ENV, SECRET)


def row(conn: Conn, job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        found = cursor.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert found is not None
    return found


def callback_jobs(conn: Conn, job_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        return cursor.execute(
            "SELECT * FROM pgjobs.jobs WHERE parent_id = %s AND task = 'pgjobs.callback' ORDER BY id",
            (job_id,),
        ).fetchall()


def settled(
    conn: Conn, job_id: int, count: int = 1, timeout: float = 20
) -> callbacks.CallbackState:
    """The job's callbacks once ``count`` deliveries exist and all reached a final state."""

    def check() -> callbacks.CallbackState | None:
        state = callbacks.delivery(conn, SCHEMA, job_id)
        if state is None or len(state.deliveries) < count:
            return None
        return state if all(d.state in FINAL for d in state.deliveries) else None

    return wait_for(
        check,
        timeout=timeout,
        message=lambda: f"callbacks of job {job_id}: {callbacks.delivery(conn, SCHEMA, job_id)}",
    )


def ended(conn: Conn, job_id: int) -> dict[str, Any]:
    return wait_for(
        lambda: (r := row(conn, job_id))["status"] in ("succeeded", "failed", "cancelled") and r,
        timeout=20,
        message=lambda: f"job {job_id} did not end: {row(conn, job_id)['status']}",
    )


def add(conn: Conn, callback_url: str | None, **columns: Any) -> int:
    """A job inserted by plain SQL (no worker knows its task)."""
    values = {
        "task": "elsewhere.task",
        "queue": "elsewhere",
        "callback_url": callback_url,
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join(f"%({n})s" for n in values)
    found = conn.execute(
        f"INSERT INTO pgjobs.jobs ({names}) VALUES ({marks}) RETURNING id", values
    ).fetchone()
    assert found is not None
    return int(found[0])


# --- one callback per ending, whatever ended it --------------------------------------------


def test_success_is_posted_once_signed_with_the_jobs_final_json(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    @app.task(name="double")
    def double(n: int) -> dict[str, int]:
        return {"n": n * 2}

    job = app.enqueue("double", {"n": 21}, callback_url=receiver.url("/ok"))
    running = start()
    state = settled(pgjobs_conn, job.id)
    running.stop()
    (got,) = receiver.received("/ok")
    (delivery,) = state.deliveries
    assert got.method == "POST"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["pgjobs-delivery"] == str(delivery.id)
    assert pgjobs.verify_signature(SECRET, got.headers["pgjobs-signature"], got.body)
    body = got.json()
    assert (body["id"], body["task"], body["status"], body["result"]) == (
        job.id, "double", "succeeded", {"n": 42},
    )  # fmt: skip
    assert body["args"] == {"n": 21} and body["attempts"] == 1
    assert datetime.fromisoformat(body["finished_at"]) == row(pgjobs_conn, job.id)["finished_at"]
    assert not set(body) & callbacks.PAYLOAD_OMITS
    assert (delivery.state, delivery.ending, delivery.attempts, delivery.last_error) == (
        "delivered", "succeeded", 1, None,
    )  # fmt: skip
    (callback,) = callback_jobs(pgjobs_conn, job.id)
    assert (callback["queue"], callback["priority"], callback["status"]) == (
        "pgjobs.internal", 100, "succeeded",
    )  # fmt: skip
    parent = row(pgjobs_conn, job.id)
    assert parent["callback_attempts"] == 1 and parent["callback_error"] is None
    assert parent["callback_delivered_at"] == delivery.delivered_at


def test_failure_after_retries_is_posted_once(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    @app.task(name="broken", max_attempts=3, retry=FAST)
    def broken() -> None:
        raise ValueError("always")

    job = app.enqueue("broken", callback_url=receiver.url("/ok"))
    running = start()
    settled(pgjobs_conn, job.id)
    running.stop()
    (got,) = receiver.received("/ok")
    body = got.json()
    assert (body["status"], body["attempts"]) == ("failed", 3)
    assert "ValueError: always" in body["error"]
    assert len(callback_jobs(pgjobs_conn, job.id)) == 1


def test_cancel_of_a_queued_job(
    start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    job_id = add(pgjobs_conn, receiver.url("/ok"))
    outcome = db.run(pgjobs_conn, db.cancel(SCHEMA, [job_id]))  # what `pgjobs jobs cancel` runs
    assert outcome[0].outcome == "cancelled"
    running = start()
    settled(pgjobs_conn, job_id)
    running.stop()
    (got,) = receiver.received("/ok")
    assert got.json()["status"] == "cancelled"


def test_cancel_of_a_running_job(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    @app.task(name="long")
    async def long() -> None:
        await asyncio.sleep(60)

    job = app.enqueue("long", callback_url=receiver.url("/ok"))
    running = start()
    wait_for(lambda: row(pgjobs_conn, job.id)["status"] == "running")
    assert not callback_jobs(pgjobs_conn, job.id), "no callback while it runs"
    db.run(pgjobs_conn, db.cancel(SCHEMA, [job.id]))
    settled(pgjobs_conn, job.id)
    running.stop()
    (got,) = receiver.received("/ok")
    assert got.json()["status"] == "cancelled"
    assert len(callback_jobs(pgjobs_conn, job.id)) == 1


def test_rescue_of_an_expired_lease_to_failed(
    start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    job_id = add(pgjobs_conn, receiver.url("/ok"), max_attempts=1)
    (claimed,) = db.claim(
        pgjobs_conn, SCHEMA, queues=["elsewhere"], limit=1, worker_id=uuid.uuid4(), lease_seconds=30
    )
    assert claimed.id == job_id
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (job_id,),
    )
    rescued = db.run(pgjobs_conn, db.rescue(SCHEMA))
    assert rescued[job_id].value == "failed"
    assert len(callback_jobs(pgjobs_conn, job_id)) == 1
    running = start()
    settled(pgjobs_conn, job_id)
    running.stop()
    (got,) = receiver.received("/ok")
    body = got.json()
    assert body["status"] == "failed" and body["error"].startswith("lease expired")


def test_plain_sql_ending_once_and_not_again(pgjobs_conn: Conn, receiver: Receiver) -> None:
    job_id = add(pgjobs_conn, receiver.url("/ok"))
    for _ in range(2):  # the second update finds the job ended: not a new ending
        pgjobs_conn.execute(
            "UPDATE pgjobs.jobs SET status = 'succeeded', finished_at = now() WHERE id = %s",
            (job_id,),
        )
    (callback,) = callback_jobs(pgjobs_conn, job_id)
    ending = callback["args"]["ending"]
    # The writer did not bump the version: the trigger did, so the version names the ending.
    assert (
        ending["status"] == "succeeded"
        and ending["version"] == row(pgjobs_conn, job_id)["version"] == 1
    )
    assert callback["dedupe_key"] == f"pgjobs.callback:{job_id}@1"
    assert callback["args"]["job_id"] == job_id and callback["args"]["url"] == receiver.url("/ok")


def test_each_ending_after_a_retry_gets_its_own_callback(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    @app.task(name="once", max_attempts=1)
    def once() -> None:
        raise RuntimeError(f"attempt {pgjobs.current_job().attempt}")

    job = app.enqueue("once", callback_url=receiver.url("/ok"))
    running = start()
    settled(pgjobs_conn, job.id, count=1)
    (retried,) = db.run(pgjobs_conn, db.retry(SCHEMA, [job.id]))  # `pgjobs jobs retry`
    assert retried.retried
    state = settled(pgjobs_conn, job.id, count=2)
    running.stop()
    first, second = receiver.received("/ok")
    assert [d.ending for d in state.deliveries] == ["failed", "failed"]
    assert first.headers["pgjobs-delivery"] != second.headers["pgjobs-delivery"]
    assert (first.json()["attempts"], second.json()["attempts"]) == (1, 2)
    assert "attempt 2" in second.json()["error"]
    assert len(callback_jobs(pgjobs_conn, job.id)) == 2


def test_jobs_without_a_callback_url_get_none(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="plain")
    def plain(fail: bool) -> None:
        if fail:
            raise pgjobs.Fail("no")

    ids = [app.enqueue("plain", {"fail": fail}).id for fail in (False, True)]
    ids.append(add(pgjobs_conn, None))
    db.run(pgjobs_conn, db.cancel(SCHEMA, [ids[-1]]))
    start(burst=True).join()
    assert [row(pgjobs_conn, i)["status"] for i in ids] == ["succeeded", "failed", "cancelled"]
    count = pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE task = 'pgjobs.callback'"
    ).fetchone()
    assert count == (0,)
    assert callbacks.delivery(pgjobs_conn, SCHEMA, ids[0]) is None


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_endings_cannot_double_a_callback(
    pgjobs_dsn: str, pgjobs_conn: Conn, round_: int
) -> None:
    """Sessions racing to end the same running jobs (completion with the lease, cancel-like
    plain SQL, rescue, another plain SQL): one callback per job, whoever wins."""
    ids = [add(pgjobs_conn, "http://127.0.0.1:9/never") for _ in range(20)]
    claimed = db.claim(
        pgjobs_conn,
        SCHEMA,
        queues=["elsewhere"],
        limit=20,
        worker_id=uuid.uuid4(),
        lease_seconds=30,
    )
    assert sorted(j.id for j in claimed) == ids
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = ANY(%s)",
        (ids,),
    )
    gate = threading.Barrier(4)
    errors: list[BaseException] = []

    def finish(conn: Conn) -> None:
        db.run(conn, db.finish(SCHEMA, [
            db.Outcome(j.id, j.lease_token, pgjobs.JobStatus.SUCCEEDED, result="1") for j in claimed
        ]))  # fmt: skip

    def cancel(conn: Conn) -> None:
        conn.execute(
            "UPDATE pgjobs.jobs SET status = 'cancelled', lease_token = NULL, finished_at = now()"
            " WHERE id = ANY(%s) AND status IN ('queued', 'running')",
            (ids,),
        )

    def rescue(conn: Conn) -> None:
        conn.execute("UPDATE pgjobs.jobs SET max_attempts = 1 WHERE id = ANY(%s)", (ids,))
        db.run(conn, db.rescue(SCHEMA))

    def fail(conn: Conn) -> None:
        conn.execute(
            "UPDATE pgjobs.jobs SET status = 'failed', lease_token = NULL, finished_at = now()"
            " WHERE id = ANY(%s)",
            (list(reversed(ids)),),
        )

    def race(action: Callable[[Conn], None]) -> None:
        try:
            with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
                gate.wait(10)
                action(conn)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(a,)) for a in (finish, cancel, rescue, fail)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # A deadlock between two racers is a legitimate outcome of such SQL; losing or doubling a
    # callback is not.
    assert all(isinstance(e, psycopg.errors.DeadlockDetected) for e in errors), errors
    counts = dict(
        pgjobs_conn.execute(  # type: ignore[arg-type]
            "SELECT p.id, (SELECT count(*) FROM pgjobs.jobs AS c"
            "               WHERE c.parent_id = p.id AND c.task = 'pgjobs.callback')"
            "  FROM pgjobs.jobs AS p WHERE p.id = ANY(%s)",
            (ids,),
        ).fetchall()
    )
    assert counts == dict.fromkeys(ids, 1)


# --- delivery ---------------------------------------------------------------------------


def test_server_errors_are_retried_with_backoff_then_delivered(
    start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    job_id = add(pgjobs_conn, receiver.url("/flaky/2/a"))
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = %s", (job_id,))
    running = start()
    state = settled(pgjobs_conn, job_id)
    running.stop()
    attempts = receiver.received("/flaky/2/a")
    assert len(attempts) == 3
    assert len({a.headers["pgjobs-delivery"] for a in attempts}) == 1, "one delivery, retried"
    assert all(
        pgjobs.verify_signature(SECRET, a.headers["pgjobs-signature"], a.body) for a in attempts
    )
    assert len({a.body for a in attempts}) == 1, "the same body at every attempt"
    (delivery,) = state.deliveries
    assert (delivery.state, delivery.attempts) == ("delivered", 3)
    assert "HTTP 503" in (delivery.last_error or ""), "the last failure stays readable"
    # FAST waits 0.05 s after the first failure, 0.1 s after the second (no jitter); the
    # retry is due that long after the failure was written, itself after the receiver answered.
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.05 * 0.9 and gaps[1] >= 0.1 * 0.9, gaps
    parent = row(pgjobs_conn, job_id)
    assert (parent["callback_attempts"], parent["callback_error"]) == (3, None)


def test_a_4xx_fails_the_delivery_at_once(
    start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    job_id = add(pgjobs_conn, receiver.url("/status/404"))
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'failed' WHERE id = %s", (job_id,))
    running = start()
    state = settled(pgjobs_conn, job_id)
    running.stop()
    assert len(receiver.received("/status/404")) == 1
    (delivery,) = state.deliveries
    assert (delivery.state, delivery.attempts) == ("failed", 1)
    assert "HTTP 404" in (delivery.last_error or "") and "not retried" in (
        delivery.last_error or ""
    )
    parent = row(pgjobs_conn, job_id)
    assert parent["callback_attempts"] == 1 and "HTTP 404" in parent["callback_error"]
    assert parent["callback_delivered_at"] is None


def test_429_and_408_are_retried(
    start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    ids = [add(pgjobs_conn, receiver.url(p)) for p in ("/status/429?after=0", "/status/408")]
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = ANY(%s)", (ids,))
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET max_attempts = 2 WHERE task = 'pgjobs.callback'"
    )  # two attempts are enough to see the retry
    running = start()
    states = [settled(pgjobs_conn, i) for i in ids]
    running.stop()
    assert [(s.deliveries[0].state, s.deliveries[0].attempts) for s in states] == [
        ("failed", 2)
    ] * 2
    assert len(receiver.received("/status/429")) == 2 and len(receiver.received("/status/408")) == 2


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    start: Callable[..., Running],
    pgjobs_conn: Conn,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(callbacks, "TIMEOUT", 0.3)
    job_id = add(pgjobs_conn, receiver.url("/hang/1/t"))
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = %s", (job_id,))
    running = start()
    state = settled(pgjobs_conn, job_id)
    running.stop()
    (delivery,) = state.deliveries
    assert (delivery.state, delivery.attempts) == ("delivered", 2)
    assert "no answer within 0.3s" in (delivery.last_error or "")


def test_an_unreachable_receiver_is_retried_until_attempts_run_out(
    start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    with socket_bound() as port:  # a port that refuses connections
        job_id = add(pgjobs_conn, f"http://127.0.0.1:{port}/hook")
        pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = %s", (job_id,))
        running = start()
        state = settled(pgjobs_conn, job_id, timeout=30)
        running.stop()
    (delivery,) = state.deliveries
    assert (delivery.state, delivery.attempts) == ("failed", callbacks.CALLBACK_MAX_ATTEMPTS)
    assert "ConnectError" in (delivery.last_error or "")


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A local port bound but not listening: connections to it are refused at once, and no
    other test can take it meanwhile."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_unsigned_without_a_secret_and_warned_once_per_worker(
    start: Callable[..., Running],
    pgjobs_conn: Conn,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(callbacks.WEBHOOK_SECRET_ENV)
    ids = [add(pgjobs_conn, receiver.url("/ok")) for _ in range(3)]
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = ANY(%s)", (ids,))
    with capture_logs() as logs:
        running = start()
        for job_id in ids:
            settled(pgjobs_conn, job_id)
        running.stop()
    got = receiver.received("/ok")
    assert len(got) == 3
    assert all("pgjobs-signature" not in r.headers for r in got)
    warnings = [e for e in logs if e["event"] == "callback.unsigned"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert callbacks.WEBHOOK_SECRET_ENV in warnings[0]["reason"]


def test_a_job_pruned_before_delivery_fails_its_callback_clearly(
    start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    job_id = add(pgjobs_conn, receiver.url("/ok"))
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = %s", (job_id,))
    (callback,) = callback_jobs(pgjobs_conn, job_id)
    pgjobs_conn.execute("DELETE FROM pgjobs.jobs WHERE id = %s", (job_id,))
    running = start()
    final = wait_for(lambda: (r := row(pgjobs_conn, callback["id"]))["status"] == "failed" and r)
    running.stop()
    assert "no longer exists" in final["error"] and not receiver.received()


def test_the_payload_reports_its_own_ending_after_the_job_moved_on(
    start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    """Ended failed, retried at once (queued again) before the delivery ran: the callback
    still says failed, with that ending's attempts."""
    job_id = add(pgjobs_conn, receiver.url("/ok"), attempts=1)
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'failed', error = 'boom', finished_at = now() WHERE id = %s",
        (job_id,),
    )
    db.run(pgjobs_conn, db.retry(SCHEMA, [job_id]))
    assert row(pgjobs_conn, job_id)["status"] == "queued"
    running = start(queues=["only-this"])  # the retried job itself is not run
    settled(pgjobs_conn, job_id)
    running.stop()
    (got,) = receiver.received("/ok")
    body = got.json()
    assert (body["status"], body["attempts"], body["error"]) == ("failed", 1, "boom")
    assert body["finished_at"] is not None


# --- which workers deliver ---------------------------------------------------------------


def test_a_worker_given_other_queues_still_delivers_callbacks(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    @app.task(name="other.task", queue="other")
    def other_task() -> str:
        return "done"

    job = app.enqueue("other.task", callback_url=receiver.url("/ok"))
    elsewhere = add(pgjobs_conn, receiver.url("/ok"))
    running = start(queues=["other"])
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'cancelled' WHERE id = %s", (elsewhere,))
    settled(pgjobs_conn, job.id)
    settled(pgjobs_conn, elsewhere)
    workers = pgjobs_conn.execute("SELECT queues FROM pgjobs.workers").fetchall()
    running.stop()
    assert sorted(r.json()["status"] for r in receiver.received("/ok")) == [
        "cancelled",
        "succeeded",
    ]
    assert workers == [(["other", "pgjobs.internal"],)]


def test_a_max_jobs_worker_does_not_spend_its_job_on_a_callback(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    @app.task(name="long.report", queue="long")
    def report() -> str:
        return "report"

    ready = add(pgjobs_conn, receiver.url("/ok"))
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = %s", (ready,))
    job = app.enqueue("long.report")
    code = start(queues=["long"], max_jobs=1, concurrency=1).join()
    assert code == 0
    assert row(pgjobs_conn, job.id)["status"] == "succeeded", "its one job was the report"
    # The callback (higher priority) went first, uncounted.
    assert settled(pgjobs_conn, ready).deliveries[0].state == "delivered"


def test_a_burst_worker_delivers_the_callbacks_of_its_jobs_before_leaving(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    @app.task(name="quick")
    def quick(i: int) -> int:
        return i

    ids = [app.enqueue("quick", {"i": i}, callback_url=receiver.url("/ok")).id for i in range(3)]
    assert start(burst=True).join() == 0
    assert sorted(r.json()["id"] for r in receiver.received("/ok")) == ids
    assert all(callbacks.delivery(pgjobs_conn, SCHEMA, i).latest.state == "delivered" for i in ids)  # type: ignore[union-attr]


def test_pausing_the_internal_queue_holds_callbacks(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    from pgjobs import queue_control

    @app.task(name="marker")
    def marker() -> None:
        return None

    queue_control.set_paused(pgjobs_conn, SCHEMA, callbacks.INTERNAL_QUEUE, True)
    job_id = add(pgjobs_conn, receiver.url("/ok"))
    running = start()
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = %s", (job_id,))
    later = app.enqueue("marker")  # claimed after the callback was ready: the claim saw it
    ended(pgjobs_conn, later.id)
    assert callbacks.delivery(pgjobs_conn, SCHEMA, job_id).latest.state == "pending"  # type: ignore[union-attr]
    assert running.worker.claimed_total == 1
    queue_control.set_paused(pgjobs_conn, SCHEMA, callbacks.INTERNAL_QUEUE, False)
    settled(pgjobs_conn, job_id)
    running.stop()
    assert len(receiver.received("/ok")) == 1


# --- visible on the job; refused at enqueue --------------------------------------------------


def test_pgjobs_status_shows_the_delivery(
    pgjobs_dsn: str, pgjobs_conn: Conn, receiver: Receiver, run_cli: Callable[..., Any]
) -> None:
    job_id = add(pgjobs_conn, receiver.url("/ok"))
    env = {"PGJOBS_DSN": pgjobs_dsn}
    waiting = run_cli("status", str(job_id), env=env)
    assert waiting.returncode == 0 and "delivery:   when the job ends" in waiting.stdout
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'failed', error = 'boom' WHERE id = %s", (job_id,)
    )
    (callback,) = callback_jobs(pgjobs_conn, job_id)
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'queued', attempts = 1, error = 'Retry: POST x: HTTP 503',"
        " not_before = now() + interval '1 hour' WHERE id = %s",
        (callback["id"],),
    )
    shown = run_cli("status", str(job_id), env=env)
    assert shown.returncode == 0, shown.stderr
    line = next(s for s in shown.stdout.splitlines() if s.startswith("delivery:"))
    assert f"#{callback['id']} of the failed ending: retrying, 1/12 attempt(s)" in line
    assert line.endswith("Retry: POST x: HTTP 503")
    as_json = json.loads(run_cli("status", str(job_id), "--json", env=env).stdout)
    (delivery,) = as_json["callback_delivery"]["deliveries"]
    assert as_json["callback_delivery"]["state"] == "retrying"
    assert (delivery["id"], delivery["state"], delivery["attempts"]) == (
        callback["id"],
        "retrying",
        1,
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "example.com/hook",
        "http://",
        "http://a b",
        "http:///hook",
        "http://:8080/hook",
    ],
)
def test_a_bad_callback_url_is_refused_at_enqueue_by_every_producer(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn, run_cli: Callable[..., Any], url: str
) -> None:
    with pytest.raises(pgjobs.InvalidInput, match="invalid callback URL"):
        app.enqueue("t", callback_url=url)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid callback_url"):
        pgjobs_conn.execute("SELECT pgjobs.enqueue('t', '{}', callback_url => %s)", (url,))
    cli = run_cli("enqueue", "t", "--callback", url, env={"PGJOBS_DSN": pgjobs_dsn})
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert "invalid callback URL" in cli.stderr
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_plain_sql_cannot_store_a_callback_url_of_another_scheme(pgjobs_conn: Conn) -> None:
    """Met by the trigger (migration 0006) before 0001's CHECK, with the same message."""
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="URL with a host"):
        pgjobs_conn.execute(
            "INSERT INTO pgjobs.jobs (task, callback_url) VALUES ('t', 'javascript:alert(1)')"
        )


@pytest.mark.parametrize("url", ["http:///hook", "https://:443/", "http://?q=1"])
def test_plain_sql_cannot_store_a_callback_url_without_a_host(pgjobs_conn: Conn, url: str) -> None:
    """Migration 0006: an INSERT is refused with one line. Updates are not checked (no
    BEFORE UPDATE trigger: it would cost every claim), so a row that holds such a URL from
    before 0006 still takes its ending."""
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="URL with a host"):
        pgjobs_conn.execute("INSERT INTO pgjobs.jobs (task, callback_url) VALUES ('t', %s)", (url,))
    job_id = pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, callback_url) VALUES ('t', 'https://a.example/cb') RETURNING id"
    ).fetchone()
    assert job_id is not None
    # As a row stored before the trigger existed:
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET callback_url = %s WHERE id = %s", (url, job_id[0]))
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'cancelled' WHERE id = %s", (job_id[0],))
    assert pgjobs_conn.execute(
        "SELECT status FROM pgjobs.jobs WHERE id = %s", (job_id[0],)
    ).fetchone() == ("cancelled",)
