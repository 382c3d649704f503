"""``pgjobs queues``: what each queue holds, and its pause and limits."""

from __future__ import annotations

from typing import Any

import click

from pgjobs import admin, queue_control, validation
from pgjobs.durations import format_duration
from pgjobs.errors import InvalidInput

from .options import database, database_options
from .output import echo_json, table

QUEUES_EPILOG = """\b
Examples:
  pgjobs queues                             one line per queue
  pgjobs queues --json
  pgjobs queues pause emails                no job of the queue starts until resumed
  pgjobs queues resume emails
  pgjobs queues limit partner-api --concurrency 5 --rate 100/m
"""


@click.group(invoke_without_command=True, epilog=QUEUES_EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@database_options
@click.pass_context
def queues(
    ctx: click.Context, as_json: bool, dsn: str | None, schema: str | None, home: str | None
) -> None:
    """Per queue: jobs ready, scheduled, running, succeeded, failed; oldest ready age.
    Subcommands: pause, resume, limit.

    \b
    READY      due now and not blocked     SCHEDULED  due later
    BLOCKED    waiting for dependencies    OLDEST     how long the oldest ready job waited
    """
    if ctx.invoked_subcommand is not None:
        return
    with database(dsn, schema, home) as (conn, schema_name):
        stats = admin.queue_stats(conn, schema_name)
    if as_json:
        echo_json([s.to_json() for s in stats])
        return
    if not stats:
        click.echo("no queues yet: enqueue a job to create one")
        return

    def limits(s: admin.QueueStats) -> str:
        parts = []
        if s.paused:
            parts.append("paused")
        if s.concurrency_limit is not None:
            parts.append(f"concurrency {s.concurrency_limit}")
        if s.rate_limit is not None and s.rate_period_seconds:
            parts.append(f"rate {s.rate_limit}/{format_duration(s.rate_period_seconds)}")
        return ", ".join(parts)

    table(
        ["QUEUE", "READY", "SCHEDULED", "BLOCKED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "OLDEST", "STATE"],
        [
            [s.name, s.ready, s.scheduled, s.blocked, s.running, s.succeeded, s.failed, s.cancelled,
             format_duration(s.oldest_ready_age) if s.oldest_ready_age is not None else "", limits(s)]
            for s in stats
        ],
    )  # fmt: skip


@queues.command("pause")
@click.argument("queue")
@database_options
def pause(queue: str, dsn: str | None, schema: str | None, home: str | None) -> None:
    """Stop starting jobs of QUEUE (it keeps accepting them; running ones finish)."""
    with database(dsn, schema, home) as (conn, schema_name):
        queue_control.set_paused(conn, schema_name, queue, True)
    click.echo(f"queue {queue} paused: its jobs wait until 'pgjobs queues resume {queue}'")


@queues.command("resume")
@click.argument("queue")
@database_options
def resume(queue: str, dsn: str | None, schema: str | None, home: str | None) -> None:
    """Start jobs of QUEUE again."""
    with database(dsn, schema, home) as (conn, schema_name):
        queue_control.set_paused(conn, schema_name, queue, False)
    click.echo(f"queue {queue} resumed")


LIMIT_EPILOG = """\b
Examples:
  pgjobs queues limit partner-api --concurrency 2      at most 2 running at once
  pgjobs queues limit partner-api --rate 2/s           at most 2 starts in any second
  pgjobs queues limit reports --rate 100/m --concurrency 5
  pgjobs queues limit partner-api --concurrency none   remove the concurrency limit
\b
Enforced by the claim in the database, across every worker and machine. A job whose lease
expired (its worker died) no longer holds a slot.
"""


@queues.command("limit", epilog=LIMIT_EPILOG)
@click.argument("queue")
@click.option("--concurrency", metavar="N|none", help="Jobs of QUEUE running at once, at most.")
@click.option("--rate", metavar="N/PERIOD|none", help="Starts per period, e.g. 2/s, 100/m, 5/10s.")
@database_options
def limit(
    queue: str, concurrency: str | None, rate: str | None, dsn: str | None, schema: str | None,
    home: str | None,
) -> None:  # fmt: skip
    """Limit how many jobs of QUEUE run at once and how often they start."""
    changes: dict[str, Any] = {}
    try:
        if concurrency is not None:
            changes["concurrency"] = (
                None
                if concurrency.lower() == "none"
                else queue_control.parse_concurrency(concurrency)
            )
        if rate is not None:
            changes["rate"] = None if rate.lower() == "none" else queue_control.parse_rate(rate)
        if not changes:
            raise InvalidInput(
                "give --concurrency N, --rate N/PERIOD, or both ('none' removes one)"
            )
        validation.queue_name(queue)
    except InvalidInput as exc:
        raise click.UsageError(str(exc)) from None
    with database(dsn, schema, home) as (conn, schema_name):
        queue_control.set_limits(conn, schema_name, queue, **changes)
    described = ", ".join(
        f"{key} {'none' if value is None else value}" for key, value in changes.items()
    )
    click.echo(f"queue {queue}: {described}")
