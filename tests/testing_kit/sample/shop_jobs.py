"""A small application that uses pgjobs, as a user would write it: the testing kit's own
tests copy this folder into a fresh directory and run its tests with pytest, in a
subprocess, so that pgjobs' pytest plugin is loaded from its entry point as for a user."""

from __future__ import annotations

from collections.abc import Iterator

import pgjobs

app = pgjobs.App()  # PGJOBS_DSN in production; the tests point it at their own database

#: What the middleware saw, one line per run (a stand-in for error reporting or tracing).
audit_log: list[str] = []


@app.middleware
def audit(job: pgjobs.JobContext) -> Iterator[None]:
    try:
        yield
    except Exception as error:
        audit_log.append(f"{job.task} attempt {job.attempt}: {type(error).__name__}")
        raise
    audit_log.append(f"{job.task} attempt {job.attempt}: ok")


@app.task(name="emails.send", queue="emails")
def send_email(to: str, subject: str = "Welcome") -> dict[str, str]:
    return {"to": to, "subject": subject}


@app.task(name="payments.charge", max_attempts=3, retry=pgjobs.RetryPolicy.of("30s", "5m"))
def charge(order_id: int, cents: int) -> dict[str, int]:
    if pgjobs.current_job().attempt == 1:  # the gateway is flaky: the first try times out
        raise ConnectionError("the payment gateway timed out")
    return {"order_id": order_id, "charged": cents}


@app.task(name="orders.confirm")
async def confirm_order(order_id: int, email: str) -> str:
    # A follow-up job: written with this job's success, with parent_id set.
    pgjobs.current_job().enqueue(send_email, {"to": email, "subject": f"Order {order_id}"})
    return f"order {order_id} confirmed"


@app.task(name="reports.build", queue="reports")
def build_report(month: str) -> str:
    return f"report {month}"


def sign_up(email: str) -> pgjobs.Job:
    """Application code under test: a new account gets a welcome email."""
    return send_email.enqueue(to=email)
