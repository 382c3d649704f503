"""Entry point of the ``pgjobs`` command.

Errors are one line on stderr, never a traceback: usage errors (malformed input) exit 2,
refused operations (unreachable database, missing schema, unknown id) exit with their own
non-zero code (see :mod:`pgjobs.errors`).
"""

from __future__ import annotations

import sys

import click
import psycopg

from pgjobs import log
from pgjobs.connection import one_line
from pgjobs.errors import PgjobsError

from .bench import bench
from .embedded import embedded
from .grants import grants
from .info import info
from .jobs import enqueue, jobs, status, wait
from .migrate import migrate
from .orchestration import health, keda_query
from .prune import prune
from .queues import queues
from .schedules import schedules
from .serve import serve
from .worker import worker

EPILOG = """\b
Examples:
  pgjobs migrate                          create or upgrade the schema
  pgjobs enqueue emails.send '{"to": "a@example.com"}' --delay 5m
  pgjobs worker --app myapp.tasks         run jobs: the daemon (--burst: until none is left)
  pgjobs status 42                        one job: state, attempts, result, error
  pgjobs jobs ls --status failed          newest failed jobs
  pgjobs jobs retry --failed -q emails    put failed jobs back in their queue
  pgjobs queues                           ready, running, failed per queue
  pgjobs queues pause emails              no job of the queue starts until resumed
  pgjobs schedules add nightly "0 3 * * *" reports.nightly --tz Europe/Paris
  pgjobs prune --older-than 7d            delete finished jobs (workers also do it)
  pgjobs info                             which database, schema revision, workers alive
  pgjobs keda-query -q emails             the query of a KEDA postgresql trigger
  pgjobs grants worker pgjobs_worker      the GRANTs of a least-privilege worker role
  pgjobs serve                            the HTTP API on 127.0.0.1:8000 (docs/http.md)

With no PGJOBS_DSN, pgjobs runs its own PostgreSQL (embedded) in PGJOBS_HOME.
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pgjobs", prog_name="pgjobs")
@click.option(
    "--log-format",
    type=click.Choice(log.FORMATS),
    help="Log lines on stderr: console, json, or auto (console on a terminal, else JSON). "
    "Env PGJOBS_LOG_FORMAT.",
)
@click.option(
    "--log-level", type=click.Choice(log.LEVELS), help="Env PGJOBS_LOG_LEVEL (default: info)."
)
def cli(log_format: str | None, log_level: str | None) -> None:
    """pgjobs: background jobs with PostgreSQL as the only moving part."""
    log.configure(log_format, log_level)


COMMANDS = (
    bench, embedded, enqueue, grants, health, info, jobs, keda_query, migrate, prune, queues, schedules,
    serve, status, wait, worker,
)  # fmt: skip
for command in COMMANDS:
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turning every expected failure into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="pgjobs", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        sys.exit(2)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"pgjobs: error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"pgjobs: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("pgjobs: aborted", err=True)
        sys.exit(130)
    except PgjobsError as exc:
        click.echo(f"pgjobs: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except psycopg.Error as exc:
        click.echo(f"pgjobs: database error: {one_line(exc)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
