"""The worker, in process: handlers of both kinds, outcomes, retries, timeouts, cancel,
progress, follow-ups, wake-up by NOTIFY and by timer, --burst and --max-jobs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from workers import Running

import pgjobs
from pgjobs.testing import wait_for

Conn = psycopg.Connection[Any]
FAST = pgjobs.RetryPolicy.of(base="0.05s", maximum="0.2s", jitter=0)


def status_of(conn: Conn, job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        row = cursor.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def ended(conn: Conn, job_id: int, timeout: float = 20) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (r := status_of(conn, job_id))["status"] in ("succeeded", "failed", "cancelled") and r
        ),
        timeout=timeout,
        message=lambda: f"job {job_id} did not end: {status_of(conn, job_id)['status']}",
    )


def test_sync_and_async_handlers_with_progress_and_follow_ups(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="add")
    def add(a: int, b: int) -> int:
        pgjobs.current_job().set_progress(40, "adding")
        return a + b

    @app.task(name="chain")
    async def chain(n: int) -> dict[str, int]:
        job = pgjobs.current_job()
        job.enqueue("add", {"a": n, "b": job.attempt})
        return {"n": n, "id": job.id}

    first = app.enqueue("add", {"a": 2, "b": 3})
    second = app.enqueue("chain", {"n": 7})
    start(burst=True).join()
    assert ended(pgjobs_conn, first.id)["result"] == 5
    assert float(status_of(pgjobs_conn, first.id)["progress"]) == 100.0
    assert ended(pgjobs_conn, second.id)["result"] == {"n": 7, "id": second.id}
    child = pgjobs_conn.execute(
        "SELECT id, status, result FROM pgjobs.jobs WHERE parent_id = %s", (second.id,)
    ).fetchall()
    assert len(child) == 1 and child[0][1:] == ("succeeded", 8)


def test_follow_ups_of_a_failed_attempt_are_dropped(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="parent", max_attempts=2, retry=FAST)
    def parent() -> str:
        job = pgjobs.current_job()
        job.enqueue("child", {"from_attempt": job.attempt})
        if job.attempt == 1:
            raise RuntimeError("first attempt fails after enqueueing")
        return "ok"

    @app.task(name="child")
    def child(from_attempt: int) -> int:
        return from_attempt

    job = app.enqueue("parent")
    running = start()
    assert ended(pgjobs_conn, job.id)["status"] == "succeeded"
    children = wait_for(
        lambda: pgjobs_conn.execute(
            "SELECT args FROM pgjobs.jobs WHERE parent_id = %s", (job.id,)
        ).fetchall()
    )
    running.stop()
    assert children == [({"from_attempt": 2},)], "only the succeeding attempt's follow-up exists"


def test_retries_then_success_and_retries_then_failure(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="flaky", max_attempts=3, retry=FAST)
    def flaky(succeed_on: int) -> int:
        attempt = pgjobs.current_job().attempt
        if attempt < succeed_on:
            raise ValueError(f"attempt {attempt}")
        return attempt

    good = app.enqueue("flaky", {"succeed_on": 3})
    bad = app.enqueue("flaky", {"succeed_on": 9})
    running = start()
    assert ended(pgjobs_conn, good.id)["result"] == 3
    final = ended(pgjobs_conn, bad.id)
    running.stop()
    assert (final["status"], final["attempts"]) == ("failed", 3)
    assert "ValueError: attempt 3" in final["error"] and "Traceback" in final["error"]


def test_outcome_signals(app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn) -> None:
    snoozed: set[int] = set()

    @app.task(name="signals", max_attempts=5, retry=FAST)
    def signals(kind: str) -> str:
        job = pgjobs.current_job()
        if kind == "retry" and job.attempt == 1:
            raise pgjobs.Retry("rate limited", after="0.1s")
        if kind == "snooze" and job.id not in snoozed:
            snoozed.add(job.id)
            raise pgjobs.Snooze("0.1s")
        if kind == "fail":
            raise pgjobs.Fail("permanent problem")
        if kind == "cancel":
            raise pgjobs.Cancel("no longer wanted")
        return f"{kind} ok at attempt {job.attempt}"

    ids = {
        kind: app.enqueue("signals", {"kind": kind}).id
        for kind in ("retry", "snooze", "fail", "cancel")
    }
    running = start()
    results = {kind: ended(pgjobs_conn, i) for kind, i in ids.items()}
    running.stop()
    assert (results["retry"]["status"], results["retry"]["result"]) == (
        "succeeded",
        "retry ok at attempt 2",
    )
    assert results["snooze"]["status"] == "succeeded"
    assert (results["fail"]["status"], results["fail"]["attempts"]) == ("failed", 1)
    assert results["fail"]["error"] == "Fail: permanent problem"
    assert (results["cancel"]["status"], results["cancel"]["error"]) == (
        "cancelled",
        "Cancel: no longer wanted",
    )


def test_snooze_gives_the_attempt_back(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    seen: list[int] = []

    @app.task(name="later", max_attempts=1)
    def later() -> int:
        seen.append(pgjobs.current_job().attempt)
        if len(seen) < 3:
            raise pgjobs.Snooze(0.05)
        return len(seen)

    job = app.enqueue("later")
    running = start()
    assert ended(pgjobs_conn, job.id)["status"] == "succeeded"
    running.stop()
    assert seen == [1, 1, 1], "snoozing never spends the single attempt"


def test_retry_policy_per_exception_type(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="typed", max_attempts=5, retry={KeyError: None, ValueError: FAST})
    def typed(error: str) -> None:
        raise {"key": KeyError, "value": ValueError}[error]("boom")

    no_retry = app.enqueue("typed", {"error": "key"})
    retried = app.enqueue("typed", {"error": "value"})
    running = start()
    assert ended(pgjobs_conn, no_retry.id)["attempts"] == 1
    assert ended(pgjobs_conn, retried.id)["attempts"] == 5
    running.stop()


def test_unknown_task_is_retried_then_failed_naming_the_known_tasks(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="known.task")
    def known() -> None: ...

    job = app.enqueue("typo.task", max_attempts=2)
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET not_before = now()")
    running = start()
    first = wait_for(
        lambda: (
            (r := status_of(pgjobs_conn, job.id))["attempts"] == 1 and r["status"] == "queued" and r
        )
    )
    assert first["not_before"] > first["created_at"], "retried after a backoff, not hot"
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET not_before = now() WHERE id = %s", (job.id,))
    pgjobs_conn.execute('NOTIFY pgjobs_jobs, \'{"queue": "default"}\'')
    final = ended(pgjobs_conn, job.id)
    running.stop()
    assert final["status"] == "failed"
    assert "no task named 'typo.task'" in final["error"] and "known.task" in final["error"]


def test_async_timeout_and_sync_timeout(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    release = threading.Event()

    @app.task(name="async.slow", timeout=0.2, max_attempts=1)
    async def async_slow() -> None:
        await asyncio.sleep(30)

    @app.task(name="sync.slow", timeout=0.2, max_attempts=1)
    def sync_slow() -> str:
        release.wait(10)
        return "too late"

    a = app.enqueue("async.slow")
    s = app.enqueue("sync.slow")
    running = start(concurrency=2)
    assert "TimeoutError" in ended(pgjobs_conn, a.id)["error"]
    final = ended(pgjobs_conn, s.id)
    assert final["status"] == "failed" and "thread was left to finish" in final["error"]
    release.set()
    running.stop()
    assert status_of(pgjobs_conn, s.id)["result"] is None, "the thread's late result was fenced"


def test_a_timeout_error_raised_by_the_handler_is_its_own_error_not_the_tasks_timeout(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="async.upstream", timeout=30, max_attempts=1)
    async def async_upstream() -> None:
        raise TimeoutError("the payment provider did not answer in 5s")

    @app.task(name="sync.upstream", timeout=30, max_attempts=1)
    def sync_upstream() -> None:
        raise TimeoutError("the mail server did not answer in 5s")

    a = app.enqueue("async.upstream")
    s = app.enqueue("sync.upstream")
    running = start(concurrency=2)
    for job, message in ((a, "payment provider"), (s, "mail server")):
        final = ended(pgjobs_conn, job.id)
        assert final["status"] == "failed"
        assert message in final["error"], final["error"]
        assert "task's timeout" not in final["error"]
        assert "Traceback" in final["error"], "the handler's traceback is kept"
    running.stop()


def test_cancel_a_running_async_and_sync_job(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    started = threading.Event()

    @app.task(name="async.long")
    async def async_long() -> None:
        await asyncio.sleep(60)

    @app.task(name="sync.long")
    def sync_long() -> str:
        started.set()
        while not pgjobs.current_job().cancelled:
            time.sleep(0.01)
        return "stopped"

    a = app.enqueue("async.long")
    s = app.enqueue("sync.long")
    running = start(concurrency=2)
    wait_for(
        lambda: (
            pgjobs_conn.execute(
                "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'"
            ).fetchone()
            == (2,)
        )
    )
    started.wait(10)
    from pgjobs import db

    outcomes = db.run(pgjobs_conn, db.cancel("pgjobs", [a.id, s.id]))
    assert {o.outcome for o in outcomes} == {"cancel_requested"}
    assert ended(pgjobs_conn, a.id)["status"] == "cancelled"
    assert ended(pgjobs_conn, s.id)["status"] == "cancelled"
    running.stop()


def test_touch_extends_the_lease(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="touchy")
    def touchy() -> str:
        return pgjobs.current_job().touch(3600).isoformat()

    @app.task(name="touchy.async")
    async def touchy_async() -> str:
        return (await pgjobs.current_job().touch_async(3600)).isoformat()

    jobs = [app.enqueue("touchy"), app.enqueue("touchy.async")]
    start(burst=True).join()
    for job in jobs:
        assert ended(pgjobs_conn, job.id)["status"] == "succeeded"


def test_notify_wakes_an_idle_worker_and_a_timer_starts_delayed_jobs(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="noop")
    async def noop() -> None: ...

    running = start(poll_interval=600)
    wait_for(
        lambda: pgjobs_conn.execute("SELECT count(*) FROM pgjobs.workers").fetchone() == (1,),
        message="worker row",
    )
    now_job = app.enqueue("noop")
    assert ended(pgjobs_conn, now_job.id, timeout=10)["status"] == "succeeded", (
        "NOTIFY woke it (the poll is 10 minutes)"
    )
    later = app.enqueue("noop", delay=1.0)
    final = ended(pgjobs_conn, later.id, timeout=10)
    running.stop()
    assert final["started_at"] >= final["not_before"], "never early"


def test_an_idle_worker_claims_on_the_connection_the_notification_woke(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    # The listening backend was just woken to deliver the notification; claiming there
    # saves waking the claimer's (see Worker._answer_on_listener).
    @app.task(name="noop")
    async def noop() -> None: ...

    running = start(poll_interval=600, tick_interval=600)
    wait_for(
        lambda: pgjobs_conn.execute("SELECT count(*) FROM pgjobs.workers").fetchone() == (1,),
        message="worker row",
    )

    def listener_statement() -> str:
        row = pgjobs_conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'pgjobs worker listen'"
        ).fetchone()
        assert row is not None, "no listening connection"
        return str(row[0])

    assert listener_statement().startswith("LISTEN")
    first = app.enqueue("noop")  # may find the worker still busy starting: either path
    assert ended(pgjobs_conn, first.id, timeout=10)["status"] == "succeeded"
    for _ in range(2):  # now idle: answered on the listening connection, which listens again
        job = app.enqueue("noop")
        assert ended(pgjobs_conn, job.id, timeout=10)["status"] == "succeeded"
        assert ".claim(" in listener_statement()
    running.stop()


def test_plain_sql_insert_wakes_the_worker(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="emails.send", queue="emails")
    def send(to: str) -> str:
        return to

    running = start(poll_interval=600, queues=["emails"])
    wait_for(
        lambda: pgjobs_conn.execute("SELECT count(*) FROM pgjobs.workers").fetchone() == (1,),
        message="worker row",
    )
    [(job_id,)] = pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, args) VALUES ('emails.send', '{\"to\": \"a\"}') RETURNING id"
    ).fetchall()
    final = ended(pgjobs_conn, job_id, timeout=10)
    running.stop()
    assert (final["queue"], final["result"]) == ("emails", "a"), (
        "the task's published queue was applied"
    )


def test_burst_and_max_jobs_exit_by_themselves(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="noop")
    def noop() -> None: ...

    for _ in range(3):
        app.enqueue("noop")
    assert start(max_jobs=1).join() == 0
    assert pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'"
    ).fetchone() == (1,)
    assert start(burst=True).join() == 0
    assert pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'"
    ).fetchone() == (3,)
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.workers").fetchone() == (0,), (
        "workers leave their row"
    )


def test_concurrency_bounds_jobs_in_flight(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    @app.task(name="count")
    def count() -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1

    app.enqueue_many([{"task": "count"}] * 60)
    start(concurrency=4, burst=True).join()
    assert pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE status = 'succeeded'"
    ).fetchone() == (60,)
    assert peak == 4


def test_rescue_by_a_live_worker(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="noop")
    def noop() -> str:
        return "rescued and run"

    job = app.enqueue("noop")
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'running', attempts = 1, lease_token = gen_random_uuid(),"
        " lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (job.id,),
    )
    running = start()
    final = ended(pgjobs_conn, job.id)
    running.stop()
    assert (final["status"], final["attempts"], final["result"]) == (
        "succeeded",
        2,
        "rescued and run",
    )


def test_graceful_stop_hands_back_what_does_not_finish(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    @app.task(name="forever")
    async def forever() -> None:
        await asyncio.sleep(3600)

    job = app.enqueue("forever")
    running = start(grace=0.2)
    wait_for(lambda: status_of(pgjobs_conn, job.id)["status"] == "running")
    assert running.stop() == 0
    final = status_of(pgjobs_conn, job.id)
    assert (final["status"], final["attempts"], final["lease_token"]) == ("queued", 0, None)
    assert "handed back" in final["error"]


def test_middleware_wraps_sync_and_async_jobs_and_sees_errors(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    events: list[str] = []

    @app.middleware
    def outer(job: pgjobs.JobContext) -> Iterator[None]:
        events.append(f"enter {job.task}")
        try:
            yield
        except Exception as error:
            events.append(f"error {job.task}: {error}")
            raise
        finally:
            events.append(f"exit {job.task}")

    @app.middleware
    async def timing(job: pgjobs.JobContext) -> Any:
        events.append(f"async enter {job.task}")
        yield
        events.append(f"async exit {job.task}")

    @app.task(name="sync.ok")
    def sync_ok() -> None:
        events.append("run sync.ok")

    @app.task(name="async.bad", max_attempts=1)
    async def async_bad() -> None:
        raise ValueError("nope")

    app.enqueue("sync.ok")
    start(burst=True).join()
    assert events == [
        "async enter sync.ok",
        "enter sync.ok",
        "run sync.ok",
        "exit sync.ok",
        "async exit sync.ok",
    ]
    events.clear()
    bad = app.enqueue("async.bad")
    start(burst=True).join()
    assert events[:2] == ["enter async.bad", "async enter async.bad"] or events[:2] == [
        "async enter async.bad",
        "enter async.bad",
    ]
    assert "error async.bad: nope" in events
    assert status_of(pgjobs_conn, bad.id)["status"] == "failed"


def test_a_middleware_must_be_a_generator(app: pgjobs.App) -> None:
    with pytest.raises(pgjobs.InvalidInput, match="generator function"):
        app.middleware(lambda job: None)


@pytest.fixture
def accounts(pgjobs_conn: Conn) -> Conn:
    pgjobs_conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int)")
    pgjobs_conn.execute("INSERT INTO accounts VALUES (1, 100)")
    return pgjobs_conn


def balance(conn: Conn) -> int:
    row = conn.execute("SELECT balance FROM accounts WHERE id = 1").fetchone()
    assert row is not None
    return int(row[0])


def test_transaction_commits_effects_with_success(
    app: pgjobs.App, start: Callable[..., Running], accounts: Conn
) -> None:
    @app.task(name="debit")
    def debit(amount: int) -> str:
        with pgjobs.current_job().transaction() as conn:
            conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = 1", (amount,))
        pgjobs.current_job().enqueue("notify", {"amount": amount})
        return "debited"

    @app.task(name="debit.async")
    async def debit_async(amount: int) -> str:
        async with pgjobs.current_job().transaction_async() as conn:
            await conn.execute("UPDATE accounts SET balance = balance - %s WHERE id = 1", (amount,))
        return "debited async"

    @app.task(name="notify")
    def notify(amount: int) -> int:
        return amount

    first = app.enqueue("debit", {"amount": 10})
    second = app.enqueue("debit.async", {"amount": 5})
    start(burst=True).join()
    assert ended(accounts, first.id)["result"] == "debited"
    assert ended(accounts, second.id)["result"] == "debited async"
    assert balance(accounts) == 85
    assert accounts.execute(
        "SELECT status FROM pgjobs.jobs WHERE parent_id = %s", (first.id,)
    ).fetchall() == [("succeeded",)]


def test_transaction_rolls_back_when_the_handler_fails(
    app: pgjobs.App, start: Callable[..., Running], accounts: Conn
) -> None:
    @app.task(name="debit.fails", max_attempts=1)
    def debit_fails() -> None:
        with pgjobs.current_job().transaction() as conn:
            conn.execute("UPDATE accounts SET balance = 0 WHERE id = 1")
        raise RuntimeError("after the write")

    job = app.enqueue("debit.fails")
    start(burst=True).join()
    assert ended(accounts, job.id)["status"] == "failed"
    assert balance(accounts) == 100, "the failed attempt's write rolled back"


def test_transaction_holds_the_row_and_refuses_a_lost_lease(
    app: pgjobs.App, start: Callable[..., Running], accounts: Conn, pgjobs_dsn: str
) -> None:
    opened = threading.Event()
    proceed = threading.Event()
    ready = threading.Event()

    @app.task(name="debit.held")
    def debit_held() -> str:
        with pgjobs.current_job().transaction() as conn:
            conn.execute("UPDATE accounts SET balance = balance - 50 WHERE id = 1")
            opened.set()
            proceed.wait(20)
        return "held"

    @app.task(name="debit.lost")
    def debit_lost() -> str:
        ready.set()
        proceed.wait(20)
        with pgjobs.current_job().transaction() as conn:
            conn.execute("UPDATE accounts SET balance = 0 WHERE id = 1")
        return "should not happen"

    held = app.enqueue("debit.held")
    running = start(concurrency=2)
    assert opened.wait(20)
    with psycopg.connect(pgjobs_dsn, autocommit=True) as other:
        other.execute("SET lock_timeout = '100ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute(
                "UPDATE pgjobs.jobs SET lease_token = gen_random_uuid() WHERE id = %s", (held.id,)
            )
    lost = app.enqueue("debit.lost")
    assert ready.wait(20)
    accounts.execute(
        "UPDATE pgjobs.jobs SET lease_token = gen_random_uuid() WHERE id = %s", (lost.id,)
    )  # taken over
    proceed.set()
    assert ended(accounts, held.id)["result"] == "held"
    running.stop()
    assert balance(accounts) == 50, (
        "the held run committed; the run that lost its lease wrote nothing"
    )
    assert status_of(accounts, lost.id)["status"] == "running", (
        "its outcome was not recorded either"
    )


def test_a_wake_up_while_every_slot_is_busy_does_not_stall_the_worker(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    """Regression: a notification arriving when no slot was free made the producer spin
    without yielding, so the running jobs could never finish."""
    release = threading.Event()

    @app.task(name="hold")
    async def hold() -> None:
        await asyncio.sleep(0.2)

    @app.task(name="quick")
    def quick() -> None:
        release.wait(5)

    first = [app.enqueue("hold") for _ in range(2)]
    running = start(concurrency=2)
    wait_for(
        lambda: (
            pgjobs_conn.execute(
                "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'"
            ).fetchone()
            == (2,)
        )
    )
    later = app.enqueue("quick")  # notifies while both slots are busy
    release.set()
    for job in [*first, later]:
        assert ended(pgjobs_conn, job.id)["status"] == "succeeded"
    running.stop()
