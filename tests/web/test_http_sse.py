"""GET /jobs/{id}/events: the state at once, an event at each status or progress change
(driven by the events channel), ``end`` with the final state, then the stream closes;
heartbeat comments while nothing happens; a reconnecting client never misses the end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from web_support import LiveServer, RunningWorker, SseReader, claim, finish, progress

import pgjobs
from pgjobs.testing import wait_for
from pgjobs.types import JobStatus
from pgjobs.worker.config import WorkerConfig
from pgjobs.worker.runtime import Worker

#: With this recheck interval nothing is re-read without a notification during a test.
NEVER = 3600.0


@contextmanager
def stream(
    http: httpx.Client, job_id: int, headers: dict[str, str] | None = None
) -> Iterator[SseReader]:
    with http.stream("GET", f"/jobs/{job_id}/events", headers=headers or {}) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert answer.headers["cache-control"] == "no-cache"
        yield SseReader(answer.iter_lines())


def gauge(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing")


def streams_open(http: httpx.Client) -> float:
    return gauge(http, "pgjobs_sse_streams")


def test_events_follow_notifications_to_the_end(
    serve: Callable[..., LiveServer], conn: psycopg.Connection[Any]
) -> None:
    """With the safety net switched off, progress and the end still arrive: they are
    driven by the events channel, not by re-reading the row."""
    server = serve(recheck_seconds=NEVER)
    with server.client() as http:
        # Listening before anything happens: no wake-up on (re)connection can stand in
        # for a notification below.
        wait_for(lambda: gauge(http, "pgjobs_events_listener_up") == 1, message="not listening")
        job_id = http.post("/jobs", json={"task": "t.sse"}).json()["id"]
        with stream(http, job_id) as reader:
            queued = reader.next()
            assert queued is not None and queued.name == "message"
            assert queued.job["status"] == "queued" and queued.id == str(queued.job["version"])
            assert reader.retry == 3000
            token = claim(conn, job_id)  # the claim announces the start (migration 0005)
            first = reader.next()
            assert first is not None and first.job["status"] == "running"
            assert int(first.id or 0) > int(queued.id or 0)
            progress(conn, job_id, token, 40)
            moved = reader.next()
            assert moved is not None and moved.job["progress"] == 40.0
            assert moved.job["progress_message"] == "40% done"
            assert int(moved.id or 0) > int(first.id or 0)
            finish(conn, job_id, token)
            end = reader.next()
            assert end is not None and end.name == "end"
            assert end.job["status"] == "succeeded" and end.job["result"] == {"ok": True}
            assert reader.next() is None  # the server closed the stream
        wait_for(lambda: streams_open(http) == 0, message="the stream was not released")


def test_first_event_is_the_current_state(client: httpx.Client) -> None:
    job_id = client.post("/jobs", json={"task": "t.now", "args": {"n": 1}}).json()["id"]
    with stream(client, job_id) as reader:
        first = reader.next()
    assert first is not None
    assert first.job["status"] == "queued" and first.job["args"] == {"n": 1}
    assert first.job == client.get(f"/jobs/{job_id}").json()


def test_a_worker_drives_the_stream(client: httpx.Client, app: pgjobs.App, pgjobs_dsn: str) -> None:
    """Queued, running (announced by the claim), progress, then end."""
    release = threading.Event()
    worker_app = pgjobs.App(pgjobs_dsn)

    @worker_app.task(name="web.slow")
    def slow() -> dict[str, bool]:
        pgjobs.current_job().set_progress(50, "half way")
        release.wait(20)
        return {"done": True}

    job_id = client.post("/jobs", json={"task": "web.slow"}).json()["id"]
    running = RunningWorker(Worker(worker_app, WorkerConfig(tick_interval=0.5, log_jobs=False)))
    try:
        with stream(client, job_id) as reader:
            seen = [reader.next()]
            while seen[-1] is not None and seen[-1].job.get("progress") != 50.0:
                seen.append(reader.next())
            release.set()
            seen.extend(reader.rest())
    finally:
        release.set()
        running.stop()
        worker_app.close()
    events = [e for e in seen if e is not None]
    statuses = [e.job["status"] for e in events]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded", statuses
    assert "running" in statuses
    assert [e.name for e in events].count("end") == 1 and events[-1].name == "end"
    assert events[-1].job["result"] == {"done": True} and events[-1].job["progress"] == 100.0
    versions = [int(e.id or 0) for e in events]
    assert versions == sorted(set(versions)), "an event repeated or went back in time"


def test_heartbeat_comments_while_nothing_happens(client: httpx.Client) -> None:
    job_id = client.post("/jobs", json={"task": "t.idle"}).json()["id"]
    with client.stream("GET", f"/jobs/{job_id}/events") as answer:
        lines = answer.iter_lines()
        heartbeats = 0
        for line in lines:
            if line == ": keep-alive":
                heartbeats += 1
                if heartbeats == 2:
                    break
    assert heartbeats == 2


def test_a_finished_job_gets_end_at_once(
    client: httpx.Client, conn: psycopg.Connection[Any]
) -> None:
    job_id = client.post("/jobs", json={"task": "t.over"}).json()["id"]
    finish(conn, job_id, claim(conn, job_id), JobStatus.FAILED, error="Boom: <b>bad</b>")
    with stream(client, job_id) as reader:
        events = reader.rest()
    assert [e.name for e in events] == ["end"]
    assert events[0].job["status"] == "failed" and events[0].job["error"] == "Boom: <b>bad</b>"


def test_reconnect_with_last_event_id_gets_the_final_state(
    serve: Callable[..., LiveServer], conn: psycopg.Connection[Any]
) -> None:
    """A client that lost the stream before the end reconnects (as EventSource does, with
    Last-Event-ID) and gets the final state; once it has it, 204 tells it to stop."""
    server = serve(recheck_seconds=NEVER)
    with server.client() as http:
        job_id = http.post("/jobs", json={"task": "t.drop"}).json()["id"]
        token = claim(conn, job_id)
        with stream(http, job_id) as reader:
            last = reader.next()
        assert last is not None  # the client goes away here, before the end
        finish(conn, job_id, token)
        with stream(http, job_id, {"Last-Event-ID": last.id or ""}) as reader:
            events = reader.rest()
        assert [e.name for e in events] == ["end"]
        assert events[0].job["status"] == "succeeded"
        done = http.get(f"/jobs/{job_id}/events", headers={"Last-Event-ID": events[0].id or ""})
        assert done.status_code == 204 and done.content == b""
        # A meaningless Last-Event-ID is ignored.
        with stream(http, job_id, {"Last-Event-ID": "not-a-version"}) as reader:
            assert [e.name for e in reader.rest()] == ["end"]


def test_a_closed_client_releases_its_subscription(client: httpx.Client) -> None:
    job_id = client.post("/jobs", json={"task": "t.leave"}).json()["id"]
    with stream(client, job_id) as reader:
        assert reader.next() is not None
        assert streams_open(client) == 1
    wait_for(lambda: streams_open(client) == 0, message="the stream was not released")


@pytest.mark.parametrize("path", ["/jobs/0/events", "/jobs/x/events"])
def test_bad_ids_are_422(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 422
