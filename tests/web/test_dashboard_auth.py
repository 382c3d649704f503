"""With PGJOBS_API_TOKENS set, a browser logs in with a token and gets a session cookie;
API clients keep their bearer tokens and their 401s; a session opens the pages and the
event streams, changes state only through the dashboard's CSRF-checked forms, and ends
at logout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from test_dashboard_support import enqueue, follow, get_page, parse, status_of, submit
from web_support import OTHER_TOKEN, TOKEN, LiveServer, SseReader

import pgjobs
from pgjobs.web import create_app
from pgjobs.web.dashboard.security import SESSION_COOKIE, SessionCookies

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def guarded(serve: Callable[..., LiveServer]) -> LiveServer:
    return serve(tokens=(TOKEN, OTHER_TOKEN))


def open_browser(server: LiveServer) -> httpx.Client:
    """A browser: no Authorization header, cookies kept, HTML asked for."""
    return httpx.Client(base_url=server.url, headers=HTML, timeout=15)


@pytest.fixture
def browser(guarded: LiveServer) -> Iterator[httpx.Client]:
    with open_browser(guarded) as http:
        yield http


def log_in(http: httpx.Client, token: str = TOKEN, wanted: str = "/") -> httpx.Response:
    form = get_page(http, f"/ui/login?next={wanted}").form("/ui/login")
    return submit(http, form, token=token)


def test_login_flow(browser: httpx.Client) -> None:
    answer = browser.get("/ui/failed?queue=a")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Ffailed%3Fqueue%3Da"
    login = get_page(browser, answer.headers["location"])
    form = login.form("/ui/login")
    assert form.fields["next"] == "/ui/failed?queue=a" and "token" in login.html

    refused = submit(browser, form, expect=401, token="not-the-token-at-all")
    again = parse(refused.text)
    assert "not one of the server's tokens" in again.text and again.form("/ui/login")
    assert SESSION_COOKIE not in browser.cookies

    accepted = submit(browser, form, token=TOKEN)
    assert accepted.headers["location"] == "/ui/failed?queue=a"
    cookie = accepted.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/", "max-age=28800"} <= flags
    assert "secure" not in flags  # plain http here: see test_cookies_over_https
    for path in ("/", "/ui/jobs", "/ui/failed", "/ui/schedules", "/ui/workers"):
        page = get_page(browser, path)
        assert page.form("/ui/logout"), path


def test_api_clients_keep_their_401(guarded: LiveServer) -> None:
    with guarded.client() as http:
        for path in ("/", "/ui/jobs", "/jobs", "/queues"):
            answer = http.get(path)  # Accept: */*, as API clients send
            assert answer.status_code == 401, path
            assert answer.json()["error"] == "unauthorized"
        assert http.get("/jobs", headers=HTML).status_code == 401, "the API never redirects"
        assert http.get("/ui/login").status_code == 200, "the form itself needs nothing"
        assert http.get("/healthz").status_code == 200
    with guarded.client(TOKEN) as api:
        assert api.get("/").status_code == 200, "a bearer token opens the pages too"


def test_a_session_opens_pages_and_streams_but_not_api_writes(
    guarded: LiveServer, browser: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    with guarded.client(TOKEN) as api:
        job_id = enqueue(api)
    log_in(browser)
    assert browser.get(f"/jobs/{job_id}").json()["status"] == "queued"
    # The job page's EventSource sends the cookie, and gets its stream.
    with browser.stream("GET", f"/jobs/{job_id}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        first = SseReader(stream.iter_lines()).next()
        assert first is not None and first.job["id"] == job_id
    # A form of a sibling site that gets the cookie sent cannot use the JSON API with it.
    for method, path in (("POST", f"/jobs/{job_id}/cancel"), ("POST", "/jobs")):
        answer = browser.request(method, path, json={"task": "t.x"})
        assert answer.status_code == 403, path
        assert answer.json()["error"] == "forbidden"
    assert status_of(conn, job_id) == "queued"


def test_session_forms_carry_a_token_bound_to_the_session(
    guarded: LiveServer, browser: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    with guarded.client(TOKEN) as api:
        job_id = enqueue(api, queue="emails")
    log_in(browser)
    mine = get_page(browser, f"/ui/jobs/{job_id}").form("/ui/actions/cancel", id=str(job_id))
    with open_browser(guarded) as other:
        log_in(other, OTHER_TOKEN)
        theirs = get_page(other, f"/ui/jobs/{job_id}").form("/ui/actions/cancel")
    assert mine.fields["csrf"] and mine.fields["csrf"] != theirs.fields["csrf"]
    for csrf in (None, "", theirs.fields["csrf"]):
        answer = submit(browser, mine, expect=403, csrf=csrf)
        assert "nothing was changed" in answer.text
    assert status_of(conn, job_id) == "queued"
    page = follow(browser, submit(browser, mine))
    assert "Cancelled 1 job(s)" in page.text
    error = conn.execute("SELECT error FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert error == ("cancelled from the dashboard (token#1 session)",)


def test_logout(browser: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    log_in(browser)
    overview = get_page(browser, "/")
    logout = overview.form("/ui/logout")
    submit(browser, logout, expect=403, csrf=None)
    assert browser.get("/").status_code == 200, "still logged in"
    answer = submit(browser, logout)
    assert answer.headers["location"] == "/ui/login"
    assert (
        'pgjobs_session=""' in answer.headers["set-cookie"]
        or "Max-Age=0" in answer.headers["set-cookie"]
    )
    assert SESSION_COOKIE not in browser.cookies
    assert browser.get("/").status_code == 303
    # A button of a page left open: back to the login, nothing done.
    conn.execute("INSERT INTO pgjobs.queues (name) VALUES ('emails')")
    pause = get_page(browser, answer.headers["location"])  # the login page
    assert not pause.has_form("/ui/actions/pause")
    pressed = browser.post("/ui/actions/pause", data={"queue": "emails", "csrf": "x"})
    assert pressed.status_code == 303 and pressed.headers["location"] == "/ui/login?next=%2F"
    paused = conn.execute("SELECT paused FROM pgjobs.queues WHERE name = 'emails'").fetchone()
    assert paused == (False,)


def test_forged_or_expired_sessions_go_back_to_the_login(browser: httpx.Client) -> None:
    expired = SessionCookies([TOKEN]).issue(1, now=0)
    forged = SessionCookies(["not-a-configured-token-0123"]).issue(1)
    for value in (expired, forged, "v1.9999999999.abc.def"):
        browser.cookies.set(SESSION_COOKIE, value)
        assert browser.get("/ui/jobs").status_code == 303
        assert browser.get("/jobs").status_code == 401


def test_no_login_without_tokens(client: httpx.Client) -> None:
    answer = client.get("/ui/login?next=/ui/jobs")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/jobs"
    page = get_page(client, "/")
    assert not page.has_form("/ui/logout")


def test_cookies_over_https_and_under_a_prefix(pgjobs_dsn: str) -> None:
    """Mounted at /pgjobs behind https: cookies are Secure and scoped to the prefix, and
    every redirect stays under it."""
    outer = FastAPI()
    app = pgjobs.App(pgjobs_dsn)
    outer.mount("/pgjobs", create_app(app, tokens=[TOKEN]))

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=outer)
        async with httpx.AsyncClient(
            transport=transport, base_url="https://example.com", headers=HTML
        ) as http:
            first = await http.get("/pgjobs/ui/jobs")
            assert first.status_code == 303
            assert first.headers["location"] == "/pgjobs/ui/login?next=%2Fui%2Fjobs"
            login = await http.get(first.headers["location"])
            form = parse(login.text).form("/pgjobs/ui/login")
            assert form.action == "/pgjobs/ui/login"
            answer = await http.post(form.action, data={**form.fields, "token": TOKEN})
            assert answer.status_code == 303 and answer.headers["location"] == "/pgjobs/ui/jobs"
            flags = {p.strip().lower() for p in answer.headers["set-cookie"].split(";")}
            assert {"secure", "httponly", "samesite=strict", "path=/pgjobs"} <= flags
            page = await http.get("/pgjobs/ui/jobs")
            assert page.status_code == 200
            assert "/pgjobs/ui/failed" in parse(page.text).links
        await app.close_async()

    asyncio.run(scenario())
