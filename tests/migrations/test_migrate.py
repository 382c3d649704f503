"""Migrations: idempotent, concurrent-safe, offline script equal to the online result, and the
compatibility check every command runs."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgjobs import compat, schema_version
from pgjobs.config import Settings
from pgjobs.embedded import psql_binary
from pgjobs.errors import SchemaNotMigrated, SchemaTooNew, SchemaTooOld
from pgjobs.migrate import sql_script, upgrade
from pgjobs.testing import DatabaseFactory

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def pg_tool(name: str) -> str:
    return str(Path(psql_binary()).with_name(name))


def dump_schema(dsn: str, schema: str) -> str:
    """The schema as pg_dump sees it, minus lines that legitimately differ between databases."""
    out = subprocess.run(
        [
            pg_tool("pg_dump"),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            f"--schema={schema}",
            "--dbname",
            dsn,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return "\n".join(
        line
        for line in out.splitlines()
        if line.strip()
        and not line.startswith(
            ("--", "\\restrict", "\\unrestrict", "SET ", "SELECT pg_catalog.set_config")
        )
        # Per-database column options some server builds add (seen on Debian's PostgreSQL 15).
        and "pg_attver=" not in line
    )


@pytest.fixture
def empty_dsn(pgjobs_databases: DatabaseFactory) -> Any:
    dsn = pgjobs_databases.create(migrated=False)
    yield dsn
    pgjobs_databases.drop(dsn)


def revision_rows(dsn: str, schema: str = "pgjobs") -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT version_num FROM {schema}.alembic_version").fetchall()


def test_migrating_twice_is_a_no_op(empty_dsn: str) -> None:
    settings = Settings(dsn=empty_dsn)
    upgrade(settings)
    upgrade(settings)
    assert revision_rows(empty_dsn) == [(schema_version.HEAD_REVISION,)]


def test_two_processes_migrating_at_once_both_succeed(empty_dsn: str, run_cli: CliRunner) -> None:
    results: list[subprocess.CompletedProcess[str]] = []

    def migrate() -> None:
        results.append(run_cli("migrate", env={"PGJOBS_DSN": empty_dsn}))

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert sum("migrated to revision" in r.stdout for r in results) >= 1
    assert revision_rows(empty_dsn) == [(schema_version.HEAD_REVISION,)]


def test_sql_script_applied_with_psql_gives_the_same_schema(
    pgjobs_databases: DatabaseFactory, pgjobs_dsn: str, empty_dsn: str, run_cli: CliRunner
) -> None:
    script = run_cli("migrate", "--sql")
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("BEGIN;")
    applied = subprocess.run(
        [pg_tool("psql"), "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-q", "-d", empty_dsn],
        input=script.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert dump_schema(empty_dsn, "pgjobs") == dump_schema(pgjobs_dsn, "pgjobs")
    assert revision_rows(empty_dsn) == [(schema_version.HEAD_REVISION,)]


def test_upgrading_one_revision_at_a_time_gives_exactly_a_fresh_install(
    pgjobs_dsn: str, empty_dsn: str
) -> None:
    """What a long-lived installation goes through: every revision applied on its own, with
    jobs in the table from the first one on; the result is the schema a new user gets."""
    settings = Settings(dsn=empty_dsn)
    first, *later = schema_version.KNOWN_REVISIONS
    upgrade(settings, first)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgjobs.jobs (task, args, queue) SELECT 'old.task', jsonb_build_object('i', i),"
            " 'q' || (i % 3) FROM generate_series(1, 30) AS i"
        )
    for revision in later:
        upgrade(settings, revision)
        assert revision_rows(empty_dsn) == [(revision,)]
    assert dump_schema(empty_dsn, "pgjobs") == dump_schema(pgjobs_dsn, "pgjobs")
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pgjobs.backlog()").fetchone() == (30,)


def test_sql_script_from_head_has_nothing_to_do() -> None:
    script = sql_script("pgjobs", from_revision=schema_version.HEAD_REVISION)
    assert "CREATE TABLE" not in script


def test_sql_from_unknown_revision_is_a_usage_error(run_cli: CliRunner) -> None:
    result = run_cli("migrate", "--sql", "--from", "nope")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pgjobs: error: unknown revision 'nope': known revisions are {', '.join(schema_version.KNOWN_REVISIONS)}"
    ]


def test_custom_schema_lives_beside_the_default(pgjobs_dsn: str) -> None:
    upgrade(Settings(dsn=pgjobs_dsn, schema="jobs_b"))
    with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
        conn.execute("LISTEN pgjobs_jobs")
        conn.execute("INSERT INTO jobs_b.jobs (task) VALUES ('t')")
        assert list(conn.notifies(timeout=0.2, stop_after=1)) == [], (
            "schemas must not wake each other"
        )
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM pgjobs.jobs), (SELECT count(*) FROM jobs_b.jobs),"
            " (SELECT version_num FROM jobs_b.alembic_version)"
        ).fetchone()
    assert counts == (0, 1, schema_version.HEAD_REVISION)
    assert "public.alembic_version" not in dump_schema(pgjobs_dsn, "public")


def test_constants_match_the_migration_scripts() -> None:
    from importlib.resources import files

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(files("pgjobs.migrations")))
    scripts = ScriptDirectory.from_config(config)
    revisions = [s.revision for s in reversed(list(scripts.walk_revisions()))]
    assert tuple(revisions) == schema_version.KNOWN_REVISIONS
    breaking = sum(bool(getattr(s.module, "breaking", False)) for s in scripts.walk_revisions())
    assert breaking == schema_version.BREAKING_LEVEL


def test_compat_refuses_an_unmigrated_database(empty_dsn: str) -> None:
    with (
        psycopg.connect(empty_dsn) as conn,
        pytest.raises(SchemaNotMigrated, match="pgjobs migrate"),
    ):
        compat.ensure_compatible(conn, "pgjobs")


def test_compat_refuses_an_older_revision(
    pgjobs_conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compat, "KNOWN_REVISIONS", (*schema_version.KNOWN_REVISIONS, "0099"))
    monkeypatch.setattr(compat, "MINIMUM_REVISION", "0099")
    with pytest.raises(SchemaTooOld, match="run `pgjobs migrate`"):
        compat.ensure_compatible(pgjobs_conn, "pgjobs")


def test_compat_accepts_newer_additive_and_refuses_newer_breaking(
    pgjobs_conn: psycopg.Connection[Any],
) -> None:
    pgjobs_conn.execute("UPDATE pgjobs.alembic_version SET version_num = '9999'")
    state = compat.ensure_compatible(pgjobs_conn, "pgjobs")
    assert state.revision == "9999" and not state.known
    pgjobs_conn.execute(
        "UPDATE pgjobs.settings SET value = %s WHERE name = 'breaking_level'",
        (str(schema_version.BREAKING_LEVEL + 1),),
    )
    with pytest.raises(SchemaTooNew, match="upgrade pgjobs"):
        compat.ensure_compatible(pgjobs_conn, "pgjobs")


def test_info_names_migrate_when_the_schema_is_missing(empty_dsn: str, run_cli: CliRunner) -> None:
    result = run_cli("info", env={"PGJOBS_DSN": empty_dsn})
    assert result.returncode == 4
    assert "run `pgjobs migrate`" in result.stdout
    assert "Traceback" not in result.stderr


def test_info_reports_a_healthy_database(pgjobs_dsn: str, run_cli: CliRunner) -> None:
    result = run_cli("info", env={"PGJOBS_DSN": pgjobs_dsn})
    assert result.returncode == 0, result.stderr
    assert f"at revision {schema_version.HEAD_REVISION} (up to date" in result.stdout
    assert "workers:   0 alive (warning: jobs wait until one runs" in result.stdout
    assert "notify:    delivered in" in result.stdout


@pytest.mark.parametrize(
    ("dsn", "code", "message"),
    [
        (
            "host=127.0.0.1 port=1 connect_timeout=2",
            3,
            "pgjobs: error: cannot connect to PostgreSQL",
        ),
        ("nonsense", 3, "pgjobs: error: invalid PGJOBS_DSN"),
    ],
)
def test_broken_setups_get_one_line(run_cli: CliRunner, dsn: str, code: int, message: str) -> None:
    for command in (("info",), ("migrate",)):
        result = run_cli(*command, env={"PGJOBS_DSN": dsn})
        assert result.returncode == code
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def test_a_role_that_may_not_migrate_gets_one_line(empty_dsn: str, run_cli: CliRunner) -> None:
    """A database error inside alembic (here: no CREATE on the database) is reported like
    any other: one line, exit 1, not SQLAlchemy's wrapped traceback."""
    role = f"pgjobs_weak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        try:
            dsn = psycopg.conninfo.make_conninfo(empty_dsn, user=role)
            result = run_cli("migrate", env={"PGJOBS_DSN": dsn})
        finally:
            conn.execute(f"DROP ROLE {role}")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgjobs: database error: permission denied")


def test_bad_schema_name_is_a_usage_error(run_cli: CliRunner) -> None:
    result = run_cli("migrate", "--schema", "Bad-Name", "--sql")
    assert result.returncode == 2
    assert result.stderr.startswith("pgjobs: error: invalid schema name")
