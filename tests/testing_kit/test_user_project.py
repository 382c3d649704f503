"""A sample user project (tests/testing_kit/sample) tested the way its authors would: plain
pytest in its own directory, pgjobs' plugin loaded from its entry point, its fixtures
overridden in the project's conftest.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def test_the_sample_projects_tests_pass_and_failures_say_what_was_enqueued(
    user_project: Callable[..., pytest.RunResult],
) -> None:
    result = user_project(None, "-rf")
    result.assert_outcomes(passed=8, failed=2)
    output = result.stdout.str()
    # A misspelt argument: the message names the expectation and lists what is there.
    assert (
        'expected a job of emails.send with args including {"to": "a@exmaple.com"}, '
        "status queued; found 0." in output
    )
    assert 'emails.send args={"to": "a@example.com"} queue=emails status=queued' in output
    # A job that already ran: the status is what differs, and the message says so.
    assert "matching job(s) exist with status succeeded: pass status=None" in output
    # Each test had a database of its own: job ids start at 1 in both. Counted in the
    # failure reports only: pytest 9 repeats whole messages in the short summary.
    failure_reports = output.split("short test summary info")[0]
    assert failure_reports.count("#1 emails.send args=") == 2
    # pytest shows the failing line of the test, not the kit's insides.
    assert "pgjobs/testing/assertions.py" not in output
