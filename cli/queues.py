"""``pgjobs queues``: what each queue holds, and its pause and limits."""

from __future__ import annotations

import click

from pgjobs import admin
from pgjobs.durations import format_duration

from .options import checked_connection, database_options, settings_from
from .output import echo_json, table


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@database_options
@click.pass_context
def queues(
    ctx: click.Context, as_json: bool, dsn: str | None, schema: str | None, home: str | None
) -> None:
    """Per queue: jobs ready, scheduled, running, succeeded, failed; oldest ready age.

    \b
    READY      due now and not blocked     SCHEDULED  due later
    BLOCKED    waiting for dependencies    OLDEST     how long the oldest ready job waited
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(dsn, schema, home)
    with checked_connection(settings) as conn:
        stats = admin.queue_stats(conn, settings.schema)
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
