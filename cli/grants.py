"""``pgjobs grants``: the SQL of a least-privilege role for workers, producers or KEDA."""

from __future__ import annotations

import click
import psycopg

from pgjobs import roles
from pgjobs.connection import one_line
from pgjobs.errors import InvalidInput

from .options import checked_connection, database_options, settings_from

EPILOG = """\b
Examples:
  pgjobs grants worker pgjobs_worker             print the SQL (review it, run it with psql)
  pgjobs grants producer billing_api --apply     run it now, as the connecting user
  pgjobs grants keda keda_scaler | psql "$ADMIN_DSN"
\b
worker:   reads and writes pgjobs' tables; cannot change the schema.
producer: enqueues (also in bulk, with dedupe keys and dependencies) and reads jobs back;
          cannot claim, complete, cancel or delete a job.
keda:     runs backlog(), demand(), oldest_ready_age() and reads only the columns they need
          (never arguments or results); statement_timeout 5s, at most 5 connections.
Create the role first (CREATE ROLE name LOGIN PASSWORD '...'). Run again after a migration
that adds a table. --apply needs a user allowed to grant (the schema's owner) and, for keda,
to ALTER ROLE (CREATEROLE).
"""


@click.command(epilog=EPILOG)
@click.argument("kind", type=click.Choice(roles.KINDS))
@click.argument("role")
@click.option("--apply", is_flag=True, help="Run the statements instead of printing them.")
@database_options
def grants(
    kind: str, role: str, apply: bool, dsn: str | None, schema: str | None, home: str | None
) -> None:
    """Print (or --apply) the GRANTs a worker, producer or KEDA role needs."""
    settings = settings_from(dsn, schema, home)
    try:
        statements = roles.grant_statements(settings.schema, kind, role)
    except InvalidInput as exc:
        raise click.UsageError(str(exc)) from None
    if not apply:
        click.echo(roles.script(settings.schema, kind, role), nl=False)
        return
    with checked_connection(settings) as conn:
        try:
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
        except psycopg.errors.UndefinedObject as exc:
            raise InvalidInput(
                f"{one_line(exc)} (create it first: CREATE ROLE {role} LOGIN PASSWORD '...')"
            ) from None
    click.echo(
        f"granted {kind} rights on schema {settings.schema} to {role} ({len(statements)} statements)"
    )
