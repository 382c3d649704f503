"""The embedded default, as a new user meets it: no DSN anywhere, one server shared by
concurrent commands, data kept across a restart, refused inside orchestrators, quiet stderr."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgjobs import embedded

CliRunner = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """The PGJOBS_HOME that run_cli uses; its server is stopped after the test."""
    path = tmp_path / "home"
    yield path
    embedded.stop(path)


def test_no_dsn_means_the_embedded_server_shared_by_concurrent_commands(
    home: Path, run_cli: CliRunner
) -> None:
    env = {"XDG_RUNTIME_DIR": ""}
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(run_cli("migrate", env=env)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert all(r.stderr == "" for r in results), "no warnings from the embedded wheel on stderr"
    server_dirs = {p.name for p in home.iterdir() if p.name.startswith("data-")}
    assert len(server_dirs) == 1
    info = run_cli("info")
    assert info.returncode == 0, info.stderr
    assert f"embedded PostgreSQL in {home.resolve()}" in info.stdout
    assert "up to date" in info.stdout


def test_data_survives_a_restart(home: Path, run_cli: CliRunner) -> None:
    assert run_cli("migrate").returncode == 0
    uri = embedded.ensure_running(home).uri
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("SELECT pgjobs.enqueue('kept.task')")
    stopped = run_cli("embedded", "stop")
    assert stopped.returncode == 0 and stopped.stdout.startswith("stopped:")
    assert run_cli("embedded", "status").returncode == 1
    uri = embedded.ensure_running(home).uri
    with psycopg.connect(uri) as conn:
        assert conn.execute("SELECT task FROM pgjobs.jobs").fetchall() == [("kept.task",)]
    assert run_cli("embedded", "status").returncode == 0


def test_refused_in_a_kubernetes_pod_unless_asked_for(home: Path, run_cli: CliRunner) -> None:
    refused = run_cli("info", env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert refused.returncode == 3
    assert refused.stderr.strip().splitlines() == [
        "pgjobs: error: no PGJOBS_DSN set and this process runs in a Kubernetes pod: refusing to "
        "start a private embedded database (set PGJOBS_DSN, or PGJOBS_DSN=embedded to insist)"
    ]
    assert not home.exists() or not any(home.iterdir()), "nothing was created"
    allowed = run_cli(
        "migrate", env={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "PGJOBS_DSN": "embedded"}
    )
    assert allowed.returncode == 0, allowed.stderr


def test_unusable_home_is_one_line(tmp_path: Path, run_cli: CliRunner) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("info", env={"PGJOBS_HOME": str(blocker / "home")})
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgjobs: error: cannot create PGJOBS_HOME"), (
        result.stderr
    )


def test_wrong_password_is_one_line(tmp_path: Path, run_cli: CliRunner) -> None:
    """A server that asks for a password (SCRAM), given a wrong one."""
    home = tmp_path / "scram"
    server = embedded.ensure_running(home, explicit=True)
    try:
        with psycopg.connect(server.uri, autocommit=True) as conn:
            conn.execute("CREATE ROLE app LOGIN PASSWORD 'right'")
            hba = server.data_dir / "pg_hba.conf"
            conn.execute("SELECT pg_reload_conf()")
        hba.write_text("local all app scram-sha-256\n" + hba.read_text())
        with psycopg.connect(server.uri, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        dsn = f"postgresql://app:Xq7notit@/postgres?host={server.socket_dir}"
        result = run_cli("info", env={"PGJOBS_DSN": dsn})
        assert result.returncode == 3
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "password authentication failed" in lines[0], result.stderr
        assert "Xq7notit" not in result.stdout + result.stderr, "the password is never printed"
    finally:
        embedded.stop(home)
