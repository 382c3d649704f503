"""POST /jobs, GET /jobs/{id}, GET /jobs and GET /queues: status codes, Location headers,
JSON bodies with ISO timestamps, and that what the API stores is what a Python producer
would store."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg
from web_support import claim, count_jobs, finish, job_row

from pgjobs.types import JobStatus

TIMESTAMPS = ("not_before", "created_at", "started_at", "finished_at", "cancel_requested_at")


def iso_utc(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() == timedelta(0), f"not in UTC: {value}"
    return moment


def test_post_enqueues_202_with_location_and_the_job(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    answer = client.post("/jobs", json={"task": "emails.send", "args": {"to": "a@example.com"}})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert answer.headers["location"] == f"/jobs/{body['id']}"
    assert answer.headers["content-type"] == "application/json"
    assert body["status"] == "queued" and body["existing"] is False
    assert body["task"] == "emails.send" and body["args"] == {"to": "a@example.com"}
    assert (body["queue"], body["priority"], body["max_attempts"]) == ("default", 0, 3)
    assert iso_utc(body["created_at"]) == job_row(conn, body["id"])["created_at"]
    assert body["started_at"] is None and body["finished_at"] is None


def test_post_passes_every_option(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    first = client.post("/jobs", json={"task": "a.first"}).json()["id"]
    at = "2031-05-06T07:08:09+02:00"
    answer = client.post(
        "/jobs",
        json={
            "task": "reports.build",
            "args": {"month": "2026-11"},
            "queue": "reports",
            "priority": 7,
            "not_before": at,
            "max_attempts": 5,
            "callback_url": "https://hooks.example.com/done",
            "meta": {"trace": "abc"},
            "lock_key": "customer:42",
            "depends_on": [first],
        },
    )
    assert answer.status_code == 202, answer.text
    row = job_row(conn, answer.json()["id"])
    assert (row["queue"], row["priority"], row["max_attempts"]) == ("reports", 7, 5)
    assert row["not_before"] == datetime.fromisoformat(at)
    assert row["callback_url"] == "https://hooks.example.com/done"
    assert row["meta"]["trace"] == "abc" and row["lock_key"] == "customer:42"
    assert row["blockers"] == 1  # waits for the first job
    assert iso_utc(answer.json()["not_before"]) == datetime.fromisoformat(at)


def test_delay_counts_from_the_database_clock(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    for delay in ("10m", 600, 600.0):
        job = client.post("/jobs", json={"task": "later.task", "delay": delay}).json()
        row = job_row(conn, job["id"])
        assert row["not_before"] - row["created_at"] == timedelta(minutes=10)


def test_dedupe_key_held_returns_the_holder_with_200(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    first = client.post("/jobs", json={"task": "emails.welcome", "dedupe_key": "welcome:42"})
    again = client.post("/jobs", json={"task": "emails.welcome", "dedupe_key": "welcome:42"})
    assert first.status_code == 202 and again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"] and again.json()["existing"] is True
    assert again.headers["location"] == f"/jobs/{first.json()['id']}"
    assert count_jobs(conn) == 1


def test_get_job_200_with_iso_timestamps_and_404(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = client.post("/jobs", json={"task": "t.one"}).json()["id"]
    token = claim(conn, job_id)
    finish(conn, job_id, token)
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "succeeded" and body["result"] == {"ok": True}
    assert body["attempts"] == 1 and body["progress"] is None
    for name in TIMESTAMPS[:4]:
        assert iso_utc(body[name]) == job_row(conn, job_id)[name]
    assert "lease_token" not in body
    missing = client.get("/jobs/987654")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "no job with id 987654"}
    for bad in ("abc", "0", "-1", str(2**63)):
        assert client.get(f"/jobs/{bad}").status_code == 422


def test_list_jobs_filters_and_pages(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    ids = [client.post("/jobs", json={"task": "t.list", "queue": q}).json()["id"] for q in "abab"]
    failed = client.post("/jobs", json={"task": "t.other", "queue": "a"}).json()["id"]
    finish(conn, failed, claim(conn, failed), JobStatus.FAILED, error="boom")

    everything = client.get("/jobs").json()
    assert [j["id"] for j in everything["jobs"]] == [failed, *reversed(ids)]
    assert everything["next"] is None
    assert [j["id"] for j in client.get("/jobs?queue=b").json()["jobs"]] == [ids[3], ids[1]]
    assert [j["id"] for j in client.get("/jobs?status=failed").json()["jobs"]] == [failed]
    assert client.get("/jobs?status=failed,queued&task=t.list").json()["jobs"][0]["id"] == ids[3]

    page = client.get("/jobs?queue=a&limit=1").json()
    assert [j["id"] for j in page["jobs"]] == [failed]
    assert page["next"] == f"/jobs?queue=a&limit=1&before={failed}"
    second = client.get(page["next"]).json()
    assert [j["id"] for j in second["jobs"]] == [ids[2]]
    third = client.get(second["next"]).json()
    assert [j["id"] for j in third["jobs"]] == [ids[0]]
    assert client.get(third["next"]).json() == {"jobs": [], "next": None}

    for bad in ("status=sleeping", "limit=0", "limit=1001", "queue=a%20b", "before=x"):
        answer = client.get(f"/jobs?{bad}")
        assert answer.status_code == 422, bad
        assert answer.json()["error"] == "invalid_input" and answer.json()["message"]


def test_list_queues(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    client.post("/jobs", json={"task": "t.q", "queue": "emails"})
    client.post("/jobs", json={"task": "t.q", "queue": "emails", "delay": "1h"})
    conn.execute("INSERT INTO pgjobs.queues (name, paused) VALUES ('idle', true)")
    queues = {q["name"]: q for q in client.get("/queues").json()["queues"]}
    assert set(queues) == {"emails", "idle"}
    assert queues["emails"]["ready"] == 1 and queues["emails"]["scheduled"] == 1
    assert queues["idle"]["paused"] is True and queues["idle"]["ready"] == 0


def test_openapi_documents_the_routes(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/events",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/retry",
        "/queues",
        "/healthz",
        "/metrics",
    } <= set(paths)
    post = paths["/jobs"]["post"]
    assert {"200", "202", "401", "413", "422"} <= set(post["responses"])
    create = schema["components"]["schemas"]["JobCreate"]
    assert create["required"] == ["task"] and create["additionalProperties"] is False
    assert (
        "text/event-stream" in paths["/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    )
    assert "securitySchemes" not in schema.get("components", {})  # no token configured
    assert client.get("/docs").status_code == 200


def test_healthz_and_home(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    home = client.get("/")
    assert home.status_code == 200 and "text/html" in home.headers["content-type"]
    assert "No failed jobs." in home.text


def test_started_job_shows_started_at(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    job_id = client.post("/jobs", json={"task": "t.start"}).json()["id"]
    claim(conn, job_id)
    body = client.get(f"/jobs/{job_id}").json()
    assert body["status"] == "running" and body["attempts"] == 1
    assert iso_utc(body["started_at"]) <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert iso_utc(body["lease_expires_at"]) > iso_utc(body["started_at"])


def test_callback_delivery_is_shown(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    url = "https://hooks.example.com/done"
    job_id = client.post("/jobs", json={"task": "t.cb", "callback_url": url}).json()["id"]
    waiting = client.get(f"/jobs/{job_id}").json()["callback_delivery"]
    assert waiting == {"url": url, "state": "waiting", "deliveries": []}
    finish(conn, job_id, claim(conn, job_id))
    ended = client.get(f"/jobs/{job_id}").json()["callback_delivery"]
    assert ended["url"] == url and ended["state"] == "pending"
    assert [d["ending"] for d in ended["deliveries"]] == ["succeeded"]
    plain = client.post("/jobs", json={"task": "t.plain"}).json()["id"]
    assert client.get(f"/jobs/{plain}").json()["callback_delivery"] is None
