"""Cron with real worker processes: three ``pgjobs worker`` processes fire a schedule declared
in code every second; one is killed with SIGKILL in the middle; every fire time still has
exactly one job, and no second is skipped."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs.testing import wait_for

APP = """
import pgjobs

app = pgjobs.App()

@app.periodic("* * * * * *", name="heartbeat", args={"from": "cron"})
@app.task(name="beat")
def beat(**kwargs) -> str:
    return kwargs["from"]
"""


@pytest.fixture
def workers(tmp_path: Path, pgjobs_dsn: str) -> Iterator[list[subprocess.Popen[str]]]:
    (tmp_path / "cronapp.py").write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    env.update(PGJOBS_DSN=pgjobs_dsn, PGJOBS_LOG_FORMAT="json")
    processes = []
    for i in range(3):
        log = open(tmp_path / f"w{i}.log", "w")  # noqa: SIM115 - closed with the process
        processes.append(
            subprocess.Popen(
                [str(Path(sys.executable).with_name("pgjobs")), "worker", "--app", "cronapp"],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    yield processes
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def fire_times(conn: psycopg.Connection[Any]) -> list[datetime]:
    rows = conn.execute(
        "SELECT (meta->>'fire_at')::timestamptz FROM pgjobs.jobs"
        " WHERE meta->>'schedule' = 'heartbeat' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def test_a_killed_worker_changes_nothing_to_one_job_per_second(
    workers: list[subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    wait_for(lambda: len(fire_times(pgjobs_conn)) >= 3, timeout=30,
             message=lambda: f"fired: {fire_times(pgjobs_conn)}")  # fmt: skip
    os.kill(workers[0].pid, signal.SIGKILL)
    workers[0].wait(10)
    seen = len(fire_times(pgjobs_conn))
    wait_for(lambda: len(fire_times(pgjobs_conn)) >= seen + 4, timeout=30,
             message=lambda: f"fired after the kill: {fire_times(pgjobs_conn)}")  # fmt: skip
    times = fire_times(pgjobs_conn)
    assert len(times) == len(set(times)), f"a fire time has two jobs: {times}"
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert gaps == {1.0}, f"a second was skipped or repeated: {times}"
    wait_for(
        lambda: (
            pgjobs_conn.execute(
                "SELECT count(*) FROM pgjobs.jobs WHERE task = 'beat' AND status = 'succeeded'"
                " AND result = to_jsonb('cron'::text)"
            ).fetchone()[0]  # type: ignore[index]
            >= len(times) - 2
        ),
        message="the fired jobs did not run",
    )
