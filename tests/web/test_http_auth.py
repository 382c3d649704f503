"""With tokens, every route but /healthz answers 401 without a valid bearer token, before
reading or validating anything; with a valid one, the route answers as usual."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from web_support import OTHER_TOKEN, TOKEN, LiveServer, count_jobs

from pgjobs.web.auth import Authenticator, BearerTokens

ROUTES = [
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/1"),
    ("GET", "/jobs/1/events"),
    ("POST", "/jobs/1/cancel"),
    ("POST", "/jobs/1/retry"),
    ("GET", "/queues"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/"),
    ("GET", "/no-such-route"),  # no hint of which routes exist
]
WRONG = {
    "no header": {},
    "wrong token": {"Authorization": "Bearer not-the-right-token-at-all"},
    "token prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "basic scheme": {"Authorization": f"Basic {TOKEN}"},
    "empty bearer": {"Authorization": "Bearer"},
}


@pytest.fixture
def guarded(serve: Callable[..., LiveServer]) -> LiveServer:
    return serve(tokens=(TOKEN, OTHER_TOKEN))


@pytest.mark.parametrize("headers", list(WRONG.values()), ids=list(WRONG))
def test_401_without_a_valid_token(guarded: LiveServer, headers: dict[str, str]) -> None:
    with guarded.client() as http:
        for method, path in ROUTES:
            answer = http.request(method, path, headers=headers, json={"task": "a"})
            assert answer.status_code == 401, (method, path)
            assert answer.headers["www-authenticate"] == 'Bearer realm="pgjobs"'
            assert answer.json()["error"] == "unauthorized"


def test_every_guarded_operation_documents_its_401(guarded: LiveServer) -> None:
    """Clients built from /openapi.json (and tests/web/test_http_fuzz.py) take its answers
    as the complete list: each operation behind the token names 401 (/metrics did not)."""
    with guarded.client(TOKEN) as http:
        document = http.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if operation.get("security") != []:
                assert "401" in operation["responses"], (method, path)


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
def test_a_valid_token_opens_every_route(guarded: LiveServer, token: str) -> None:
    with guarded.client(token) as http:
        assert http.post("/jobs", json={"task": "a"}).status_code == 202
        for method, path in ROUTES[1:-1]:
            answer = http.request(method, path.replace("/1", "/404404"))
            assert answer.status_code in (200, 404), (path, answer.text)
            assert answer.status_code == 404 or "404404" not in path


def test_healthz_needs_no_token(guarded: LiveServer) -> None:
    with guarded.client() as http:
        assert http.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_nothing_is_read_before_authentication(
    guarded: LiveServer, conn: psycopg.Connection[Any]
) -> None:
    """Malformed or oversize bodies from an anonymous client get 401, not 422 or 413."""
    with guarded.client() as http:
        malformed = http.post(
            "/jobs", content=b'{"task":', headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 401
        huge = http.post("/jobs", content=b"x" * (1024 * 1024 + 4096))
        assert huge.status_code == 401
    assert count_jobs(conn) == 0


def test_openapi_declares_the_bearer_scheme(guarded: LiveServer) -> None:
    with guarded.client(TOKEN) as http:
        schema = http.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearer": []}]
    assert schema["paths"]["/healthz"]["get"]["security"] == []


def test_cancel_names_the_token_that_asked(
    guarded: LiveServer, conn: psycopg.Connection[Any]
) -> None:
    with guarded.client(OTHER_TOKEN) as http:
        job_id = http.post("/jobs", json={"task": "a"}).json()["id"]
        body = http.post(f"/jobs/{job_id}/cancel").json()
    assert body["error"] == "cancelled through the HTTP API (token#2)"


def test_authenticator_readers_are_tried_in_turn() -> None:
    """A later reader (the dashboard's session cookie) can be added next to the bearer one."""

    def cookie(headers: dict[bytes, bytes]) -> Any:
        from pgjobs.web.auth import Principal

        return Principal("session", ambient=True) if b"cookie" in headers else None

    authenticator = Authenticator([BearerTokens([TOKEN]), cookie])
    bearer = authenticator.authenticate({b"authorization": f"Bearer {TOKEN}".encode()})
    assert bearer is not None and not bearer.ambient
    session = authenticator.authenticate({b"cookie": b"s=1"})
    assert session is not None and session.ambient
    assert authenticator.authenticate({}) is None
    assert Authenticator().authenticate({}) is not None  # no token configured: open


@pytest.mark.parametrize("origin", ["cross-site", "same-site"])
def test_without_tokens_another_sites_page_cannot_post(
    client: httpx.Client, guarded: LiveServer, conn: psycopg.Connection[Any], origin: str
) -> None:
    """No token: a page of another site could make the browser POST a form (text/plain,
    no preflight) to a server on loopback. The browser's Sec-Fetch-Site label refuses it;
    reads, programs (no label) and the same origin pass; with tokens the label is moot (a
    form cannot carry the bearer token)."""
    label = {"Sec-Fetch-Site": origin}
    job_id = client.post("/jobs", json={"task": "a"}).json()["id"]
    refused = client.post(
        "/jobs",
        content=b'{"task": "evil", "x": "="}',
        headers={**label, "Content-Type": "text/plain"},
    )
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "Sec-Fetch-Site" in refused.json()["message"]
    assert client.post(f"/jobs/{job_id}/cancel", headers=label).status_code == 403
    assert count_jobs(conn) == 1 and client.get(f"/jobs/{job_id}").json()["status"] == "queued"
    assert client.get(f"/jobs/{job_id}", headers=label).status_code == 200
    same = client.post("/jobs", json={"task": "b"}, headers={"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 202
    with guarded.client(TOKEN) as http:
        assert http.post("/jobs", json={"task": "c"}, headers=label).status_code == 202
