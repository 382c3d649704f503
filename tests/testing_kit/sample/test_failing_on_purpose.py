"""These tests fail on purpose: the kit's own test checks what a user sees when an
expectation is not met (the assertion names what the database holds)."""

from __future__ import annotations

from shop_jobs import send_email, sign_up

import pgjobs
from pgjobs.testing import assert_enqueued, drain


def test_a_misspelt_address(pgjobs_app: pgjobs.App) -> None:
    sign_up("a@example.com")
    assert_enqueued(pgjobs_app, send_email, {"to": "a@exmaple.com"})


def test_a_job_that_already_ran(pgjobs_app: pgjobs.App) -> None:
    sign_up("a@example.com")
    drain(pgjobs_app)
    assert_enqueued(pgjobs_app, send_email, {"to": "a@example.com"})
