"""``pgjobs embedded``: the local PostgreSQL pgjobs runs when no database is configured."""

from __future__ import annotations

from pathlib import Path

import click

from pgjobs import embedded as server

from .options import settings_from

EPILOG = """\b
The embedded server starts on first use and keeps running so that the next
pgjobs command connects at once; its data lives in PGJOBS_HOME and survives
restarts.

\b
Examples:
  pgjobs embedded status
  pgjobs embedded stop
"""


def _home(home: str | None) -> Path:
    return settings_from(None, None, home).home


@click.group(epilog=EPILOG)
def embedded() -> None:
    """Inspect or stop the embedded PostgreSQL server."""


@embedded.command()
@click.option("--home", metavar="DIR", help="Data directory (env PGJOBS_HOME).")
def status(home: str | None) -> None:
    """Say whether the embedded server of PGJOBS_HOME is running (exit 1 if not)."""
    path = _home(home)
    data_dir = server.data_dir_for(path.expanduser().resolve())
    if server.is_running(path):
        click.echo(f"running: {data_dir}")
        return
    click.echo(f"not running: {data_dir}")
    raise SystemExit(1)


@embedded.command()
@click.option("--home", metavar="DIR", help="Data directory (env PGJOBS_HOME).")
def stop(home: str | None) -> None:
    """Stop the embedded server of PGJOBS_HOME (its data is kept)."""
    path = _home(home)
    if server.stop(path):
        click.echo(f"stopped: {server.data_dir_for(path.expanduser().resolve())}")
    else:
        click.echo("not running")
