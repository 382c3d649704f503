"""Fixtures of the pgbouncer tests: a real pgbouncer (the Debian package's binary) in
transaction pooling mode in front of each test's database, and `pgjobs worker` processes
that go through it. Skipped when pgbouncer is not installed (`apt-get install pgbouncer`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.bouncer import Bouncer, Target, binary, version

import pgjobs

#: The worker application of these tests: sync and async handlers, a retry, a follow-up,
#: progress, and a handler's own transaction (exactly-once effects) that runs one statement
#: more often than psycopg's default prepare threshold.
APP = """
import asyncio
import pgjobs

app = pgjobs.App()

@app.task(name="sync.add")
def add(a: int, b: int) -> int:
    return a + b

@app.task(name="async.echo")
async def echo(value: str) -> str:
    await asyncio.sleep(0)
    return value

@app.task(name="flaky", retry=pgjobs.RetryPolicy.of(base=0, maximum=0))
def flaky(n: int) -> int:
    if pgjobs.current_job().attempt == 1:
        raise RuntimeError("the first attempt fails")
    return n

@app.task(name="chain.first")
def first(n: int) -> int:
    pgjobs.current_job().enqueue("chain.second", {"n": n})
    return n

@app.task(name="chain.second")
async def second(n: int) -> int:
    return n * 2

@app.task(name="ledger.write")
def ledger(n: int) -> int:
    job = pgjobs.current_job()
    job.set_progress(50, "writing")
    with job.transaction() as conn:
        for i in range(8):
            conn.execute("INSERT INTO ledger (job_id, i) VALUES (%s, %s)", (job.id, i))
    return n
"""


@pytest.fixture(scope="session")
def pgbouncer_binary() -> str:
    path = binary()
    if path is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install -y pgbouncer)")
    return path


@pytest.fixture(scope="session")
def pgbouncer_version(pgbouncer_binary: str) -> tuple[int, ...]:
    return version(pgbouncer_binary)


@pytest.fixture
def start_bouncer(pgbouncer_binary: str, pgjobs_dsn: str) -> Iterator[Callable[..., Bouncer]]:
    """Start a pgbouncer in front of the test database (or the database of ``dsn``)."""
    started: list[Bouncer] = []

    def start(dsn: str | None = None, **options: Any) -> Bouncer:
        bouncer = Bouncer(Target.of(dsn or pgjobs_dsn), **options)
        started.append(bouncer)
        return bouncer.start(pgbouncer_binary)

    yield start
    for bouncer in started:
        bouncer.stop()


@pytest.fixture
def bouncer(start_bouncer: Callable[..., Bouncer]) -> Bouncer:
    """pgbouncer, transaction mode, 2 server connections shared by every client."""
    return start_bouncer(pool_size=2)


@pytest.fixture
def app(bouncer: Bouncer, monkeypatch: pytest.MonkeyPatch) -> Iterator[pgjobs.App]:
    """A producer through pgbouncer, configured as the docs say (no prepared statements)."""
    monkeypatch.setenv("PGJOBS_PREPARE_THRESHOLD", "off")
    app = pgjobs.App(bouncer.dsn)
    assert app.prepare_threshold is None
    yield app
    app.close()


@pytest.fixture
def project(tmp_path: Path, pgjobs_conn: psycopg.Connection[Any]) -> Path:
    (tmp_path / "jobsapp.py").write_text(APP)
    pgjobs_conn.execute("CREATE TABLE ledger (job_id bigint, i int)")
    return tmp_path


@pytest.fixture
def spawn_worker(project: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``pgjobs worker --app jobsapp ARGS`` with ``env`` (its log: ``project/NAME.log``)."""
    processes: list[subprocess.Popen[str]] = []

    def spawn(*args: str, env: dict[str, str], name: str = "worker") -> subprocess.Popen[str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
        full.update(PGJOBS_LOG_FORMAT="json", PGJOBS_HOME=str(project / "home"), **env)
        log = open(project / f"{name}.log", "a")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("pgjobs")), "worker", "--app", "jobsapp", *args],
            cwd=project, env=full, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        log.close()
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
