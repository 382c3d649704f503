"""The SQL contract: plain INSERT and pgjobs.enqueue() wake listeners, task defaults apply to
every producer, bad input is refused in the database, and backlog()/demand() count what the
spec says."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from pgjobs.db import claim

Conn = psycopg.Connection[Any]


def notifications(
    conn: Conn, expected: int = 0, timeout: float = 5.0, quiet: float = 0.3
) -> list[dict[str, Any]]:
    """Wait (at most ``timeout`` s) for ``expected`` notifications, then ``quiet`` seconds more
    to catch any extra one, and return all their payloads."""
    got = (
        [json.loads(n.payload) for n in conn.notifies(timeout=timeout, stop_after=expected)]
        if expected
        else []
    )
    assert len(got) == expected, f"expected {expected} notifications within {timeout}s, got {got}"
    return got + [json.loads(n.payload) for n in conn.notifies(timeout=quiet)]


@pytest.fixture
def listener(pgjobs_dsn: str) -> Any:
    with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
        conn.execute("LISTEN pgjobs_jobs")
        yield conn


def test_plain_insert_wakes_a_listener_once_per_queue_per_statement(
    pgjobs_conn: Conn, listener: Conn
) -> None:
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, args, queue)"
        " SELECT 'emails.send', '{}', q FROM unnest(ARRAY['a', 'a', 'a', 'b']) AS q"
    )
    payloads = notifications(listener, expected=2)
    assert sorted(p["queue"] for p in payloads) == ["a", "b"]
    assert all("at" not in p for p in payloads)


def test_enqueue_function_wakes_a_listener(pgjobs_conn: Conn, listener: Conn) -> None:
    job_id = pgjobs_conn.execute(
        "SELECT pgjobs.enqueue('emails.send', '{\"to\": \"a@example.com\"}')"
    ).fetchone()
    assert notifications(listener, expected=1) == [{"queue": "default"}]
    assert job_id is not None and job_id[0] > 0


def test_future_jobs_announce_their_start_time(pgjobs_conn: Conn, listener: Conn) -> None:
    pgjobs_conn.execute("SELECT pgjobs.enqueue('t', not_before => now() + interval '1 hour')")
    [got] = notifications(listener, expected=1)
    due = pgjobs_conn.execute(
        "SELECT extract(epoch FROM not_before)::float FROM pgjobs.jobs"
    ).fetchone()
    assert due is not None and got["at"] == pytest.approx(due[0])


def test_a_rolled_back_insert_notifies_nobody(pgjobs_dsn: str, listener: Conn) -> None:
    with psycopg.connect(pgjobs_dsn) as conn:
        conn.execute("INSERT INTO pgjobs.jobs (task) VALUES ('t')")
        conn.rollback()
    assert notifications(listener) == []


def test_spec_examples_run_as_written(pgjobs_conn: Conn) -> None:
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, args) VALUES ('emails.send', '{\"to\": \"a@example.com\"}')"
    )
    pgjobs_conn.execute(
        """SELECT pgjobs.enqueue('emails.send', '{"to": "a@example.com"}'::jsonb,
                                 queue => 'emails', priority => 5,
                                 not_before => now() + interval '10 minutes',
                                 dedupe_key => 'welcome:42')"""
    )
    row = pgjobs_conn.execute(
        "SELECT pgjobs.backlog(), pgjobs.backlog(ARRAY['emails']), pgjobs.demand(ARRAY['emails'])"
    ).fetchone()
    assert row == (1, 0, 0)
    defaults = pgjobs_conn.execute(
        "SELECT queue, priority, max_attempts, status, attempts FROM pgjobs.jobs ORDER BY id LIMIT 1"
    ).fetchone()
    assert defaults == ("default", 0, 3, "queued", 0)


def test_task_defaults_apply_to_sql_producers_but_explicit_values_win(pgjobs_conn: Conn) -> None:
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.tasks (name, queue, priority, max_attempts) VALUES ('reports.build', 'reports', 7, 9)"
    )
    pgjobs_conn.execute("INSERT INTO pgjobs.jobs (task) VALUES ('reports.build')")
    pgjobs_conn.execute("SELECT pgjobs.enqueue('reports.build', queue => 'urgent', priority => 1)")
    rows = pgjobs_conn.execute(
        "SELECT queue, priority, max_attempts FROM pgjobs.jobs ORDER BY id"
    ).fetchall()
    assert rows == [("reports", 7, 9), ("urgent", 1, 9)]


def test_dedupe_returns_the_unfinished_job_and_changes_nothing(pgjobs_conn: Conn) -> None:
    notices: list[str] = []
    pgjobs_conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    first = pgjobs_conn.execute(
        "SELECT pgjobs.enqueue('t', '{\"n\": 1}', dedupe_key => 'k')"
    ).fetchone()
    second = pgjobs_conn.execute(
        "SELECT pgjobs.enqueue('t', '{\"n\": 2}', dedupe_key => 'k')"
    ).fetchone()
    assert first == second
    assert pgjobs_conn.execute("SELECT args FROM pgjobs.jobs").fetchall() == [({"n": 1},)]
    assert any("dedupe_key 'k' is held by unfinished job" in n for n in notices)
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET status = 'succeeded', finished_at = now()")
    third = pgjobs_conn.execute("SELECT pgjobs.enqueue('t', dedupe_key => 'k')").fetchone()
    assert third != first, "a finished job no longer holds its dedupe key"


BAD_ENQUEUE = [
    ("task => 'bad name'", "invalid task name"),
    ("task => ''", "invalid task name"),
    ("task => repeat('x', 201)", "invalid task name"),
    ("task => 't', queue => 'a b'", "invalid queue name"),
    ("task => 't', args => '[1, 2]'", "args must be a JSON object, got array"),
    ("task => 't', args => NULL", "args must be a JSON object"),
    ("task => 't', priority => 1001", "priority 1001 is out of range"),
    ("task => 't', max_attempts => 0", "max_attempts 0 is out of range"),
    ("task => 't', callback_url => 'ftp://x'", "invalid callback_url"),
    ("task => 't', dedupe_key => ''", "dedupe_key must have 1-512 characters"),
    (
        "task => 't', args => jsonb_build_object('blob', repeat('x', 1100000))",
        "over the limit of 1048576",
    ),
]


@pytest.mark.parametrize(("call", "message"), BAD_ENQUEUE)
def test_enqueue_refuses_bad_input_with_a_clear_message(
    pgjobs_conn: Conn, call: str, message: str
) -> None:
    with pytest.raises(psycopg.Error, match=message):
        pgjobs_conn.execute(f"SELECT pgjobs.enqueue({call})")
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


BAD_INSERT = [
    ("(task, args) VALUES ('t', '\"x\"')", "jobs_args_is_object"),
    ("(task, priority) VALUES ('t', -1001)", "jobs_priority_range"),
    ("(task) VALUES ('no spaces allowed')", "jobs_task_name_valid"),
    ("(task, queue) VALUES ('t', '')", "jobs_queue_name_valid"),
    ("(task, status) VALUES ('t', 'done')", "jobs_status_valid"),
    ("(task, status) VALUES ('t', 'running')", "jobs_running_has_lease"),
    ("(task, lease_token) VALUES ('t', gen_random_uuid())", "jobs_running_has_lease"),
    ("(task, progress) VALUES ('t', 101)", "jobs_progress_range"),
    # A bad callback_url meets a trigger before this constraint (migration 0006): see
    # test_callbacks.py, test_plain_sql_cannot_store_a_callback_url_without_a_host.
]


@pytest.mark.parametrize(("values", "constraint"), BAD_INSERT)
def test_plain_insert_is_checked_by_constraints(
    pgjobs_conn: Conn, values: str, constraint: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        pgjobs_conn.execute(f"INSERT INTO pgjobs.jobs {values}")


def test_args_limit_is_configurable_per_database(pgjobs_conn: Conn, pgjobs_dsn: str) -> None:
    pgjobs_conn.execute("SELECT set_config('pgjobs.max_args_bytes', '100', false)")
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_args_too_large"):
        pgjobs_conn.execute(
            "INSERT INTO pgjobs.jobs (task, args) VALUES ('t', jsonb_build_object('x', repeat('y', 200)))"
        )
    with pytest.raises(psycopg.Error, match="over the limit of 100"):
        pgjobs_conn.execute("SELECT pgjobs.enqueue('t', jsonb_build_object('x', repeat('y', 200)))")


def seed_states(conn: Conn) -> None:
    """Two queues with ready, future, blocked and running jobs; queue 'b' paused."""
    conn.execute(
        """
        INSERT INTO pgjobs.jobs (task, queue, priority, not_before, blockers)
        SELECT 't', q, p, now() + d, b
          FROM (VALUES ('a', 0, interval '0', 0), ('a', 5, interval '0', 0),
                       ('a', 9, interval '1 hour', 0), ('a', 0, interval '0', 1),
                       ('b', 0, interval '0', 0), ('b', 3, interval '0', 0),
                       ('c', 0, interval '-1 minute', 0)) AS v(q, p, d, b)
        """
    )
    conn.execute("INSERT INTO pgjobs.queues (name, paused) VALUES ('b', true)")


def test_backlog_counts_due_unblocked_jobs_of_unpaused_queues(pgjobs_conn: Conn) -> None:
    seed_states(pgjobs_conn)
    got = pgjobs_conn.execute(
        "SELECT pgjobs.backlog(), pgjobs.backlog(ARRAY['a']), pgjobs.backlog(ARRAY['b']),"
        " pgjobs.backlog(ARRAY['a', 'c', 'nope']), pgjobs.backlog(ARRAY[]::text[])"
    ).fetchone()
    assert got == (3, 2, 0, 3, 0)


def test_demand_adds_running_jobs_under_a_live_lease_only(pgjobs_conn: Conn) -> None:
    seed_states(pgjobs_conn)
    claimed = claim(
        pgjobs_conn, "pgjobs", queues=["a"], limit=1, worker_id=uuid.uuid4(), lease_seconds=60
    )
    assert [j.priority for j in claimed] == [5]
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, queue, priority, status, lease_token, lease_expires_at, attempts)"
        " VALUES ('t', 'b', 0, 'running', gen_random_uuid(), now() + interval '1 minute', 1),"
        "        ('t', 'a', 0, 'running', gen_random_uuid(), now() - interval '1 second', 1)"
    )
    got = pgjobs_conn.execute(
        "SELECT pgjobs.demand(), pgjobs.demand(ARRAY['a']), pgjobs.demand(ARRAY['b'])"
    ).fetchone()
    # backlog after the claim: a=1, c=1; live leases: a=1 (claimed), b=1 (paused queue still busy)
    assert got == (4, 2, 1)


def test_oldest_ready_age_follows_the_oldest_due_job(pgjobs_conn: Conn) -> None:
    assert pgjobs_conn.execute("SELECT pgjobs.oldest_ready_age()").fetchone() == (0.0,)
    seed_states(pgjobs_conn)
    age = pgjobs_conn.execute(
        "SELECT pgjobs.oldest_ready_age(), pgjobs.oldest_ready_age(ARRAY['a'])"
    ).fetchone()
    assert age is not None
    assert 60 <= age[0] < 120, "queue c's job became due a minute ago"
    assert 0 <= age[1] < 60


def test_claim_takes_priority_then_age_across_queues(pgjobs_conn: Conn) -> None:
    seed_states(pgjobs_conn)
    worker = uuid.uuid4()
    first = claim(pgjobs_conn, "pgjobs", queues=None, limit=2, worker_id=worker, lease_seconds=30)
    assert [(j.queue, j.priority) for j in first] == [("a", 5), ("c", 0)]
    rest = claim(pgjobs_conn, "pgjobs", queues=None, limit=10, worker_id=worker, lease_seconds=30)
    assert [(j.queue, j.priority) for j in rest] == [("a", 0)], (
        "future, blocked and paused jobs stay"
    )
    assert all(j.attempts == 1 and j.lease_token for j in first + rest)
    tokens = {j.lease_token for j in first + rest}
    assert len(tokens) == 3, "every claimed job gets its own lease token"


def test_claim_never_exceeds_a_concurrency_limit(pgjobs_conn: Conn) -> None:
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, queue) SELECT 't', 'slow' FROM generate_series(1, 10)"
    )
    pgjobs_conn.execute("INSERT INTO pgjobs.queues (name, concurrency_limit) VALUES ('slow', 2)")
    worker = uuid.uuid4()
    assert (
        len(claim(pgjobs_conn, "pgjobs", queues=None, limit=10, worker_id=worker, lease_seconds=30))
        == 2
    )
    assert (
        claim(pgjobs_conn, "pgjobs", queues=["slow"], limit=10, worker_id=worker, lease_seconds=30)
        == []
    )
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET lease_expires_at = now() - interval '1 second' WHERE status = 'running'"
    )
    assert (
        len(claim(pgjobs_conn, "pgjobs", queues=None, limit=10, worker_id=worker, lease_seconds=30))
        == 2
    ), "a job whose lease expired no longer holds a slot"


def test_claim_respects_a_rate_limit_window(pgjobs_conn: Conn) -> None:
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, queue) SELECT 't', 'api' FROM generate_series(1, 10)"
    )
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.queues (name, rate_limit, rate_period) VALUES ('api', 3, '1 hour')"
    )
    worker = uuid.uuid4()
    assert (
        len(
            claim(
                pgjobs_conn, "pgjobs", queues=["api"], limit=10, worker_id=worker, lease_seconds=30
            )
        )
        == 3
    )
    assert (
        claim(pgjobs_conn, "pgjobs", queues=["api"], limit=10, worker_id=worker, lease_seconds=30)
        == []
    )
    pgjobs_conn.execute(
        "UPDATE pgjobs.queues SET recent_starts = ARRAY[now() - interval '2 hours']"
    )
    assert (
        len(
            claim(
                pgjobs_conn, "pgjobs", queues=["api"], limit=10, worker_id=worker, lease_seconds=30
            )
        )
        == 3
    )
