"""`pgjobs worker` through pgbouncer in transaction mode: polling only (`--no-listen`), and
with `--listen-dsn` straight to PostgreSQL (woken by NOTIFY); the two server connections
that every client shares carry no session state between transactions."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from support.bouncer import (
    PREPARE_OFF,
    Bouncer,
    backend_states,
    clean,
    held_advisory_locks,
    pooled_sessions,
)

import pgjobs
from pgjobs.testing import wait_for

Conn = psycopg.Connection[Any]
Spawn = Callable[..., subprocess.Popen[str]]


def statuses(conn: Conn) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM pgjobs.jobs GROUP BY status").fetchall())


def baseline_settings(bouncer: Bouncer) -> tuple[tuple[str, str], ...]:
    sessions = pooled_sessions(bouncer)
    assert not clean(sessions), clean(sessions)
    return tuple(s for session in sessions.values() for s in session.settings)


def assert_pool_clean(
    bouncer: Bouncer, direct: Conn, baseline: tuple[tuple[str, str], ...], *, live: bool = False
) -> None:
    """Server side, directly: every pooled backend is idle (no transaction left open) and
    no idle backend holds an advisory lock. Through pgbouncer, on each pooled backend: no
    prepared statement, LISTEN, session setting, temporary table or advisory lock, and a
    client that prepares statements as psycopg does by default works there."""
    pids = bouncer.server_pids()
    assert pids and len(pids) <= bouncer.pool_size
    # A live worker may be running a statement of its own (its tick) at that moment.
    allowed = {"idle", "active"} if live else {"idle"}
    assert set(backend_states(direct, pids).values()) <= allowed
    assert held_advisory_locks(direct) == []
    sessions = pooled_sessions(bouncer)
    assert pids <= set(sessions)
    assert not clean(sessions, baseline), clean(sessions, baseline)


def test_no_listen_burst_worker_drains_through_pgbouncer(
    app: pgjobs.App, bouncer: Bouncer, spawn_worker: Spawn, pgjobs_conn: Conn, project: Path
) -> None:
    baseline = baseline_settings(bouncer)
    specs: list[dict[str, Any]] = [
        *({"task": "sync.add", "args": {"a": n, "b": 1}} for n in range(200)),
        *({"task": "async.echo", "args": {"value": f"v{n}"}} for n in range(100)),
        *({"task": "flaky", "args": {"n": n}} for n in range(10)),
        *({"task": "chain.first", "args": {"n": n}} for n in range(10)),
        *({"task": "ledger.write", "args": {"n": n}} for n in range(10)),
    ]
    app.enqueue_many(specs)

    env = {"PGJOBS_DSN": bouncer.dsn, **PREPARE_OFF}
    worker = spawn_worker("--no-listen", "--burst", "--concurrency", "8", env=env)
    assert worker.wait(60) == 0, (project / "worker.log").read_text()

    assert statuses(pgjobs_conn) == {"succeeded": len(specs) + 10}
    results = dict(
        pgjobs_conn.execute(
            "SELECT task, array_agg(result ORDER BY id) FROM pgjobs.jobs GROUP BY task"
        ).fetchall()
    )
    assert results["sync.add"] == [n + 1 for n in range(200)]
    assert results["async.echo"] == [f"v{n}" for n in range(100)]
    assert results["chain.second"] == [2 * n for n in range(10)]
    assert pgjobs_conn.execute(
        "SELECT array_agg(DISTINCT attempts) FROM pgjobs.jobs WHERE task = 'flaky'"
    ).fetchone() == ([2],)
    assert pgjobs_conn.execute(
        "SELECT count(*) FROM pgjobs.jobs AS c JOIN pgjobs.jobs AS p ON p.id = c.parent_id"
        " WHERE c.task = 'chain.second' AND p.task = 'chain.first'"
    ).fetchone() == (10,)
    assert pgjobs_conn.execute("SELECT count(*) FROM ledger").fetchone() == (80,)
    log = (project / "worker.log").read_text()
    assert "prepared statement" not in log, log

    assert_pool_clean(bouncer, pgjobs_conn, baseline)


def started(log: Path) -> bool:
    if not log.exists():
        return False
    return any(
        json.loads(line).get("event") == "worker.started"
        for line in log.read_text().splitlines()
        if line.startswith("{")
    )


def succeeded(app: pgjobs.App, job_id: int) -> bool:
    return app.get(job_id).status == "succeeded"


def test_listen_dsn_worker_is_woken_by_notify_through_pgbouncer(
    app: pgjobs.App,
    bouncer: Bouncer,
    spawn_worker: Spawn,
    pgjobs_conn: Conn,
    pgjobs_dsn: str,
    project: Path,
) -> None:
    baseline = baseline_settings(bouncer)
    # The safety-net poll every 60 s: a job that starts within seconds was woken by NOTIFY.
    worker = spawn_worker(
        "--listen-dsn", pgjobs_dsn, "--poll-interval", "60s",
        env={"PGJOBS_DSN": bouncer.dsn, **PREPARE_OFF},
    )  # fmt: skip
    log = project / "worker.log"
    wait_for(
        lambda: started(log), timeout=20, message=lambda: f"worker not started:\n{log.read_text()}"
    )

    # The first job may be taken by the worker's first claim; the second one arrives while
    # the worker sleeps until its next poll, a minute away.
    for n in range(2):
        job = app.enqueue("async.echo", {"value": f"woken {n}"})
        wait_for(
            lambda job=job: succeeded(app, job.id),  # type: ignore[misc]
            timeout=10,
            message=lambda: f"job not run by the listening worker:\n{log.read_text()}",
        )

    # While the worker lives: its claimer, keeper and completer are clients of pgbouncer
    # sharing at most two server connections; LISTEN is on a direct connection of its own.
    assert len(bouncer.clients()) >= 3
    pooled = bouncer.server_pids()
    listeners = {
        pid
        for (pid,) in pgjobs_conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgjobs worker listen'"
            " AND datname = current_database()"
        ).fetchall()
    }
    assert len(listeners) == 1 and not listeners & pooled
    assert_pool_clean(bouncer, pgjobs_conn, baseline, live=True)

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, log.read_text()
    assert "prepared statement" not in log.read_text()
    assert_pool_clean(bouncer, pgjobs_conn, baseline)
