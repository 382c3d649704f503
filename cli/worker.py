"""``pgjobs worker``: the daemon that runs jobs."""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from datetime import timedelta

import click

from pgjobs.app import App
from pgjobs.errors import ConfigError, InvalidInput
from pgjobs.log import get_logger
from pgjobs.worker.config import (
    CONCURRENCY_DEFAULT,
    GRACE_DEFAULT,
    LEASE_DEFAULT,
    TICK_DEFAULT,
    WorkerConfig,
    parse_size,
)
from pgjobs.worker.runtime import Worker
from pgjobs.worker.supervisor import CHILD_ENV, Supervisor, child_command

from .options import DURATION, KEEP, database_options, settings_from

EPILOG = """\b
Examples:
  pgjobs worker --app myproject.jobs                  every queue, 10 jobs at a time
  pgjobs worker --app myproject.jobs:app -q emails,sms --concurrency 50
  pgjobs worker --app myproject.jobs --burst          drain what is ready, then exit 0
  pgjobs worker --app myproject.jobs --max-jobs 1     one job, then exit (KEDA ScaledJob)
  pgjobs worker --app myproject.jobs --listen-dsn "$DIRECT_DSN"   pgbouncer in front
  pgjobs worker --app myproject.jobs --metrics-port 9464    Prometheus: GET /metrics

\b
Stopping: SIGTERM or Ctrl-C stops claiming and lets running jobs finish within
--grace; jobs still running then are handed back (queued again, the attempt not
counted) and the worker exits 0. A second signal exits at once: leases make that
safe too (the jobs are rescued when their lease expires).
"""


def load_app(spec: str) -> App:
    """``module`` or ``module:attribute`` (default attribute: ``app``), imported like
    uvicorn does: the current directory is on the import path."""
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(
                f"--app {spec}: no module named {module_name!r} (run from your project's directory?)"
            ) from None
        raise
    app = getattr(module, attribute, None)
    if app is None:
        raise ConfigError(f"--app {spec}: module {module_name!r} has no attribute {attribute!r}")
    if not isinstance(app, App):
        raise ConfigError(
            f"--app {spec}: {attribute!r} is a {type(app).__name__}, not a pgjobs.App"
        )
    return app


def parse_queues(text: str | None) -> list[str] | None:
    if not text:
        return None
    from pgjobs import validation

    return [validation.queue_name(q.strip()) for q in text.split(",") if q.strip()] or None


@click.command(epilog=EPILOG)
@click.option(
    "--app",
    "app_spec",
    required=True,
    metavar="MODULE[:ATTR]",
    help="Where your pgjobs.App is (attribute 'app' by default).",
)
@click.option("-q", "--queues", metavar="Q1,Q2", help="Queues to serve (default: every queue).")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=CONCURRENCY_DEFAULT,
    show_default=True,
    help="Jobs run at once by this process.",
)
@click.option("--burst", is_flag=True, help="Exit 0 once no job is ready.")
@click.option("--max-jobs", type=click.IntRange(1), help="Exit after this many jobs.")
@click.option(
    "--grace",
    type=DURATION,
    default=f"{GRACE_DEFAULT:g}s",
    show_default=True,
    help="Time running jobs get to finish after SIGTERM.",
)
@click.option(
    "--lease",
    type=DURATION,
    default=f"{LEASE_DEFAULT:g}s",
    show_default=True,
    help="A job whose worker is silent this long is rescued.",
)
@click.option(
    "--listen-dsn",
    metavar="DSN",
    help="Direct connection for LISTEN when --dsn goes through pgbouncer (transaction mode); env PGJOBS_LISTEN_DSN (off: like --no-listen).",
)
@click.option("--no-listen", is_flag=True, help="Poll only (no LISTEN/NOTIFY).")
@click.option(
    "--poll-interval", type=DURATION, help="Safety-net poll (default 10s, 1s with --no-listen)."
)
@click.option(
    "--quiet-jobs", is_flag=True, help="No log line per job (benchmarks, very high rates)."
)
@click.option(
    "--tick-interval",
    type=DURATION,
    default=f"{TICK_DEFAULT:g}s",
    show_default=True,
    help="Worker heartbeat and rescue of expired leases.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes under one supervising parent (restarted when they die).",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(1),
    help="Recycle a process after this many jobs (leaky handlers).",
)
@click.option(
    "--max-memory", metavar="SIZE", help="Recycle a process past this resident memory, e.g. 512MB."
)
@click.option(
    "--keep", type=KEEP, default="7d", show_default=True,
    help="Prune succeeded and cancelled jobs this long after they end ('forever': never).",
)  # fmt: skip
@click.option(
    "--keep-failed", type=KEEP, default="30d", show_default=True,
    help="Prune failed jobs this long after they end ('forever': never).",
)  # fmt: skip
@click.option(
    "--prune-every", type=DURATION, default="1h", show_default=True,
    help="How often the fleet prunes (one worker at a time, in small batches).",
)  # fmt: skip
@click.option("--no-prune", is_flag=True, help="This worker never prunes.")
@click.option(
    "--health-file", metavar="PATH",
    help="Keep this file fresh for probes: see 'pgjobs health' (Kubernetes).",
)  # fmt: skip
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
    help="Serve Prometheus metrics (GET /metrics) on this port; with --processes N, the "
    "first of N consecutive ports (process i: PORT+i). 0: any free port (one process).",
)  # fmt: skip
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
    help="Address of --metrics-port (0.0.0.0: every interface, e.g. in a pod).",
)  # fmt: skip
@database_options
def worker(
    app_spec: str, queues: str | None, concurrency: int, burst: bool, max_jobs: int | None,
    grace: timedelta, lease: timedelta, listen_dsn: str | None, no_listen: bool,
    poll_interval: timedelta | None, quiet_jobs: bool, tick_interval: timedelta,
    processes: int, max_tasks_per_child: int | None, max_memory: str | None,
    keep: timedelta | None, keep_failed: timedelta | None, prune_every: timedelta,
    no_prune: bool, health_file: str | None, metrics_port: int | None, metrics_host: str,
    dsn: str | None, schema: str | None, home: str | None,
) -> None:  # fmt: skip
    """Run jobs: claim them, run their handlers, record their outcomes."""
    if processes > 1 and max_jobs is not None:
        raise click.UsageError(
            "--max-jobs is for a single process (a KEDA ScaledJob pod); with --processes use --max-tasks-per-child"
        )
    if metrics_port is not None and processes > 1:
        if metrics_port == 0:
            raise click.UsageError(
                "--metrics-port 0 (any free port) is for one process: with --processes give "
                "the first of the consecutive ports"
            )
        if metrics_port + processes - 1 > 65535:
            raise click.UsageError(
                f"--metrics-port {metrics_port} with --processes {processes}: the last "
                "process's port would pass 65535"
            )
    memory_limit = None
    if max_memory is not None:
        try:
            memory_limit = parse_size(max_memory)
        except InvalidInput as exc:
            raise click.BadParameter(str(exc), param_hint="--max-memory") from None
    app = load_app(app_spec)
    if processes > 1 and not os.environ.get(CHILD_ENV):
        command = child_command(sys.argv[1:])
        raise SystemExit(
            Supervisor(command, processes, burst=burst, grace=grace.total_seconds()).run()
        )
    supervised = bool(os.environ.get(CHILD_ENV))
    if metrics_port is not None and supervised and metrics_port != 0:
        # The supervisor numbers its children from 0 (the variable's value): one port each.
        metrics_port += int(os.environ[CHILD_ENV])
    if max_tasks_per_child is not None:
        max_jobs = max_tasks_per_child if max_jobs is None else min(max_jobs, max_tasks_per_child)
    if dsn is not None or schema is not None or home is not None:
        overrides = settings_from(dsn, schema, home)
        app.settings = dataclasses.replace(
            app.settings, dsn=overrides.dsn if dsn is not None else app.settings.dsn,
            schema=overrides.schema if schema is not None else app.settings.schema,
            home=overrides.home if home is not None else app.settings.home,
        )  # fmt: skip
    if listen_dsn is not None and no_listen:
        raise click.UsageError("--listen-dsn and --no-listen contradict each other")
    if listen_dsn is None and not no_listen:  # PGJOBS_LISTEN_DSN: a DSN, or off
        no_listen = app.settings.listen_off
        listen_dsn = None if no_listen else app.settings.listen_dsn
    config = WorkerConfig(
        queues=parse_queues(queues), concurrency=concurrency, lease=lease.total_seconds(),
        grace=grace.total_seconds(), burst=burst, max_jobs=max_jobs, listen=not no_listen,
        listen_dsn=listen_dsn, log_jobs=not quiet_jobs, tick_interval=tick_interval.total_seconds(),
        max_memory=memory_limit, supervised=supervised, prune=not no_prune,
        keep=keep.total_seconds() if keep is not None else None,
        keep_failed=keep_failed.total_seconds() if keep_failed is not None else None,
        prune_every=prune_every.total_seconds(), health_file=health_file,
        poll_interval=poll_interval.total_seconds() if poll_interval is not None else None,
    )  # fmt: skip
    get_logger("pgjobs.cli").debug("worker.config", config=repr(config))
    raise SystemExit(
        Worker(app, config, metrics_port=metrics_port, metrics_host=metrics_host).run()
    )
