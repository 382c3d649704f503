"""Bad input gets the documented 4xx with a reason, and changes nothing: malformed JSON,
missing task, wrong types, unknown fields (refused), oversize bodies, bad callback URLs,
unknown ids, a retry of a running job, a cancel of a finished one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from web_support import LiveServer, claim, count_jobs, finish, job_row

from pgjobs.types import JobStatus

JSON = {"Content-Type": "application/json"}

BAD_BODIES = {
    "malformed JSON": ('{"task": "a",', "malformed JSON"),
    "not an object": ('["emails.send"]', "JSON object"),
    "empty body": ("", "body"),
    "missing task": ('{"args": {}}', "task: required"),
    "task not a string": ('{"task": 42}', "task"),
    "task name outside the safe set": ('{"task": "<script>"}', "invalid task name"),
    "args not an object": ('{"task": "a", "args": [1, 2]}', "args"),
    "priority as text": ('{"task": "a", "priority": "5"}', "priority"),
    "priority as a float": ('{"task": "a", "priority": 5.5}', "priority"),
    "priority as a boolean": ('{"task": "a", "priority": true}', "priority"),
    "priority out of range": ('{"task": "a", "priority": 5000}', "priority"),
    "max_attempts zero": ('{"task": "a", "max_attempts": 0}', "max_attempts"),
    "unknown field": ('{"task": "a", "prority": 5}', "prority: unknown field"),
    "bad delay": ('{"task": "a", "delay": "soon"}', "invalid delay"),
    "negative delay": ('{"task": "a", "delay": -5}', "delay"),
    "NaN delay": ('{"task": "a", "delay": NaN}', "delay"),
    "delay and not_before": (
        '{"task": "a", "delay": 5, "not_before": "2030-01-01T00:00:00Z"}',
        "not both",
    ),
    "bad not_before": ('{"task": "a", "not_before": "tomorrow"}', "invalid not_before"),
    "not_before out of range": ('{"task": "a", "not_before": "0001-01-01T00:00:00"}', "years"),
    "bad callback_url": ('{"task": "a", "callback_url": "ftp://example.com"}', "callback"),
    "callback_url not a string": ('{"task": "a", "callback_url": 5}', "callback_url"),
    "bad queue": ('{"task": "a", "queue": "a queue"}', "invalid queue name"),
    "dedupe_for without key": ('{"task": "a", "dedupe_for": "1h"}', "need a dedupe_key"),
    "bad dedupe_mode": ('{"task": "a", "dedupe_key": "k", "dedupe_mode": "merge"}', "dedupe_mode"),
    "depends_on unknown job": ('{"task": "a", "depends_on": [99999]}', "do not exist"),
    "args with NUL": ('{"task": "a", "args": {"x": "\\u0000"}}', "args"),
    "reserved dedupe prefix": ('{"task": "a", "dedupe_key": "idempotency:x"}', "reserved"),
    # Found by tests/web/test_http_fuzz.py and its probes: each of these was a 500.
    "dedupe_key with NUL": ('{"task": "a", "dedupe_key": "k\\u0000"}', "dedupe_key: strings"),
    "lock_key with NUL": ('{"task": "a", "lock_key": "\\u0000"}', "lock_key: strings must not"),
    "args with a lone surrogate": (
        '{"task": "a", "args": {"x": "\\ud800"}}',
        "args: at x: strings must be valid Unicode",
    ),
    "meta key with a lone surrogate": ('{"task": "a", "meta": {"\\udc00": 1}}', "at \\udc00"),
    "args nested too deep": (
        '{"task": "a", "args": {"x": ' + "[" * 100 + "]" * 100 + "}}",
        "args: nested deeper than 100 levels",
    ),
    "JSON nested past the parser": ("[" * 5000 + "]" * 5000, "malformed JSON: nested too deeply"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES), ids=list(BAD_BODIES))
def test_bad_body_is_422_with_a_reason_and_stores_nothing(
    case: str, client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    body, reason = BAD_BODIES[case]
    answer = client.post("/jobs", content=body, headers=JSON)
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["error"] == "invalid_input"
    assert reason in error["message"], error
    assert "\n" not in error["message"] and "Traceback" not in answer.text
    assert count_jobs(conn) == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_422(
    content_type: str | None, client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post("/jobs", content=b'{"task": "a"}', headers=headers)
    assert answer.status_code == 422
    assert "Content-Type: application/json" in answer.json()["message"]
    assert count_jobs(conn) == 0


def test_a_body_that_is_not_utf8_is_422_and_stores_nothing(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    """JSON is UTF-8: a Latin-1 body is malformed JSON (422), not FastAPI's bare 400."""
    answer = client.post("/jobs", content='{"task": "café"}'.encode("latin-1"), headers=JSON)
    assert answer.status_code == 422, answer.text
    assert answer.json() == {
        "error": "invalid_input",
        "message": "body: malformed JSON: not UTF-8 (byte 13)",
        "details": [{"field": "body", "message": "malformed JSON: not UTF-8 (byte 13)"}],
    }
    assert count_jobs(conn) == 0


def test_args_at_the_depth_limit_are_stored_and_rendered(client: httpx.Client) -> None:
    """The limit is what every answer carrying the job can render: args nested a few
    hundred levels deep used to be stored, then failed GET /jobs/{id} and whole pages of
    GET /jobs with a 500."""
    deep = "[" * 99 + "]" * 99  # args itself is level 1
    answer = client.post("/jobs", content=f'{{"task": "a", "args": {{"x": {deep}}}}}', headers=JSON)
    assert answer.status_code == 202, answer.text
    assert client.get(f"/jobs/{answer.json()['id']}").status_code == 200
    assert client.get("/jobs").status_code == 200


def test_validation_details_name_each_field(client: httpx.Client) -> None:
    answer = client.post("/jobs", json={"task": 1, "priority": "x", "zz": 0})
    assert answer.status_code == 422
    fields = {d["field"] for d in answer.json()["details"]}
    assert fields == {"task", "priority", "zz"}
    assert '"input"' not in answer.text  # the input is never echoed back


@pytest.fixture
def small(serve: Callable[..., LiveServer]) -> Iterator[httpx.Client]:
    with serve(max_body=1024).client() as http:
        yield http


def test_oversize_body_is_413_declared_or_streamed(
    small: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    big = b'{"task": "a", "args": {"x": "' + b"y" * 2000 + b'"}}'
    declared = small.post("/jobs", content=big, headers=JSON)
    assert declared.status_code == 413
    assert declared.json() == {
        "error": "payload_too_large",
        "message": "request body over the limit of 1024 bytes (--max-body)",
    }

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for start in range(0, len(big), 256):
            yield big[start : start + 256]

    streamed = small.post("/jobs", content=chunks(), headers=JSON)
    assert streamed.status_code == 413
    assert streamed.json()["error"] == "payload_too_large"
    assert count_jobs(conn) == 0
    # Under the limit, the same server accepts.
    assert small.post("/jobs", json={"task": "a"}).status_code == 202


def test_unknown_ids_are_404_everywhere(client: httpx.Client) -> None:
    for method, path in (
        ("GET", "/jobs/424242"),
        ("GET", "/jobs/424242/events"),
        ("POST", "/jobs/424242/cancel"),
        ("POST", "/jobs/424242/retry"),
    ):
        answer = client.request(method, path)
        assert answer.status_code == 404, (method, path)
        assert answer.json() == {"error": "not_found", "message": "no job with id 424242"}


def test_cancel_of_a_finished_job_is_409_and_changes_nothing(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = client.post("/jobs", json={"task": "t.done"}).json()["id"]
    finish(conn, job_id, claim(conn, job_id))
    before = job_row(conn, job_id)
    answer = client.post(f"/jobs/{job_id}/cancel")
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "conflict",
        "message": f"job {job_id} has already ended (succeeded): only queued or running jobs "
        "can be cancelled",
    }
    assert job_row(conn, job_id) == before


@pytest.mark.parametrize("state", ["running", "queued", "succeeded"])
def test_retry_of_a_job_that_did_not_fail_is_409_and_changes_nothing(
    state: str, client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = client.post("/jobs", json={"task": "t.busy"}).json()["id"]
    if state != "queued":
        token = claim(conn, job_id)
        if state == "succeeded":
            finish(conn, job_id, token)
    before = job_row(conn, job_id)
    answer = client.post(f"/jobs/{job_id}/retry")
    assert answer.status_code == 409
    assert answer.json()["message"] == (
        f"job {job_id} is {state}: only failed or cancelled jobs can be retried"
    )
    assert job_row(conn, job_id) == before


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    assert client.get("/nowhere").json() == {"error": "not_found", "message": "Not Found"}
    wrong = client.delete("/jobs/1")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/jobs", "GET, POST"),  # two routes: Starlette named the first one's only
        ("OPTIONS", "/jobs", "GET, POST"),
        ("PUT", "/ui/login", "GET, POST"),  # an included router's routes count too
        ("DELETE", "/jobs/1", "GET"),
        ("GET", "/jobs/1/cancel", "POST"),
    ],
)
def test_405_allows_every_method_of_the_path(
    method: str, path: str, allow: str, client: httpx.Client
) -> None:
    answer = client.request(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow
    assert answer.json() == {"error": "method_not_allowed", "message": "Method Not Allowed"}


def test_job_state_is_not_changed_by_a_refused_job_enqueue(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    """A refused request in the middle of good ones leaves the others as they were."""
    good = client.post("/jobs", json={"task": "t.good"}).json()["id"]
    assert client.post("/jobs", json={"task": "t.bad", "priority": 10_000}).status_code == 422
    assert count_jobs(conn) == 1 and job_row(conn, good)["status"] == JobStatus.QUEUED.value
