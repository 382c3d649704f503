"""The sample application's tests, written as a user of pgjobs.testing writes them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import shop_jobs
from shop_jobs import build_report, charge, confirm_order, send_email, sign_up

import pgjobs
from pgjobs.testing import (
    Eager,
    assert_enqueued,
    assert_not_enqueued,
    drain,
    drain_async,
    enqueued_jobs,
)


def test_sign_up_enqueues_a_welcome_email(pgjobs_app: pgjobs.App) -> None:
    sign_up("a@example.com")
    [job] = assert_enqueued(pgjobs_app, send_email, {"to": "a@example.com"}, queue="emails")
    assert job.args == {"to": "a@example.com"}
    assert_not_enqueued(pgjobs_app, send_email, {"to": "b@example.com"})


def test_the_welcome_email_is_sent(pgjobs_app: pgjobs.App) -> None:
    sign_up("a@example.com")
    [run] = drain(pgjobs_app)
    assert run.task == "emails.send"
    assert run.outcome == "succeeded"
    assert run.result == {"to": "a@example.com", "subject": "Welcome"}
    assert shop_jobs.audit_log == ["emails.send attempt 1: ok"]
    assert enqueued_jobs(pgjobs_app) == []  # nothing left to run


def test_a_charge_that_times_out_is_retried_later(pgjobs_app: pgjobs.App) -> None:
    charge.enqueue(order_id=7, cents=1250)
    [run] = drain(pgjobs_app)
    assert run.outcome == "retried"
    assert run.error_line == "ConnectionError: the payment gateway timed out"
    assert run.not_before is not None and run.not_before > datetime.now(timezone.utc)
    assert shop_jobs.audit_log == ["payments.charge attempt 1: ConnectionError"]


def test_a_charge_succeeds_on_its_second_attempt(pgjobs_app: pgjobs.App) -> None:
    charge.enqueue(order_id=7, cents=1250)
    runs = drain(pgjobs_app, retries=True)
    assert [(r.attempt, r.outcome) for r in runs] == [(1, "retried"), (2, "succeeded")]
    assert runs[-1].result == {"order_id": 7, "charged": 1250}


def test_confirming_an_order_sends_an_email(pgjobs_app: pgjobs.App) -> None:
    order = confirm_order.enqueue(order_id=42, email="c@example.com")
    runs = drain(pgjobs_app)
    assert [(r.task, r.outcome) for r in runs] == [
        ("orders.confirm", "succeeded"),
        ("emails.send", "succeeded"),
    ]
    assert runs[1].parent_id == order.id
    assert runs[1].result == {"to": "c@example.com", "subject": "Order 42"}


def test_draining_one_queue_leaves_the_others(pgjobs_app: pgjobs.App) -> None:
    sign_up("a@example.com")
    build_report.enqueue(month="2026-11")
    assert [r.task for r in drain(pgjobs_app, "reports")] == ["reports.build"]
    assert_enqueued(pgjobs_app, send_email, count=1)


def test_eager_mode_runs_jobs_as_they_are_enqueued(
    pgjobs_app: pgjobs.App, pgjobs_eager: Eager
) -> None:
    job = confirm_order.enqueue(order_id=1, email="d@example.com")
    assert job.status == "succeeded"
    assert job.result == "order 1 confirmed"
    assert [r.task for r in pgjobs_eager.runs] == ["orders.confirm", "emails.send"]


def test_async_code_drains_with_the_async_twin(pgjobs_app: pgjobs.App) -> None:
    async def scenario() -> list[str]:
        await send_email.enqueue_async(to="e@example.com")
        runs = await drain_async(pgjobs_app)
        await pgjobs_app.close_async()
        return [r.outcome for r in runs]

    assert asyncio.run(scenario()) == ["succeeded"]
