"""Eager mode: every enqueue through the App runs its job before returning; jobs enqueued by a
running job are left to the drain under way (never nested); inside the caller's transaction
it refuses with one line; async and bulk enqueues too; the App is left as it was."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

import pgjobs
from pgjobs.testing import assert_enqueued, eager


def test_enqueue_returns_the_finished_job(pgjobs_app: pgjobs.App) -> None:
    @pgjobs_app.task(name="double")
    def double(n: int) -> int:
        return 2 * n

    @pgjobs_app.task(name="broken", max_attempts=2, retry=pgjobs.RetryPolicy.of("1h"))
    def broken() -> None:
        raise ValueError("nope")

    with eager(pgjobs_app) as mode:
        job = double.enqueue(n=21)
        assert (job.status, job.result, job.attempts) == ("succeeded", 42, 1)
        retried = pgjobs_app.enqueue("broken")
        assert retried.status == "queued" and "ValueError: nope" in (retried.error or "")
        later = double.options(delay="1h").enqueue(n=1)
        assert later.status == "queued" and later.attempts == 0  # not due: not run
    assert [(r.task, r.outcome) for r in mode.runs] == [
        ("double", "succeeded"),
        ("broken", "retried"),
    ]
    assert pgjobs_app._eager is None
    assert double.enqueue(n=1).status == "queued"  # eager mode is over

    with eager(pgjobs_app, retries=True):
        failed = pgjobs_app.enqueue("broken")
    assert (failed.status, failed.attempts) == ("failed", 2)
    with pytest.raises(pgjobs.JobFailed, match="ValueError: nope"):
        failed.outcome()


def test_jobs_enqueued_by_a_running_job_run_after_it(pgjobs_app: pgjobs.App) -> None:
    seen: list[tuple[str, str]] = []

    @pgjobs_app.task(name="parent")
    def parent() -> str:
        child = pgjobs_app.enqueue("child", {"parent": pgjobs.current_job().id})
        assert child.status == "queued"  # not run inside its parent
        pgjobs.current_job().enqueue("child", {"parent": pgjobs.current_job().id})
        return "parent done"

    @pgjobs_app.task(name="child")
    async def child(parent: int) -> None:
        seen.append(("child", (await pgjobs_app.get_async(parent)).status.value))
        await pgjobs_app.close_async()

    with eager(pgjobs_app) as mode:
        job = pgjobs_app.enqueue("parent")
    assert job.status == "succeeded"
    assert [r.task for r in mode.runs] == ["parent", "child", "child"]
    assert seen == [("child", "succeeded"), ("child", "succeeded")]


def test_bulk_and_async_enqueues_are_eager_too(pgjobs_app: pgjobs.App) -> None:
    @pgjobs_app.task(name="square")
    async def square(n: int) -> int:
        return n * n

    async def scenario() -> pgjobs.Job:
        with eager(pgjobs_app) as mode:
            job = await square.enqueue_async(n=3)
            await pgjobs_app.enqueue_many_async([square.spec(n=4)])
        await pgjobs_app.close_async()
        assert [r.result for r in mode.runs] == [9, 16]
        return job

    assert asyncio.run(scenario()).result == 9
    with eager(pgjobs_app) as mode:
        pgjobs_app.enqueue_many([square.spec(n=n) for n in (5, 6)])
    assert [r.result for r in mode.runs] == [25, 36]


def test_a_sync_enqueue_from_async_code_runs_on_a_loop_of_its_own(
    pgjobs_app: pgjobs.App,
) -> None:
    @pgjobs_app.task(name="noop")
    def noop() -> str:
        return "ran"

    async def scenario() -> pgjobs.Job:
        with eager(pgjobs_app):
            return noop.enqueue()  # blocking, as a sync enqueue in async code always is

    assert asyncio.run(scenario()).result == "ran"


def test_inside_the_callers_transaction_it_refuses(pgjobs_app: pgjobs.App, pgjobs_dsn: str) -> None:
    @pgjobs_app.task(name="noop")
    def noop() -> str:
        return "ran"

    with eager(pgjobs_app), psycopg.connect(pgjobs_dsn) as conn:
        with pytest.raises(pgjobs.InvalidInput, match=r"^eager mode cannot run a job enqueued inside your transaction \(connection=\)"):  # fmt: skip
            noop.options(connection=conn).enqueue()
        conn.rollback()
    assert_enqueued(pgjobs_app, noop, count=0, status=None)

    with eager(pgjobs_app), psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
        job = noop.options(connection=conn).enqueue()  # autocommit: it exists already
    assert job.status == "succeeded"


def test_misuse_gets_one_clear_line(pgjobs_app: pgjobs.App) -> None:
    with (
        pytest.raises(pgjobs.InvalidInput, match=r"^eager: this App has no tasks registered"),
        eager(pgjobs_app),
    ):
        pass

    @pgjobs_app.task(name="noop")
    def noop() -> None:
        return None

    with eager(pgjobs_app):
        with (
            pytest.raises(pgjobs.InvalidInput, match=r"eager mode is already on for this App"),
            eager(pgjobs_app),
        ):
            pass
        assert noop.enqueue().status == "succeeded"  # still on after the refused nesting
    assert pgjobs_app._eager is None
