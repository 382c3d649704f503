"""``pgjobs grants``: each least-privilege role can do its job on a real server, and no
more. Roles are cluster-wide: each test makes its own, with a unique name, and drops it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from pgjobs.cli.main import cli
from psycopg.conninfo import make_conninfo
from workers import Running

import pgjobs
from pgjobs import roles
from pgjobs.config import Settings
from pgjobs.worker.config import WorkerConfig
from pgjobs.worker.runtime import Worker

Conn = psycopg.Connection[Any]


@pytest.fixture
def make_role(
    pgjobs_conn: Conn, pgjobs_dsn: str, pgjobs_settings: Settings
) -> Iterator[Callable[[str], str]]:
    """Create a login role, give it a kind's grants through the CLI, return its DSN."""
    made: list[str] = []

    def make(kind: str) -> str:
        name = f"pgjobs_test_{kind}_{uuid.uuid4().hex[:8]}"
        pgjobs_conn.execute(f"CREATE ROLE {name} LOGIN")
        made.append(name)
        result = CliRunner().invoke(
            cli,
            ["grants", kind, name, "--apply", "--dsn", pgjobs_dsn, "--schema", pgjobs_settings.schema],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"granted {kind} rights" in result.output
        return make_conninfo(pgjobs_dsn, user=name)

    yield make
    for name in made:
        pgjobs_conn.execute(f"DROP OWNED BY {name}")
        pgjobs_conn.execute(f"DROP ROLE {name}")


def refused(conn: Conn, statement: str, *params: Any) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement, params or None)


def test_the_worker_tables_are_every_table_but_the_revision(
    pgjobs_conn: Conn, pgjobs_settings: Settings
) -> None:
    rows = pgjobs_conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", (pgjobs_settings.schema,)
    ).fetchall()
    tables = {r[0] for r in rows} - {"alembic_version"}
    assert tables == set(roles.WORKER_TABLES), "a migration added a table: grant it in roles.py"


def test_a_worker_role_runs_jobs_and_follow_ups_but_cannot_change_the_schema(
    make_role: Callable[[str], str], app: pgjobs.App, pgjobs_settings: Settings
) -> None:
    dsn = make_role("worker")
    worker_app = pgjobs.App(dsn, schema=pgjobs_settings.schema)

    @worker_app.task(name="roles.parent")
    def parent(n: int) -> int:
        pgjobs.current_job().enqueue("roles.child", {"n": n})
        return n

    @worker_app.task(name="roles.child")
    def child(n: int) -> int:
        return n * 10

    ids = [app.enqueue("roles.parent", {"n": n}).id for n in range(3)]
    running = Running(Worker(worker_app, WorkerConfig(burst=True, log_jobs=False)))
    assert running.join() == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"SELECT task, status, result FROM {pgjobs_settings.schema}.jobs ORDER BY id"
        ).fetchall()
        assert [r[1] for r in rows] == ["succeeded"] * 6
        assert sorted(r[2] for r in rows if r[0] == "roles.child") == [0, 10, 20]
        assert {r[0] for r in rows} == {"roles.parent", "roles.child"}
        refused(conn, f"ALTER TABLE {pgjobs_settings.schema}.jobs ADD COLUMN x int")
        refused(conn, f"UPDATE {pgjobs_settings.schema}.alembic_version SET version_num = 'x'")
    assert len(ids) == 3
    worker_app.close()


def test_a_producer_role_enqueues_every_way_but_cannot_touch_a_job_state(
    make_role: Callable[[str], str], pgjobs_settings: Settings
) -> None:
    dsn = make_role("producer")
    schema = pgjobs_settings.schema
    producer = pgjobs.App(dsn, schema=schema)
    try:
        first = producer.enqueue("roles.t", {"a": 1})
        held = producer.enqueue("roles.t", {"v": 1}, dedupe_key="k", dedupe_mode="replace")
        again = producer.enqueue("roles.t", {"v": 2}, dedupe_key="k", dedupe_mode="replace")
        assert again.id == held.id and again.existing and again.args == {"v": 2}
        after = producer.enqueue("roles.t", {}, depends_on=[first.id])
        assert after.refresh().status == pgjobs.JobStatus.QUEUED
        many = producer.enqueue_many(
            [
                {"task": "roles.t", "args": {"i": i}, "dedupe_key": f"bulk-{i % 50}"}
                for i in range(100)
            ]
        )
        assert len({e.id for e in many}) == 50
        assert first.refresh().status == pgjobs.JobStatus.QUEUED
    finally:
        producer.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        refused(conn, f"UPDATE {schema}.jobs SET status = 'cancelled' WHERE id = %s", first.id)
        refused(conn, f"DELETE FROM {schema}.jobs WHERE id = %s", first.id)
        refused(
            conn,
            f"SELECT * FROM {schema}.claim(NULL, 10, gen_random_uuid(), 30)",
        )


def test_a_keda_role_reads_the_backlog_and_nothing_else(
    make_role: Callable[[str], str], app: pgjobs.App, pgjobs_conn: Conn, pgjobs_settings: Settings
) -> None:
    dsn = make_role("keda")
    schema = pgjobs_settings.schema
    for queue in ("a", "a", "b"):
        app.enqueue("roles.t", {"secret": "card 4242"}, queue=queue)
    queries = [
        f"SELECT {schema}.backlog()",
        f"SELECT {schema}.demand(ARRAY['a'])",
        f"SELECT {schema}.oldest_ready_age(ARRAY['a', 'b']) >= 0",
    ]
    expected = [pgjobs_conn.execute(q).fetchone() for q in queries]
    assert expected[:2] == [(3,), (2,)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert [conn.execute(q).fetchone() for q in queries] == expected
        refused(conn, f"SELECT args FROM {schema}.jobs")
        refused(conn, f"SELECT count(*) FROM {schema}.workers")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
    role = make_conninfo(dsn)
    limit = pgjobs_conn.execute(
        "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s",
        (psycopg.conninfo.conninfo_to_dict(role)["user"],),
    ).fetchone()
    assert limit == (roles.KEDA_CONNECTION_LIMIT,)
