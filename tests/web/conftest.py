"""Fixtures of the HTTP API tests: the application on this test's database, served by
uvicorn in a thread (real TCP: SSE streams are read as they arrive)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from web_support import LiveServer

import pgjobs
from pgjobs.web import create_app

#: Short intervals, so that heartbeats and the recheck safety net show up within a test.
HEARTBEAT = 0.3
RECHECK = 0.3


@pytest.fixture
def app(pgjobs_dsn: str) -> Iterator[pgjobs.App]:
    app = pgjobs.App(pgjobs_dsn)
    yield app
    app.close()


@pytest.fixture
def serve(app: pgjobs.App) -> Iterator[Callable[..., LiveServer]]:
    """``serve(**create_app options)``: a started server (stopped at the end of the test).
    No token unless given: the environment's PGJOBS_API_TOKENS must not leak in."""
    started: list[LiveServer] = []

    def start(**options: Any) -> LiveServer:
        options.setdefault("tokens", ())
        options.setdefault("heartbeat_seconds", HEARTBEAT)
        options.setdefault("recheck_seconds", RECHECK)
        server = LiveServer(create_app(app, **options)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve: Callable[..., LiveServer]) -> LiveServer:
    return serve()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def conn(pgjobs_conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    return pgjobs_conn
