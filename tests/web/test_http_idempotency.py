"""``Idempotency-Key``: the same key within a day returns the first job (200 instead of
202); another key, or the same key after the window, enqueues; a key reused for another
request is refused and changes nothing."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import psycopg
import pytest
from web_support import LiveServer, claim, count_jobs, finish, job_row

KEY = "0b7c4e8e-6d0a-4c55-9d2f-3f1a3c2b9e11"


def post(client: httpx.Client, key: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(
        "/jobs", json=body or {"task": "payments.charge", "args": {"invoice": 7}},
        headers={"Idempotency-Key": key},
    )  # fmt: skip


def test_replay_returns_the_first_job_with_200(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    first = post(client, KEY)
    assert first.status_code == 202, first.text
    again = post(client, KEY)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"] and again.json()["existing"] is True
    assert again.headers["location"] == first.headers["location"]
    assert count_jobs(conn) == 1
    row = job_row(conn, first.json()["id"])
    assert row["meta"]["http"]["idempotency_key"] == KEY


def test_replay_returns_the_job_even_after_it_ended(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = post(client, KEY).json()["id"]
    finish(conn, job_id, claim(conn, job_id))
    again = post(client, KEY)
    assert again.status_code == 200
    assert again.json()["id"] == job_id and again.json()["status"] == "succeeded"
    assert count_jobs(conn) == 1


def test_another_key_is_another_job(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    one, two = post(client, KEY), post(client, KEY + "-2")
    assert (one.status_code, two.status_code) == (202, 202)
    assert one.json()["id"] != two.json()["id"]
    plain = client.post("/jobs", json={"task": "payments.charge", "args": {"invoice": 7}})
    assert plain.status_code == 202 and count_jobs(conn) == 3


def test_after_the_window_the_key_enqueues_again(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = post(client, KEY).json()["id"]
    finish(conn, job_id, claim(conn, job_id))
    conn.execute(
        "UPDATE pgjobs.jobs SET created_at = created_at - interval '25 hours' WHERE id = %s",
        (job_id,),
    )
    later = post(client, KEY)
    assert later.status_code == 202, later.text
    assert later.json()["id"] != job_id and count_jobs(conn) == 2


def test_a_key_reused_for_another_request_is_refused(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = post(client, KEY).json()["id"]
    other = post(client, KEY, {"task": "payments.charge", "args": {"invoice": 8}})
    assert other.status_code == 422
    assert other.json()["message"] == (
        f"this Idempotency-Key was used within the last day for another request (job {job_id}): "
        "use a new key for a new job"
    )
    assert count_jobs(conn) == 1 and job_row(conn, job_id)["args"] == {"invoice": 7}


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("", None, "invalid Idempotency-Key"),
        ("x" * 256, None, "invalid Idempotency-Key"),
        (KEY, {"task": "a", "dedupe_key": "mine"}, "cannot be combined with dedupe_key"),
        (KEY, {"task": "a", "depends_on": [1]}, "cannot be combined with depends_on"),
        (KEY, {"task": "a", "meta": {"http": 1}}, "meta.http is reserved"),
    ],
)
def test_bad_idempotency_requests(
    key: str, body: dict[str, Any] | None, reason: str,
    client: httpx.Client, conn: psycopg.Connection[Any],
) -> None:  # fmt: skip
    answer = post(client, key, body)
    assert answer.status_code == 422 and reason in answer.json()["message"], answer.text
    assert count_jobs(conn) == 0


def test_quoted_key_is_the_same_key(client: httpx.Client) -> None:
    """The IETF draft writes the key as a structured-field string: "..."."""
    assert post(client, KEY).json()["id"] == post(client, f'"{KEY}"').json()["id"]


def test_concurrent_replays_make_one_job(server: LiveServer, conn: psycopg.Connection[Any]) -> None:
    statuses: list[int] = []
    ids: set[int] = set()
    lock = threading.Lock()
    start = threading.Barrier(8)

    def submit() -> None:
        with server.client() as http:
            start.wait(10)
            answer = post(http, KEY)
        with lock:
            statuses.append(answer.status_code)
            ids.add(answer.json()["id"])

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] * 7 + [202], statuses
    assert len(ids) == 1 and count_jobs(conn) == 1
