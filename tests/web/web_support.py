"""Helpers of the HTTP API tests: a live server in a thread, an SSE reader, and jobs moved
through their states by the same statements workers use (so that the notifications the
API relies on are the real ones)."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn
from psycopg import sql

from pgjobs import db
from pgjobs.testing import wait_for
from pgjobs.types import JobStatus
from pgjobs.worker.runtime import Worker

SCHEMA = "pgjobs"
#: A good token (PGJOBS_API_TOKENS wants at least 16 characters).
TOKEN = "test-token-0123456789abcdef"
OTHER_TOKEN = "second-token-abcdef0123456789"


class LiveServer:
    """The application under uvicorn, in a thread of the test process, on a free port of
    127.0.0.1: requests and SSE streams go over real TCP, as in production."""

    def __init__(self, api: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # asyncio sets TCP_NODELAY on the connections of sockets uvicorn binds, not on those
        # of a socket handed to it; uvicorn writes headers and body apart, so without it
        # every answer's body waited for the client's delayed ACK (40 ms per request).
        # Accepted connections inherit the option from the listening socket (Linux).
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = api
        config = uvicorn.Config(
            api, log_level="warning", timeout_graceful_shutdown=1, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def start(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, message="the test server did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "the test server did not stop"
        self.socket.close()

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15, **kwargs)


@dataclass
class Event:
    name: str = "message"
    id: str | None = None
    data: str = ""

    @property
    def job(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


@dataclass
class SseReader:
    """Parses a ``text/event-stream`` as it arrives: events and comment lines, in order."""

    lines: Iterator[str]
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def next(self) -> Event | None:
        """The next event (comments seen on the way are recorded); None at the end."""
        current = Event()
        has_field = False
        for line in self.lines:
            if line == "":
                if has_field:
                    return current
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                current.name, has_field = value, True
            elif name == "id":
                current.id, has_field = value, True
            elif name == "data":
                current.data, has_field = value, True
            elif name == "retry":
                self.retry = int(value)
        return None

    def rest(self) -> list[Event]:
        events = []
        while (found := self.next()) is not None:
            events.append(found)
        return events


def count_jobs(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(f"SELECT count(*) FROM {SCHEMA}.jobs").fetchone()
    assert row is not None
    return int(row[0])


def job_row(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        row = cursor.execute(f"SELECT * FROM {SCHEMA}.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row


def claim(conn: psycopg.Connection[Any], job_id: int) -> uuid.UUID:
    """Claim ``job_id`` as a worker would; its lease token. Other ready jobs claimed along
    the way are given back at once (attempt refunded), as a stopping worker does."""
    claimed = db.claim(
        conn, SCHEMA, queues=None, limit=100, worker_id=uuid.uuid4(), lease_seconds=300
    )
    token = None
    for job in claimed:
        if job.id == job_id:
            token = job.lease_token
        else:
            back = db.Outcome(job.id, job.lease_token, JobStatus.QUEUED, refund=True)
            db.run(conn, db.finish(SCHEMA, [back]))
    assert token is not None, f"job {job_id} was not ready: {claimed}"
    return token


def progress(conn: psycopg.Connection[Any], job_id: int, token: uuid.UUID, pct: float) -> None:
    assert db.run(conn, db.set_progress(SCHEMA, job_id, token, pct, f"{pct}% done"))


def finish(
    conn: psycopg.Connection[Any],
    job_id: int,
    token: uuid.UUID,
    status: JobStatus = JobStatus.SUCCEEDED,
    *,
    error: str | None = None,
) -> None:
    outcome = db.Outcome(
        job_id,
        token,
        status,
        result='{"ok": true}' if status is JobStatus.SUCCEEDED else None,
        error=error,
    )
    assert db.run(conn, db.finish(SCHEMA, [outcome])) == {job_id: status}


class RunningWorker:
    """A worker in a background thread (as tests/integration/workers.py), stopped
    gracefully by :meth:`stop`."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 30) -> None:
        wait_for(lambda: self.worker._kick is not None, message="worker never started")
        self.worker.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_http(url: str, timeout: float = 30) -> httpx.Response:
    """GET ``url`` until the server answers (any status), within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def pgjobs_executable() -> str:
    """The installed ``pgjobs`` script next to the running interpreter."""
    candidate = Path(sys.executable).with_name("pgjobs")
    found = str(candidate) if candidate.exists() else shutil.which("pgjobs")
    assert found, "the pgjobs command is not installed: pip install -e '.[dev]'"
    return found


def explain(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> dict[str, Any]:
    """The executed plan of ``query`` (``{schema}`` is pgjobs), rolled back: the plan tests
    of /metrics and of the dashboard read rows and index names from it."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL jit = off")
        statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + sql.SQL(query).format(
            schema=sql.Identifier("pgjobs")
        )
        row = conn.execute(statement, params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)
