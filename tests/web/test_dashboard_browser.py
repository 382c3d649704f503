"""The dashboard in a real (headless) browser, end to end: what the HTML-reading tests
cannot see. A button's form posts with the browser's own cookies and ``Sec-Fetch-Site``
header, the job page's script follows its job over an ``EventSource`` and reloads when it
ends, an error message full of markup stays text, and the login form opens a session
whose forms carry their CSRF token.

The browser is the system's Chromium (never downloaded): without it these tests are
skipped, unless ``PGJOBS_REQUIRE_BROWSER=1`` (CI) makes its absence a failure. Every wait
is one of Playwright's bounded, auto-retrying expectations or :func:`wait_for`: no sleep."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from browser_support import (
    FLAKY_TASK,
    WAIT_SECONDS,
    Tab,
    expect,
    find_chromium,
    flaky_worker,
    open_tab,
)
from playwright.sync_api import Browser, Locator, Page, sync_playwright
from test_dashboard_support import enqueue, failed, status_of
from web_support import TOKEN, LiveServer

from pgjobs.testing import wait_for

#: Markup that would run if the dashboard wrote it into a page as it is.
SCRIPT_ERROR = "RuntimeError: <script>window.__pwned=1</script>"
IMG_ERROR = '<img src="x" onerror="window.__pwned=2">'
SCRIPT_ARG = "</pre><script>window.__pwned=3</script>"


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium; the one place that decides what its absence means: a skip
    on a developer's machine, a failure where ``PGJOBS_REQUIRE_BROWSER=1`` says the browser
    tests must run (CI), so that they cannot silently stop running there."""
    found = find_chromium()
    if found is None:
        reason = (
            "no system Chromium (`chromium` on PATH): the dashboard's browser tests need it "
            "(apt-get install chromium; never `playwright install`)"
        )
        if os.environ.get("PGJOBS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PGJOBS_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """One headless browser for the module (starting it is the slow part); each test gets
    its own context. ``--no-sandbox``: the tests may run as root, where Chromium's sandbox
    refuses to start."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox"], headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    """A fresh context per test: no cookie (session, CSRF, report) carries over."""
    with open_tab(browser) as opened:
        yield opened


def row_of(page: Page, job_id: int) -> Locator:
    """The table row whose link is job ``#job_id``."""
    link = page.get_by_role("link", name=f"#{job_id}", exact=True)
    return page.locator("tr").filter(has=link)


def test_retry_a_failed_job_and_watch_it_succeed(
    server: LiveServer,
    client: httpx.Client,
    conn: psycopg.Connection[Any],
    pgjobs_dsn: str,
    tab: Tab,
) -> None:
    """From the overview to the failed job's page, its error shown; Retry pressed in the
    browser (the double-submit CSRF cookie of a server without tokens); a real worker runs
    the job again; the page follows it live over its event stream (running), then reloads
    by itself when it ends and shows the result the server rendered."""
    page = tab.page
    with flaky_worker(pgjobs_dsn) as flaky:
        job_id = enqueue(client, FLAKY_TASK, args={"note": "browser"}, max_attempts=1)
        wait_for(
            lambda: status_of(conn, job_id) == "failed",
            timeout=WAIT_SECONDS,
            message=lambda: f"the worker did not fail job {job_id}: {status_of(conn, job_id)}",
        )

        page.goto(server.url + "/")
        expect(page.get_by_role("heading", name="Newest failures")).to_be_visible()
        expect(row_of(page, job_id)).to_contain_text("RuntimeError: the flag is unset (browser)")
        row_of(page, job_id).get_by_role("link", name=f"#{job_id}", exact=True).click()

        expect(page).to_have_url(f"{server.url}/ui/jobs/{job_id}")
        expect(page.locator("#job-status")).to_have_text("failed")
        expect(page.get_by_role("heading", name="Error", exact=True)).to_be_visible()
        expect(page.locator("pre.error-box")).to_contain_text(
            "RuntimeError: the flag is unset (browser)"
        )

        flaky.fixed.set()  # the next run succeeds, once released
        page.get_by_role("button", name="Retry", exact=True).click()

        # Back on the job's page (post/redirect/get), with the action's report.
        expect(page).to_have_url(f"{server.url}/ui/jobs/{job_id}")
        expect(page.get_by_role("status")).to_contain_text("Retried 1 job(s)")
        # The run waits for the release, so the page was rendered unfinished (queued, or
        # running already) and runs its script: "live" once its event stream delivers.
        expect(page.locator("#job-live"), "the job page's event stream").to_have_text("live")
        expect(page.locator("#job-status")).to_have_text("running")

        flaky.release.set()
        expect(page.locator("#job-status"), "the end, followed live").to_have_text("succeeded")
        # Only the server renders the result: the page reloaded itself at the end (and the
        # report, shown once, is gone).
        result = page.locator("#job pre").filter(has_text='"fixed": "browser"')
        expect(result, "the result, after the page reloaded itself").to_be_visible()
        expect(page.get_by_role("status")).to_have_count(0)
        expect(page.locator("#job-live")).to_have_text("")
    assert status_of(conn, job_id) == "succeeded"
    tab.assert_clean()


def test_markup_in_an_error_is_shown_as_text(
    server: LiveServer,
    client: httpx.Client,
    conn: psycopg.Connection[Any],
    browser: Browser,
) -> None:
    """A ``<script>`` (and an ``<img onerror>``) in an error message and in the arguments
    is text on every page that shows them, and never runs. The content security policy
    would block inline scripts anyway, so this browser ignores it: what is tested is the
    escaping itself (the policy is checked to be sent, separately)."""
    error = f"Traceback (most recent call last):\n  {IMG_ERROR}\n{SCRIPT_ERROR}"
    job_id = failed(conn, client, error=error, args={"html": SCRIPT_ARG})

    with open_tab(browser, bypass_csp=True) as xss:
        page = xss.page
        answer = page.goto(server.url + "/")
        assert answer is not None
        policy = answer.headers.get("content-security-policy", "")
        assert "default-src 'none'" in policy, f"the overview's policy: {policy!r}"
        expect(row_of(page, job_id).locator("code")).to_have_text(SCRIPT_ERROR)

        page.goto(server.url + "/ui/failed")
        row = row_of(page, job_id)
        row.locator("summary").click()  # open the <details> with the whole error
        expect(row.locator("details pre")).to_be_visible()
        expect(row.locator("details pre")).to_have_text(error)

        answer = page.goto(f"{server.url}/ui/jobs/{job_id}")
        assert answer is not None
        policy = answer.headers.get("content-security-policy", "")
        assert "default-src 'none'" in policy and "script-src" not in policy, policy
        expect(page.locator("pre.error-box")).to_have_text(error)
        expect(page.locator("pre.error-box")).to_be_visible()
        expect(page.locator("#job pre").filter(has_text="window.__pwned=3")).to_contain_text(
            SCRIPT_ARG
        )
        assert page.locator("body script, body img").count() == 0, page.content()
        assert page.evaluate("typeof window.__pwned") == "undefined", "the markup ran"
        xss.assert_clean()


def test_log_in_then_retry_with_the_sessions_csrf_token(
    serve: Callable[..., LiveServer], conn: psycopg.Connection[Any], tab: Tab
) -> None:
    """With API tokens, a page sends the browser to the login form; a wrong token is
    refused there, the right one opens a session and comes back to the page. The Retry
    button's form carries the session's CSRF token and works; the job's page gets its event
    stream with the session cookie alone; logging out ends the session."""
    guarded = serve(tokens=(TOKEN,))
    with guarded.client(TOKEN) as api:
        job_id = failed(conn, api, error="ValueError: try again")
    page = tab.page

    page.goto(guarded.url + "/ui/failed")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2Fui%2Ffailed$"))
    page.get_by_label("API token").fill("not-the-token-0123456789")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not one of the server's tokens")

    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{guarded.url}/ui/failed")
    expect(page.get_by_role("heading", name="Failed jobs")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(row_of(page, job_id)).to_contain_text("ValueError: try again")
    csrf = row_of(page, job_id).locator("input[name=csrf]")
    expect(csrf).not_to_have_value("")

    row_of(page, job_id).get_by_role("button", name="Retry", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Retried 1 job(s)")
    assert status_of(conn, job_id) == "queued"

    page.goto(f"{guarded.url}/ui/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("queued")
    expect(page.locator("#job-live")).to_have_text("live")

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{guarded.url}/ui/login")
    page.goto(guarded.url + "/")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=%2F$"))
    tab.assert_clean()
