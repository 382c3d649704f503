"""Producing through pgbouncer in transaction mode: the Python API (single, bulk with and
without dedupe keys, replace, dependencies, lock keys, async twins) and the CLI, with
`PGJOBS_PREPARE_THRESHOLD=off`; the pooled server connections stay clean."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from support.bouncer import PREPARE_OFF, Bouncer, clean, held_advisory_locks, pooled_sessions

import pgjobs

Conn = psycopg.Connection[Any]
CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def rows(conn: Conn, where: str = "true") -> dict[int, dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        cursor.execute(
            "SELECT id, task, args, status, dedupe_key, lock_key, lock_waiting, blockers"
            f" FROM pgjobs.jobs WHERE {where} ORDER BY id"
        )
        return {row["id"]: row for row in cursor.fetchall()}


def test_python_producers_through_pgbouncer(
    app: pgjobs.App, bouncer: Bouncer, pgjobs_conn: Conn
) -> None:
    baseline = pooled_sessions(bouncer)
    assert not clean(baseline), clean(baseline)

    # Single enqueues, more of them than psycopg's default prepare threshold (5).
    singles = [app.enqueue("t.single", {"n": n}) for n in range(12)]
    assert [rows(pgjobs_conn)[job.id]["args"] for job in singles] == [{"n": n} for n in range(12)]

    # Bulk (COPY), without dedupe keys.
    plain = app.enqueue_many([{"task": "t.bulk", "args": {"n": n}} for n in range(500)])
    assert len({e.id for e in plain}) == 500 and not any(e.existing for e in plain)

    # Bulk with dedupe keys: a temporary staging table created and dropped (ON COMMIT DROP)
    # inside the one transaction; a key held by an earlier job, and a key twice in the batch.
    holder = app.enqueue("t.keyed", {"n": -1}, dedupe_key="k0")
    keyed = app.enqueue_many(
        [{"task": "t.keyed", "args": {"n": n}, "dedupe_key": f"k{n % 50}"} for n in range(100)]
    )
    assert keyed[0].id == holder.id and keyed[0].existing
    assert all(keyed[n].id == keyed[n % 50].id for n in range(100))
    assert sum(not e.existing for e in keyed) == 49
    assert len(rows(pgjobs_conn, "task = 't.keyed'")) == 50

    # Dedupe in replace mode (debounce): the holder takes the new arguments.
    first = app.enqueue("t.debounced", {"rev": 1}, dedupe_key="doc:1", delay="1h")
    second = app.enqueue(
        "t.debounced", {"rev": 2}, dedupe_key="doc:1", delay="1h", dedupe_mode="replace"
    )
    assert second.id == first.id
    assert rows(pgjobs_conn)[first.id]["args"] == {"rev": 2}

    # Dependencies and lock keys (transaction-level advisory locks in the triggers).
    parent = app.enqueue("t.parent")
    child = app.enqueue("t.child", depends_on=[parent.id])
    locked = [app.enqueue("t.locked", lock_key="customer:7") for _ in range(3)]
    stored = rows(pgjobs_conn)
    assert stored[child.id]["blockers"] == 1
    assert [stored[job.id]["lock_waiting"] for job in locked] == [False, True, True]

    # The async twins, on the App's async pool.
    async def produce_async() -> list[int]:
        one = await app.enqueue_async("t.async", {"n": 1})
        many = await app.enqueue_many_async(
            [{"task": "t.async", "args": {"n": n}, "dedupe_key": f"a{n % 3}"} for n in range(9)]
        )
        await app.close_async()
        return [one.id, *(e.id for e in many)]

    async_ids = asyncio.run(produce_async())
    assert len(set(async_ids)) == 4

    sessions = pooled_sessions(bouncer)
    assert not clean(sessions, baseline_settings=_settings(baseline)), clean(sessions)
    assert held_advisory_locks(pgjobs_conn) == []
    assert len(bouncer.server_pids()) <= bouncer.pool_size


def _settings(sessions: dict[int, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(s for session in sessions.values() for s in session.settings)


def test_cli_through_pgbouncer(run_cli: CliRunner, bouncer: Bouncer, pgjobs_conn: Conn) -> None:
    env = {"PGJOBS_DSN": bouncer.dsn, **PREPARE_OFF}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = run_cli(*args, env=env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    first = int(cli("enqueue", "emails.send", '{"to": "a@example.com"}', "-q", "emails").stdout)
    keyed = int(cli("enqueue", "emails.welcome", '{"user": 42}', "--dedupe-key", "w:42").stdout)
    again = run_cli("enqueue", "emails.welcome", '{"user": 42}', "--dedupe-key", "w:42", env=env)
    assert (again.returncode, int(again.stdout)) == (0, keyed)
    dependent = int(cli("enqueue", "reports.build", "--depends-on", str(first)).stdout)
    locked = int(cli("enqueue", "billing.charge", "--lock-key", "invoice:7").stdout)
    delayed = int(cli("enqueue", "reports.build", "--delay", "10m", "-p", "5").stdout)

    listed = json.loads(cli("jobs", "ls", "--json").stdout)
    assert {job["id"] for job in listed} == {first, keyed, dependent, locked, delayed}
    status = json.loads(cli("status", str(first), "--json").stdout)
    assert (status["status"], status["queue"], status["args"]) == (
        "queued",
        "emails",
        {"to": "a@example.com"},
    )
    diagnosis = cli("info").stdout
    assert "schema:" in diagnosis
    assert f"through something on port {bouncer.port}" in diagnosis, diagnosis

    sessions = pooled_sessions(bouncer)
    assert not clean(sessions), clean(sessions)
    assert held_advisory_locks(pgjobs_conn) == []


def test_migrate_through_pgbouncer(
    run_cli: CliRunner, start_bouncer: Callable[..., Bouncer], pgjobs_databases: Any
) -> None:
    """One transaction under a transaction-level advisory lock: it works through the pooler
    too (docs/pgbouncer.md says why a direct connection is still the better place)."""
    bouncer = start_bouncer(pgjobs_databases.create(migrated=False), pool_size=1)
    env = {"PGJOBS_DSN": bouncer.dsn, **PREPARE_OFF}
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated to revision" in migrated.stdout
    info = run_cli("info", env=env)
    assert info.returncode == 0 and "up to date" in info.stdout, info.stdout + info.stderr
    sessions = pooled_sessions(bouncer)
    assert not clean(sessions), clean(sessions)


@pytest.mark.parametrize("listen", ["direct", "off"])
def test_wait_through_pgbouncer_leaves_no_listen(
    run_cli: CliRunner, bouncer: Bouncer, pgjobs_conn: Conn, pgjobs_dsn: str, listen: str
) -> None:
    """``pgjobs wait`` LISTENs on PGJOBS_LISTEN_DSN (straight to PostgreSQL), or re-reads
    the job with ``off``: never on the pooler, where the LISTEN would stay behind."""
    row = pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, status, attempts, result, finished_at)"
        " VALUES ('t', 'succeeded', 1, '42', now()) RETURNING id"
    ).fetchone()
    assert row is not None
    job = row[0]
    env = {
        "PGJOBS_DSN": bouncer.dsn,
        "PGJOBS_LISTEN_DSN": pgjobs_dsn if listen == "direct" else "off",
        **PREPARE_OFF,
    }
    waited = run_cli("wait", str(job), "--timeout", "10s", env=env)
    assert (waited.returncode, waited.stdout.strip()) == (0, "42"), waited.stderr
    sessions = pooled_sessions(bouncer)
    assert not clean(sessions), clean(sessions)
