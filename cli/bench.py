"""``pgjobs bench``: measure pgjobs against the configured database."""

from __future__ import annotations

import json

import click

from .options import database_options, settings_from

SCENARIOS = ("enqueue", "drain", "limits", "big", "latency", "idle")


@click.command()
@click.option(
    "--jobs",
    type=click.IntRange(100),
    default=50_000,
    show_default=True,
    help="Jobs per drain run.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Runs per figure (the median is reported).",
)
@click.option(
    "--only",
    "only",
    metavar="S[,S]",
    help=f"Scenarios among {', '.join(SCENARIOS)} (default: all).",
)
@click.option(
    "--big",
    type=click.IntRange(1000),
    default=1_000_000,
    show_default=True,
    help="Rows waiting / kept for the 'big' scenario.",
)
@click.option("--idle-seconds", type=click.FloatRange(1), default=60.0, show_default=True)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the results as JSON on stdout at the end (progress lines go to stderr).",
)
@database_options
def bench(
    jobs: int,
    repeat: int,
    only: str | None,
    big: int,
    idle_seconds: float,
    as_json: bool,
    dsn: str | None,
    schema: str | None,
    home: str | None,
) -> None:
    """Throughput and latency of pgjobs on this database.

    \b
    Runs in a throwaway schema (pgjobs_bench) that is dropped at the end.
    Scenarios: enqueue (single and bulk, against bare INSERT and COPY),
    drain (no-op jobs: async, sync, 2 processes, and the bare claim+complete
    loop as the limit), limits (drain of a queue with a concurrency or rate
    limit it never reaches: the cost of a limit), big (drain with 1M jobs
    waiting / 1M rows kept),
    latency (commit to handler start on an idle worker), idle (statements per
    second of an idle worker). The full run takes several minutes.

    \b
    Examples:
      pgjobs bench --only drain,latency --repeat 1
      PGJOBS_DSN=postgresql://... pgjobs bench --json > figures.json
    """
    from pgjobs import bench as runner

    scenarios = [s.strip() for s in (only or ",".join(SCENARIOS)).split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise click.UsageError(
            f"unknown scenario(s) {', '.join(unknown)}: choose among {', '.join(SCENARIOS)}"
        )
    settings = settings_from(dsn, schema, home)
    results = runner.run(
        settings,
        jobs=jobs,
        repeat=repeat,
        scenarios=scenarios,
        idle_seconds=idle_seconds,
        big=big,
        log=lambda line: click.echo(line, err=as_json),  # stdout is for the JSON alone
    )
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in results], indent=2))
