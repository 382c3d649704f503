"""``pgjobs prune``: delete finished jobs older than an age."""

from __future__ import annotations

from datetime import timedelta

import click

from pgjobs import admin, retention
from pgjobs.durations import format_duration
from pgjobs.errors import InvalidInput

from .options import DURATION, database, database_options

EPILOG = """\b
Examples:
  pgjobs prune                                  succeeded and cancelled jobs older than 7 days
  pgjobs prune --older-than 1d
  pgjobs prune --older-than 30d --status failed
\b
Only finished jobs (succeeded, failed, cancelled) are ever pruned, in batches of 1,000 rows,
each its own short transaction: claims and completions are never blocked. Workers also prune
by themselves (see pgjobs worker --keep, --keep-failed, --prune-every).
"""


@click.command(epilog=EPILOG)
@click.option(
    "--older-than", type=DURATION, default="7d", show_default=True,
    help="Age since the job finished.",
)  # fmt: skip
@click.option(
    "--status", "statuses", default="succeeded,cancelled", show_default=True,
    metavar="S[,S]", help="Finished statuses to prune (failed ones are kept unless named).",
)  # fmt: skip
@database_options
def prune(
    older_than: timedelta, statuses: str, dsn: str | None, schema: str | None, home: str | None
) -> None:
    """Delete finished jobs that ended more than --older-than ago."""
    try:
        chosen = admin.parse_statuses(statuses)
        if not chosen:
            raise InvalidInput("give at least one status: succeeded, failed, cancelled")
        policy = retention.Policy.older_than(older_than, chosen)
    except InvalidInput as exc:
        raise click.UsageError(str(exc)) from None
    with database(dsn, schema, home) as (conn, schema_name):
        deleted = retention.prune(conn, schema_name, policy)
    parts = ", ".join(f"{n:,} {status.value}" for status, n in deleted.items())
    click.echo(
        f"pruned {sum(deleted.values()):,} jobs finished over {format_duration(older_than)} ago ({parts})"
    )
