"""The built-in tasks without a database: pgjobs.http's argument rules, the HTTP statuses
that are retried, Retry-After, the callback payload, and the constants the migration repeats."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

import pgjobs
from pgjobs import callbacks, http_task
from pgjobs.errors import InvalidInput
from pgjobs.types import JobRecord, JobStatus

REPO = Path(__file__).resolve().parents[2]


def test_the_migration_uses_the_runtime_constants() -> None:
    path = REPO / "migrations" / "versions" / "0004_callbacks.py"
    spec = importlib.util.spec_from_file_location("migration_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (module.CALLBACK_TASK, module.INTERNAL_QUEUE, module.HTTP_TASK) == (
        callbacks.CALLBACK_TASK, callbacks.INTERNAL_QUEUE, http_task.HTTP_TASK,
    )  # fmt: skip
    assert (module.CALLBACK_PRIORITY, module.CALLBACK_MAX_ATTEMPTS) == (
        callbacks.CALLBACK_PRIORITY, callbacks.CALLBACK_MAX_ATTEMPTS,
    )  # fmt: skip
    for name in http_task.ARGUMENTS:
        assert f"'{name}'" in module.UPGRADE, f"the trigger knows argument {name}"


def test_a_full_request_is_parsed() -> None:
    request = http_task.parse(
        {
            "url": "HTTPS://user:pw@example.com:8443/a?b=c#d",
            "method": "patch",
            "headers": {"A": "b"},
            "json": None,
            "timeout": 2.5,
            "expected_statuses": [200, 404],
            "follow_redirects": True,
        }
    )
    assert (request.method, request.content, request.timeout) == ("PATCH", b"null", 2.5)
    assert request.headers == {"A": "b", "Content-Type": "application/json"}
    assert request.accepts(404) and not request.accepts(201) and request.follow_redirects
    typed = http_task.parse(
        {"url": "http://e.x", "json": {"é": 1}, "headers": {"content-type": "x"}}
    )
    assert typed.content == '{"é": 1}'.encode() and typed.headers == {"content-type": "x"}


def test_defaults() -> None:
    request = http_task.parse({"url": "http://e.x"})
    assert (request.method, request.timeout, request.content, request.headers) == (
        "POST",
        http_task.TIMEOUT_DEFAULT,
        None,
        {},
    )
    assert request.accepts(200) and request.accepts(299) and not request.accepts(300)
    assert http_task.parse({"url": "http://e.x", "body": "é"}).content == "é".encode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "file:///etc/passwd"}, 'got "file:///etc/passwd"'),
        ({"url": "ftp://example.com"}, "http:// or https:// URL"),
        ({"url": "https://"}, "http:// or https:// URL"),
        ({"url": "https://exa mple.com"}, "http:// or https:// URL"),
        ({"url": "https://e.x/" + "a" * 2048}, "at most 2048 characters"),
        ({"url": 5}, "got 5"),
        ({"url": "http://e.x", "json": 1, "body": "x"}, "give json or body, not both"),
        ({"url": "http://e.x", "body": {"a": 1}}, "body must be a string"),
        ({"url": "http://e.x", "method": 3}, "method must be one of"),
        ({"url": "http://e.x", "headers": ["a"]}, "headers must be an object of strings"),
        ({"url": "http://e.x", "timeout": True}, "timeout must be a number"),
        ({"url": "http://e.x", "timeout": 3601}, "at most 3600"),
        ({"url": "http://e.x", "expected_statuses": []}, "non-empty list"),
        ({"url": "http://e.x", "expected_statuses": [200.0]}, "HTTP status codes"),
        ({"url": "http://e.x", "expected_statuses": [True]}, "HTTP status codes"),
        (
            {"url": "http://e.x", "follow_redirects": "yes"},
            "follow_redirects must be true or false",
        ),
        ({"url": "http://e.x", "verb": "GET", "a": 1}, "unknown argument(s) 'a', 'verb'"),
    ],
)
def test_bad_arguments_get_one_line(args: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        http_task.parse(args)
    text = str(caught.value)
    assert text.startswith("pgjobs.http: ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    ("status", "again"), [(408, True), (429, True), (500, True), (503, True), (400, False),
                          (401, False), (404, False), (409, False), (301, False)],
)  # fmt: skip
def test_which_statuses_are_retried(status: int, again: bool) -> None:
    assert http_task.retryable(status) is again


def test_retry_after() -> None:
    now = 1_800_000_000.0
    later = datetime.fromtimestamp(now + 120, tz=timezone.utc)
    assert http_task.retry_after("30") == 30
    assert http_task.retry_after(format_datetime(later, usegmt=True), now=now) == 120
    assert http_task.retry_after("999999") == http_task.RETRY_AFTER_MAX
    assert http_task.retry_after(None) is None and http_task.retry_after("soon") is None
    past = format_datetime(datetime.fromtimestamp(now - 5, tz=timezone.utc), usegmt=True)
    assert http_task.retry_after(past, now=now) == 0


def test_a_failed_status_says_whether_it_is_retried() -> None:
    request = http_task.Request(url="https://e.x/hook")
    busy = http_task.Response(503, {"retry-after": "7"}, b"busy\n  now", False, "utf-8")
    with pytest.raises(pgjobs.Retry) as retry:
        http_task.check_status(request, busy)
    assert str(retry.value) == "POST https://e.x/hook: HTTP 503: busy now"
    assert retry.value.after is not None and retry.value.after.total_seconds() == 7
    refused = http_task.Response(410, {}, b"", False, "utf-8")
    with pytest.raises(pgjobs.Fail, match=r"HTTP 410 \(not retried"):
        http_task.check_status(request, refused)
    http_task.check_status(request, http_task.Response(204, {}, b"", False, "utf-8"))


def test_a_result_never_holds_what_jsonb_refuses() -> None:
    odd = http_task.Response(
        200, {"content-type": "application/json"}, b'{"a": "\\u0000"}\x00', False, "utf-8"
    )
    out = http_task.result(odd)
    assert "\x00" not in out["body"] and "json" not in out
    unknown = http_task.Response(200, {}, b"caf\xe9", False, "no-such-charset")
    assert http_task.result(unknown)["body"] == "caf\ufffd"


def record(**fields: Any) -> JobRecord:
    base: dict[str, Any] = {
        "id": 7, "queue": "q", "task": "t", "args": {"a": 1}, "priority": 0,
        "not_before": datetime(2026, 1, 1, tzinfo=timezone.utc), "status": JobStatus.SUCCEEDED,
        "attempts": 1, "max_attempts": 3, "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
        "result": {"ok": True}, "version": 3, "callback_url": "https://e.x/hook",
        "callback_attempts": 2, "callback_error": "HTTP 503",
        "finished_at": datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc),
    }  # fmt: skip
    base.update(fields)
    return JobRecord(**base)


def test_the_payload_is_the_jobs_json_without_the_delivery_fields() -> None:
    body = json.loads(callbacks.payload(record(), {"status": "succeeded", "version": 3}))
    assert body == {k: v for k, v in record().to_json().items() if k not in callbacks.PAYLOAD_OMITS}
    assert body["finished_at"] == "2026-01-01T00:01:00+00:00"


def test_the_payload_keeps_its_ending_when_the_job_moved_on() -> None:
    moved = record(status=JobStatus.RUNNING, attempts=2, version=6, finished_at=None, result=None)
    ending = {"status": "failed", "version": 4, "attempts": 1, "max_attempts": 3,
              "started_at": None, "finished_at": "2026-01-01T00:01:00+00:00"}  # fmt: skip
    body = json.loads(callbacks.payload(moved, ending))
    assert (body["status"], body["attempts"], body["version"], body["finished_at"]) == (
        "failed", 1, 4, "2026-01-01T00:01:00+00:00",
    )  # fmt: skip
