"""Text that users or handlers wrote (an error message quoting HTML) comes back as JSON
text, never as markup: JSON bodies are declared as such (and browsers told not to sniff),
and the HTML page escapes it."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from web_support import claim, finish

from pgjobs.types import JobStatus

SCRIPT = "<script>alert('pgjobs')</script>"


def failed_job(client: httpx.Client, conn: psycopg.Connection[Any]) -> int:
    job_id: int = client.post(
        "/jobs", json={"task": "t.xss", "args": {"html": SCRIPT}, "meta": {"note": SCRIPT}}
    ).json()["id"]
    finish(conn, job_id, claim(conn, job_id), JobStatus.FAILED, error=f"ValueError: {SCRIPT}")
    return job_id


def test_json_answers_carry_the_text_as_text(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = failed_job(client, conn)
    answer = client.get(f"/jobs/{job_id}")
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-content-type-options"] == "nosniff"
    body = answer.json()
    assert body["error"] == f"ValueError: {SCRIPT}"
    assert body["args"] == {"html": SCRIPT} and body["meta"] == {"note": SCRIPT}
    listed = client.get("/jobs?status=failed").json()["jobs"][0]
    assert listed["error"] == f"ValueError: {SCRIPT}"


def test_error_messages_quote_input_as_json_text(client: httpx.Client) -> None:
    answer = client.post("/jobs", json={"task": SCRIPT})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/json"
    assert SCRIPT in answer.json()["message"]


def test_the_html_page_escapes_it(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    failed_job(client, conn)
    page = client.get("/")
    assert page.status_code == 200
    assert "<script" not in page.text
    assert "ValueError: &lt;script&gt;alert(&#x27;pgjobs&#x27;)&lt;/script&gt;" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert page.headers["x-frame-options"] == "DENY"
