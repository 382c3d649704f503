"""End to end: the job commands of ``pgjobs`` (enqueue, status, jobs ls/retry/cancel, queues)
run as a user runs them, against a fresh migrated database per test.

Every error is checked for its exit code, for a single ``pgjobs: error:`` line on stderr and
for the absence of a traceback; every refused input is checked to have stored nothing."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from pgjobs import db
from pgjobs.testing import DatabaseFactory
from pgjobs.types import JobStatus

CliRunner = Callable[..., subprocess.CompletedProcess[str]]
Result = subprocess.CompletedProcess[str]
Conn = psycopg.Connection[Any]

SCHEMA = "pgjobs"
UNREACHABLE_DSN = "host=127.0.0.1 port=1 connect_timeout=2"


class Cli:
    """``pgjobs ARGS`` against one database, stdin a pipe (never a terminal)."""

    def __init__(self, run_cli: CliRunner, dsn: str) -> None:
        self.run_cli = run_cli
        self.dsn = dsn

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = self.run_cli(*args, env={"PGJOBS_DSN": self.dsn, **(env or {})}, input="")
        assert "Traceback" not in result.stderr, result.stderr
        assert "Traceback" not in result.stdout, result.stdout
        return result

    def enqueue(self, *args: str) -> int:
        """Enqueue and return the new id, checking that stdout holds it alone."""
        result = self("enqueue", *args)
        assert_ok(result)
        assert result.stdout.strip().isdigit(), result.stdout
        assert result.stdout == result.stdout.strip() + "\n"
        return int(result.stdout)


@pytest.fixture
def cli(run_cli: CliRunner, pgjobs_dsn: str) -> Cli:
    return Cli(run_cli, pgjobs_dsn)


@pytest.fixture
def unmigrated_dsn(pgjobs_databases: DatabaseFactory) -> Iterator[str]:
    dsn = pgjobs_databases.create(migrated=False)
    try:
        yield dsn
    finally:
        pgjobs_databases.drop(dsn)


# --- helpers ----------------------------------------------------------------------------


def assert_ok(result: Result) -> None:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr


def assert_error(result: Result, code: int, *fragments: str) -> str:
    """Exit ``code``, nothing on stdout, one ``pgjobs: error:`` line holding ``fragments``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == "", result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgjobs: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def assert_one_stderr_line(result: Result, code: int, *fragments: str) -> str:
    """Exit ``code`` and exactly one line on stderr holding ``fragments`` (any prefix)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def job_count(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone()
    assert row is not None
    return int(row[0])


def all_jobs(conn: Conn) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("SELECT * FROM pgjobs.jobs ORDER BY id").fetchall()


def job_row(conn: Conn, job_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute("SELECT * FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None, f"no row for job {job_id}"
    return row


def db_now(conn: Conn) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


def claim(conn: Conn, job_id: int, queue: str = "default") -> db.ClaimedJob:
    """Claim the due job ``job_id`` of ``queue`` as a worker would (it must be next in line)."""
    claimed = db.claim(
        conn, SCHEMA, queues=[queue], limit=1, worker_id=uuid.uuid4(), lease_seconds=30
    )
    assert [j.id for j in claimed] == [job_id], claimed
    return claimed[0]


def finish(conn: Conn, job: db.ClaimedJob, status: JobStatus) -> None:
    outcome = db.Outcome(
        job.id,
        job.lease_token,
        status,
        result=json.dumps({"ok": True}) if status is JobStatus.SUCCEEDED else None,
        error="boom" if status is JobStatus.FAILED else None,
    )
    assert db.run(conn, db.finish(SCHEMA, [outcome])) == {job.id: status}


def make_job(cli: Cli, conn: Conn, status: JobStatus, *args: str, queue: str = "default") -> int:
    """A job of ``queue`` brought to ``status`` by a simulated worker (claim, then finish).

    The job must be the next one a worker of ``queue`` would claim: make these before
    adding queued jobs to the same queue."""
    job_id = cli.enqueue(*args, "-q", queue)
    if status is JobStatus.QUEUED:
        return job_id
    job = claim(conn, job_id, queue)
    if status is not JobStatus.RUNNING:
        finish(conn, job, status)
    assert job_row(conn, job_id)["status"] == status.value
    return job_id


def ls_json(cli: Cli, *args: str) -> list[dict[str, Any]]:
    result = cli("jobs", "ls", "--json", *args)
    assert_ok(result)
    listed: list[dict[str, Any]] = json.loads(result.stdout)
    return listed


def ls_ids(cli: Cli, *args: str) -> list[int]:
    return [job["id"] for job in ls_json(cli, *args)]


# --- 1. enqueue ---------------------------------------------------------------------------


def test_enqueue_prints_the_new_id_alone(cli: Cli, pgjobs_conn: Conn) -> None:
    result = cli("enqueue", "emails.send", '{"to": "a@example.com", "n": [1, 2]}')
    assert_ok(result)
    assert result.stdout.strip().isdigit(), result.stdout
    assert result.stderr == ""
    row = job_row(pgjobs_conn, int(result.stdout))
    assert row["task"] == "emails.send"
    assert row["args"] == {"to": "a@example.com", "n": [1, 2]}
    assert row["status"] == "queued"
    assert (row["queue"], row["priority"], row["max_attempts"]) == ("default", 0, 3)
    assert row["not_before"] == row["created_at"], "no delay: due at once"
    assert row["dedupe_key"] is None and row["callback_url"] is None
    assert job_count(pgjobs_conn) == 1


def test_enqueue_without_args_stores_an_empty_object(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = cli.enqueue("reports.build")
    assert job_row(pgjobs_conn, job_id)["args"] == {}


def test_enqueue_stores_every_option_as_given(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = cli.enqueue(
        "reports.build",
        '{"report": 7}',
        "-q",
        "reports",
        "-p",
        "5",
        "--delay",
        "10m",
        "--max-attempts",
        "9",
        "--dedupe-key",
        "report:7",
        "--callback",
        "https://example.com/hook?x=1",
    )
    row = job_row(pgjobs_conn, job_id)
    assert row["task"] == "reports.build"
    assert row["args"] == {"report": 7}
    assert row["queue"] == "reports"
    assert row["priority"] == 5
    assert row["max_attempts"] == 9
    assert row["dedupe_key"] == "report:7"
    assert row["callback_url"] == "https://example.com/hook?x=1"
    assert row["not_before"] - row["created_at"] == timedelta(minutes=10)
    assert row["status"] == "queued" and row["attempts"] == 0


def test_enqueue_long_options_and_negative_priority(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = cli.enqueue("t", "--queue", "low", "--priority", "-1000")
    row = job_row(pgjobs_conn, job_id)
    assert (row["queue"], row["priority"]) == ("low", -1000)
    job_id = cli.enqueue("t", "--priority", "1000", "--max-attempts", "1000")
    row = job_row(pgjobs_conn, job_id)
    assert (row["priority"], row["max_attempts"]) == (1000, 1000)


def test_enqueue_json_prints_the_stored_job(cli: Cli, pgjobs_conn: Conn) -> None:
    result = cli(
        "enqueue", "emails.send", '{"to": "b@example.com"}', "-q", "mail", "-p", "3", "--json"
    )
    assert_ok(result)
    printed = json.loads(result.stdout)
    row = job_row(pgjobs_conn, printed["id"])
    assert printed["existing"] is False
    assert printed["task"] == row["task"] == "emails.send"
    assert printed["args"] == row["args"] == {"to": "b@example.com"}
    assert printed["queue"] == "mail" and printed["priority"] == 3
    assert printed["status"] == "queued"
    assert "lease_token" not in printed
    assert datetime.fromisoformat(printed["not_before"]) == row["not_before"]
    assert job_count(pgjobs_conn) == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400)],
)
def test_enqueue_delay_is_counted_from_the_database_clock(
    cli: Cli, pgjobs_conn: Conn, text: str, seconds: int
) -> None:
    before = db_now(pgjobs_conn)
    job_id = cli.enqueue("t", "--delay", text)
    after = db_now(pgjobs_conn)
    row = job_row(pgjobs_conn, job_id)
    delay = timedelta(seconds=seconds)
    assert row["not_before"] - row["created_at"] == delay
    assert before + delay <= row["not_before"] <= after + delay


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-01-31T09:00:00+01:00", datetime(2031, 1, 31, 8, 0, tzinfo=timezone.utc)),
        ("2031-01-31T09:00:00-05:30", datetime(2031, 1, 31, 14, 30, tzinfo=timezone.utc)),
        ("2031-01-31T09:00:00Z", datetime(2031, 1, 31, 9, 0, tzinfo=timezone.utc)),
        ("2031-01-31T09:00:00", datetime(2031, 1, 31, 9, 0, tzinfo=timezone.utc)),
        ("2031-01-31 09:00:00.250", datetime(2031, 1, 31, 9, 0, 0, 250000, tzinfo=timezone.utc)),
    ],
    ids=["plus-offset", "minus-offset", "zulu", "no-offset-is-utc", "space-fraction-utc"],
)
def test_enqueue_at_stores_that_moment(
    cli: Cli, pgjobs_conn: Conn, text: str, expected: datetime
) -> None:
    job_id = cli.enqueue("billing.charge", "--at", text)
    assert job_row(pgjobs_conn, job_id)["not_before"] == expected


def test_enqueue_uses_the_task_defaults_when_the_cli_gives_none(
    cli: Cli, pgjobs_conn: Conn
) -> None:
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.tasks (name, queue, priority, max_attempts)"
        " VALUES ('reports.build', 'reports', 7, 9)"
    )
    defaults = job_row(pgjobs_conn, cli.enqueue("reports.build"))
    assert (defaults["queue"], defaults["priority"], defaults["max_attempts"]) == (
        "reports",
        7,
        9,
    )
    # What the command line gives wins; the rest still comes from the task.
    partial = job_row(pgjobs_conn, cli.enqueue("reports.build", "-q", "urgent", "-p", "-2"))
    assert (partial["queue"], partial["priority"], partial["max_attempts"]) == ("urgent", -2, 9)
    explicit = job_row(pgjobs_conn, cli.enqueue("reports.build", "--max-attempts", "1"))
    assert (explicit["queue"], explicit["priority"], explicit["max_attempts"]) == (
        "reports",
        7,
        1,
    )
    # Another task: the global defaults.
    other = job_row(pgjobs_conn, cli.enqueue("emails.send"))
    assert (other["queue"], other["priority"], other["max_attempts"]) == ("default", 0, 3)


def test_enqueue_with_a_held_dedupe_key_prints_the_holder(cli: Cli, pgjobs_conn: Conn) -> None:
    first = cli.enqueue("emails.welcome", '{"user": 42}', "--dedupe-key", "welcome:42")
    count = job_count(pgjobs_conn)
    holder_before = job_row(pgjobs_conn, first)

    again = cli("enqueue", "emails.welcome", '{"user": 43}', "--dedupe-key", "welcome:42")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(first)
    note = again.stderr.strip().splitlines()
    assert len(note) == 1, again.stderr
    assert str(first) in note[0]
    assert "already holds dedupe key" in note[0] and "'welcome:42'" in note[0]
    assert "nothing enqueued" in note[0]
    assert not note[0].startswith("pgjobs: error:")
    assert job_count(pgjobs_conn) == count
    assert job_row(pgjobs_conn, first) == holder_before, "the holder is left as it was"

    as_json = cli("enqueue", "emails.welcome", "--dedupe-key", "welcome:42", "--json")
    assert_ok(as_json)
    printed = json.loads(as_json.stdout)
    assert (printed["id"], printed["existing"]) == (first, True)
    assert job_count(pgjobs_conn) == count


def test_a_finished_job_releases_its_dedupe_key(cli: Cli, pgjobs_conn: Conn) -> None:
    first = make_job(cli, pgjobs_conn, JobStatus.SUCCEEDED, "t", "--dedupe-key", "k")
    second = cli("enqueue", "t", "--dedupe-key", "k")
    assert_ok(second)
    assert second.stderr == ""
    assert int(second.stdout) != first
    assert job_count(pgjobs_conn) == 2


# --- 2. bad input and refused operations ---------------------------------------------------

OVERSIZED_ARGS = json.dumps({"payload": "x" * 185})
assert len(OVERSIZED_ARGS) == 200

BAD_ENQUEUES: list[Any] = [
    pytest.param(["t", "{not json"], {}, "invalid JSON", id="invalid-json"),
    pytest.param(["t", "[1, 2]"], {}, "must be a JSON object", id="args-array"),
    pytest.param(["t", '"text"'], {}, "must be a JSON object", id="args-string"),
    pytest.param(["t", "42"], {}, "must be a JSON object", id="args-number"),
    pytest.param(["t", "null"], {}, "must be a JSON object", id="args-null"),
    pytest.param([""], {}, "invalid task name", id="empty-task"),
    pytest.param(["emails send"], {}, "invalid task name", id="task-with-space"),
    pytest.param(["a" * 201], {}, "invalid task name", id="task-201-chars"),
    pytest.param(["t", "-q", "my queue"], {}, "invalid queue name", id="queue-with-space"),
    pytest.param(["t", "-q", ""], {}, "invalid queue name", id="empty-queue"),
    pytest.param(["t", "-q", "q" * 101], {}, "invalid queue name", id="queue-101-chars"),
    pytest.param(["t", "-p", "1001"], {}, "priority 1001 is out of range", id="priority-1001"),
    pytest.param(["t", "-p", "-1001"], {}, "priority -1001 is out of range", id="priority--1001"),
    pytest.param(["t", "-p", "abc"], {}, "'abc' is not a valid integer", id="priority-abc"),
    pytest.param(["t", "--max-attempts", "0"], {}, "max_attempts 0", id="max-attempts-0"),
    pytest.param(["t", "--max-attempts", "1001"], {}, "max_attempts 1001", id="max-attempts-1001"),
    pytest.param(["t", "--delay", "5x"], {}, "invalid delay '5x'", id="delay-5x"),
    pytest.param(["t", "--delay", "-5s"], {}, "invalid delay '-5s'", id="delay-negative"),
    pytest.param(["t", "--at", "tomorrow"], {}, "invalid at 'tomorrow'", id="at-unparseable"),
    pytest.param(
        ["t", "--delay", "5m", "--at", "2031-01-31T09:00:00"],
        {},
        "give --delay or --at, not both",
        id="delay-and-at",
    ),
    pytest.param(
        ["t", "--timeout", "30s"], {}, "--timeout only makes sense with --wait", id="timeout-alone"
    ),
    pytest.param(["t", "--callback", "ftp://x"], {}, "invalid callback URL", id="callback-ftp"),
    pytest.param(["t", "--dedupe-key", ""], {}, "dedupe_key", id="empty-dedupe-key"),
    pytest.param(
        ["t", OVERSIZED_ARGS],
        {"PGJOBS_MAX_ARGS_BYTES": "100"},
        "over the limit of 100",
        id="args-over-max-bytes",
    ),
    pytest.param(["t", '{"a": NaN}'], {}, "not valid JSON", id="args-nan"),
]


@pytest.mark.parametrize(("args", "env", "message"), BAD_ENQUEUES)
def test_bad_enqueue_is_a_usage_error_and_stores_nothing(
    cli: Cli, pgjobs_conn: Conn, args: list[str], env: dict[str, str], message: str
) -> None:
    cli.enqueue("existing.job")  # so that "nothing stored" is not "nothing at all"
    before = all_jobs(pgjobs_conn)
    result = cli("enqueue", *args, env=env)
    assert_error(result, 2, message)
    assert job_count(pgjobs_conn) == len(before)
    assert all_jobs(pgjobs_conn) == before


@pytest.mark.parametrize(
    "moment",
    ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"],
    ids=["after-year-9999-in-utc", "before-year-1-in-utc"],
)
def test_at_out_of_range_in_utc_is_a_usage_error_and_stores_nothing(
    cli: Cli, pgjobs_conn: Conn, moment: str
) -> None:
    cli.enqueue("existing.job")
    before = job_count(pgjobs_conn)
    result = cli("enqueue", "t", "--at", moment)
    assert_error(result, 2, "--at")
    assert job_count(pgjobs_conn) == before
    assert_ok(cli("jobs", "ls"))


@pytest.mark.parametrize("command", ["retry", "cancel"])
def test_job_id_beyond_bigint_gets_a_pgjobs_error(
    cli: Cli, pgjobs_conn: Conn, command: str
) -> None:
    cli.enqueue("t")
    before = all_jobs(pgjobs_conn)
    result = cli("jobs", command, str(2**64))
    assert result.returncode in {1, 2}
    assert_error(result, result.returncode, str(2**64))
    assert all_jobs(pgjobs_conn) == before


def test_args_at_the_size_limit_are_accepted(cli: Cli, pgjobs_conn: Conn) -> None:
    small = json.dumps({"payload": "x" * 80})
    result = cli("enqueue", "t", small, env={"PGJOBS_MAX_ARGS_BYTES": "100"})
    assert_ok(result)
    assert job_row(pgjobs_conn, int(result.stdout))["args"] == json.loads(small)


def test_status_of_an_unknown_id_is_refused(cli: Cli) -> None:
    assert_error(cli("status", "999999"), 1, "no job with id 999999")
    assert_error(cli("status", "999999", "--json"), 1, "no job with id 999999")


def test_status_of_a_non_numeric_id_is_a_usage_error(cli: Cli) -> None:
    assert_error(cli("status", "abc"), 2, "'abc' is not a valid integer")


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        (UNREACHABLE_DSN, "pgjobs: error: cannot connect to PostgreSQL"),
        ("nonsense", "pgjobs: error: invalid PGJOBS_DSN"),
    ],
    ids=["unreachable", "malformed"],
)
@pytest.mark.parametrize(
    "command",
    [
        ("enqueue", "t", '{"a": 1}'),
        ("status", "1"),
        ("jobs", "ls"),
        ("jobs", "retry", "1"),
        ("jobs", "cancel", "1"),
        ("queues",),
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_a_database_that_cannot_be_used_exits_3(
    run_cli: CliRunner, dsn: str, message: str, command: tuple[str, ...]
) -> None:
    result = run_cli(*command, env={"PGJOBS_DSN": dsn}, input="")
    line = assert_error(result, 3)
    assert line.startswith(message), line


@pytest.mark.parametrize(
    "command",
    [
        ("enqueue", "t", '{"a": 1}'),
        ("status", "1"),
        ("jobs", "ls"),
        ("jobs", "retry", "1"),
        ("jobs", "cancel", "1"),
        ("queues",),
    ],
    ids=lambda c: "-".join(c[:2]),
)
def test_an_unmigrated_database_exits_4_naming_migrate(
    run_cli: CliRunner, unmigrated_dsn: str, command: tuple[str, ...]
) -> None:
    result = run_cli(*command, env={"PGJOBS_DSN": unmigrated_dsn}, input="")
    assert_error(result, 4, "`pgjobs migrate`")
    with psycopg.connect(unmigrated_dsn) as conn:
        schema = conn.execute("SELECT to_regnamespace('pgjobs')").fetchone()
    assert schema == (None,), "nothing was created"


# --- 3. status ----------------------------------------------------------------------------


def test_status_shows_the_job(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = cli.enqueue("emails.send", '{"to": "a@example.com"}', "-q", "mail", "-p", "4")
    result = cli("status", str(job_id))
    assert_ok(result)
    assert result.stderr == ""
    fields = {
        name.strip(): value.strip()
        for name, _, value in (line.partition(":") for line in result.stdout.splitlines())
    }
    assert fields["id"] == str(job_id)
    assert fields["task"] == "emails.send"
    assert fields["status"] == "queued"
    assert fields["queue"] == "mail"
    assert fields["priority"] == "4"
    assert fields["attempts"] == "0/3"
    assert fields["args"] == '{"to": "a@example.com"}'


def test_status_of_a_failed_job_shows_its_error(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = make_job(cli, pgjobs_conn, JobStatus.FAILED, "t", "--max-attempts", "1")
    result = cli("status", str(job_id))
    assert_ok(result)
    assert "status:" in result.stdout and "failed" in result.stdout
    assert "attempts:   1/1" in result.stdout
    assert "boom" in result.stdout
    assert "finished:" in result.stdout


def test_status_json_is_the_whole_job(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = cli.enqueue("emails.send", '{"to": "a@example.com"}', "--delay", "1h")
    result = cli("status", str(job_id), "--json")
    assert_ok(result)
    job = json.loads(result.stdout)
    row = job_row(pgjobs_conn, job_id)
    assert job["id"] == job_id
    assert job["status"] == "queued"
    assert job["task"] == "emails.send"
    assert job["args"] == {"to": "a@example.com"}
    assert "lease_token" not in job
    created = datetime.fromisoformat(job["created_at"])
    not_before = datetime.fromisoformat(job["not_before"])
    assert created.tzinfo is not None and not_before.tzinfo is not None
    assert created == row["created_at"] and not_before == row["not_before"]
    assert not_before - created == timedelta(hours=1)
    assert job["started_at"] is None and job["finished_at"] is None


def test_status_json_of_a_running_job_hides_its_lease_token(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = make_job(cli, pgjobs_conn, JobStatus.RUNNING, "t")
    assert job_row(pgjobs_conn, job_id)["lease_token"] is not None
    result = cli("status", str(job_id), "--json")
    assert_ok(result)
    job = json.loads(result.stdout)
    assert job["status"] == "running"
    assert job["attempts"] == 1
    assert "lease_token" not in job
    assert str(job_row(pgjobs_conn, job_id)["lease_token"]) not in result.stdout
    datetime.fromisoformat(job["started_at"])
    datetime.fromisoformat(job["lease_expires_at"])


# --- 4. jobs ls ---------------------------------------------------------------------------


@pytest.fixture
def mixed_jobs(cli: Cli, pgjobs_conn: Conn) -> dict[str, int]:
    """Jobs in every state, over two queues and two tasks."""
    return {
        "succeeded": make_job(cli, pgjobs_conn, JobStatus.SUCCEEDED, "emails.send", queue="mail"),
        "failed": make_job(cli, pgjobs_conn, JobStatus.FAILED, "emails.send", queue="mail"),
        "cancelled": make_job(cli, pgjobs_conn, JobStatus.CANCELLED, "reports.build"),
        "failed_default": make_job(cli, pgjobs_conn, JobStatus.FAILED, "reports.build"),
        "running": make_job(cli, pgjobs_conn, JobStatus.RUNNING, "reports.build"),
        "queued_mail": cli.enqueue("emails.send", "-q", "mail"),
        "queued_default": cli.enqueue("reports.build"),
    }


def test_jobs_ls_lists_newest_first(cli: Cli, mixed_jobs: dict[str, int]) -> None:
    assert ls_ids(cli) == sorted(mixed_jobs.values(), reverse=True)
    result = cli("jobs", "ls")
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "STATUS",
        "QUEUE",
        "TASK",
        "ATTEMPTS",
        "PRIORITY",
        "CREATED",
        "ERROR",
    ]
    assert [int(line.split()[0]) for line in lines[1:]] == sorted(mixed_jobs.values(), reverse=True)
    failed_line = next(line for line in lines[1:] if line.split()[0] == str(mixed_jobs["failed"]))
    assert failed_line.split()[1:4] == ["failed", "mail", "emails.send"]
    assert failed_line.rstrip().endswith("boom")


def test_jobs_ls_filters(cli: Cli, mixed_jobs: dict[str, int]) -> None:
    j = mixed_jobs
    assert ls_ids(cli, "--status", "failed") == sorted(
        [j["failed"], j["failed_default"]], reverse=True
    )
    assert ls_ids(cli, "--status", "failed,cancelled") == sorted(
        [j["failed"], j["failed_default"], j["cancelled"]], reverse=True
    )
    assert ls_ids(cli, "--status", "running") == [j["running"]]
    assert ls_ids(cli, "-q", "mail") == sorted(
        [j["succeeded"], j["failed"], j["queued_mail"]], reverse=True
    )
    assert ls_ids(cli, "--queue", "mail", "--status", "queued") == [j["queued_mail"]]
    assert ls_ids(cli, "--task", "reports.build") == sorted(
        [j["cancelled"], j["failed_default"], j["running"], j["queued_default"]], reverse=True
    )
    assert ls_ids(cli, "--task", "reports.build", "--status", "failed", "-q", "default") == [
        j["failed_default"]
    ]
    assert ls_ids(cli, "-q", "nowhere") == []
    for job in ls_json(cli, "--status", "failed,cancelled"):
        assert job["status"] in {"failed", "cancelled"}
        assert "lease_token" not in job
        datetime.fromisoformat(job["created_at"])


def test_jobs_ls_limit_and_before_page_without_overlap(cli: Cli, pgjobs_conn: Conn) -> None:
    ids = [cli.enqueue("t", json.dumps({"n": n})) for n in range(7)]
    assert ls_ids(cli, "--limit", "1") == [ids[-1]]
    first = ls_ids(cli, "--limit", "3")
    assert first == sorted(ids, reverse=True)[:3]
    second = ls_ids(cli, "--limit", "3", "--before", str(first[-1]))
    assert second == sorted(ids, reverse=True)[3:6]
    third = ls_ids(cli, "--limit", "3", "--before", str(second[-1]))
    assert third == [ids[0]]
    assert not set(first) & set(second)
    assert min(first) > max(second)
    assert first + second + third == sorted(ids, reverse=True)
    assert ls_ids(cli, "--before", str(ids[0])) == []


def test_jobs_ls_json_of_nothing_is_an_empty_list(cli: Cli) -> None:
    assert ls_json(cli) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "done"], "unknown status 'done'"),
        (["--status", "failed,done"], "unknown status 'done'"),
        (["--limit", "0"], "--limit"),
        (["--limit", "10001"], "--limit"),
        (["-q", "bad queue"], "invalid queue name"),
    ],
    ids=["status-done", "status-list-with-done", "limit-0", "limit-10001", "bad-queue"],
)
def test_jobs_ls_bad_filters_are_usage_errors(
    cli: Cli, pgjobs_conn: Conn, args: list[str], message: str
) -> None:
    cli.enqueue("t")
    assert_error(cli("jobs", "ls", *args), 2, message)


# --- 5. jobs retry ------------------------------------------------------------------------


def test_retry_puts_a_failed_job_back_with_one_more_attempt(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = make_job(cli, pgjobs_conn, JobStatus.FAILED, "t", "--max-attempts", "1")
    failed = job_row(pgjobs_conn, job_id)
    assert (failed["attempts"], failed["max_attempts"]) == (1, 1), "all attempts used"

    result = cli("jobs", "retry", str(job_id))
    assert_ok(result)
    assert result.stdout.strip() == f"{job_id}: retried"
    row = job_row(pgjobs_conn, job_id)
    assert row["status"] == "queued"
    assert row["max_attempts"] >= row["attempts"] + 1
    assert row["finished_at"] is None and row["lease_token"] is None
    assert row["not_before"] <= db_now(pgjobs_conn)
    assert job_count(pgjobs_conn) == 1
    # A worker can take it again.
    claim(pgjobs_conn, job_id)


def test_retry_puts_a_cancelled_job_back(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = cli.enqueue("t", "--delay", "1h")
    assert_ok(cli("jobs", "cancel", str(job_id)))
    result = cli("jobs", "retry", str(job_id))
    assert_ok(result)
    assert job_row(pgjobs_conn, job_id)["status"] == "queued"


def test_retry_refuses_a_succeeded_job(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = make_job(cli, pgjobs_conn, JobStatus.SUCCEEDED, "t")
    before = all_jobs(pgjobs_conn)
    result = cli("jobs", "retry", str(job_id))
    assert_one_stderr_line(
        result, 1, str(job_id), "not retried", "only failed or cancelled jobs can be"
    )
    assert result.stdout == ""
    assert all_jobs(pgjobs_conn) == before


def test_retry_of_an_unknown_id_is_refused(cli: Cli, pgjobs_conn: Conn) -> None:
    cli.enqueue("t")
    before = all_jobs(pgjobs_conn)
    result = cli("jobs", "retry", "999999")
    assert_one_stderr_line(result, 1, "999999", "no such job")
    assert result.stdout == ""
    assert all_jobs(pgjobs_conn) == before


def test_retry_failed_of_one_queue(cli: Cli, pgjobs_conn: Conn) -> None:
    mail_failed = [
        make_job(cli, pgjobs_conn, JobStatus.FAILED, "emails.send", queue="mail") for _ in range(2)
    ]
    mail_cancelled = make_job(cli, pgjobs_conn, JobStatus.CANCELLED, "emails.send", queue="mail")
    mail_succeeded = make_job(cli, pgjobs_conn, JobStatus.SUCCEEDED, "emails.send", queue="mail")
    other_failed = make_job(cli, pgjobs_conn, JobStatus.FAILED, "reports.build", queue="reports")

    result = cli("jobs", "retry", "--failed", "-q", "mail", "--yes")
    assert_ok(result)
    assert result.stdout.splitlines() == [f"{i}: retried" for i in mail_failed]
    for job_id in mail_failed:
        assert job_row(pgjobs_conn, job_id)["status"] == "queued"
    assert job_row(pgjobs_conn, mail_cancelled)["status"] == "cancelled"
    assert job_row(pgjobs_conn, mail_succeeded)["status"] == "succeeded"
    assert job_row(pgjobs_conn, other_failed)["status"] == "failed"

    again = cli("jobs", "retry", "--failed", "-q", "mail", "--yes")
    assert_ok(again)
    assert again.stdout.strip() == "no failed jobs"


def test_retry_failed_needs_yes_without_a_terminal(cli: Cli, pgjobs_conn: Conn) -> None:
    make_job(cli, pgjobs_conn, JobStatus.FAILED, "t")
    make_job(cli, pgjobs_conn, JobStatus.FAILED, "t", queue="other")
    before = all_jobs(pgjobs_conn)
    assert_error(cli("jobs", "retry", "--failed"), 2, "would affect 2 job(s)", "--yes")
    assert_error(cli("jobs", "retry", "--failed", "-q", "other"), 2, "would affect 1 job(s)")
    assert all_jobs(pgjobs_conn) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["1", "--failed"], "give job ids, or --failed (not both)"),
        (["1", "--failed", "--yes"], "give job ids, or --failed (not both)"),
        ([], "give job ids, or --failed (not both)"),
        (["-q", "mail", "1"], "-q only makes sense with --failed"),
        (["abc"], "'abc' is not a valid integer"),
    ],
    ids=["ids-and-failed", "ids-and-failed-yes", "nothing", "queue-without-failed", "bad-id"],
)
def test_retry_usage_errors_change_nothing(
    cli: Cli, pgjobs_conn: Conn, args: list[str], message: str
) -> None:
    job_id = make_job(cli, pgjobs_conn, JobStatus.FAILED, "t", queue="mail")
    assert job_id == 1
    before = all_jobs(pgjobs_conn)
    assert_error(cli("jobs", "retry", *args), 2, message)
    assert all_jobs(pgjobs_conn) == before


# --- 6. jobs cancel -----------------------------------------------------------------------


def test_cancel_ends_a_queued_job(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = cli.enqueue("t")
    result = cli("jobs", "cancel", str(job_id))
    assert_ok(result)
    assert result.stdout.strip() == f"{job_id}: cancelled"
    row = job_row(pgjobs_conn, job_id)
    assert row["status"] == "cancelled"
    assert row["finished_at"] is not None
    assert job_count(pgjobs_conn) == 1


def test_cancel_asks_a_running_job_to_stop(cli: Cli, pgjobs_conn: Conn) -> None:
    job_id = make_job(cli, pgjobs_conn, JobStatus.RUNNING, "t")
    result = cli("jobs", "cancel", str(job_id))
    assert_ok(result)
    assert result.stdout.strip() == f"{job_id}: running: asked to stop"
    row = job_row(pgjobs_conn, job_id)
    assert row["status"] == "running"
    assert row["cancel_requested_at"] is not None
    assert row["finished_at"] is None
    status = cli("status", str(job_id))
    assert_ok(status)
    assert "running (cancel requested)" in status.stdout

    again = cli("jobs", "cancel", str(job_id))
    assert_ok(again)
    assert "already asked to stop" in again.stdout
    assert job_row(pgjobs_conn, job_id)["cancel_requested_at"] == row["cancel_requested_at"]


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_cancel_refuses_a_finished_job(cli: Cli, pgjobs_conn: Conn, status: JobStatus) -> None:
    job_id = make_job(cli, pgjobs_conn, status, "t")
    before = all_jobs(pgjobs_conn)
    result = cli("jobs", "cancel", str(job_id))
    assert_one_stderr_line(result, 1, str(job_id), "not cancelled", f"already ended {status}")
    assert result.stdout == ""
    assert all_jobs(pgjobs_conn) == before


def test_cancel_of_an_unknown_id_is_refused(cli: Cli, pgjobs_conn: Conn) -> None:
    cli.enqueue("t")
    before = all_jobs(pgjobs_conn)
    result = cli("jobs", "cancel", "999999")
    assert_one_stderr_line(result, 1, "999999", "no such job")
    assert all_jobs(pgjobs_conn) == before


def test_cancel_by_status_queue_and_task(cli: Cli, pgjobs_conn: Conn) -> None:
    running = make_job(cli, pgjobs_conn, JobStatus.RUNNING, "emails.digest", queue="mail")
    targets = [cli.enqueue("emails.digest", "-q", "mail") for _ in range(2)]
    scheduled_target = cli.enqueue("emails.digest", "-q", "mail", "--delay", "1h")
    other_task = cli.enqueue("emails.send", "-q", "mail")
    other_queue = cli.enqueue("emails.digest", "-q", "default")

    result = cli(
        "jobs", "cancel", "--status", "queued", "-q", "mail", "--task", "emails.digest", "--yes"
    )
    assert_ok(result)
    cancelled = [*targets, scheduled_target]
    assert result.stdout.splitlines() == [f"{i}: cancelled" for i in cancelled]
    for job_id in cancelled:
        assert job_row(pgjobs_conn, job_id)["status"] == "cancelled"
    for job_id in (other_task, other_queue):
        assert job_row(pgjobs_conn, job_id)["status"] == "queued"
    untouched = job_row(pgjobs_conn, running)
    assert untouched["status"] == "running" and untouched["cancel_requested_at"] is None

    again = cli(
        "jobs", "cancel", "--status", "queued", "-q", "mail", "--task", "emails.digest", "--yes"
    )
    assert_ok(again)
    assert again.stdout.strip() == "no matching jobs"


def test_cancel_by_status_needs_yes_without_a_terminal(cli: Cli, pgjobs_conn: Conn) -> None:
    for _ in range(3):
        cli.enqueue("t")
    before = all_jobs(pgjobs_conn)
    assert_error(cli("jobs", "cancel", "--status", "queued"), 2, "would affect 3 job(s)", "--yes")
    assert all_jobs(pgjobs_conn) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "succeeded"], "only queued or running jobs can be cancelled"),
        (["--status", "queued,failed", "--yes"], "only queued or running jobs can be cancelled"),
        (["--status", "done", "--yes"], "unknown status 'done'"),
        (["1", "--status", "queued", "--yes"], "give job ids, or --status (not both)"),
        ([], "give job ids, or --status (not both)"),
        (["1", "-q", "default"], "-q and --task only make sense with --status"),
        (["--status", "queued", "-q", "bad queue", "--yes"], "invalid queue name"),
    ],
    ids=[
        "status-succeeded",
        "status-list-with-failed",
        "status-unknown",
        "ids-and-status",
        "nothing",
        "queue-without-status",
        "bad-queue",
    ],
)
def test_cancel_usage_errors_change_nothing(
    cli: Cli, pgjobs_conn: Conn, args: list[str], message: str
) -> None:
    assert cli.enqueue("t") == 1
    cli.enqueue("t", "-q", "bad")
    before = all_jobs(pgjobs_conn)
    assert_error(cli("jobs", "cancel", *args), 2, message)
    assert all_jobs(pgjobs_conn) == before


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("retry", None),
        ("retry", JobStatus.SUCCEEDED),
        ("cancel", None),
        ("cancel", JobStatus.SUCCEEDED),
    ],
    ids=["retry-unknown", "retry-succeeded", "cancel-unknown", "cancel-finished"],
)
def test_refused_retry_and_cancel_print_one_error_line(
    cli: Cli, pgjobs_conn: Conn, command: str, status: JobStatus | None
) -> None:
    job_id = make_job(cli, pgjobs_conn, status, "t") if status is not None else 999999
    before = all_jobs(pgjobs_conn)
    assert_error(cli("jobs", command, str(job_id)), 1, str(job_id))
    assert all_jobs(pgjobs_conn) == before


# --- 7. queues ----------------------------------------------------------------------------


def test_queues_counts_each_state_per_queue(cli: Cli, pgjobs_conn: Conn) -> None:
    make_job(cli, pgjobs_conn, JobStatus.SUCCEEDED, "t", queue="mail")
    make_job(cli, pgjobs_conn, JobStatus.FAILED, "t", queue="mail")
    make_job(cli, pgjobs_conn, JobStatus.FAILED, "t", queue="mail")
    make_job(cli, pgjobs_conn, JobStatus.CANCELLED, "t", queue="mail")
    make_job(cli, pgjobs_conn, JobStatus.RUNNING, "t", queue="mail")
    cli.enqueue("t", "-q", "mail")
    cli.enqueue("t", "-q", "mail")
    cli.enqueue("t", "-q", "mail", "--delay", "1h")
    an_hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    cli.enqueue("t", "-q", "reports", "--at", an_hour_ago)
    cli.enqueue("t", "-q", "later", "--delay", "1d")
    pgjobs_conn.execute("INSERT INTO pgjobs.queues (name, paused) VALUES ('idle', true)")

    result = cli("queues", "--json")
    assert_ok(result)
    stats = {q["name"]: q for q in json.loads(result.stdout)}
    assert set(stats) == {"idle", "later", "mail", "reports"}
    counts = ("ready", "scheduled", "blocked", "running", "succeeded", "failed", "cancelled")
    assert {k: stats["mail"][k] for k in counts} == {
        "ready": 2,
        "scheduled": 1,
        "blocked": 0,
        "running": 1,
        "succeeded": 1,
        "failed": 2,
        "cancelled": 1,
    }
    assert stats["mail"]["paused"] is False
    assert isinstance(stats["mail"]["oldest_ready_age"], float)
    assert stats["mail"]["oldest_ready_age"] > 0
    assert stats["reports"]["ready"] == 1
    assert stats["reports"]["oldest_ready_age"] >= 3500
    assert stats["later"]["ready"] == 0 and stats["later"]["scheduled"] == 1
    assert stats["later"]["oldest_ready_age"] is None
    assert stats["idle"]["paused"] is True
    assert all(stats["idle"][k] == 0 for k in counts)
    assert stats["idle"]["oldest_ready_age"] is None

    table = cli("queues")
    assert_ok(table)
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "QUEUE",
        "READY",
        "SCHEDULED",
        "BLOCKED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
        "OLDEST",
        "STATE",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"idle", "later", "mail", "reports"}
    assert rows["mail"][1:8] == ["2", "1", "0", "1", "1", "2", "1"]
    assert len(rows["mail"]) == 9, "an oldest age, no state"
    assert rows["idle"][1:] == ["0", "0", "0", "0", "0", "0", "0", "paused"]
    assert rows["later"][1:] == ["0", "1", "0", "0", "0", "0", "0"]


def test_queues_shows_a_paused_queue_with_jobs(cli: Cli, pgjobs_conn: Conn) -> None:
    cli.enqueue("t", "-q", "q")
    pgjobs_conn.execute("INSERT INTO pgjobs.queues (name, paused) VALUES ('q', true)")
    stats = json.loads(cli("queues", "--json").stdout)
    assert [(s["name"], s["ready"], s["paused"]) for s in stats] == [("q", 1, True)]
    table = cli("queues")
    assert_ok(table)
    row = table.stdout.splitlines()[1]
    assert row.split()[0] == "q" and row.rstrip().endswith("paused")


def test_queues_of_an_empty_database(cli: Cli) -> None:
    result = cli("queues")
    assert_ok(result)
    assert "no queues yet" in result.stdout
    as_json = cli("queues", "--json")
    assert_ok(as_json)
    assert json.loads(as_json.stdout) == []


# --- 8. global options --------------------------------------------------------------------


def test_global_log_options_are_accepted(cli: Cli, pgjobs_conn: Conn) -> None:
    assert_ok(cli("--log-format", "json", "info"))
    assert_ok(cli("--log-format", "console", "--log-level", "debug", "info"))
    result = cli("--log-format", "json", "--log-level", "debug", "enqueue", "t")
    assert_ok(result)
    assert result.stdout.strip().isdigit(), "logs never reach stdout"
    assert job_count(pgjobs_conn) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--log-format", "bogus", "info"],
        ["--log-level", "loud", "info"],
        ["--log-format", "bogus", "enqueue", "t"],
    ],
    ids=["bad-format-info", "bad-level-info", "bad-format-enqueue"],
)
def test_bad_global_options_are_usage_errors(cli: Cli, pgjobs_conn: Conn, args: list[str]) -> None:
    assert_error(cli(*args), 2, "Invalid value for '--log-")
    assert job_count(pgjobs_conn) == 0
