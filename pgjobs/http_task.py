"""The built-in task ``pgjobs.http``: an outbound HTTP call with pgjobs' retries, so that any
service that can enqueue (SQL, the CLI, the HTTP API) can have a request made reliably
without writing a handler. Every worker runs it, whatever its ``--app``::

    SELECT pgjobs.enqueue('pgjobs.http', '{"url": "https://partner.example/orders/7/shipped",
                                           "json": {"carrier": "ups"}}');

Arguments (a JSON object; unknown ones are refused):

- ``url`` (required): an ``http://`` or ``https://`` URL with a host, at most 2048 characters;
- ``method``: GET, HEAD, POST (default), PUT, PATCH, DELETE or OPTIONS;
- ``headers``: an object of strings;
- ``json`` (any JSON value, sent as ``application/json``) or ``body`` (a string, sent as is),
  not both;
- ``timeout``: seconds for the whole exchange, default 30, at most 3600;
- ``expected_statuses``: the statuses that mean success, default any 2xx;
- ``follow_redirects``: default false (a 3xx is then an answer like any other).

An expected status: the job succeeds with ``{"status", "headers", "body", "truncated"}`` (and
``"json"`` when the answer is JSON), the body cut at :data:`BODY_LIMIT` bytes. 408, 429, 5xx,
a timeout or a connection error: retried with backoff (``Retry-After`` honoured), until the
job's attempts run out. Any other status: failed at once, since retrying the same request
would get the same answer.

The arguments are checked at enqueue by a database trigger (migration 0004), for every
producer, and again here with the same rules (a database migrated without it, a job changed
by SQL afterwards): a bad argument fails the job at once, with the same one-line message.

This module imports httpx only when a request is sent: the library stays light to import.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from pgjobs.backoff import RetryPolicy
from pgjobs.control import Fail, Retry
from pgjobs.errors import InvalidInput

if TYPE_CHECKING:
    import httpx

HTTP_TASK = "pgjobs.http"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ARGUMENTS = (
    "method", "url", "headers", "json", "body", "timeout", "expected_statuses", "follow_redirects",
)  # fmt: skip
METHOD_DEFAULT = "POST"
TIMEOUT_DEFAULT = 30.0
TIMEOUT_MAX = 3600.0
URL_MAX = 2048
#: A scheme, a host (user info and port allowed), then an optional path, query or fragment;
#: the same pattern as the enqueue trigger's.
_URL = re.compile(r"^https?://[^\s/?#]+([/?#]\S*)?$", re.IGNORECASE)
#: Attempts of a pgjobs.http job unless its producer says otherwise (published by workers to
#: pgjobs.tasks, so SQL producers get it too).
MAX_ATTEMPTS = 5
RETRY_POLICY = RetryPolicy.of(base="2s", maximum="10m")
#: Bytes of a response body kept in the result (and read at all: a huge answer is not
#: downloaded only to be dropped).
BODY_LIMIT = 64 * 1024
#: Response headers kept in the result: what a caller acts on. Not Set-Cookie and friends,
#: which would store credentials in the jobs table.
RESULT_HEADERS = (
    "content-type",
    "content-length",
    "location",
    "etag",
    "last-modified",
    "retry-after",
)
#: A Retry-After longer than this is cut to it.
RETRY_AFTER_MAX = 3600.0
#: Characters of a response body quoted in an error message.
ERROR_BODY_CHARS = 200


@dataclass(frozen=True)
class Request:
    """One request, checked."""

    url: str
    method: str = METHOD_DEFAULT
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The body as bytes (``body`` or ``json`` encoded, or a callback's payload), or None.
    content: bytes | None = None
    timeout: float = TIMEOUT_DEFAULT
    expected: frozenset[int] | None = None
    follow_redirects: bool = False

    def accepts(self, status: int) -> bool:
        return status in self.expected if self.expected is not None else 200 <= status < 300

    @property
    def line(self) -> str:
        """``METHOD URL``, for messages."""
        return f"{self.method} {self.url}"


def _fail(message: str) -> InvalidInput:
    return InvalidInput(f"{HTTP_TASK}: {message}")


def check_url(value: Any) -> str:
    """An http(s) URL with a host: anything else (``file://``, ``ftp://``, no host) is refused."""
    if not isinstance(value, str) or len(value) > URL_MAX or not _URL.fullmatch(value):
        raise _fail(
            "url must be an http:// or https:// URL with a host, of at most "
            f"{URL_MAX} characters, got {json.dumps(value)}"
        )
    return value


def parse(args: Mapping[str, Any]) -> Request:
    """Check a pgjobs.http job's arguments (the rules of migration 0004's trigger); raises
    :class:`~pgjobs.errors.InvalidInput` with a one-line reason."""
    unknown = sorted(set(args) - set(ARGUMENTS))
    if unknown:
        raise _fail(
            f"unknown argument(s) {', '.join(repr(u) for u in unknown)}: known are "
            f"{', '.join(ARGUMENTS)}"
        )
    url = check_url(args.get("url"))
    method = args.get("method", METHOD_DEFAULT)
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _fail(f"method must be one of {', '.join(METHODS)}, got {json.dumps(method)}")
    if "json" in args and "body" in args:
        raise _fail("give json or body, not both")
    body = args.get("body")
    if "body" in args and not isinstance(body, str):
        raise _fail("body must be a string (use json for a JSON value)")
    headers = args.get("headers", {})
    if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
        raise _fail("headers must be an object of strings")
    timeout = args.get("timeout", TIMEOUT_DEFAULT)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= TIMEOUT_MAX
    ):
        raise _fail(
            f"timeout must be a number of seconds, more than 0 and at most {TIMEOUT_MAX:g}, "
            f"got {json.dumps(timeout)}"
        )
    statuses = args.get("expected_statuses")
    expected: frozenset[int] | None = None
    if "expected_statuses" in args:
        if (
            not isinstance(statuses, list)
            or not statuses
            or not all(
                isinstance(s, int) and not isinstance(s, bool) and 100 <= s <= 599 for s in statuses
            )
        ):
            raise _fail(
                "expected_statuses must be a non-empty list of HTTP status codes (100-599), "
                f"got {json.dumps(statuses)}"
            )
        expected = frozenset(statuses)
    follow = args.get("follow_redirects", False)
    if not isinstance(follow, bool):
        raise _fail("follow_redirects must be true or false")
    headers = dict(headers)
    content = body.encode("utf-8") if isinstance(body, str) else None
    if "json" in args:
        # Encoded here rather than by httpx, which takes json=None for "no body": a JSON
        # null is a body too.
        content = json.dumps(args["json"], ensure_ascii=False).encode("utf-8")
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    return Request(
        url=url,
        method=method.upper(),
        headers=headers,
        content=content,
        timeout=float(timeout),
        expected=expected,
        follow_redirects=follow,
    )


@dataclass(frozen=True)
class Response:
    """What came back: the status, the kept headers, the body up to :data:`BODY_LIMIT`."""

    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool
    encoding: str

    @property
    def text(self) -> str:
        try:
            text = self.body.decode(self.encoding, errors="replace")
        except LookupError:  # a charset Python does not know
            text = self.body.decode("utf-8", errors="replace")
        # jsonb refuses NUL in strings: a body holding one would make the result unstorable.
        return text.replace("\x00", "\ufffd")


def retryable(status: int) -> bool:
    """Statuses that another attempt may change: a timeout at the server (408), too many
    requests (429), a server error (5xx). Every other unexpected status is final."""
    return status in (408, 429) or status >= 500


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped at
    :data:`RETRY_AFTER_MAX`; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    seconds: float
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


async def send(client: httpx.AsyncClient, request: Request) -> Response:
    """Send ``request`` and read the answer, within ``request.timeout`` for the whole
    exchange (httpx's own timeouts bound each phase, not the total: a server dripping bytes
    would never time out). Raises :class:`pgjobs.Retry` for a timeout or a connection error,
    :class:`pgjobs.Fail` for a URL that cannot be used."""
    import httpx

    async def exchange() -> Response:
        built = client.build_request(
            request.method,
            request.url,
            headers=dict(request.headers),
            content=request.content,
            timeout=httpx.Timeout(request.timeout),
        )
        answer = await client.send(built, stream=True, follow_redirects=request.follow_redirects)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in answer.aiter_bytes():  # content coding (gzip...) undone
                chunks.append(chunk)
                size += len(chunk)
                if size > BODY_LIMIT:
                    break  # the rest is never downloaded
        finally:
            await answer.aclose()
        body = b"".join(chunks)
        kept = {name: answer.headers[name] for name in RESULT_HEADERS if name in answer.headers}
        return Response(
            answer.status_code, kept, body[:BODY_LIMIT], len(body) > BODY_LIMIT,
            answer.encoding or "utf-8",
        )  # fmt: skip

    try:
        return await asyncio.wait_for(exchange(), request.timeout)
    except (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException):
        raise Retry(f"{request.line}: no answer within {request.timeout:g}s") from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.TooManyRedirects) as exc:
        raise Fail(f"{request.line}: {type(exc).__name__}: {exc}") from None
    except httpx.TransportError as exc:
        raise Retry(f"{request.line}: {type(exc).__name__}: {exc or 'connection failed'}") from None


def check_status(request: Request, response: Response) -> None:
    """Raise :class:`pgjobs.Retry` or :class:`pgjobs.Fail` unless the status is expected."""
    if request.accepts(response.status):
        return
    excerpt = " ".join(response.text[:ERROR_BODY_CHARS].split())
    message = f"{request.line}: HTTP {response.status}" + (f": {excerpt}" if excerpt else "")
    if retryable(response.status):
        delay = retry_after(response.headers.get("retry-after"))
        raise Retry(message, after=delay)
    raise Fail(f"{message} (not retried: another attempt would get the same answer)")


def result(response: Response) -> dict[str, Any]:
    """The job's result: status, kept headers, body as text, and the parsed JSON when the
    answer is JSON and was read whole."""
    out: dict[str, Any] = {
        "status": response.status,
        "headers": response.headers,
        "body": response.text,
        "truncated": response.truncated,
    }
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not response.truncated and (kind == "application/json" or kind.endswith("+json")):
        try:
            value = json.loads(response.text)
        except ValueError:
            return out
        if "\\u0000" not in response.text:
            out["json"] = value
    return out


async def run(
    client: httpx.AsyncClient,
    args: Mapping[str, Any],
    *,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The handler's work: check the arguments (a bad one fails the job at once), send,
    judge the status. ``extra_headers`` (the trace context) are added unless the job's own
    headers name them, whatever their case: the caller's choice wins."""
    try:
        request = parse(args)
    except InvalidInput as exc:
        raise Fail(str(exc)) from None
    if extra_headers:
        own = {name.lower() for name in request.headers}
        added = {k: v for k, v in extra_headers.items() if k.lower() not in own}
        request = replace(request, headers={**request.headers, **added})
    response = await send(client, request)
    check_status(request, response)
    return result(response)
