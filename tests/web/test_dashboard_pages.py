"""The dashboard's pages render what the database holds: each page answers 200 with HTML
that parses, shows the expected rows, escapes what users wrote, and loads no script but
the job page's own, served by the application."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
import pytest
from test_dashboard_support import SCRIPT, enqueue, failed, get_page, iter_rows, parse
from web_support import claim, finish, progress

from pgjobs import queue_control, schedules
from pgjobs.schedules import Schedule
from pgjobs.types import JobStatus

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_overview_shows_each_queue(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    first, second, third = (enqueue(client, queue="emails") for _ in range(3))
    enqueue(client, queue="emails", delay="1h")  # scheduled: not ready
    claim(conn, first)
    gone = failed(conn, client, error="Traceback ...\nValueError: smtp said no", queue="emails")
    conn.execute(
        "UPDATE pgjobs.jobs SET not_before = now() - interval '90 s' WHERE id = %s", (third,)
    )
    queue_control.set_paused(conn, "pgjobs", "held", True)
    queue_control.set_limits(
        conn, "pgjobs", "held", concurrency=2, rate=queue_control.parse_rate("10/m")
    )
    enqueue(client, queue="held")

    page = get_page(client, "/")
    rows = {row[0]: row for row in page.rows if row and row[0] in ("emails", "held")}
    # queue, ready, oldest ready, running, failed (1h), ended/min, paused, limits, button
    assert rows["emails"][1:4] == ["2", rows["emails"][2], "1"]
    assert rows["emails"][2].startswith("1m3"), rows["emails"]  # about 90 s
    assert rows["emails"][4:7] == ["1", "1", "no"]
    assert rows["emails"][8] == "Pause"
    assert rows["held"][1] == "1", "a paused queue still shows its depth"
    assert rows["held"][6:9] == ["paused", "2 at once, 10/m", "Resume"]
    assert page.has_form("/ui/actions/pause", queue="emails")
    assert page.has_form("/ui/actions/resume", queue="held")
    assert f"/ui/jobs/{gone}" in page.links and "ValueError: smtp said no" in page.text
    assert "No failed jobs." not in page.text
    assert "/ui/jobs?queue=emails" in page.links and "/ui/failed?queue=emails" in page.links
    assert not page.scripts
    assert second  # ready, counted above


def test_overview_of_an_empty_database(client: httpx.Client) -> None:
    page = get_page(client, "/")
    assert "No queues yet" in page.text and "No failed jobs." in page.text
    assert "0 worker(s) alive" in page.text


def test_jobs_list_with_filters(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    a1 = enqueue(client, "t.one", queue="a")
    b1 = enqueue(client, "t.two", queue="b")
    a2 = failed(conn, client, task="t.one", queue="a")
    running = enqueue(client, "t.two", queue="a")
    claim(conn, running)

    def ids(path: str) -> list[int]:
        return [int(row[0][1:]) for row in iter_rows(get_page(client, path))]

    assert ids("/ui/jobs") == [running, a2, b1, a1]
    assert ids("/ui/jobs?queue=a") == [running, a2, a1]
    assert ids("/ui/jobs?task=t.two") == [running, b1]
    assert ids("/ui/jobs?status=running") == [running]
    assert ids("/ui/jobs?status=failed&queue=a") == [a2]
    assert ids("/ui/jobs?status=queued&queue=a&task=t.one") == [a1]
    assert ids("/ui/jobs?status=succeeded") == []
    page = get_page(client, "/ui/jobs?status=queued&queue=a")
    assert page.form("/ui/actions/cancel", all="1", status="queued", queue="a")
    filters = next(f for f in page.forms if f.method == "get")
    assert filters.fields["queue"] == "a"
    # Each row has its button: retry a failed job, cancel an unfinished one.
    everything = get_page(client, "/ui/jobs")
    assert everything.has_form("/ui/actions/retry", id=str(a2))
    assert everything.has_form("/ui/actions/cancel", id=str(running))
    assert not everything.has_form("/ui/actions/retry", id=str(a1))


@pytest.mark.parametrize(
    "query", ["status=sleeping", "queue=a%20b", "task=%3Cscript%3E", "before=x", "before_at=soon"]
)
def test_bad_filters_get_a_page_saying_why(client: httpx.Client, query: str) -> None:
    page = get_page(client, f"/ui/jobs?{query}", status=422)
    assert "Error 422" in page.text
    assert "invalid" in page.text or "unknown" in page.text
    assert "<script>" not in page.html


def test_job_page_shows_everything(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    parent = enqueue(client, "t.parent", args={"user": 42, "note": "héllo"})
    child = enqueue(client, "t.child", depends_on=[parent])
    conn.execute("UPDATE pgjobs.jobs SET parent_id = %s WHERE id = %s", (parent, child))
    token = claim(conn, parent)
    progress(conn, parent, token, 40)

    page = get_page(client, f"/ui/jobs/{parent}")
    assert page.ids["job-status"] == "running"
    assert page.ids["job-attempts"] == "1 / 3"
    assert (
        'id="job-progress" value="40"' in page.html or 'value="40" id="job-progress"' in page.html
    )
    assert page.ids["job-progress-text"] == "40% 40% done"
    assert '"user": 42' in page.text and "héllo" in page.text
    assert f'data-events="/jobs/{parent}/events"' in page.html
    assert page.scripts == ["/ui/static/live.js"]
    assert page.has_form("/ui/actions/cancel", id=str(parent))
    assert f"/ui/jobs/{child}" in page.links, "the chain shows the child"
    assert "blocks" in page.text

    answer = client.get(f"/ui/jobs/{parent}")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]

    child_page = get_page(client, f"/ui/jobs/{child}")
    assert "depends on" in child_page.text and f"/ui/jobs/{parent}" in child_page.links
    assert "waiting for" in child_page.text

    finish(conn, parent, token)
    done = get_page(client, f"/ui/jobs/{parent}")
    assert done.ids["job-status"] == "succeeded" and '"ok": true' in done.text
    assert not done.scripts and "data-events" not in done.html, "nothing to follow any more"
    assert "script-src" not in client.get(f"/ui/jobs/{parent}").headers["content-security-policy"]


def test_failed_job_page_shows_the_traceback(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    error = "Traceback (most recent call last):\n  File \"x.py\", line 3\nKeyError: 'user'"
    job_id = failed(conn, client, error=error)
    page = get_page(client, f"/ui/jobs/{job_id}")
    assert page.ids["job-status"] == "failed"
    assert (
        '<pre class="error-box">Traceback (most recent call last):\n  File &quot;x.py&quot;'
        in page.html
    )
    assert page.has_form("/ui/actions/retry", id=str(job_id))
    assert not page.has_form("/ui/actions/cancel", id=str(job_id))


@pytest.mark.parametrize("path", ["/ui/jobs/987654", "/ui/jobs/abc", "/ui/jobs/0"])
def test_missing_job(client: httpx.Client, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code in (404, 422)
    assert "text/html" in answer.headers["content-type"]
    parse(answer.text)


def test_live_script_is_served_and_referenced(client: httpx.Client) -> None:
    job_id = enqueue(client)
    page = get_page(client, f"/ui/jobs/{job_id}")
    (src,) = page.scripts
    script = client.get(src)
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    body = script.text
    assert "new EventSource(" in body and 'addEventListener("end"' in body
    assert "textContent" in body and "innerHTML" not in body and "eval(" not in body
    assert len(body.splitlines()) < 60


def test_schedules_page(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    stored = schedules.add(
        conn, "pgjobs", Schedule("nightly", "30 2 * * *", "reports.build", timezone="Europe/Paris")
    )
    schedules.add(conn, "pgjobs", Schedule("often", "*/5 * * * *", "t.often", queue="fast"))
    page = get_page(client, "/ui/schedules")
    rows = {row[0]: row for row in page.rows if row and row[0] in ("nightly", "often")}
    assert rows["nightly"][1:5] == ["30 2 * * *", "Europe/Paris", "reports.build", "task's"]
    assert rows["often"][4] == "fast"
    assert stored.next_fire_at is not None
    times = [
        datetime.fromisoformat(t)
        for t in page.html.split('datetime="')[1:]
        for t in [t.split('"')[0]]
        if "T" in t
    ]
    first = stored.next_fire_at.astimezone(timezone.utc)
    assert any(abs(t - first) < timedelta(seconds=1) for t in times), (times, first)
    assert any(abs(t - first - timedelta(days=1)) < timedelta(hours=2) for t in times)
    assert page.has_form("/ui/actions/schedule-pause", name="nightly")


def test_workers_page(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    alive, silent = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        """INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, version, info,
                                       last_heartbeat_at)
           VALUES (%s, 'box-1', 101, ARRAY['emails', 'sms'], 4, '1.2.3', '{"tasks": ["a", "b"]}', now()),
                  (%s, 'box-2', 202, NULL, 1, '1.2.3', NULL, now() - interval '5 minutes')""",
        (alive, silent),
    )
    job_id = enqueue(client)
    claim(conn, job_id)
    conn.execute("UPDATE pgjobs.jobs SET worker_id = %s WHERE id = %s", (alive, job_id))
    page = get_page(client, "/ui/workers")
    rows = {row[1]: row for row in page.rows if row and row[1] in ("box-1", "box-2")}
    assert rows["box-1"][0] == str(alive)[:8]
    assert rows["box-1"][2:7] == ["101", "emails, sms", "1 / 4", "2 task(s)", "1.2.3"]
    assert rows["box-1"][8].endswith("alive")
    assert rows["box-2"][3] == "all" and "silent for 5m" in rows["box-2"][8]


def test_user_text_renders_as_text(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    """Task and queue names cannot hold markup (CHECK constraints), but rows written while
    the constraints were off, or by a superuser, must not turn the dashboard into a weapon:
    drop them here and write `<script>` everywhere a user's text can go."""
    for table, constraint in (
        ("jobs", "jobs_task_name_valid"),
        ("jobs", "jobs_queue_name_valid"),
        ("schedules", "schedules_task_name_valid"),
        ("schedules", "schedules_name_valid"),
        ("queues", "queues_name_valid"),
    ):
        conn.execute(f"ALTER TABLE pgjobs.{table} DROP CONSTRAINT {constraint}")
    conn.execute(
        """INSERT INTO pgjobs.jobs (task, queue, priority, max_attempts, args, meta, dedupe_key, lock_key)
           VALUES (%(s)s::text, %(s)s, 0, 3, jsonb_build_object('html', %(s)s::text),
                   jsonb_build_object('note', %(s)s::text), %(s)s, %(s)s)""",
        {"s": SCRIPT},
    )
    row = conn.execute("SELECT max(id) FROM pgjobs.jobs").fetchone()
    assert row is not None
    ready = row[0]
    token = claim(conn, ready)
    conn.execute(
        "UPDATE pgjobs.jobs SET progress_message = %s, progress = 10 WHERE id = %s", (SCRIPT, ready)
    )
    bad = enqueue(client, "t.fail", args={"html": SCRIPT})
    finish(conn, bad, claim(conn, bad), JobStatus.FAILED, error=f"Traceback\nValueError: {SCRIPT}")
    retrying = enqueue(client, "t.again")
    conn.execute(
        "UPDATE pgjobs.jobs SET error = %s, attempts = 1 WHERE id = %s", (SCRIPT, retrying)
    )
    done = enqueue(client, "t.done")
    conn.execute(
        """UPDATE pgjobs.jobs SET status = 'succeeded', result = to_jsonb(%s::text),
                  finished_at = now() WHERE id = %s""",
        (SCRIPT, done),
    )
    conn.execute("INSERT INTO pgjobs.queues (name, paused) VALUES (%s, true)", (SCRIPT,))
    conn.execute(
        """INSERT INTO pgjobs.schedules (name, cron, task, timezone, next_fire_at)
           VALUES (%s, '* * * * *', %s, 'UTC', now() + interval '1 minute')""",
        (SCRIPT, SCRIPT),
    )
    conn.execute(
        """INSERT INTO pgjobs.workers (id, hostname, pid, queues, concurrency, version, info)
           VALUES (gen_random_uuid(), %(s)s, 1, ARRAY[%(s)s], 1, %(s)s,
                   jsonb_build_object('tasks', jsonb_build_array(%(s)s::text)))""",
        {"s": SCRIPT},
    )
    paths = [
        "/",
        "/ui/jobs",
        f"/ui/jobs/{ready}",
        f"/ui/jobs/{bad}",
        f"/ui/jobs/{done}",
        f"/ui/jobs/{retrying}",
        "/ui/failed",
        "/ui/failed?tab=retrying",
        "/ui/schedules",
        "/ui/workers",
    ]
    for path in paths:
        page = get_page(client, path)
        assert "<script>alert" not in page.html, path
        assert ESCAPED in page.html, path
        assert SCRIPT in page.text, path  # shown, as text
    assert token
    echoed = client.get("/ui/jobs", params={"queue": SCRIPT}, headers={"Accept": "text/html"})
    assert echoed.status_code == 422 and "<script>alert" not in echoed.text
    assert ESCAPED in echoed.text
