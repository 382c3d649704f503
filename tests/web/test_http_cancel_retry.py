"""POST /jobs/{id}/cancel and /retry: 200 with the job, 404, 409 (the refusals are in
test_http_bad_input.py)."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from web_support import claim, finish, job_row

from pgjobs.types import JobStatus


def test_cancel_a_queued_job(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    job_id = client.post("/jobs", json={"task": "t.cancel"}).json()["id"]
    answer = client.post(f"/jobs/{job_id}/cancel")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "cancelled" and body["finished_at"] is not None
    assert body["error"] == "cancelled through the HTTP API (anonymous)"
    assert job_row(conn, job_id)["status"] == "cancelled"


def test_cancel_a_running_job_asks_it_to_stop(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = client.post("/jobs", json={"task": "t.long"}).json()["id"]
    claim(conn, job_id)
    first = client.post(f"/jobs/{job_id}/cancel")
    assert first.status_code == 200
    assert first.json()["status"] == "running" and first.json()["cancel_requested_at"]
    again = client.post(f"/jobs/{job_id}/cancel")  # asking twice is fine
    assert again.status_code == 200
    assert again.json()["cancel_requested_at"] == first.json()["cancel_requested_at"]


def test_retry_a_failed_job(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    job_id = client.post("/jobs", json={"task": "t.flaky", "max_attempts": 1}).json()["id"]
    finish(conn, job_id, claim(conn, job_id), JobStatus.FAILED, error="ValueError: no")
    answer = client.post(f"/jobs/{job_id}/retry")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "queued" and body["finished_at"] is None
    assert body["max_attempts"] == 2  # one more attempt than it used


def test_retry_a_cancelled_job(client: httpx.Client) -> None:
    job_id = client.post("/jobs", json={"task": "t.back"}).json()["id"]
    client.post(f"/jobs/{job_id}/cancel")
    assert client.post(f"/jobs/{job_id}/retry").json()["status"] == "queued"


def test_retry_refused_while_another_job_holds_the_dedupe_key(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    first = client.post("/jobs", json={"task": "t.key", "dedupe_key": "k1"}).json()["id"]
    client.post(f"/jobs/{first}/cancel")
    holder = client.post("/jobs", json={"task": "t.key", "dedupe_key": "k1"}).json()["id"]
    answer = client.post(f"/jobs/{first}/retry")
    assert answer.status_code == 409
    assert answer.json()["message"] == (
        f"job {first} was not retried: its dedupe key is held by unfinished job {holder}"
    )
    assert job_row(conn, first)["status"] == "cancelled"
