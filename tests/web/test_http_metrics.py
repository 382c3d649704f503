"""GET /metrics: valid Prometheus text format, consistent names, numbers that follow the
database, and queries that stay index-driven on a big table (EXPLAIN, not timing)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from web_support import claim, explain, finish, nodes

from pgjobs.testing import DatabaseFactory
from pgjobs.types import JobStatus
from pgjobs.web.metrics import FAMILIES, GLOBAL, QUEUES, RECENT_FAILURES

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"')
SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)


@dataclass
class Family:
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    """A strict reader of the text format 0.0.4: HELP and TYPE once per family, before its
    samples; samples of a family together; valid names, labels and values; a final newline."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    helps: dict[str, str] = {}
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number}: {line!r}"
        assert line, f"{where}: blank line"
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert NAME.match(name) and name not in helps, where
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), where
            assert name in helps and name not in families, f"{where}: TYPE without HELP"
            families[name] = Family(kind, helps[name])
            current = name
        else:
            match = SAMPLE.match(line)
            assert match, f"{where}: not a sample"
            name = match["name"]
            assert name == current, f"{where}: sample outside its family"
            labels_text = match["labels"] or ""
            labels = dict(LABEL.findall(labels_text))
            rebuilt = ",".join(f'{k}="{v}"' for k, v in LABEL.findall(labels_text))
            assert rebuilt == labels_text, f"{where}: malformed labels"
            value = float(match["value"])  # raises on anything that is not a number
            families[name].samples.append((labels, value))
    return families


def scrape(client: httpx.Client) -> dict[str, Family]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(answer.text)


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    for found, number in families[name].samples:
        if found == labels:
            return number
    raise AssertionError(f"no sample {name}{labels}")


def test_names_and_types_are_consistent(client: httpx.Client) -> None:
    client.post("/jobs", json={"task": "t.m", "queue": "emails"})
    families = scrape(client)
    assert set(families) <= set(FAMILIES)
    for name, family in families.items():
        assert name.startswith("pgjobs_"), name
        assert family.kind == FAMILIES[name].kind
        assert name.endswith("_total") == (family.kind == "counter"), name
        if name.startswith("pgjobs_queue_"):
            assert all(set(labels) == {"queue"} for labels, _ in family.samples), name
        assert not any(math.isnan(v) for _, v in family.samples), name
    assert value(families, "pgjobs_up") == 1


def test_numbers_follow_the_database(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    ids = [
        client.post("/jobs", json={"task": "t.m", "queue": "emails"}).json()["id"] for _ in range(3)
    ]
    client.post("/jobs", json={"task": "t.m", "queue": "emails", "delay": "1h"})
    client.post("/jobs", json={"task": "t.m", "queue": "held"})
    conn.execute("INSERT INTO pgjobs.queues (name, paused) VALUES ('held', true)")
    token = claim(conn, ids[0])
    failed = ids[1]
    finish(conn, failed, claim(conn, failed), JobStatus.FAILED, error="boom")
    conn.execute(
        "UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 s' WHERE id = %s", (ids[0],)
    )
    conn.execute(
        "UPDATE pgjobs.jobs SET not_before = now() - interval '90 s' WHERE id = %s", (ids[2],)
    )

    families = scrape(client)
    assert value(families, "pgjobs_queue_ready_jobs", queue="emails") == 1
    assert value(families, "pgjobs_queue_oldest_ready_age_seconds", queue="emails") >= 90
    assert value(families, "pgjobs_queue_running_jobs", queue="emails") == 1
    assert value(families, "pgjobs_queue_expired_lease_jobs", queue="emails") == 1
    assert value(families, "pgjobs_queue_recently_failed_jobs", queue="emails") == 1
    assert value(families, "pgjobs_queue_paused", queue="held") == 1
    assert value(families, "pgjobs_queue_ready_jobs", queue="held") == 0  # as backlog() says
    assert value(families, "pgjobs_jobs_enqueued_total") == 5
    assert value(families, "pgjobs_oldest_transaction_age_seconds") >= 0
    assert value(families, "pgjobs_xmin_horizon_age_xids") >= 0

    # The ending heard on the events channel is counted (the notification may arrive
    # just after the finish returns: wait for it, bounded).
    from pgjobs.testing import wait_for

    wait_for(
        lambda: value(scrape(client), "pgjobs_jobs_ended_total", status="failed") == 1,
        message="the failure was not counted",
    )
    finish(conn, ids[0], token)
    wait_for(
        lambda: value(scrape(client), "pgjobs_jobs_ended_total", status="succeeded") == 1,
        message="the success was not counted",
    )
    # A drained queue keeps its series, at 0.
    conn.execute("DELETE FROM pgjobs.jobs WHERE queue = 'emails'")
    assert value(scrape(client), "pgjobs_queue_running_jobs", queue="emails") == 0


def test_label_values_are_escaped() -> None:
    from pgjobs.web.metrics import Exposition

    out = Exposition()
    out.add("pgjobs_queue_paused", 1, queue='we"ird\\na\nme')
    families = parse(out.render())
    assert families["pgjobs_queue_paused"].samples == [({"queue": 'we\\"ird\\\\na\\nme'}, 1.0)]


# --- cheap with millions of rows -----------------------------------------------------

FINISHED = 200_000
RUNNING = 20
DUE = 300
ROW_BUDGET = 500


@pytest.fixture(scope="module")
def big(pgjobs_databases: DatabaseFactory) -> Iterator[psycopg.Connection[Any]]:
    """200,000 finished jobs (a tenth failed, long ago), 20,000 future jobs, a few hundred
    due ones in two queues, some running: what a scrape must not walk through."""
    dsn = pgjobs_databases.create()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, status, attempts, max_attempts,
                                         started_at, finished_at, created_at, not_before)
                SELECT 'done.task', CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 0,
                       CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1, 3,
                       now() - interval '1 day', now() - interval '1 day',
                       now() - interval '2 days', now() - interval '2 days'
                  FROM generate_series(1, {FINISHED}) AS g"""
        )
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, not_before, max_attempts)
                SELECT 'later.task', 'a', 10, now() + interval '1 day', 3
                  FROM generate_series(1, {FINISHED // 10})"""
        )
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, not_before, max_attempts)
                SELECT 'now.task', CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, g % 3,
                       now() - interval '1 minute', 3
                  FROM generate_series(1, {DUE}) AS g"""
        )
        conn.execute(
            f"""INSERT INTO pgjobs.jobs (task, queue, priority, status, attempts, max_attempts,
                                         lease_token, lease_expires_at, started_at)
                SELECT 'busy.task', 'a', 0, 'running', 1, 3, gen_random_uuid(),
                       now() + interval '1 hour', now()
                  FROM generate_series(1, {RUNNING})"""
        )
        conn.execute("VACUUM ANALYZE pgjobs.jobs")
        yield conn
    pgjobs_databases.drop(dsn)


def test_queue_metrics_touch_only_live_jobs(big: psycopg.Connection[Any]) -> None:
    plan = explain(big, QUEUES, {"recent": RECENT_FAILURES})
    scans = [n for n in nodes(plan) if n.get("Relation Name") == "jobs"]
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), scans
    assert {n["Index Name"] for n in scans} <= {
        "jobs_ready_idx",
        "jobs_running_idx",
        "jobs_finished_idx",
    }
    read = sum(n["Actual Rows"] * n.get("Actual Loops", 1) for n in scans)
    assert read <= RUNNING + ROW_BUDGET, scans  # not the 220,000 rows of the table


def test_global_metrics_read_no_table_rows(big: psycopg.Connection[Any]) -> None:
    params = {"table": "pgjobs.jobs", "schema": "pgjobs"}
    plan = explain(big, GLOBAL, params)
    assert not [n for n in nodes(plan) if n.get("Relation Name") == "jobs"], plan
    row = big.execute(sql.SQL(GLOBAL).format(schema=sql.Identifier("pgjobs")), params).fetchone()
    assert row is not None
    failed_estimate, enqueued, rows_estimate = row[0], row[1], row[2]
    assert abs(failed_estimate - FINISHED // 10) <= FINISHED // 50, failed_estimate
    assert enqueued == FINISHED + FINISHED // 10 + DUE + RUNNING
    assert abs(rows_estimate - enqueued) <= enqueued // 50
