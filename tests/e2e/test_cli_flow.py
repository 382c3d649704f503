"""End to end: ``pgjobs schedules``, ``pgjobs queues pause|resume|limit`` and ``pgjobs prune``
as a user runs them; every refused input is one error line and changes nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from test_cli_jobs import Cli, CliRunner, assert_error, assert_ok

Conn = psycopg.Connection[Any]


@pytest.fixture
def cli(run_cli: CliRunner, pgjobs_dsn: str) -> Cli:
    return Cli(run_cli, pgjobs_dsn)


def schedule_rows(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT name, cron, timezone, task, args, queue, priority, missed, overlap, paused"
        " FROM pgjobs.schedules ORDER BY name"
    ).fetchall()


def test_schedules_add_ls_pause_resume_rm(cli: Cli, pgjobs_conn: Conn) -> None:
    result = cli(
        "schedules", "add", "nightly", "30 2 * * *", "reports.nightly", '{"full": true}',
        "-q", "reports", "-p", "5", "--tz", "Europe/Paris", "--missed", "run_once",
        "--overlap", "skip",
    )  # fmt: skip
    assert_ok(result)
    assert result.stdout.startswith("schedule nightly added: next fire 20")
    assert schedule_rows(pgjobs_conn) == [
        ("nightly", "30 2 * * *", "Europe/Paris", "reports.nightly", {"full": True}, "reports",
         5, "run_once", "skip", False),
    ]  # fmt: skip
    listed = cli("schedules", "ls")
    assert_ok(listed)
    assert "nightly" in listed.stdout and "Europe/Paris" in listed.stdout
    as_json = cli("schedules", "--json")
    assert_ok(as_json)
    (entry,) = json.loads(as_json.stdout)
    assert entry["name"] == "nightly" and entry["next_fire_at"] and entry["source"] == "cli"

    assert_ok(cli("schedules", "pause", "nightly"))
    assert schedule_rows(pgjobs_conn)[0][-1] is True
    assert "paused" in cli("schedules", "ls").stdout
    assert_ok(cli("schedules", "resume", "nightly"))
    assert schedule_rows(pgjobs_conn)[0][-1] is False

    assert_error(
        cli("schedules", "add", "nightly", "0 * * * *", "other"), 2, "exists already", "--replace"
    )
    assert schedule_rows(pgjobs_conn)[0][1] == "30 2 * * *"
    assert_ok(cli("schedules", "add", "nightly", "0 * * * *", "other", "--replace"))
    assert schedule_rows(pgjobs_conn)[0][1:4] == ("0 * * * *", "UTC", "other")

    assert_ok(cli("schedules", "rm", "nightly"))
    assert schedule_rows(pgjobs_conn) == []
    assert "no schedules" in cli("schedules").stdout
    assert_error(cli("schedules", "rm", "nightly"), 1, "no schedule named 'nightly'")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["bad", "*/0 * * * *", "t"], "invalid cron expression"),
        (["bad", "61 * * * *", "t"], "invalid cron expression"),
        (["bad", "* * * * *", "t", "--tz", "Mars/Olympus"], "unknown time zone"),
        (["bad", "* * * * *", "t", "[1, 2]"], "args must be a JSON object"),
        (["bad", "* * * * *", "bad task"], "invalid task name"),
        (["bad name", "* * * * *", "t"], "invalid schedule name"),
        (["bad", "* * * * *", "t", "-p", "5000"], "out of range"),
        (["bad", "* * * * *", "t", "--missed", "always"], "'always' is not one of"),
    ],
)
def test_bad_schedules_are_one_line_and_store_nothing(
    cli: Cli, pgjobs_conn: Conn, args: list[str], fragment: str
) -> None:
    assert_error(cli("schedules", "add", *args), 2, fragment)
    assert schedule_rows(pgjobs_conn) == []


def queue_row(conn: Conn, name: str) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT paused, concurrency_limit, rate_limit, rate_period FROM pgjobs.queues"
        " WHERE name = %s",
        (name,),
    ).fetchone()


def test_queues_pause_resume_limit(cli: Cli, pgjobs_conn: Conn) -> None:
    assert_ok(cli("queues", "pause", "emails"))
    assert queue_row(pgjobs_conn, "emails") == (True, None, None, None)
    assert "paused" in cli("queues").stdout
    assert_ok(cli("queues", "resume", "emails"))
    assert_ok(cli("queues", "limit", "emails", "--concurrency", "2", "--rate", "100/m"))
    assert queue_row(pgjobs_conn, "emails") == (False, 2, 100, timedelta(minutes=1))
    shown = cli("queues")
    assert "concurrency 2" in shown.stdout and "rate 100/1m" in shown.stdout
    assert_ok(cli("queues", "limit", "emails", "--rate", "none"))
    assert queue_row(pgjobs_conn, "emails") == (False, 2, None, None)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["api", "--rate", "0/s"], "invalid rate '0/s'"),
        (["api", "--rate", "abc"], "invalid rate 'abc'"),
        (["api", "--concurrency", "-1"], "invalid concurrency limit"),
        (["api", "--concurrency", "0"], "invalid concurrency limit"),
        (["api"], "give --concurrency N, --rate N/PERIOD"),
        (["bad queue", "--concurrency", "2"], "invalid queue name"),
    ],
)
def test_bad_limits_are_one_line_and_store_nothing(
    cli: Cli, pgjobs_conn: Conn, args: list[str], fragment: str
) -> None:
    assert_error(cli("queues", "limit", *args), 2, fragment)
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.queues").fetchone() == (0,)


def test_prune_deletes_old_finished_jobs_and_says_how_many(cli: Cli, pgjobs_conn: Conn) -> None:
    ids = [cli.enqueue("t") for _ in range(4)]
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = s.status, attempts = 1,"
        " finished_at = now() - interval '10 days'"
        " FROM (VALUES (%s, 'succeeded'), (%s, 'cancelled'), (%s, 'failed')) AS s(id, status)"
        " WHERE jobs.id = s.id::bigint",
        ids[:3],
    )
    result = cli("prune")
    assert_ok(result)
    assert result.stdout.startswith("pruned 2 jobs"), result.stdout
    left = {r[0] for r in pgjobs_conn.execute("SELECT id FROM pgjobs.jobs")}
    assert left == {ids[2], ids[3]}, "failed jobs are kept unless named; queued ones always"
    assert_ok(cli("prune", "--status", "failed", "--older-than", "30d"))
    assert {r[0] for r in pgjobs_conn.execute("SELECT id FROM pgjobs.jobs")} == left
    assert_ok(cli("prune", "--status", "failed", "--older-than", "1d"))
    assert {r[0] for r in pgjobs_conn.execute("SELECT id FROM pgjobs.jobs")} == {ids[3]}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--status", "queued"], "only finished jobs can be pruned"),
        (["--status", "done"], "unknown status 'done'"),
        (["--older-than", "soon"], "invalid older_than 'soon'"),
        (["--older-than", "-1d"], "invalid older_than"),
    ],
)
def test_bad_prune_options_are_one_line_and_delete_nothing(
    cli: Cli, pgjobs_conn: Conn, args: list[str], fragment: str
) -> None:
    job = cli.enqueue("t")
    pgjobs_conn.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', attempts = 1,"
        " finished_at = now() - interval '10 days' WHERE id = %s",
        (job,),
    )
    assert_error(cli("prune", *args), 2, fragment)
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (1,)


def test_enqueue_with_dependencies_and_a_lock_key_then_the_tree(
    cli: Cli, pgjobs_conn: Conn
) -> None:
    root = cli.enqueue("flow.root")
    child = cli.enqueue("flow.child", "--lock-key", "customer:1")
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET parent_id = %s WHERE id = %s", (root, child))
    merge = cli.enqueue("flow.merge", "--depends-on", f"{root},{child}")
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET parent_id = %s WHERE id = %s", (child, merge))
    stored = pgjobs_conn.execute(
        "SELECT blockers, meta->'depends_on' FROM pgjobs.jobs WHERE id = %s", (merge,)
    ).fetchone()
    assert stored == (2, [root, child])
    waiting = cli.enqueue("flow.child", "--lock-key", "customer:1")
    assert pgjobs_conn.execute(
        "SELECT lock_waiting FROM pgjobs.jobs WHERE id = %s", (waiting,)
    ).fetchone() == (True,)

    shown = cli("jobs", "tree", str(child))
    assert_ok(shown)
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"#{root}  flow.root  queued")
    assert lines[1].startswith(f"└─ #{child}  flow.child  queued") and lines[1].endswith("<-")
    assert lines[2].startswith(f"   └─ #{merge}  flow.merge  queued")
    assert f"after #{root}, #{child}" in lines[2] and "(waiting for 2)" in lines[2]
    assert len(lines) == 3
    assert_error(cli("jobs", "tree", "999999"), 1, "no job 999999")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--depends-on", "1,x"], "--depends-on: give job ids separated by commas"),
        (["--depends-on", "999999"], "do not exist: 999999"),
        (["--lock-key", ""], "lock_key must be a string of 1-512 characters"),
    ],
)
def test_bad_flow_options_are_one_line_and_store_nothing(
    cli: Cli, pgjobs_conn: Conn, args: list[str], fragment: str
) -> None:
    assert_error(cli("enqueue", "t", *args), 2, fragment)
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_a_schedule_broken_by_plain_sql_is_named_by_ls(cli: Cli, pgjobs_conn: Conn) -> None:
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.schedules (name, cron, task) VALUES ('broken', '61 * * * *', 't')"
    )
    assert_error(cli("schedules", "ls"), 2, "stored schedule 'broken'", "invalid cron expression")
    assert_ok(cli("schedules", "rm", "broken"))
