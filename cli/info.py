"""``pgjobs info``: which database is in use, its schema revision, live workers, and
whether notifications reach a listener.

Each problem found is one line that says what to do, and the exit status is non-zero when
pgjobs cannot work. Problems pgjobs can live with (no worker running yet, notifications not
delivered: workers then wake only by polling) are reported as warnings, exit status 0.
"""

from __future__ import annotations

import shlex
import time
import uuid
from typing import Any

import click
import psycopg

from pgjobs.compat import ensure_compatible
from pgjobs.config import Settings
from pgjobs.connection import connect, redact, resolve_dsn
from pgjobs.embedded import ensure_running, psql_binary
from pgjobs.errors import SchemaError
from pgjobs.schema_version import HEAD_REVISION

from .options import database_options, settings_from

#: A worker whose heartbeat is older than this is not counted as alive.
WORKER_ALIVE_SECONDS = 60
#: How long the notification round trip may take before it is reported as not delivered.
NOTIFY_TIMEOUT_SECONDS = 2.0


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


INFO_EPILOG = """\b
Examples:
  pgjobs info                               the embedded server, or PGJOBS_DSN
  PGJOBS_DSN=postgresql://app@db/app pgjobs info
"""


@click.command(epilog=INFO_EPILOG)
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
        status = (
            "up to date"
            if not pending
            else f"{len(pending)} migration(s) pending: run `pgjobs migrate`"
        )
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
        count = alive[0] if alive else 0
        hint = "" if count else " (warning: jobs wait until one runs: pgjobs worker --app MODULE)"
        click.echo(f"workers:   {count} alive{hint}")
        through = _proxy_port(conn)
    if through is None:
        click.echo(f"notify:    {_notification_round_trip(settings)}")
    else:
        click.echo(
            f"notify:    warning: not checked: pgjobs reaches PostgreSQL (port {through[1]}) "
            f"through something on port {through[0]}, a pooler or a port mapping; a pooler in "
            "transaction mode does not deliver notifications: give workers --listen-dsn "
            "straight to PostgreSQL (docs/pgbouncer.md)"
        )


def _proxy_port(conn: psycopg.Connection[Any]) -> tuple[str, str] | None:
    """(the port connected to, the server's own port) when they differ: a pooler or a proxy
    sits in between. The notification check is skipped then: through a pooler in
    transaction mode its LISTEN would stay behind on a pooled server connection."""
    row = conn.execute("SHOW port").fetchone()
    server_port = str(row[0]) if row else ""
    client_port = str(conn.info.port)
    return (client_port, server_port) if server_port and client_port != server_port else None


def _notification_round_trip(settings: Settings) -> str:
    """LISTEN on one connection, NOTIFY from another: what a worker's wake-up needs."""
    channel = f"pgjobs_info_{uuid.uuid4().hex[:12]}"
    with connect(settings) as listener, connect(settings) as sender:
        listener.execute(f"LISTEN {channel}")
        started = time.monotonic()
        sender.execute("SELECT pg_notify(%s, 'ping')", (channel,))
        for _ in listener.notifies(timeout=NOTIFY_TIMEOUT_SECONDS, stop_after=1):
            return f"delivered in {(time.monotonic() - started) * 1000:.1f} ms"
    return (
        f"warning: a notification was not delivered within {NOTIFY_TIMEOUT_SECONDS:g}s: workers "
        "will wake only by polling (is a pooler in between? give workers --listen-dsn "
        "straight to PostgreSQL: docs/pgbouncer.md)"
    )
