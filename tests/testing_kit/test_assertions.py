"""enqueued_jobs(), assert_enqueued(), assert_not_enqueued(): subset matching of arguments
in their stored (JSON) form, filters, counts, and messages that show what the database holds;
bind_app() pointing an App at a test database and back."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs.testing import assert_enqueued, assert_not_enqueued, bind_app, enqueued_jobs

Conn = psycopg.Connection[Any]


@pytest.fixture
def app(pgjobs_app: pgjobs.App) -> pgjobs.App:
    @pgjobs_app.task(name="emails.send", queue="emails")
    def send(to: str, subject: str = "Welcome") -> None:
        return None

    @pgjobs_app.task(name="invoices.issue")
    def issue(customer: int, amount: Any, due: Any = None) -> None:
        return None

    return pgjobs_app


def test_arguments_match_as_a_subset_in_their_stored_form(app: pgjobs.App) -> None:
    send = app.tasks["emails.send"]
    first = send.enqueue(to="a@example.com", subject="Hi")
    due = datetime(2026, 12, 1, 9, 30, tzinfo=timezone.utc)
    invoice = app.enqueue("invoices.issue", {"customer": 7, "amount": Decimal("12.30"), "due": due})
    assert [j.id for j in assert_enqueued(app, send, {"to": "a@example.com"})] == [first.id]
    assert [j.id for j in assert_enqueued(app, "invoices.issue", {"due": due})] == [invoice.id]
    assert_enqueued(app, "invoices.issue", {"amount": Decimal("12.30"), "customer": 7})
    assert_not_enqueued(app, "invoices.issue", {"amount": "12.3"})  # stored as "12.30"
    assert_not_enqueued(app, send, {"to": "a@example.com", "cc": None})  # a key it lacks
    [job] = assert_enqueued(app, args={"customer": 7})  # any task
    assert job.app is app and job.refresh().id == invoice.id


def test_filters_counts_and_statuses(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    for to in ("a", "b", "a"):
        app.enqueue("emails.send", {"to": f"{to}@example.com"})
    app.enqueue("emails.send", {"to": "c@example.com"}, queue="bulk")
    assert len(assert_enqueued(app, "emails.send", {"to": "a@example.com"}, count=2)) == 2
    assert_enqueued(app, "emails.send", queue="bulk", count=1)
    assert_enqueued(app, "emails.send", queue="emails", count=3)
    assert_not_enqueued(app, "invoices.issue")
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'cancelled' WHERE queue = 'bulk'")
    assert_not_enqueued(app, queue="bulk")
    assert_enqueued(app, queue="bulk", status="cancelled")
    assert len(enqueued_jobs(app, status=["queued", "cancelled"])) == 4
    assert len(enqueued_jobs(app, status=None)) == 4
    # Read through a plain connection too (SQL producers, other services).
    assert [j.args["to"] for j in enqueued_jobs(pgjobs_conn, "emails.send")] == [
        "a@example.com", "b@example.com", "a@example.com",
    ]  # fmt: skip


def test_a_failed_expectation_shows_what_was_enqueued(app: pgjobs.App) -> None:
    with pytest.raises(AssertionError) as nothing:
        assert_enqueued(app, "emails.send")
    assert str(nothing.value) == (
        "expected a job of emails.send, status queued; found 0. No job was enqueued at all."
    )

    app.enqueue("emails.send", {"to": "a@example.com"})
    app.enqueue("invoices.issue", {"customer": 7, "amount": 5}, queue="billing")
    with pytest.raises(AssertionError) as wrong:
        assert_enqueued(app, "emails.send", {"to": "b@example.com"}, queue="emails")
    assert str(wrong.value) == (
        'expected a job of emails.send with args including {"to": "b@example.com"} in queue '
        "emails, status queued; found 0. The database holds 2 job(s):\n"
        '  #1 emails.send args={"to": "a@example.com"} queue=emails status=queued\n'
        '  #2 invoices.issue args={"amount": 5, "customer": 7} queue=billing status=queued'
    )
    with pytest.raises(AssertionError, match=r"^expected 2 job\(s\) of emails.send, status queued; found 1\."):  # fmt: skip
        assert_enqueued(app, "emails.send", count=2)
    with pytest.raises(AssertionError) as unexpected:
        assert_not_enqueued(app, "invoices.issue")
    assert str(unexpected.value) == (
        "expected no job of invoices.issue, status queued; found 1:\n"
        '  #2 invoices.issue args={"amount": 5, "customer": 7} queue=billing status=queued'
    )


def test_a_long_history_is_cut_and_a_status_mismatch_is_pointed_out(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    app.enqueue_many(
        [{"task": "emails.send", "args": {"to": f"{n}@example.com"}} for n in range(30)]
    )
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded' WHERE id = 30")
    with pytest.raises(AssertionError) as failure:
        assert_enqueued(app, "emails.send", {"to": "29@example.com"})
    message = str(failure.value)
    assert "The database holds 30 job(s):\n  ... 10 older ones, then:\n  #11 emails.send" in message
    assert len(re.findall(r"^  #\d+ ", message, re.MULTILINE)) == 20
    assert message.endswith(
        "(matching job(s) exist with status succeeded: pass status=None to match any status)"
    )


def test_misuse_gets_one_clear_line(app: pgjobs.App) -> None:
    with pytest.raises(pgjobs.InvalidInput, match="unknown status"):
        enqueued_jobs(app, status="done")
    with pytest.raises(pgjobs.InvalidInput, match="count: a number of jobs"):
        assert_enqueued(app, count=-1)
    with pytest.raises(pgjobs.InvalidInput, match="args: a mapping"):
        assert_enqueued(app, "emails.send", ["a@example.com"])  # type: ignore[arg-type]
    with pytest.raises(pgjobs.InvalidInput, match="an App or a psycopg Connection"):
        enqueued_jobs("postgresql://somewhere")  # type: ignore[arg-type]


def test_bind_app_points_an_app_at_a_database_and_back(pgjobs_dsn: str, pgjobs_conn: Conn) -> None:
    app = pgjobs.App("host=127.0.0.1 port=1 dbname=nowhere", schema="elsewhere")

    @app.task(name="emails.send", queue="emails", priority=3)
    def send(to: str) -> None:
        return None

    original = app.settings
    with bind_app(app, pgjobs_dsn, schema="pgjobs") as bound:
        assert bound is app and app.schema == "pgjobs"
        # The tasks were published: a plain SQL insert naming the task gets its defaults.
        pgjobs_conn.execute("INSERT INTO pgjobs.jobs (task, args) VALUES ('emails.send', '{}')")
        [job] = enqueued_jobs(app)
        assert (job.queue, job.priority) == ("emails", 3)
    assert app.settings is original and app._pool is None and app._dsn is None
