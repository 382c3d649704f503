"""The built-in task pgjobs.http against a real receiver: enqueued by any producer, run by any
worker whatever its App, with retries, expected statuses and a timeout; bad arguments refused
at enqueue (and by the handler, should they reach it)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from receiver import Receiver
from workers import Running

import pgjobs
from pgjobs import http_task
from pgjobs.testing import wait_for

Conn = psycopg.Connection[Any]
FAST = pgjobs.RetryPolicy.of(base="0.05s", maximum="0.2s", jitter=0)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_task, "RETRY_POLICY", FAST)


def ended(conn: Conn, job_id: int, timeout: float = 20) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            found = cursor.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
        assert found is not None
        return found if found["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(check, timeout=timeout, message=f"job {job_id} did not end")


def enqueue_sql(conn: Conn, args: dict[str, Any], **options: Any) -> int:
    """The way a service with no Python handler enqueues it."""
    names = "".join(f", {name} => %s" for name in options)
    row = conn.execute(
        f"SELECT pgjobs.enqueue('pgjobs.http', %s::jsonb{names})",
        (json.dumps(args), *options.values()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_post_from_sql_run_by_a_worker_with_no_handler(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    assert not app.tasks, "the App has no task at all"
    running = start()
    published = "SELECT max_attempts FROM pgjobs.tasks WHERE name = 'pgjobs.http'"
    wait_for(lambda: pgjobs_conn.execute(published).fetchone(), message="defaults not published")
    job_id = enqueue_sql(
        pgjobs_conn,
        {"url": receiver.url("/echo"), "json": {"order": 7}, "headers": {"X-Trace": "abc"}},
    )
    final = ended(pgjobs_conn, job_id)
    running.stop()
    assert final["status"] == "succeeded", final["error"]
    result = final["result"]
    assert result["status"] == 200 and result["truncated"] is False
    assert result["headers"]["content-type"] == "application/json"
    echoed = result["json"]
    assert echoed["method"] == "POST" and json.loads(echoed["body"]) == {"order": 7}
    assert echoed["headers"]["x-trace"] == "abc"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["user-agent"].startswith("pgjobs/")
    assert final["max_attempts"] == http_task.MAX_ATTEMPTS, "the workers' published default"


def test_method_body_and_expected_statuses(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    put = app.enqueue(
        "pgjobs.http", {"method": "put", "url": receiver.url("/echo"), "body": "plain text"}
    )
    gone = app.enqueue(
        "pgjobs.http",
        {"method": "DELETE", "url": receiver.url("/status/404"), "expected_statuses": [204, 404]},
    )
    head = app.enqueue("pgjobs.http", {"method": "HEAD", "url": receiver.url("/ok")})
    running = start()
    results = {name: ended(pgjobs_conn, job.id) for name, job in
               {"put": put, "gone": gone, "head": head}.items()}  # fmt: skip
    running.stop()
    assert all(r["status"] == "succeeded" for r in results.values()), results
    echoed = results["put"]["result"]["json"]
    assert (echoed["method"], echoed["body"]) == ("PUT", "plain text")
    assert results["gone"]["result"]["status"] == 404
    assert results["head"]["result"]["body"] == ""


def test_an_unexpected_4xx_fails_at_once_and_5xx_is_retried(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    missing = app.enqueue("pgjobs.http", {"url": receiver.url("/status/404")})
    flaky = app.enqueue("pgjobs.http", {"url": receiver.url("/flaky/2/h")})
    down = app.enqueue("pgjobs.http", {"url": receiver.url("/status/503")}, max_attempts=2)
    running = start()
    missing_row, flaky_row, down_row = (ended(pgjobs_conn, j.id) for j in (missing, flaky, down))
    running.stop()
    assert (missing_row["status"], missing_row["attempts"]) == ("failed", 1)
    assert missing_row["error"].startswith("Fail: POST ") and "HTTP 404" in missing_row["error"]
    assert (flaky_row["status"], flaky_row["attempts"]) == ("succeeded", 3)
    assert len(receiver.received("/flaky/2/h")) == 3
    assert (down_row["status"], down_row["attempts"]) == ("failed", 2)
    assert "HTTP 503" in down_row["error"]


def test_a_timeout_is_an_error_retried_like_the_others(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    once = app.enqueue("pgjobs.http", {"url": receiver.url("/hang/1/a"), "timeout": 0.3})
    always = app.enqueue(
        "pgjobs.http", {"url": receiver.url("/hang/9/b"), "timeout": 0.3}, max_attempts=1
    )
    running = start()
    once_row, always_row = ended(pgjobs_conn, once.id), ended(pgjobs_conn, always.id)
    running.stop()
    assert (once_row["status"], once_row["attempts"]) == ("succeeded", 2)
    assert always_row["status"] == "failed"
    assert "no answer within 0.3s" in always_row["error"]


def test_a_large_answer_is_cut(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn, receiver: Receiver
) -> None:
    job = app.enqueue("pgjobs.http", {"method": "GET", "url": receiver.url("/big/200000")})
    start(burst=True).join()
    result = ended(pgjobs_conn, job.id)["result"]
    assert result["truncated"] is True and len(result["body"]) == http_task.BODY_LIMIT
    assert "json" not in result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "file:///etc/passwd"}, "url must be an http:// or https:// URL"),
        ({"url": "ftp://example.com/file"}, "url must be an http:// or https:// URL"),
        ({"url": "http:///no-host"}, "url must be an http:// or https:// URL"),
        ({}, "url must be an http:// or https:// URL"),
        ({"url": "https://example.com", "json": {}, "body": "x"}, "give json or body, not both"),
        ({"url": "https://example.com", "method": "FETCH"}, "method must be one of"),
        ({"url": "https://example.com", "timeout": 0}, "timeout must be a number"),
        ({"url": "https://example.com", "expected_statuses": [200, 99]}, "expected_statuses"),
        (
            {"url": "https://example.com", "headers": {"n": 1}},
            "headers must be an object of strings",
        ),
        ({"url": "https://example.com", "jsn": {}}, "unknown argument(s) 'jsn'"),
    ],
)
def test_bad_arguments_are_refused_at_enqueue_by_every_producer(
    app: pgjobs.App,
    pgjobs_dsn: str,
    pgjobs_conn: Conn,
    run_cli: Callable[..., Any],
    args: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(pgjobs.InvalidInput, match=f"^pgjobs.http: {_escaped(message)}"):
        app.enqueue("pgjobs.http", args)
    with pytest.raises(psycopg.errors.RaiseException, match=_escaped(message)):
        enqueue_sql(pgjobs_conn, args)
    cli = run_cli("enqueue", "pgjobs.http", json.dumps(args), env={"PGJOBS_DSN": pgjobs_dsn})
    assert cli.returncode == 2, cli.stderr
    assert cli.stderr.strip() == f"pgjobs: error: pgjobs.http: {_python_message(args)}"
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def _escaped(text: str) -> str:
    return re.escape(text)


def _python_message(args: dict[str, Any]) -> str:
    """What the handler's own check says: the same line as the trigger's."""
    with pytest.raises(pgjobs.InvalidInput) as caught:
        http_task.parse(args)
    return str(caught.value).removeprefix("pgjobs.http: ")


def test_the_handler_refuses_what_slipped_past_the_enqueue_check(
    app: pgjobs.App, start: Callable[..., Running], pgjobs_conn: Conn
) -> None:
    job = app.enqueue("pgjobs.http", {"url": "https://example.com/"})
    # Changed by SQL afterwards (the check runs at insert).
    pgjobs_conn.execute(
        'UPDATE pgjobs.jobs SET args = \'{"url": "file:///etc/passwd"}\' WHERE id = %s', (job.id,)
    )
    start(burst=True).join()
    final = ended(pgjobs_conn, job.id)
    assert (final["status"], final["attempts"]) == ("failed", 1)
    assert final["error"].startswith("Fail: pgjobs.http: url must be an http:// or https:// URL")


def test_an_app_cannot_take_a_builtin_name(app: pgjobs.App) -> None:
    for name in ("pgjobs.http", "pgjobs.callback"):
        with pytest.raises(pgjobs.InvalidInput, match="reserved for pgjobs' built-in task"):
            app.task(name=name)(lambda: None)
    assert not app.tasks
