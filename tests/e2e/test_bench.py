"""``pgjobs bench`` end to end, at toy sizes: every scenario runs, reports a figure, and the
benchmark leaves the database as it found it. (Its figures are read in docs/benchmarks.md;
no test asserts a speed.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg

import pgjobs


def test_every_scenario_reports_a_figure_and_the_database_is_left_alone(
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    pgjobs_dsn: str,
    pgjobs_conn: psycopg.Connection[Any],
) -> None:
    with pgjobs.App(pgjobs_dsn) as app:
        mine = app.enqueue("users.job", {"keep": True})
    done = run_cli(
        "bench", "--jobs", "200", "--repeat", "1", "--big", "1000", "--idle-seconds", "1",
        "--json", "--dsn", pgjobs_dsn,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    names = [r["scenario"] for r in results]
    for expected in (
        "enqueue: single", "baseline: bare INSERT", "enqueue: bulk", "baseline: bare COPY",
        "drain: async no-op, 1 process", "drain: sync no-op", "drain: async no-op, 2 processes",
        "limit: bare claim+complete, 100/statement", "jobs waiting", "finished rows kept",
        "pickup latency p50", "pickup latency p99", "limit: bare LISTEN + UPDATE pickup latency p50",
        "idle worker", "= enqueue: single, one transaction each / baseline",
        "= enqueue: bulk enqueue_many / baseline",
    ):  # fmt: skip
        assert any(expected in name for name in names), f"no {expected!r} figure in {names}"
    for result in results:
        assert result["value"] > 0, result
        assert result["unit"] in ("jobs/s", "ms", "statements/s", "%"), result
    # progress lines go to stderr, the JSON alone to stdout
    assert "pickup latency" in done.stderr
    schemas = pgjobs_conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgjobs%' ORDER BY 1"
    ).fetchall()
    assert schemas == [("pgjobs",)], "the bench schema must be dropped at the end"
    kept = pgjobs_conn.execute("SELECT args FROM pgjobs.jobs WHERE id = %s", (mine.id,)).fetchone()
    assert kept == ({"keep": True},)
