"""Commands that orchestrators call: ``pgjobs keda-query`` (the autoscaler's trigger query)
and ``pgjobs health`` (a worker pod's liveness and readiness probes)."""

from __future__ import annotations

from datetime import timedelta

import click

from pgjobs import keda
from pgjobs.config import ENV_SCHEMA, SCHEMA_DEFAULT
from pgjobs.errors import InvalidInput
from pgjobs.worker.health import check

from .options import DURATION
from .worker import parse_queues

KEDA_EPILOG = """\b
Examples:
  pgjobs keda-query                              SELECT pgjobs.demand()
  pgjobs keda-query -q emails,sms                SELECT pgjobs.demand(ARRAY['emails', 'sms', 'pgjobs.internal'])
  pgjobs keda-query -q reports --metric backlog  for a ScaledJob (one pod per ready job)
  pgjobs keda-query -q reports --metric oldest-ready-age   seconds the oldest ready job waited
\b
Paste the line into the trigger's `query` (docs/kubernetes.md explains targetQueryValue).
demand = ready + running under a live lease (ScaledObject: busy pods are kept);
backlog = ready only (ScaledJob); oldest-ready-age = a latency objective (metricType: Value).
Ready means queued, due, with no unfinished dependency, in a queue that is not paused.
"""


@click.command("keda-query", epilog=KEDA_EPILOG)
@click.option(
    "-q", "--queues", metavar="Q1,Q2", help="Queues the scaled workers serve (default: all)."
)
@click.option(
    "--metric", type=click.Choice(list(keda.METRICS)), default="demand", show_default=True,
    help="What the trigger follows.",
)  # fmt: skip
@click.option(
    "--schema", metavar="NAME", envvar=ENV_SCHEMA, default=SCHEMA_DEFAULT,
    help="Schema holding pgjobs' tables (env PGJOBS_SCHEMA, default: pgjobs).",
)  # fmt: skip
def keda_query(queues: str | None, metric: str, schema: str) -> None:
    """Print the SQL query for a KEDA postgresql trigger (no database needed)."""
    try:
        click.echo(keda.trigger_query(schema, parse_queues(queues), metric))
    except InvalidInput as exc:
        raise click.UsageError(str(exc)) from None


HEALTH_EPILOG = """\b
Examples:
  pgjobs worker --app myapp.tasks --health-file /run/pgjobs/health
  pgjobs health --file /run/pgjobs/health                 liveness probe
  pgjobs health --file /run/pgjobs/health --ready         readiness probe
\b
Exit 0 and one line when healthy, 1 and the reason otherwise. Live: the worker's event
loop rewrote the file within --max-age (it does every few seconds). Ready: also, the
database answered the worker within --max-age (every --tick-interval, 30s by default).
No database connection is opened: probes stay cheap however often they run.
"""


@click.command("health", epilog=HEALTH_EPILOG)
@click.option(
    "--file", "path", required=True, metavar="PATH",
    help="The worker's --health-file.",
)  # fmt: skip
@click.option(
    "--max-age", type=DURATION, default="90s", show_default=True,
    help="Older than this is unhealthy (keep it above the worker's --tick-interval).",
)  # fmt: skip
@click.option("--ready", is_flag=True, help="Also require a recent database round trip.")
def health(path: str, max_age: timedelta, ready: bool) -> None:
    """Probe a worker through its health file: exit 0 when live (or ready)."""
    verdict = check(path, max_age=max_age.total_seconds(), ready=ready)
    click.echo(verdict.message, err=not verdict.healthy)
    raise SystemExit(0 if verdict.healthy else 1)
