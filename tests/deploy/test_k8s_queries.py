"""KEDA's trigger queries in the rendered manifests are exactly what ``pgjobs keda-query``
prints for the queues the scaled workers serve, and, run against a real database holding
a known mix of jobs, they count what they should: ``demand`` = ready + running under a live
lease, ``backlog`` = ready only, ``oldest_ready_age`` = how long the oldest ready job waited.
Ready = queued, due, not blocked by a dependency, in a queue that is not paused."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from manifests import (
    VARIANTS,
    command_line,
    rendered,
    scaled_workload,
    scalers,
    served_queues,
    worker_container,
)
from psycopg import sql

import pgjobs
from pgjobs import keda, queue_control
from pgjobs.testing import DatabaseFactory

QUERY = re.compile(r"^SELECT (?P<schema>\w+)\.(?P<function>\w+)\((?P<argument>.*)\)$")
FUNCTIONS = {function: metric for metric, function in keda.METRICS.items()}
PAUSED = "emails"
OLDEST_AGE = 120.0  # seconds the oldest ready job of an unpaused queue has waited


@dataclass(frozen=True)
class Trigger:
    variant: str
    scaler: str
    name: str
    query: str
    metric: str
    queues: list[str] | None  # what the scaled workers serve; None: every queue


def triggers(variant: str) -> Iterator[Trigger]:
    objects = rendered(variant)
    for scaler in scalers(objects):
        queues = served_queues(command_line(worker_container(scaled_workload(objects, scaler))))
        for trigger in scaler["spec"]["triggers"]:
            query = trigger["metadata"]["query"]
            match = QUERY.match(query)
            assert match, f"not a pgjobs KEDA query: {query!r}"
            yield Trigger(
                variant=variant,
                scaler=f"{scaler['kind']}/{scaler['metadata']['name']}",
                name=trigger["name"],
                query=query,
                metric=FUNCTIONS[match.group("function")],
                queues=queues,
            )


ALL = [t for variant in VARIANTS for t in triggers(variant)]


def test_every_variant_has_its_triggers() -> None:
    seen = {(t.variant, t.scaler, t.metric) for t in ALL}
    assert seen == {
        ("base", "ScaledObject/pgjobs-worker", "demand"),
        ("base", "ScaledObject/pgjobs-worker", "oldest-ready-age"),
        ("base", "ScaledJob/pgjobs-long-jobs", "backlog"),
        ("short-jobs", "ScaledObject/pgjobs-worker", "demand"),
        ("short-jobs", "ScaledObject/pgjobs-worker", "oldest-ready-age"),
        ("long-jobs", "ScaledJob/pgjobs-long-jobs", "backlog"),
    }
    assert all(t.name == t.metric for t in ALL), "each trigger is named after its metric"


@pytest.mark.parametrize("trigger", ALL, ids=lambda t: f"{t.variant}-{t.name}")
def test_the_query_is_what_keda_query_prints(trigger: Trigger) -> None:
    assert trigger.query == keda.trigger_query("pgjobs", trigger.queues, trigger.metric)


@pytest.mark.parametrize("trigger", [t for t in ALL if t.variant == "base"], ids=lambda t: t.name)
def test_the_query_is_what_the_cli_prints(trigger: Trigger, run_cli: Callable[..., Any]) -> None:
    args = ["keda-query", "--metric", trigger.metric]
    if trigger.queues:
        args += ["-q", ",".join(trigger.queues)]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout == trigger.query + "\n"


# --- the counts, on a real database ------------------------------------------------------


@dataclass
class Row:
    queue: str
    state: str  # ready, future, blocked, running, expired, succeeded, failed, cancelled
    waited: float = 0.0  # ready jobs: seconds since they became due


MIX = [
    *[Row("default", "ready") for _ in range(2)],
    Row("default", "ready", waited=OLDEST_AGE),
    Row("default", "future"),
    Row("default", "blocked"),
    Row("default", "running"),
    Row("default", "expired"),
    Row("default", "succeeded"),
    Row("default", "failed"),
    # The paused queue: its ready jobs wait (however old), its running ones still count.
    Row(PAUSED, "ready"),
    Row(PAUSED, "ready", waited=3600),
    Row(PAUSED, "running"),
    Row(PAUSED, "expired"),
    *[Row("reports", "ready") for _ in range(4)],
    Row("reports", "running"),
    Row("reports", "future"),
    Row("reports", "cancelled"),
    Row("sms", "ready"),
    Row("sms", "running"),
    Row("sms", "expired"),
]


def in_scope(row: Row, queues: list[str] | None) -> bool:
    return queues is None or row.queue in queues


def ready(row: Row) -> bool:
    return row.state == "ready" and row.queue != PAUSED


def expected_count(metric: str, queues: list[str] | None) -> int:
    rows = [r for r in MIX if in_scope(r, queues)]
    backlog = sum(ready(r) for r in rows)
    if metric == "backlog":
        return backlog
    assert metric == "demand"
    return backlog + sum(r.state == "running" for r in rows)


def expected_age(queues: list[str] | None) -> float:
    return max((r.waited for r in MIX if in_scope(r, queues) and ready(r)), default=0.0)


def insert(conn: psycopg.Connection[Any], schema: str, app: pgjobs.App, row: Row) -> int:
    jobs = sql.Identifier(schema, "jobs")
    if row.state == "blocked":
        # Waits for a job that is not due before tomorrow.
        (parent,) = conn.execute(
            sql.SQL(
                "INSERT INTO {} (task, queue, not_before) VALUES ('k8s.parent', %s, "
                "now() + interval '1 day') RETURNING id"
            ).format(jobs),
            (row.queue,),
        ).fetchone()
        return app.enqueue("k8s.child", {}, queue=row.queue, depends_on=[parent]).id
    offset = "1 day" if row.state == "future" else f"-{row.waited} seconds"
    (job_id,) = conn.execute(
        sql.SQL(
            "INSERT INTO {} (task, queue, not_before) VALUES ('k8s.job', %s, "
            "now() + %s::interval) RETURNING id"
        ).format(jobs),
        (row.queue, offset),
    ).fetchone()
    if row.state in ("running", "expired"):
        lease = "5 minutes" if row.state == "running" else "-1 minute"
        conn.execute(
            sql.SQL(
                "UPDATE {} SET status = 'running', attempts = 1, started_at = now(),"
                " lease_token = gen_random_uuid(), lease_expires_at = now() + %s::interval"
                " WHERE id = %s"
            ).format(jobs),
            (lease, job_id),
        )
    elif row.state in ("succeeded", "failed", "cancelled"):
        conn.execute(
            sql.SQL(
                "UPDATE {} SET status = %s, attempts = 1, finished_at = now() WHERE id = %s"
            ).format(jobs),
            (row.state, job_id),
        )
    return job_id


@pytest.fixture
def loaded(
    pgjobs_conn: psycopg.Connection[Any], pgjobs_dsn: str, pgjobs_databases: DatabaseFactory
) -> str:
    """The test database holding MIX, with its queue PAUSED paused; yields the schema."""
    schema = pgjobs_databases.schema
    app = pgjobs.App(pgjobs_dsn, schema=schema)
    try:
        ids = [insert(pgjobs_conn, schema, app, row) for row in MIX]
    finally:
        app.close()
    queue_control.set_paused(pgjobs_conn, schema, PAUSED, True)
    # The mix is what it claims to be.
    states = pgjobs_conn.execute(
        sql.SQL(
            "SELECT id, status, blockers, not_before <= now(), lease_expires_at > now()"
            " FROM {} WHERE id = ANY(%s)"
        ).format(sql.Identifier(schema, "jobs")),
        (ids,),
    ).fetchall()
    by_id = {row[0]: row[1:] for row in states}
    for job_id, row in zip(ids, MIX, strict=True):
        status, blockers, due, live = by_id[job_id]
        if row.state in ("ready", "future", "blocked"):
            assert status == "queued"
            assert due is (row.state != "future")
            assert (blockers > 0) is (row.state == "blocked")
        elif row.state in ("running", "expired"):
            assert status == "running"
            assert live is (row.state == "running")
        else:
            assert status == row.state
    return schema


def test_the_queries_count_what_they_should(
    loaded: str, pgjobs_conn: psycopg.Connection[Any]
) -> None:
    schema = loaded
    for trigger in ALL:
        # What a user with PGJOBS_SCHEMA set would paste (the manifests use "pgjobs").
        query = keda.trigger_query(schema, trigger.queues, trigger.metric)
        if schema == "pgjobs":
            assert query == trigger.query
        ((value,),) = pgjobs_conn.execute(query).fetchall()
        where = f"{trigger.variant} {trigger.scaler} {trigger.query}"
        if trigger.metric == "oldest-ready-age":
            expected = expected_age(trigger.queues)
            assert expected > 0
            assert expected <= value < expected + 30, where
        else:
            assert value == expected_count(trigger.metric, trigger.queues), where


def test_the_expected_values_by_hand() -> None:
    """The model above, against numbers worked out by hand from MIX."""
    # default: 3 ready + 1 running; emails (paused): 0 ready + 1 running.
    assert expected_count("demand", ["default", PAUSED]) == 5
    assert expected_count("backlog", ["default", PAUSED]) == 3
    assert expected_count("backlog", ["reports"]) == 4
    # Every queue: 3 + 4 + 1 ready (the paused ones wait), 4 running under a live lease.
    assert expected_count("backlog", None) == 8
    assert expected_count("demand", None) == 12
    # The paused queue's hour-old job does not count.
    assert expected_age(["default", PAUSED]) == expected_age(None) == OLDEST_AGE
