"""``pgjobs schedules``: cron schedules that enqueue jobs (list, add, remove, pause, resume)."""

from __future__ import annotations

from typing import Any

import click

from pgjobs import schedules as store
from pgjobs.cron import MISSED_POLICIES, OVERLAP_POLICIES, zone

from .options import JSON_OBJECT, database, database_options
from .output import ago, echo_json, table

EPILOG = """\b
Examples:
  pgjobs schedules add nightly-report "0 3 * * *" reports.nightly --tz Europe/Paris
  pgjobs schedules add ping "* * * * * */10" health.ping '{"target": "db"}'   every 10 s
  pgjobs schedules add sync "*/5 * * * *" crm.sync --overlap skip --missed run_once
  pgjobs schedules pause nightly-report
  pgjobs schedules rm ping
\b
Cron: minute hour day month weekday, an optional 6th field for seconds, or @hourly, @daily,
@weekly, @monthly, @yearly. Each fire time gives exactly one job (not_before = that time),
however many workers run; running workers fire the schedules, so at least one must run.
--missed: fire times missed while no worker ran (more than a minute late) are skipped, or
one job runs for the latest of them (run_once). --overlap skip: no new job while the
previous one of this schedule is unfinished.
"""


@click.group(invoke_without_command=True, epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print the schedules as JSON.")
@database_options
@click.pass_context
def schedules(
    ctx: click.Context, as_json: bool, dsn: str | None, schema: str | None, home: str | None
) -> None:
    """Cron schedules: list them (default), add, rm, pause, resume."""
    if ctx.invoked_subcommand is None:
        _list(as_json, dsn, schema, home)


@schedules.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the schedules as JSON.")
@database_options
def ls(as_json: bool, dsn: str | None, schema: str | None, home: str | None) -> None:
    """List schedules with their next fire time and last job."""
    _list(as_json, dsn, schema, home)


def _list(as_json: bool, dsn: str | None, schema: str | None, home: str | None) -> None:
    with database(dsn, schema, home) as (conn, schema_name):
        rows = store.list_schedules(conn, schema_name)
    if as_json:
        echo_json([s.to_json() for s in rows])
        return
    if not rows:
        click.echo('no schedules: add one with pgjobs schedules add NAME "CRON" TASK')
        return
    table(
        ["NAME", "CRON", "TZ", "TASK", "QUEUE", "NEXT", "LAST JOB", "STATE", "SOURCE"],
        [
            [s.name, s.cron, s.timezone, s.task, s.queue or "", _next(s), s.last_job_id,
             "paused" if s.paused else "active", s.source]
            for s in rows
        ],
    )  # fmt: skip


def _next(schedule: store.Schedule) -> str:
    if schedule.paused or schedule.next_fire_at is None:
        return ""
    moment = schedule.next_fire_at.astimezone(zone(schedule.timezone))
    return f"{moment:%Y-%m-%d %H:%M:%S} ({ago(schedule.next_fire_at)})"


@schedules.command("add", epilog=EPILOG)
@click.argument("name")
@click.argument("cron", metavar="CRON")
@click.argument("task")
@click.argument("args", metavar="[ARGS_JSON]", required=False, type=JSON_OBJECT)
@click.option("-q", "--queue", help="Queue of the jobs (default: the task's).")
@click.option("-p", "--priority", type=int, help="Priority of the jobs (higher runs first).")
@click.option("--max-attempts", type=int, help="Attempts per job (default: the task's).")
@click.option("--tz", "timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option(
    "--missed", type=click.Choice(MISSED_POLICIES), default="skip", show_default=True,
    help="Fire times missed while no worker ran.",
)  # fmt: skip
@click.option(
    "--overlap", type=click.Choice(OVERLAP_POLICIES), default="allow", show_default=True,
    help="skip: no new job while the previous one is unfinished.",
)  # fmt: skip
@click.option("--replace", is_flag=True, help="Overwrite a schedule of the same name.")
@database_options
def add(
    name: str, cron: str, task: str, args: dict[str, Any] | None, queue: str | None,
    priority: int | None, max_attempts: int | None, timezone: str, missed: str, overlap: str,
    replace: bool, dsn: str | None, schema: str | None, home: str | None,
) -> None:  # fmt: skip
    """Add a schedule NAME: every fire time of CRON enqueues TASK with ARGS_JSON."""
    schedule = store.Schedule(
        name=name, cron=cron, task=task, args=args or {}, timezone=timezone, queue=queue,
        priority=priority, max_attempts=max_attempts, missed=missed, overlap=overlap,
    )  # fmt: skip
    with database(dsn, schema, home) as (conn, schema_name):
        stored = store.add(conn, schema_name, schedule, replace_existing=replace)
    click.echo(f"schedule {stored.name} added: next fire {_next(stored)}")


@schedules.command("rm")
@click.argument("name")
@database_options
def rm(name: str, dsn: str | None, schema: str | None, home: str | None) -> None:
    """Remove schedule NAME (jobs it already enqueued stay)."""
    with database(dsn, schema, home) as (conn, schema_name):
        store.remove(conn, schema_name, name)
    click.echo(f"schedule {name} removed")


@schedules.command("pause")
@click.argument("name")
@database_options
def pause(name: str, dsn: str | None, schema: str | None, home: str | None) -> None:
    """Stop firing schedule NAME until resumed."""
    with database(dsn, schema, home) as (conn, schema_name):
        store.set_paused(conn, schema_name, name, True)
    click.echo(f"schedule {name} paused")


@schedules.command("resume")
@click.argument("name")
@database_options
def resume(name: str, dsn: str | None, schema: str | None, home: str | None) -> None:
    """Fire schedule NAME again, from its next fire time (missed ones are not made up)."""
    with database(dsn, schema, home) as (conn, schema_name):
        stored = store.set_paused(conn, schema_name, name, False)
    click.echo(f"schedule {name} resumed: next fire {_next(stored)}")
