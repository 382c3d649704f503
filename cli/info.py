"""``pgjobs info``: which database is in use, its schema revision, live workers.

Each problem found is one line, and the exit status is non-zero when pgjobs cannot work.
"""

from __future__ import annotations

import shlex

import click

from pgjobs.compat import ensure_compatible
from pgjobs.config import Settings
from pgjobs.connection import connect, redact, resolve_dsn
from pgjobs.embedded import ensure_running, psql_binary
from pgjobs.errors import SchemaError
from pgjobs.schema_version import HEAD_REVISION

from .options import database_options, settings_from

#: A worker whose heartbeat is older than this is not counted as alive.
WORKER_ALIVE_SECONDS = 60


def _describe_target(settings: Settings) -> tuple[str, str]:
    """(what the database is, how to reach it with psql)."""
    if settings.uses_embedded:
        server = ensure_running(settings.home, explicit=settings.embedded_requested)
        return (
            f"embedded PostgreSQL in {server.data_dir} (log: {server.log_file})",
            f"{psql_binary()} -h {server.socket_dir} -p {server.port} -U postgres postgres",
        )
    dsn = resolve_dsn(settings)
    return (redact(dsn), f"psql {shlex.quote(redact(dsn))}")


@click.command()
@database_options
def info(dsn: str | None, schema: str | None, home: str | None) -> None:
    """Show which database pgjobs uses, its schema revision and live workers.

    \b
    Exit status: 0 when everything is usable; non-zero, with one line saying
    what is wrong, when the database cannot be reached or the schema is
    missing, behind, or newer than this pgjobs understands.
    """
    settings = settings_from(dsn, schema, home)
    database, psql = _describe_target(settings)
    click.echo(f"database:  {database}")
    click.echo(f"psql:      {psql}")
    with connect(settings) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        click.echo(f"server:    PostgreSQL {version[0] if version else '?'}")
        try:
            state = ensure_compatible(conn, settings.schema)
        except SchemaError as exc:
            click.echo(f"schema:    {settings.schema} ({exc})")
            raise SystemExit(exc.exit_code) from exc
        pending = state.pending
        status = "up to date" if not pending else f"{len(pending)} migration(s) pending"
        if not state.known:
            status = "newer than this pgjobs (additive changes only: compatible)"
        click.echo(
            f"schema:    {settings.schema} at revision {state.revision} ({status}; "
            f"this pgjobs ships {HEAD_REVISION})"
        )
        alive = conn.execute(
            f"SELECT count(*) FROM {settings.schema}.workers"
            " WHERE last_heartbeat_at > now() - make_interval(secs => %s)",
            (WORKER_ALIVE_SECONDS,),
        ).fetchone()
        click.echo(f"workers:   {alive[0] if alive else 0} alive")
