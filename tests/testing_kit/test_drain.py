"""drain() and drain_async(): jobs run inline through the worker's own machinery, in claim
order, with outcomes as the database recorded them; bounded by max_jobs and timeout; queue
filtering; the async twin; clear errors for misuse."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import queue_control
from pgjobs.testing import DrainIncomplete, drain, drain_async

Conn = psycopg.Connection[Any]
#: A backoff no test waits for: a retry stays out of the way whatever the machine's speed.
LATER = pgjobs.RetryPolicy.of("1h")


def test_jobs_run_in_claim_order_and_report_their_outcomes(pgjobs_app: pgjobs.App) -> None:
    @pgjobs_app.task(name="echo")
    def echo(word: str) -> str:
        return word

    low = pgjobs_app.enqueue("echo", {"word": "low"}, priority=-5)
    first = pgjobs_app.enqueue("echo", {"word": "first"})
    urgent = pgjobs_app.enqueue("echo", {"word": "urgent"}, priority=10)
    second = pgjobs_app.enqueue("echo", {"word": "second"})
    runs = drain(pgjobs_app)
    assert [r.id for r in runs] == [urgent.id, first.id, second.id, low.id]
    assert [r.result for r in runs] == ["urgent", "first", "second", "low"]
    assert {(r.outcome, r.status, r.attempt, r.error) for r in runs} == {
        ("succeeded", "succeeded", 1, None)
    }
    assert runs[0].job.refresh().status == "succeeded"  # a Job bound to the App
    assert repr(runs[0]) == f"<JobRun #{urgent.id} echo attempt 1: succeeded 'urgent'>"
    assert drain(pgjobs_app) == []


def test_the_worker_machinery_applies_middleware_context_progress_transaction(
    pgjobs_app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    pgjobs_conn.execute("CREATE TABLE ledger (job_id bigint, note text)")
    seen: list[str] = []

    @pgjobs_app.middleware
    def around(job: pgjobs.JobContext) -> Iterator[None]:
        seen.append(f"before {job.task}")
        yield
        seen.append(f"after {job.task}")

    @pgjobs_app.task(name="book")
    def book(note: str) -> dict[str, Any]:
        job = pgjobs.current_job()
        job.set_progress(50, "half way")
        # The drain's lease is an hour long; touch() sets it to two minutes from now.
        assert job.touch(120) < job.job.lease_expires_at - timedelta(minutes=30)
        with job.transaction() as conn:
            conn.execute("INSERT INTO ledger VALUES (%s, %s)", (job.id, note))
        return {"id": job.id, "attempt": job.attempt}

    job = pgjobs_app.enqueue("book", {"note": "paid"})
    [run] = drain(pgjobs_app)
    assert (run.outcome, run.result) == ("succeeded", {"id": job.id, "attempt": 1})
    assert seen == ["before book", "after book"]
    # Committed in the handler's transaction, with the job's success.
    assert pgjobs_conn.execute("SELECT job_id, note FROM ledger").fetchall() == [(job.id, "paid")]
    assert run.job.progress is not None and float(run.job.progress) == 100.0


def test_follow_ups_dependents_and_lock_keys_run_in_the_same_drain(
    pgjobs_app: pgjobs.App,
) -> None:
    @pgjobs_app.task(name="step")
    async def step(name: str) -> str:
        if name == "a":
            pgjobs.current_job().enqueue("step", {"name": "a-child"})
        return name

    a = pgjobs_app.enqueue("step", {"name": "a"})
    pgjobs_app.enqueue("step", {"name": "after-a"}, depends_on=[a.id])
    pgjobs_app.enqueue("step", {"name": "k1"}, lock_key="k")
    pgjobs_app.enqueue("step", {"name": "k2"}, lock_key="k")
    runs = drain(pgjobs_app)
    # Released jobs keep the not_before of their enqueue, earlier than the follow-up's.
    assert [r.result for r in runs] == ["a", "after-a", "k1", "k2", "a-child"]
    assert runs[-1].parent_id == a.id


def test_a_failure_is_retried_later_or_at_once_with_retries(pgjobs_app: pgjobs.App) -> None:
    @pgjobs_app.task(name="flaky", max_attempts=3, retry=LATER)
    def flaky(succeed_on: int) -> int:
        attempt = pgjobs.current_job().attempt
        if attempt < succeed_on:
            raise ValueError(f"attempt {attempt}")
        return attempt

    waits = pgjobs_app.enqueue("flaky", {"succeed_on": 2})
    [run] = drain(pgjobs_app)
    assert (run.outcome, run.status, run.error_line) == (
        "retried",
        "queued",
        "ValueError: attempt 1",
    )
    assert run.not_before is not None and run.not_before > run.job.created_at
    assert drain(pgjobs_app) == []  # its backoff is not waited for
    assert pgjobs_app.get(waits.id).status == "queued"

    good = pgjobs_app.enqueue("flaky", {"succeed_on": 3})
    bad = pgjobs_app.enqueue("flaky", {"succeed_on": 9})
    runs = drain(pgjobs_app, retries=True)
    assert [(r.id, r.attempt, r.outcome) for r in runs] == [
        (good.id, 1, "retried"),
        (bad.id, 1, "retried"),
        (good.id, 2, "retried"),
        (bad.id, 2, "retried"),
        (good.id, 3, "succeeded"),
        (bad.id, 3, "failed"),
    ]
    assert "Traceback" in (runs[-1].error or "") and runs[-1].error_line == "ValueError: attempt 3"


def test_outcome_signals_and_unknown_tasks(pgjobs_app: pgjobs.App) -> None:
    @pgjobs_app.task(name="signal")
    def signal(kind: str) -> None:
        if kind == "snooze":
            raise pgjobs.Snooze("1h")
        if kind == "fail":
            raise pgjobs.Fail("no such customer")
        raise pgjobs.Cancel("not needed any more")

    for kind in ("snooze", "fail", "cancel"):
        pgjobs_app.enqueue("signal", {"kind": kind})
    runs = drain(pgjobs_app)
    assert [(r.task, r.outcome, r.status.value) for r in runs] == [
        ("signal", "snoozed", "queued"),
        ("signal", "failed", "failed"),
        ("signal", "cancelled", "cancelled"),
    ]
    assert runs[0].job.attempts == 0  # a snooze gives the attempt back
    assert runs[1].error_line == "Fail: no such customer"
    # A task the App does not know is retried with the default backoff, as by a worker (a
    # slow machine may see that short backoff expire, and the job run again, in the drain).
    unknown = pgjobs_app.enqueue("nobody.knows")
    runs = drain(pgjobs_app)
    assert {(r.id, r.outcome) for r in runs} == {(unknown.id, "retried")}
    assert "no task named 'nobody.knows'" in runs[0].error_line


def test_scheduled_runs_delayed_jobs_and_snoozes_now(pgjobs_app: pgjobs.App) -> None:
    snoozed: set[int] = set()

    @pgjobs_app.task(name="later")
    def later(n: int) -> int:
        if n == 1 and n not in snoozed:
            snoozed.add(n)
            raise pgjobs.Snooze("1h")
        return n

    pgjobs_app.enqueue("later", {"n": 1})
    pgjobs_app.enqueue("later", {"n": 2}, delay="2h")
    assert [r.outcome for r in drain(pgjobs_app)] == ["snoozed"]
    runs = drain(pgjobs_app, scheduled=True)
    assert sorted((r.args["n"], r.outcome) for r in runs) == [(1, "succeeded"), (2, "succeeded")]


def test_a_queue_or_a_list_of_queues(pgjobs_app: pgjobs.App) -> None:
    @pgjobs_app.task(name="where")
    def where() -> str:
        return pgjobs.current_job().queue

    for queue in ("a", "b", "c", "b"):
        pgjobs_app.enqueue("where", queue=queue)
    assert [r.result for r in drain(pgjobs_app, "b")] == ["b", "b"]
    assert [r.result for r in drain(pgjobs_app, ["c", "zzz"])] == ["c"]
    assert [r.result for r in drain(pgjobs_app)] == ["a"]
    with pytest.raises(pgjobs.InvalidInput, match="a list of queue names"):
        drain(pgjobs_app, [])
    with pytest.raises(pgjobs.InvalidInput, match="queue name"):
        drain(pgjobs_app, "no spaces allowed")


def test_a_paused_queue_is_left_alone(pgjobs_app: pgjobs.App, pgjobs_conn: Conn) -> None:
    @pgjobs_app.task(name="noop")
    def noop() -> None:
        return None

    job = pgjobs_app.enqueue("noop", queue="held")
    queue_control.set_paused(pgjobs_conn, pgjobs_app.schema, "held", True)
    assert drain(pgjobs_app) == []
    queue_control.set_paused(pgjobs_conn, pgjobs_app.schema, "held", False)
    assert [r.id for r in drain(pgjobs_app)] == [job.id]


def test_batch_tasks_get_their_jobs_together(pgjobs_app: pgjobs.App) -> None:
    batches: list[list[int]] = []

    @pgjobs_app.task(name="index", batch_size=2)
    def index(jobs: list[pgjobs.JobContext]) -> list[int]:
        batches.append([job.args["n"] for job in jobs])
        return [job.args["n"] * 10 for job in jobs]

    for n in (1, 2, 3):
        pgjobs_app.enqueue("index", {"n": n})
    runs = drain(pgjobs_app)
    assert batches == [[1, 2], [3]]
    assert [(r.args["n"], r.result) for r in runs] == [(1, 10), (2, 20), (3, 30)]


def test_a_handler_that_enqueues_itself_for_ever_fails_the_drain(
    pgjobs_app: pgjobs.App,
) -> None:
    @pgjobs_app.task(name="again")
    def again(n: int) -> int:
        pgjobs.current_job().enqueue("again", {"n": n + 1})
        return n

    pgjobs_app.enqueue("again", {"n": 0})
    with pytest.raises(DrainIncomplete) as failure:
        drain(pgjobs_app, max_jobs=5)
    assert str(failure.value) == (
        "drain stopped after 5 jobs (max_jobs) with 1 still ready: does a handler enqueue "
        f"jobs for ever? (the last run: {failure.value.runs[-1]!r})"
    )
    assert [r.result for r in failure.value.runs] == [0, 1, 2, 3, 4]


def test_exactly_max_jobs_with_nothing_left_is_not_a_failure(pgjobs_app: pgjobs.App) -> None:
    @pgjobs_app.task(name="once")
    def once() -> None:
        return None

    pgjobs_app.enqueue("once")
    pgjobs_app.enqueue("once")
    assert len(drain(pgjobs_app, max_jobs=2)) == 2


def test_a_handler_that_never_returns_fails_the_drain_at_its_timeout(
    pgjobs_app: pgjobs.App,
) -> None:
    never = threading.Event()

    @pgjobs_app.task(name="stuck")
    async def stuck() -> None:
        await asyncio.Event().wait()  # nothing ever sets it

    @pgjobs_app.task(name="stuck_sync")
    def stuck_sync() -> None:
        never.wait(30)  # released at the end of the test, so that the thread ends

    job = pgjobs_app.enqueue("stuck")
    with pytest.raises(DrainIncomplete, match=rf"timed out after 2s \(timeout\) while job #{job.id} \(stuck\) was running"):  # fmt: skip
        drain(pgjobs_app, timeout=2)
    after = pgjobs_app.get(job.id)
    assert (after.status, after.error) == ("failed", "drain timed out after 2s (timeout)")

    sync_job = pgjobs_app.enqueue("stuck_sync")
    try:
        with pytest.raises(DrainIncomplete, match=rf"job #{sync_job.id} \(stuck_sync\)"):
            drain(pgjobs_app, timeout=2)
    finally:
        never.set()
    assert pgjobs_app.get(sync_job.id).status == "failed"


def test_the_async_twin_runs_in_the_callers_loop(pgjobs_app: pgjobs.App) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    @pgjobs_app.task(name="where")
    async def where() -> str:
        loops.append(asyncio.get_running_loop())
        return "here"

    async def scenario() -> tuple[list[str], asyncio.AbstractEventLoop]:
        await pgjobs_app.enqueue_async("where")
        runs = await drain_async(pgjobs_app)
        await pgjobs_app.close_async()
        return [r.result for r in runs], asyncio.get_running_loop()

    results, loop = asyncio.run(scenario())
    assert results == ["here"] and loops == [loop]


def test_misuse_gets_one_clear_line(pgjobs_app: pgjobs.App) -> None:
    with pytest.raises(pgjobs.InvalidInput, match=r"^drain: this App has no tasks registered"):
        drain(pgjobs_app)

    @pgjobs_app.task(name="noop")
    def noop() -> None:
        return None

    async def inside_a_loop() -> None:
        drain(pgjobs_app)

    with pytest.raises(pgjobs.InvalidInput, match=r"use `await drain_async\(\.\.\.\)` there"):
        asyncio.run(inside_a_loop())
    with pytest.raises(pgjobs.InvalidInput, match="max_jobs must be at least 1"):
        drain(pgjobs_app, max_jobs=0)
    with pytest.raises(pgjobs.InvalidInput, match="timeout must be a positive number"):
        drain(pgjobs_app, timeout=0)
