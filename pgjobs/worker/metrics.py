"""A worker's own metrics, and the tiny HTTP endpoint that serves them
(``pgjobs worker --metrics-port``).

The database tells how much work is waiting (the HTTP API's ``/metrics``); only a worker
knows how long its handlers take, how they end, and whether its wake-ups work: a safety-net
poll that finds work is a notification that was missed (a pooler in transaction mode, a
lost listening connection).

Counting is on the hot path of every job, so it is plain integer arithmetic on the event
loop: every count is made by code that runs on the loop (the executor awaits sync handlers'
threads, so a thread never counts), hence no lock. Label sets are bounded: ``task`` is a
task this worker knows (others, which could be any text a producer wrote, share one
series), ``outcome`` one of :data:`OUTCOMES`.

The endpoint is an ``asyncio`` server on the worker's loop: no thread, no dependency. It
reads one request (bounded in size and time), answers, and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from bisect import bisect_left
from collections.abc import Callable, Collection, Sequence

from pgjobs import __version__
from pgjobs.db import Outcome
from pgjobs.log import get_logger
from pgjobs.metrics_text import CONTENT_TYPE, Exposition, Family
from pgjobs.types import JobStatus

#: Seconds: 5 ms to 5 min.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)  # fmt: skip
#: Outcomes per completion write (at most FINISH_BATCH_MAX).
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
OUTCOMES = ("succeeded", "failed", "cancelled", "retried", "snoozed", "handed_back", "lease_lost")
#: The ``task`` label of jobs whose task this worker does not know.
UNKNOWN_TASK = "_unknown"
#: A request's line and headers must fit in this, and arrive within REQUEST_TIMEOUT.
REQUEST_LIMIT = 16 * 1024
REQUEST_TIMEOUT = 10.0

FAMILIES = {
    f.name: f
    for f in (
        Family(
            "pgjobs_worker_info",
            "gauge",
            "Always 1; the worker's id (as in pgjobs.workers) and pgjobs version as labels.",
        ),
        Family("pgjobs_worker_concurrency", "gauge", "Jobs this worker runs at once at most."),
        Family("pgjobs_worker_jobs_running", "gauge", "Jobs this worker is running now."),
        Family(
            "pgjobs_worker_jobs_started_total",
            "counter",
            "Jobs this worker started (claimed and began running), by task.",
        ),
        Family(
            "pgjobs_worker_jobs_ended_total",
            "counter",
            "Runs that ended on this worker, by task and outcome (succeeded, failed, "
            "cancelled, retried, snoozed, handed_back, lease_lost).",
        ),
        Family(
            "pgjobs_worker_job_duration_seconds",
            "histogram",
            "Time from a job's start on this worker to its outcome, by task.",
        ),
        Family(
            "pgjobs_worker_claims_total",
            "counter",
            "Claim statements run (each takes up to the free slots).",
        ),
        Family("pgjobs_worker_jobs_claimed_total", "counter", "Jobs taken by those claims."),
        Family(
            "pgjobs_worker_notifications_total",
            "counter",
            "Notifications of new jobs received on the listening connection.",
        ),
        Family(
            "pgjobs_worker_polls_total",
            "counter",
            "Safety-net polls: claims made because the poll interval passed, not because of "
            "a notification, a timer or a previous full claim.",
        ),
        Family(
            "pgjobs_worker_polls_found_work_total",
            "counter",
            "Safety-net polls that claimed jobs: work no notification announced (missed "
            "notifications, unless the worker runs with --no-listen).",
        ),
        Family(
            "pgjobs_worker_lease_lost_total",
            "counter",
            "Writes refused because the run had lost its lease (fenced: expired or taken "
            "over): outcomes, progress, transactions.",
        ),
        Family(
            "pgjobs_worker_completer_batch_size",
            "histogram",
            "Outcomes written per completion statement.",
        ),
    )
}


class Histogram:
    """Fixed buckets; ``counts[i]`` is non-cumulative (rendering accumulates)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # bucket i holds value <= bounds[i]
        self.count += 1
        self.sum += value


def outcome_label(outcome: Outcome) -> str:
    """The ``outcome`` label of an outcome built by :mod:`pgjobs.outcomes` (hand-backs and
    lost leases are labelled where they happen)."""
    if outcome.status is JobStatus.QUEUED:
        return "snoozed" if outcome.refund else "retried"
    return str(outcome.status.value)


class WorkerMetrics:
    """The counters of one worker process, since it started."""

    def __init__(self, worker_id: str, tasks: Collection[str], concurrency: int) -> None:
        self.worker_id = worker_id
        self.tasks = tasks
        self.concurrency = concurrency
        self.started: dict[str, int] = {}
        self.ended: dict[tuple[str, str], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.claims = 0
        self.claimed = 0
        self.notifications = 0
        self.polls = 0
        self.polls_found_work = 0
        self.lease_lost = 0
        self.batch_sizes = Histogram(BATCH_BUCKETS)

    def task(self, name: str) -> str:
        return name if name in self.tasks else UNKNOWN_TASK

    def job_started(self, task: str) -> None:
        label = self.task(task)
        self.started[label] = self.started.get(label, 0) + 1

    def job_ended(self, task: str, outcome: str, seconds: float) -> None:
        label = self.task(task)
        key = (label, outcome)
        self.ended[key] = self.ended.get(key, 0) + 1
        histogram = self.durations.get(label)
        if histogram is None:
            histogram = self.durations[label] = Histogram(DURATION_BUCKETS)
        histogram.observe(seconds)

    def claim(self, jobs: int) -> None:
        self.claims += 1
        self.claimed += jobs

    def poll(self, jobs: int) -> None:
        self.polls += 1
        if jobs:
            self.polls_found_work += 1

    def render(self, running: int) -> str:
        out = Exposition(FAMILIES)
        out.add("pgjobs_worker_info", 1, worker_id=self.worker_id, version=__version__)
        out.add("pgjobs_worker_concurrency", self.concurrency)
        out.add("pgjobs_worker_jobs_running", running)
        for task in sorted(self.started):
            out.add("pgjobs_worker_jobs_started_total", self.started[task], task=task)
        for (task, outcome), count in sorted(self.ended.items()):
            out.add("pgjobs_worker_jobs_ended_total", count, task=task, outcome=outcome)
        for task, h in sorted(self.durations.items()):
            out.add_histogram(
                "pgjobs_worker_job_duration_seconds", h.bounds, h.counts, h.sum, task=task
            )
        out.add("pgjobs_worker_claims_total", self.claims)
        out.add("pgjobs_worker_jobs_claimed_total", self.claimed)
        out.add("pgjobs_worker_notifications_total", self.notifications)
        out.add("pgjobs_worker_polls_total", self.polls)
        out.add("pgjobs_worker_polls_found_work_total", self.polls_found_work)
        out.add("pgjobs_worker_lease_lost_total", self.lease_lost)
        b = self.batch_sizes
        out.add_histogram("pgjobs_worker_completer_batch_size", b.bounds, b.counts, b.sum)
        return out.render()


class MetricsServer:
    """``GET /metrics`` on ``host:port`` (port 0: any free port, see :attr:`port`); every
    other path answers 404, every other method on ``/metrics`` 405."""

    def __init__(self, host: str, port: int, render: Callable[[], str]) -> None:
        self.host = host
        self.port = port
        self._render = render
        self._server: asyncio.Server | None = None
        self._log = get_logger("pgjobs.worker.metrics")

    async def start(self) -> None:
        """Bind now: a port in use is an error at start, not a silent absence of metrics."""
        self._server = await asyncio.start_server(
            self._answer, self.host, self.port, limit=REQUEST_LIMIT, reuse_address=True
        )
        sockets = self._server.sockets
        if sockets and sockets[0].family in (socket.AF_INET, socket.AF_INET6):
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return  # not HTTP, too big or too slow: just close
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.partition(" ")[0].partition("?")[0]
            if path != "/metrics":
                status, body, kind = "404 Not Found", b"not found; try /metrics\n", "text/plain"
            elif method not in ("GET", "HEAD"):
                status, body, kind = "405 Method Not Allowed", b"GET only\n", "text/plain"
            else:
                status, body, kind = "200 OK", self._render().encode(), CONTENT_TYPE
            self._log.debug("metrics.request", method=method, path=path, status=status[:3])
            headers = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(headers.encode("latin-1") + (b"" if method == "HEAD" else body))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
