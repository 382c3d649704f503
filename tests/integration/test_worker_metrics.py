"""The worker's metrics port (``pgjobs worker --metrics-port``): valid Prometheus text, counts
that follow what ran, a missed notification seen as a poll that found work, and the port rule
of ``--processes``."""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from workers import Running

import pgjobs
from pgjobs.testing import wait_for
from pgjobs.worker.config import WorkerConfig
from pgjobs.worker.metrics import DURATION_BUCKETS, FAMILIES
from pgjobs.worker.runtime import Worker

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count")}


@dataclass
class Family:
    kind: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    """A strict reader of the text format 0.0.4: HELP then TYPE once per family, before its
    samples, which come together; histogram samples only with their suffixes, buckets
    cumulative and ending at +Inf equal to _count; a final newline."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    helped: set[str] = set()
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number}: {line!r}"
        assert line, f"{where}: blank line"
        if line.startswith("# HELP "):
            name = line[len("# HELP ") :].partition(" ")[0]
            assert NAME.match(name) and name not in helped, where
            helped.add(name)
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert kind in ("counter", "gauge", "histogram"), where
            assert name in helped and name not in families, f"{where}: TYPE without HELP"
            families[name] = Family(kind)
            current = name
        else:
            match = SAMPLE.match(line)
            assert match and current is not None, f"{where}: not a sample"
            suffix = match["name"][len(current) :]
            assert match["name"].startswith(current), f"{where}: sample outside its family"
            assert suffix in SUFFIXES.get(families[current].kind, ("",)), where
            labels_text = match["labels"] or ""
            pairs = LABEL.findall(labels_text)
            assert ",".join(f'{k}="{v}"' for k, v in pairs) == labels_text, where
            families[current].samples.append((suffix, dict(pairs), float(match["value"])))
    for name, family in families.items():
        if family.kind == "histogram":
            check_histogram(name, family)
    return families


def check_histogram(name: str, family: Family) -> None:
    series: dict[tuple[tuple[str, str], ...], list[tuple[str, dict[str, str], float]]] = {}
    for suffix, labels, number in family.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        series.setdefault(key, []).append((suffix, labels, number))
    for key, samples in series.items():
        buckets = [(s[1]["le"], s[2]) for s in samples if s[0] == "_bucket"]
        counts = [n for _, n in buckets]
        assert counts == sorted(counts), f"{name}{key}: buckets not cumulative"
        assert buckets[-1][0] == "+Inf", f"{name}{key}: no +Inf bucket"
        (count,) = [s[2] for s in samples if s[0] == "_count"]
        assert buckets[-1][1] == count, f"{name}{key}: +Inf bucket differs from _count"


def scrape(port: int, path: str = "/metrics") -> dict[str, Family]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        families = parse(answer.read().decode())
    assert set(families) <= set(FAMILIES)
    for name, family in families.items():
        assert name.startswith("pgjobs_worker_"), name
        assert family.kind == FAMILIES[name].kind, name
        assert name.endswith("_total") == (family.kind == "counter"), name
    return families


def value(families: dict[str, Family], name: str, suffix: str = "", **labels: str) -> float:
    found = [n for s, lab, n in families[name].samples if s == suffix and lab == labels]
    return found[0] if found else 0.0


def total(families: dict[str, Family], name: str, **labels: str) -> float:
    """The sum over the series whose labels include these (0 for a family not shown yet)."""
    family = families.get(name)
    return sum(
        n
        for s, lab, n in (family.samples if family is not None else [])
        if s == "" and all(lab.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
def metered(app: pgjobs.App) -> Iterator[Callable[..., Running]]:
    """Like conftest's ``start``, with the metrics port on (any free port)."""
    started: list[Running] = []

    def start(**options: Any) -> Running:
        options.setdefault("tick_interval", 0.5)
        options.setdefault("log_jobs", False)
        running = Running(Worker(app, WorkerConfig(**options), metrics_port=0))
        started.append(running)
        wait_for(lambda: running.worker.loop is not None, message="worker never started")
        server = running.worker.metrics_server
        assert server is not None
        wait_for(lambda: server.port != 0, message="the metrics port never opened")
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


def port_of(running: Running) -> int:
    assert running.worker.metrics_server is not None
    return running.worker.metrics_server.port


def finished(conn: psycopg.Connection[Any], ids: list[int]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE id = ANY(%s) AND finished_at IS NOT NULL", (ids,)
    ).fetchone()
    return row is not None and row[0] == len(ids)


def test_counts_follow_what_ran(
    app: pgjobs.App, metered: Callable[..., Running], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="metrics.ok")
    def ok(n: int) -> int:
        return n

    @app.task(name="metrics.boom", max_attempts=1)
    async def boom() -> None:
        raise RuntimeError("always")

    running = metered()
    port = port_of(running)
    ids = [app.enqueue("metrics.ok", {"n": n}).id for n in range(5)]
    ids += [app.enqueue("metrics.boom").id for _ in range(2)]
    ids.append(app.enqueue("metrics.nobody-knows", max_attempts=1).id)
    wait_for(lambda: finished(pgjobs_conn, ids), message="jobs did not finish")
    # Counted before the outcome is written: once the rows are final, so are the counts.
    families = scrape(port)
    assert value(families, "pgjobs_worker_jobs_started_total", task="metrics.ok") == 5
    assert value(families, "pgjobs_worker_jobs_started_total", task="metrics.boom") == 2
    assert value(families, "pgjobs_worker_jobs_started_total", task="_unknown") == 1
    ended = "pgjobs_worker_jobs_ended_total"
    assert value(families, ended, task="metrics.ok", outcome="succeeded") == 5
    assert value(families, ended, task="metrics.boom", outcome="failed") == 2
    assert value(families, ended, task="_unknown", outcome="failed") == 1
    assert total(families, ended) == 8
    duration = "pgjobs_worker_job_duration_seconds"
    for task, count in (("metrics.ok", 5), ("metrics.boom", 2), ("_unknown", 1)):
        assert value(families, duration, "_count", task=task) == count
        assert value(families, duration, "_count", task=task) == total(families, ended, task=task)
        samples = families[duration].samples
        buckets = [lab["le"] for s, lab, _ in samples if s == "_bucket" and lab["task"] == task]
        assert buckets[:-1] == [repr(b) for b in DURATION_BUCKETS] and buckets[-1] == "+Inf"
    assert value(families, "pgjobs_worker_jobs_claimed_total") == 8
    assert value(families, "pgjobs_worker_claims_total") >= 1
    assert value(families, "pgjobs_worker_jobs_running") == 0
    assert value(families, "pgjobs_worker_lease_lost_total") == 0
    assert value(families, "pgjobs_worker_completer_batch_size", "_sum") == 8
    assert value(families, "pgjobs_worker_completer_batch_size", "_count") >= 1
    (info,) = families["pgjobs_worker_info"].samples
    assert info[1] == {"worker_id": str(running.worker.id), "version": pgjobs.__version__}
    assert info[2] == 1


def test_other_paths_and_methods_are_refused(metered: Callable[..., Running]) -> None:
    port = port_of(metered())
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    assert missing.value.code == 404
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405
    # Not HTTP at all: the connection is closed, the server keeps serving.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"hello\r\n")
        raw.shutdown(socket.SHUT_WR)
        assert raw.recv(100) == b""
    assert scrape(port)["pgjobs_worker_info"].samples


def test_a_missed_notification_is_a_poll_that_found_work(
    app: pgjobs.App, metered: Callable[..., Running], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    @app.task(name="metrics.ok")
    def ok() -> None:
        return None

    running = metered(poll_interval=0.2)
    port = port_of(running)
    notified = app.enqueue("metrics.ok").id
    wait_for(lambda: finished(pgjobs_conn, [notified]), message="the notified job did not run")
    wait_for(
        lambda: value(scrape(port), "pgjobs_worker_notifications_total") >= 1,
        message="no notification counted",
    )
    before = scrape(port)
    assert value(before, "pgjobs_worker_polls_total") >= 0
    # The notify trigger does not fire in replica mode: the job is there, unannounced.
    with pgjobs_conn.transaction():
        pgjobs_conn.execute("SET LOCAL session_replication_role = replica")
        row = pgjobs_conn.execute(
            sql.SQL(
                "INSERT INTO {}.jobs (task, queue, priority, max_attempts) "
                "VALUES ('metrics.ok', 'default', 0, 3) RETURNING id"
            ).format(sql.Identifier(app.schema))
        ).fetchone()
    assert row is not None
    wait_for(lambda: finished(pgjobs_conn, [row[0]]), message="the poll never found the job")
    after = scrape(port)
    assert value(after, "pgjobs_worker_polls_found_work_total") == (
        value(before, "pgjobs_worker_polls_found_work_total") + 1
    )
    assert value(after, "pgjobs_worker_notifications_total") == value(
        before, "pgjobs_worker_notifications_total"
    )
    assert value(after, "pgjobs_worker_polls_total") > value(before, "pgjobs_worker_polls_total")


# --- the command ----------------------------------------------------------------------

APP = """
import pgjobs

app = pgjobs.App()

@app.task(name="metrics.ok")
def ok() -> None:
    return None
"""


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free now (a race with other programs is
    possible but unlikely)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError("no consecutive free ports")


def answers(port: int) -> dict[str, Family] | None:
    try:
        return scrape(port)
    except (OSError, urllib.error.URLError):
        return None


def test_the_command_serves_one_port_per_process_and_stops_on_sigterm(
    tmp_path: Path, pgjobs_dsn: str, app: pgjobs.App, pgjobs_conn: psycopg.Connection[Any]
) -> None:
    (tmp_path / "jobsapp.py").write_text(APP)
    first = consecutive_free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    env.update(PGJOBS_DSN=pgjobs_dsn, PGJOBS_SCHEMA=app.schema)
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("pgjobs")), "worker", "--app", "jobsapp",
         "--processes", "2", "--metrics-port", str(first)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ids = set()
        for port in (first, first + 1):
            scraped = wait_for(
                functools.partial(answers, port), timeout=30, message=f"port {port} never answered"
            )
            assert scraped is not None
            ids.add(scraped["pgjobs_worker_info"].samples[0][1]["worker_id"])
        assert len(ids) == 2, "each process serves its own metrics"
        job = app.enqueue("metrics.ok").id
        wait_for(lambda: finished(pgjobs_conn, [job]), timeout=30, message="job did not run")
        ended = sum(
            total(scrape(port), "pgjobs_worker_jobs_ended_total", outcome="succeeded")
            for port in (first, first + 1)
        )
        assert ended == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert answers(first) is None and answers(first + 1) is None


def test_port_zero_is_refused_with_several_processes(
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = run_cli("worker", "--app", "nowhere", "--processes", "2", "--metrics-port", "0")
    assert result.returncode == 2
    assert "--metrics-port 0" in result.stderr
