"""The dashboard's buttons: pause and resume a queue, retry and cancel one job or every job
of a filter (after a confirmation), each reported on the next page; and the CSRF check in
front of all of them (a form without the right token gets 403 and changes nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from test_dashboard_support import (
    enqueue,
    failed,
    follow,
    get_page,
    iter_rows,
    parse,
    status_of,
    submit,
)
from web_support import TOKEN, LiveServer, claim

from pgjobs.web.dashboard import routes
from pgjobs.web.dashboard.security import CSRF_COOKIE


def paused(conn: psycopg.Connection[Any], queue: str) -> bool:
    row = conn.execute("SELECT paused FROM pgjobs.queues WHERE name = %s", (queue,)).fetchone()
    return bool(row and row[0])


def test_pause_and_resume_from_the_overview(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    enqueue(client, queue="emails")
    overview = get_page(client, "/")
    page = follow(client, submit(client, overview.form("/ui/actions/pause", queue="emails")))
    assert "Queue emails paused" in page.text
    assert paused(conn, "emails")
    backlog = conn.execute("SELECT pgjobs.backlog(ARRAY['emails'])").fetchone()
    assert backlog == (0,), "workers see the pause"
    row = next(r for r in page.rows if r and r[0] == "emails")
    assert row[6] == "paused"
    # The report is shown once.
    assert "Queue emails paused" not in get_page(client, "/").text

    page = follow(client, submit(client, page.form("/ui/actions/resume", queue="emails")))
    assert "Queue emails resumed" in page.text
    assert not paused(conn, "emails")


def test_retry_and_cancel_one_job(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    broken = failed(conn, client)
    waiting = enqueue(client)
    busy = enqueue(client)
    claim(conn, busy)

    listing = get_page(client, "/ui/failed")
    retry = listing.form("/ui/actions/retry", id=str(broken))
    page = follow(client, submit(client, retry))
    assert "Retried 1 job(s)" in page.text
    assert status_of(conn, broken) == "queued"
    # The same button pressed again (a stale page): refused, and said so.
    page = follow(client, submit(client, retry))
    assert "Retried 0 job(s)" in page.text and f"#{broken} (it is queued)" in page.text

    job_page = get_page(client, f"/ui/jobs/{waiting}")
    cancel = job_page.form("/ui/actions/cancel", id=str(waiting))
    page = follow(client, submit(client, cancel))
    assert "Cancelled 1 job(s)" in page.text and page.ids["job-status"] == "cancelled"
    page = follow(client, submit(client, cancel))
    assert f"#{waiting} (it already ended cancelled)" in page.text

    page = follow(client, submit(client, get_page(client, f"/ui/jobs/{busy}").form(
        "/ui/actions/cancel", id=str(busy))))  # fmt: skip
    assert "asked 1 running job(s) to stop" in page.text
    row = conn.execute(
        "SELECT status, cancel_requested_at IS NOT NULL, error FROM pgjobs.jobs WHERE id = %s",
        (waiting,),
    ).fetchone()
    assert row == ("cancelled", False, "cancelled from the dashboard (anonymous)")

    missing = submit(client, cancel, id="987654")
    assert "#987654 (no such job)" in follow(client, missing).text


def test_retry_all_failed_of_a_queue(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    mine = [failed(conn, client, queue="a") for _ in range(3)]
    others = [failed(conn, client, queue="b") for _ in range(2)]

    listing = get_page(client, "/ui/failed?queue=a")
    assert [int(r[0][1:]) for r in iter_rows(listing)] == mine[::-1]
    confirm = submit(client, listing.form("/ui/actions/retry", all="1", queue="a"), expect=200)
    question = parse(confirm.text)
    assert "Retry 3 matching job(s)?" in question.text
    assert [status_of(conn, i) for i in mine] == ["failed"] * 3, "nothing before confirming"

    late = failed(conn, client, queue="a")  # fails after the confirmation page was made
    page = follow(client, submit(client, question.form("/ui/actions/retry", confirm="1")))
    assert "Retried 3 job(s)" in page.text
    assert [status_of(conn, i) for i in mine] == ["queued"] * 3
    assert status_of(conn, late) == "failed", "only what was confirmed"
    assert [status_of(conn, i) for i in others] == ["failed"] * 2


def test_cancel_all_queued_of_a_task(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    doomed = [enqueue(client, "t.doomed", queue="q") for _ in range(3)]
    kept = [enqueue(client, "t.kept", queue="q"), enqueue(client, "t.doomed", queue="other")]
    listing = get_page(client, "/ui/jobs?status=queued&queue=q&task=t.doomed")
    question = submit(
        client, listing.form("/ui/actions/cancel", all="1", task="t.doomed"), expect=200
    )
    confirm = parse(question.text)
    assert "Cancel 3 matching job(s)?" in confirm.text
    page = follow(client, submit(client, confirm.form("/ui/actions/cancel", confirm="1")))
    assert "Cancelled 3 job(s)" in page.text
    assert [status_of(conn, i) for i in doomed] == ["cancelled"] * 3
    assert [status_of(conn, i) for i in kept] == ["queued"] * 2


def test_cancel_all_retrying(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    again = [enqueue(client, queue="r") for _ in range(2)]
    fresh = enqueue(client, queue="r")
    conn.execute(
        "UPDATE pgjobs.jobs SET attempts = 1, error = 'TimeoutError' WHERE id = ANY(%s)", (again,)
    )
    listing = get_page(client, "/ui/failed?tab=retrying")
    assert sorted(int(r[0][1:]) for r in iter_rows(listing)) == again
    question = submit(client, listing.form("/ui/actions/cancel", all="1", retrying="1"), expect=200)
    page = follow(
        client, submit(client, parse(question.text).form("/ui/actions/cancel", confirm="1"))
    )
    assert "Cancelled 2 job(s)" in page.text
    assert [status_of(conn, i) for i in again] == ["cancelled"] * 2
    assert status_of(conn, fresh) == "queued"


def test_bulk_actions_need_a_status_they_apply_to(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    failed(conn, client)
    form = get_page(client, "/ui/failed").form("/ui/actions/retry", all="1")
    answer = submit(client, form, expect=422, status="queued")
    assert "retry all: choose jobs by status first (failed or cancelled)" in answer.text


# --- CSRF ---------------------------------------------------------------------------------


def _forms(client: httpx.Client, conn: psycopg.Connection[Any]) -> dict[str, Any]:
    broken = failed(conn, client, queue="emails")
    waiting = enqueue(client, queue="emails")
    failed_page = get_page(client, "/ui/failed")
    return {
        "pause": get_page(client, "/").form("/ui/actions/pause", queue="emails"),
        "retry": failed_page.form("/ui/actions/retry", id=str(broken)),
        "retry all": failed_page.form("/ui/actions/retry", all="1"),
        "cancel": get_page(client, f"/ui/jobs/{waiting}").form(
            "/ui/actions/cancel", id=str(waiting)
        ),
        "ids": (broken, waiting),
    }


def _unchanged(conn: psycopg.Connection[Any], ids: tuple[int, int]) -> None:
    assert not paused(conn, "emails")
    assert (status_of(conn, ids[0]), status_of(conn, ids[1])) == ("failed", "queued")


@pytest.mark.parametrize(
    "csrf", [None, "", "forged-token-value"], ids=["missing", "empty", "wrong"]
)
def test_forms_without_the_csrf_token_are_refused(
    client: httpx.Client, conn: psycopg.Connection[Any], csrf: str | None
) -> None:
    forms = _forms(client, conn)
    for name in ("pause", "retry", "retry all", "cancel"):
        answer = submit(client, forms[name], expect=403, csrf=csrf)
        assert "CSRF token is missing or wrong" in answer.text, name
        assert "text/html" in answer.headers["content-type"]
    _unchanged(conn, forms["ids"])


def test_the_token_without_its_cookie_is_refused(
    server: LiveServer, client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    """Another site's page cannot read the cookie: a copied token alone is not enough."""
    forms = _forms(client, conn)
    with server.client() as stranger:
        for name in ("pause", "retry", "cancel"):
            answer = stranger.post(forms[name].action, data=forms[name].fields)
            assert answer.status_code == 403, name
        stranger.cookies.set(CSRF_COOKIE, "another-value")
        assert stranger.post(forms["pause"].action, data=forms["pause"].fields).status_code == 403
    _unchanged(conn, forms["ids"])


def test_cross_site_posts_are_refused(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    forms = _forms(client, conn)
    for origin in ("cross-site", "same-site"):
        answer = client.post(
            forms["pause"].action, data=forms["pause"].fields, headers={"Sec-Fetch-Site": origin}
        )
        assert answer.status_code == 403 and "another site" in answer.text
    _unchanged(conn, forms["ids"])
    same = client.post(
        forms["pause"].action, data=forms["pause"].fields, headers={"Sec-Fetch-Site": "same-origin"}
    )
    assert same.status_code == 303 and paused(conn, "emails")


def test_forms_are_url_encoded(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    forms = _forms(client, conn)
    answer = client.post(forms["pause"].action, json=forms["pause"].fields)
    assert answer.status_code == 415
    assert client.post("/ui/actions/explode", data=forms["pause"].fields).status_code == 404
    _unchanged(conn, forms["ids"])


def test_bearer_clients_need_no_csrf_token(
    serve: Callable[..., LiveServer], conn: psycopg.Connection[Any]
) -> None:
    """A script holding a token can press the dashboard's buttons: a form of another site
    cannot send an Authorization header, so there is nothing to forge."""
    guarded = serve(tokens=(TOKEN,))
    with guarded.client(TOKEN) as http:
        job_id = enqueue(http, queue="emails")
        answer = http.post("/ui/actions/pause", data={"queue": "emails", "back": "/"})
        assert answer.status_code == 303 and paused(conn, "emails")
        assert http.post(f"/jobs/{job_id}/cancel").status_code == 200


def test_bulk_actions_go_on_in_bounded_parts(
    client: httpx.Client, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One press changes a bounded number of jobs; when more match, the answer is the
    report of this part and the confirmation of the next one."""
    monkeypatch.setattr(routes, "BULK_MAX", 2)
    mine = [failed(conn, client, queue="big") for _ in range(5)]
    listing = get_page(client, "/ui/failed?queue=big")
    question = parse(submit(client, listing.form("/ui/actions/retry", all="1"), expect=200).text)
    assert "Retry the first 2 matching job(s)?" in question.text
    late = failed(conn, client, queue="big")
    reports = []
    for _ in range(5):
        answer = submit(client, question.form("/ui/actions/retry", confirm="1"), expect=None)
        if answer.status_code == 303:
            reports.append(follow(client, answer).text)
            break
        question = parse(answer.text)
        assert "Retry the next matching jobs?" in question.text
        reports.append(question.text)
    assert [status_of(conn, i) for i in mine] == ["queued"] * 5
    assert status_of(conn, late) == "failed"
    assert [r.count("Retried") for r in reports] == [1, 1, 1]
    assert "Retried 1 job(s)" in reports[-1]
