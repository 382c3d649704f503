"""Commands about jobs: ``enqueue``, ``status``, ``wait`` and the ``jobs`` group."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import click
import psycopg

from pgjobs import admin, callbacks, client, db
from pgjobs.app import App, max_args_bytes_setting
from pgjobs.config import Settings
from pgjobs.errors import JobFailed, NotFound
from pgjobs.types import JobRecord, JobStatus

from .options import (
    DURATION,
    JOB_ID,
    JSON_OBJECT,
    TIMESTAMP,
    checked_connection,
    database,
    database_options,
    settings_from,
)
from .output import ProgressLine, ago, echo_json, job_summary, table, tree_lines

ENQUEUE_EPILOG = """\b
Examples:
  pgjobs enqueue emails.send '{"to": "a@example.com"}'
  pgjobs enqueue reports.build -q reports -p 5 --delay 10m
  pgjobs enqueue emails.welcome '{"user": 42}' --dedupe-key welcome:42
  pgjobs enqueue billing.charge '{"invoice": 7}' --at 2026-01-31T09:00:00+01:00
  pgjobs enqueue thumbnails.make '{"image": 3}' --wait --timeout 2m
  pgjobs enqueue crm.sync '{"customer": 42}' --lock-key customer:42   one at a time per customer
  pgjobs enqueue reports.merge --depends-on 12,15                      after 12 and 15 succeed

Prints the new job's id alone on stdout (scripts: ID=$(pgjobs enqueue ...)).
Queue, priority and max attempts default to the task's own settings, as
published by the workers that run it, else 'default', 0 and 3.
With --dedupe-key, if an unfinished job holds the key, its id is printed,
nothing is enqueued, and a note says so on stderr.
"""


def _load(conn: psycopg.Connection[Any], schema: str, job_id: int) -> JobRecord:
    record = db.run(conn, db.get_job(schema, job_id))
    if record is None:
        raise NotFound(f"no job with id {job_id}")
    return record


def _wait(settings: Settings, job_id: int, timeout: timedelta | None, as_json: bool) -> None:
    """Block until the job ends; print its result; exit 0 on success, 1 otherwise."""
    line = ProgressLine(sys.stderr) if not as_json and sys.stderr.isatty() else None
    with App(settings.dsn, schema=settings.schema, home=str(settings.home)) as app:
        job = app.get(job_id)
        try:
            result = job.wait(timeout=timeout, on_update=line.update if line else None)
        except JobFailed as exc:
            if line:
                line.clear()
            if as_json:
                echo_json(job.to_json())
            click.echo(f"pgjobs: {exc}", err=True)
            raise SystemExit(1) from exc
        finally:
            if line:
                line.clear()
    if as_json:
        echo_json(job.to_json())
    elif result is not None:
        click.echo(json.dumps(result, sort_keys=True))


def _ids(text: str, option: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise click.UsageError(f"{option}: give job ids separated by commas, e.g. 12,15")
    return [int(p) for p in parts]


@click.command(epilog=ENQUEUE_EPILOG)
@click.argument("task")
@click.argument("args", required=False, type=JSON_OBJECT, metavar="[ARGS_JSON]")
@click.option("-q", "--queue", help="Queue (default: the task's, else 'default').")
@click.option(
    "-p",
    "--priority",
    type=int,
    help="-1000..1000, higher runs first (default: the task's, else 0).",
)
@click.option("--delay", type=DURATION, help="Start after this long: 30, 30s, 5m, 2h, 1d.")
@click.option("--at", "at", type=TIMESTAMP, help="Start at this ISO 8601 time (no offset: UTC).")
@click.option("--max-attempts", type=int, help="1..1000 (default: the task's, else 3).")
@click.option("--dedupe-key", help="At most one unfinished job per key.")
@click.option(
    "--dedupe-for", type=DURATION,
    help="With --dedupe-key: no second job of the key within this long, finished or not.",
)  # fmt: skip
@click.option(
    "--dedupe-mode", type=click.Choice(["skip", "replace"]),
    help="With --dedupe-key: replace = a holder not started yet takes these args (debounce).",
)  # fmt: skip
@click.option("--lock-key", help="At most one job with this key runs at a time, in enqueue order.")
@click.option(
    "--depends-on", metavar="ID[,ID]",
    help="Start only after these jobs succeed (cancelled if one fails).",
)  # fmt: skip
@click.option("--callback", "callback_url", metavar="URL", help="POSTed the job when it ends.")
@click.option(
    "--wait",
    "wait_for_it",
    is_flag=True,
    help="Wait for the job to end; exit 0 if it succeeded, 1 if not.",
)
@click.option("--timeout", type=DURATION, help="With --wait: give up after this long (exit 124).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON instead of its id.")
@database_options
def enqueue(
    task: str,
    args: dict[str, Any] | None,
    queue: str | None,
    priority: int | None,
    delay: timedelta | None,
    at: datetime | None,
    max_attempts: int | None,
    dedupe_key: str | None,
    dedupe_for: timedelta | None,
    dedupe_mode: str | None,
    lock_key: str | None,
    depends_on: str | None,
    callback_url: str | None,
    wait_for_it: bool,
    timeout: timedelta | None,
    as_json: bool,
    dsn: str | None,
    schema: str | None,
    home: str | None,
) -> None:
    """Enqueue a job of TASK with ARGS_JSON (a JSON object) as its arguments."""
    if delay is not None and at is not None:
        raise click.UsageError("give --delay or --at, not both")
    if timeout is not None and not wait_for_it:
        raise click.UsageError("--timeout only makes sense with --wait")
    settings = settings_from(dsn, schema, home)
    options = client.EnqueueOptions(
        queue=queue, priority=priority, delay=delay, not_before=at, max_attempts=max_attempts,
        dedupe_key=dedupe_key, callback_url=callback_url, lock_key=lock_key,
        dedupe_for=dedupe_for, dedupe_mode=dedupe_mode,
        depends_on=_ids(depends_on, "--depends-on") if depends_on is not None else None,
    )  # fmt: skip
    job = client.prepare(task, args or {}, options, max_args_bytes=max_args_bytes_setting())
    with checked_connection(settings) as conn:
        inserted = client.enqueue(client.PsycopgTarget(conn), settings.schema, job)
    if inserted.existing:
        click.echo(
            f"pgjobs: job {inserted.record.id} ({inserted.record.status}) already holds dedupe key "
            f"{dedupe_key!r}; nothing enqueued",
            err=True,
        )
    if wait_for_it:
        if not as_json:
            click.echo(inserted.record.id)
            sys.stdout.flush()
        _wait(settings, inserted.record.id, timeout, as_json)
        return
    if as_json:
        echo_json({**inserted.record.to_json(), "existing": inserted.existing})
    else:
        click.echo(inserted.record.id)


STATUS_EPILOG = """\b
Examples:
  pgjobs status 42                  state, attempts, progress, result or error
  pgjobs status 42 --json           the whole job (and its callback delivery) as JSON
"""

WAIT_EPILOG = """\b
Examples:
  pgjobs wait 42                    block until job 42 ends; print its result
  pgjobs wait 42 --timeout 5m --json
  ID=$(pgjobs enqueue reports.build) && pgjobs wait "$ID" && echo built
\b
Behind a pooler in transaction mode, set PGJOBS_LISTEN_DSN (a direct DSN, or off).
"""

JOBS_EPILOG = """\b
Examples:
  pgjobs jobs ls --status failed -q emails        newest failed jobs of a queue
  pgjobs jobs ls --before 1200 --limit 50         the next page (keyset paging)
  pgjobs jobs retry --failed -q emails --yes      every failed job of the queue, due now
  pgjobs jobs cancel 42 43                        queued: at once; running: asked to stop
  pgjobs jobs tree 42                             the chain job 42 belongs to
"""


@click.command(epilog=STATUS_EPILOG)
@click.argument("job_id", type=JOB_ID, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the whole job as JSON.")
@database_options
def status(
    job_id: int, as_json: bool, dsn: str | None, schema: str | None, home: str | None
) -> None:
    """Show a job: status, attempts, progress, result or error, timestamps."""
    settings = settings_from(dsn, schema, home)
    with checked_connection(settings) as conn:
        record = _load(conn, settings.schema, job_id)
        delivery = callbacks.delivery(conn, settings.schema, job_id)
    if as_json:
        shown = record.to_json()
        if delivery is not None:
            shown["callback_delivery"] = delivery.to_json()
        echo_json(shown)
        return
    fields = job_summary(record)
    if delivery is not None:
        # Right after the callback URL, which job_summary shows.
        at = next((i + 1 for i, (name, _) in enumerate(fields) if name == "callback"), len(fields))
        fields[at:at] = _delivery_lines(delivery)
    for name, value in fields:
        text = str(value)
        if "\n" in text:
            click.echo(f"{name}:")
            click.echo("  " + text.replace("\n", "\n  "))
        else:
            click.echo(f"{name + ':':<12}{text}")


def _delivery_lines(state: callbacks.CallbackState) -> list[tuple[str, str]]:
    """One ``delivery`` line per ending of the job (its callback's state), oldest first."""
    if not state.deliveries:
        return [("delivery", "when the job ends")]
    lines = []
    for d in state.deliveries:
        tries = f"{d.attempts}/{d.max_attempts} attempt(s)"
        if d.state == "delivered":
            assert d.delivered_at is not None
            text = f"delivered {d.delivered_at.isoformat()} ({ago(d.delivered_at)}), {tries}"
        elif d.state == "retrying":
            assert d.next_attempt_at is not None
            text = f"retrying, {tries}, next {d.next_attempt_at.isoformat()} ({ago(d.next_attempt_at)})"
        elif d.state == "failed":
            text = f"failed, {tries}"
        else:
            text = f"{d.state}, {tries}"
        if d.last_error and d.state != "delivered":
            text += f": {d.last_error.strip().splitlines()[-1]}"
        lines.append(("delivery", f"#{d.id} of the {d.ending} ending: {text}"))
    return lines


@click.command(epilog=WAIT_EPILOG)
@click.argument("job_id", type=JOB_ID, metavar="ID")
@click.option("--timeout", type=DURATION, help="Give up after this long (exit 124).")
@click.option("--json", "as_json", is_flag=True, help="Print the final job as JSON.")
@database_options
def wait(
    job_id: int,
    timeout: timedelta | None,
    as_json: bool,
    dsn: str | None,
    schema: str | None,
    home: str | None,
) -> None:
    """Wait for a job to end and print its result.

    \b
    Exit status: 0 succeeded, 1 failed or cancelled, 124 timed out.
    Woken by PostgreSQL notifications, not by polling.
    """
    _wait(settings_from(dsn, schema, home), job_id, timeout, as_json)


@click.group(epilog=JOBS_EPILOG)
def jobs() -> None:
    """List, retry and cancel jobs."""


@jobs.command("ls")
@click.option(
    "--status", "status_", metavar="S[,S]", help="queued, running, succeeded, failed, cancelled."
)
@click.option("-q", "--queue")
@click.option("--task")
@click.option(
    "--limit",
    type=click.IntRange(1, admin.LIST_LIMIT_MAX),
    default=admin.LIST_LIMIT_DEFAULT,
    show_default=True,
)
@click.option(
    "--before", "before_id", type=JOB_ID, metavar="ID", help="Next page: jobs older than this id."
)
@click.option("--json", "as_json", is_flag=True)
@database_options
def list_jobs(
    status_: str | None, queue: str | None, task: str | None, limit: int, before_id: int | None,
    as_json: bool, dsn: str | None, schema: str | None, home: str | None,
) -> None:  # fmt: skip
    """List jobs, newest first.

    \b
    Examples:
      pgjobs jobs ls --status failed -q emails
      pgjobs jobs ls --limit 100 --json | jq '.[].id'
    """
    settings = settings_from(dsn, schema, home)
    where = admin.JobFilter(admin.parse_statuses(status_), queue, task)
    with checked_connection(settings) as conn:
        records = admin.list_jobs(conn, settings.schema, where, limit=limit, before_id=before_id)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    table(
        ["ID", "STATUS", "QUEUE", "TASK", "ATTEMPTS", "PRIORITY", "CREATED", "ERROR"],
        [
            [r.id, r.status.value, r.queue, r.task, f"{r.attempts}/{r.max_attempts}", r.priority, ago(r.created_at),
             (r.error or "").strip().splitlines()[-1][:60] if r.error and r.status is not JobStatus.SUCCEEDED else ""]
            for r in records
        ],
    )  # fmt: skip


def _report(ids: list[int], outcome: Callable[[int], tuple[bool, str]]) -> int:
    """One line per id: done on stdout, refused on stderr (``pgjobs: error:``). Returns the
    number refused (the command then exits 1)."""
    refused = 0
    for job_id in ids:
        done, text = outcome(job_id)
        if done:
            click.echo(f"{job_id}: {text}")
        else:
            click.echo(f"pgjobs: error: {job_id}: {text}", err=True)
            refused += 1
    return refused


def _confirm(count: int, what: str, yes: bool) -> None:
    if yes or count == 0:
        return
    if not sys.stdin.isatty():
        raise click.UsageError(
            f"{what} would affect {count} job(s): add --yes to confirm (no terminal to ask)"
        )
    if not click.confirm(f"{what}: {count} job(s). Continue?", default=False):
        raise click.Abort()


@jobs.command("retry")
@click.argument("job_ids", nargs=-1, type=JOB_ID, metavar="[ID]...")
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed job (of -q QUEUE).")
@click.option("-q", "--queue", help="With --failed: only this queue.")
@click.option("--yes", is_flag=True, help="With --failed: do not ask for confirmation.")
@database_options
def retry_jobs(
    job_ids: tuple[int, ...], all_failed: bool, queue: str | None, yes: bool,
    dsn: str | None, schema: str | None, home: str | None,
) -> None:  # fmt: skip
    """Put failed or cancelled jobs back in their queue, due now.

    A retried job gets at least one more attempt, even if it had used them all.

    \b
    Examples:
      pgjobs jobs retry 41 42
      pgjobs jobs retry --failed -q emails --yes
    """
    if bool(job_ids) == all_failed:
        raise click.UsageError("give job ids, or --failed (not both)")
    if queue is not None and not all_failed:
        raise click.UsageError("-q only makes sense with --failed")
    settings = settings_from(dsn, schema, home)
    with checked_connection(settings) as conn:
        ids = list(job_ids)
        if all_failed:
            ids = admin.matching_ids(
                conn, settings.schema, admin.JobFilter((JobStatus.FAILED,), queue)
            )
            _confirm(len(ids), "retry failed jobs", yes)
        results = db.run(conn, db.retry(settings.schema, ids)) if ids else []
    found = {r.job_id: r for r in results}

    def retry_outcome(job_id: int) -> tuple[bool, str]:
        result = found.get(job_id)
        if result is None:
            return False, "no such job"
        if result.retried:
            return True, "retried"
        if result.dedupe_holder is not None:
            return False, f"not retried, its dedupe key is held by job {result.dedupe_holder}"
        return (
            False,
            f"not retried, it is {result.previous_status.value} (only failed or cancelled jobs can be retried)",
        )

    refused = _report(ids, retry_outcome)
    if all_failed and not ids:
        click.echo("no failed jobs")
    if refused:
        raise SystemExit(1)


@jobs.command("cancel")
@click.argument("job_ids", nargs=-1, type=JOB_ID, metavar="[ID]...")
@click.option(
    "--status",
    "status_",
    metavar="S[,S]",
    help="Cancel every job in these states (queued, running).",
)
@click.option("-q", "--queue", help="With --status: only this queue.")
@click.option("--task", help="With --status: only this task.")
@click.option("--yes", is_flag=True, help="With --status: do not ask for confirmation.")
@database_options
def cancel_jobs(
    job_ids: tuple[int, ...], status_: str | None, queue: str | None, task: str | None, yes: bool,
    dsn: str | None, schema: str | None, home: str | None,
) -> None:  # fmt: skip
    """Cancel jobs: a queued job ends at once; a running one is asked to stop.

    \b
    Examples:
      pgjobs jobs cancel 41 42
      pgjobs jobs cancel --status queued -q emails --task emails.digest --yes
    """
    if bool(job_ids) == (status_ is not None):
        raise click.UsageError("give job ids, or --status (not both)")
    if (queue or task) and status_ is None:
        raise click.UsageError("-q and --task only make sense with --status")
    statuses = admin.parse_statuses(status_)
    if any(s.finished for s in statuses):
        raise click.UsageError("only queued or running jobs can be cancelled")
    settings = settings_from(dsn, schema, home)
    with checked_connection(settings) as conn:
        ids = list(job_ids)
        if statuses:
            ids = admin.matching_ids(conn, settings.schema, admin.JobFilter(statuses, queue, task))
            _confirm(len(ids), "cancel", yes)
        results = db.run(conn, db.cancel(settings.schema, ids)) if ids else []
    found = {r.job_id: r for r in results}
    messages = {
        "cancelled": "cancelled",
        "cancel_requested": "running: asked to stop",
        "already_requested": "running: already asked to stop",
    }

    def cancel_outcome(job_id: int) -> tuple[bool, str]:
        result = found.get(job_id)
        if result is None:
            return False, "no such job"
        if result.outcome in messages:
            return True, messages[result.outcome]
        return False, f"not cancelled, it already ended {result.previous_status.value}"

    refused = _report(ids, cancel_outcome)
    if statuses and not ids:
        click.echo("no matching jobs")
    if refused:
        raise SystemExit(1)


@jobs.command("tree")
@click.argument("job_id", type=JOB_ID, metavar="ID")
@database_options
def tree(job_id: int, dsn: str | None, schema: str | None, home: str | None) -> None:
    """The chain of job ID: its first ancestor and every job enqueued from it, with
    statuses, durations and what each waits for."""
    with database(dsn, schema, home) as (conn, schema_name):
        root = admin.job_tree(conn, schema_name, job_id)
    if root is None:
        raise NotFound(f"no job {job_id}")
    for line in tree_lines(root, job_id):
        click.echo(line)
