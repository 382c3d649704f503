"""``pgjobs migrate``: create or upgrade the schema, or print the SQL that would."""

from __future__ import annotations

import click

from pgjobs import migrate as migrations
from pgjobs.compat import read_state
from pgjobs.connection import connect
from pgjobs.schema_version import HEAD_REVISION

from .options import database_options, settings_from

EPILOG = """\b
Examples:
  pgjobs migrate                        bring the schema to the latest revision
  pgjobs migrate --sql > install.sql    the whole script, from an empty database
  pgjobs migrate --sql --from 0001      the upgrade script from revision 0001
  PGJOBS_SCHEMA=jobs pgjobs migrate     install into schema "jobs"

Safe to run again (nothing happens at head) and from several processes at once
(a transaction-level advisory lock serialises them; safe behind pgbouncer).
"""


@click.command(epilog=EPILOG)
@click.option("--sql", "as_sql", is_flag=True, help="Print the SQL script instead of running it.")
@click.option(
    "--from",
    "from_revision",
    metavar="REV",
    help="With --sql: the revision the database is at (an upgrade script).",
)
@database_options
def migrate(
    as_sql: bool,
    from_revision: str | None,
    dsn: str | None,
    schema: str | None,
    home: str | None,
) -> None:
    """Create or upgrade the pgjobs schema (alembic migrations)."""
    settings = settings_from(dsn, schema, home)
    if from_revision is not None and not as_sql:
        raise click.UsageError("--from only makes sense with --sql")
    if as_sql:
        click.echo(migrations.sql_script(settings.schema, from_revision), nl=False)
        return
    with connect(settings) as conn:
        before = read_state(conn, settings.schema).revision
    migrations.upgrade(settings)
    if before == HEAD_REVISION:
        click.echo(f"pgjobs schema {settings.schema!r} is up to date (revision {HEAD_REVISION})")
    else:
        click.echo(
            f"pgjobs schema {settings.schema!r} migrated to revision {HEAD_REVISION} "
            f"(was: {before or 'not installed'})"
        )
