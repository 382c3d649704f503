"""Settings, DSN handling and environment detection (no database needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgjobs.config import Settings, default_home, validate_schema
from pgjobs.connection import BadDsn, one_line, redact, resolve_dsn
from pgjobs.embedded import orchestrated_environment
from pgjobs.errors import ConfigError


def test_env_values_are_used_and_arguments_win() -> None:
    env = {"PGJOBS_DSN": "host=db", "PGJOBS_SCHEMA": "jobs", "PGJOBS_HOME": "/srv/pg"}
    settings = Settings.from_env(environ=env)
    assert (settings.dsn, settings.schema, settings.home) == ("host=db", "jobs", Path("/srv/pg"))
    settings = Settings.from_env(dsn="host=other", schema="other", environ=env)
    assert (settings.dsn, settings.schema) == ("host=other", "other")


def test_defaults_use_the_embedded_server() -> None:
    settings = Settings.from_env(environ={})
    assert settings.dsn is None
    assert settings.uses_embedded and not settings.embedded_requested
    assert settings.schema == "pgjobs"
    assert settings.home == default_home()


def test_embedded_can_be_requested_by_name() -> None:
    settings = Settings.from_env(environ={"PGJOBS_DSN": "Embedded"})
    assert settings.uses_embedded and settings.embedded_requested


@pytest.mark.parametrize("name", ["", "Jobs", "1jobs", "jobs-x", "a" * 51, 'x"; drop'])
def test_bad_schema_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid schema name"):
        validate_schema(name)


@pytest.mark.parametrize("name", ["pgjobs", "_q", "jobs_2", "a" * 50])
def test_good_schema_names(name: str) -> None:
    assert validate_schema(name) == name


def test_empty_dsn_is_an_error_not_the_embedded_server() -> None:
    with pytest.raises(ConfigError, match="empty"):
        Settings.from_env(environ={"PGJOBS_DSN": "  "})


def test_sqlalchemy_urls_are_accepted() -> None:
    settings = Settings(dsn="postgresql+psycopg://u:p@h:5433/d")
    assert resolve_dsn(settings) == "postgresql://u:p@h:5433/d"


def test_malformed_dsn_is_reported_in_one_line() -> None:
    with pytest.raises(BadDsn, match="invalid PGJOBS_DSN") as info:
        resolve_dsn(Settings(dsn="nonsense"))
    assert "\n" not in str(info.value)


def test_redact_hides_passwords() -> None:
    assert "s3cret" not in redact("host=h user=u password=s3cret dbname=d")
    assert "s3cret" not in redact("postgresql://u:s3cret@h/d")
    assert "password=***" in redact("postgresql://u:s3cret@h/d")


def test_one_line_collapses_libpq_messages() -> None:
    error = RuntimeError('connection failed: server at "x" failed\n\tIs the server running?\n')
    assert one_line(error) == 'server at "x" failed; Is the server running?'


@pytest.mark.parametrize(
    ("variable", "where"),
    [("KUBERNETES_SERVICE_HOST", "Kubernetes"), ("K_SERVICE", "Cloud Run"), ("DYNO", "Heroku")],
)
def test_orchestrators_are_detected(variable: str, where: str) -> None:
    found = orchestrated_environment({variable: "1"})
    assert found is not None and where in found


def test_plain_environment_is_not_orchestrated() -> None:
    assert orchestrated_environment({"HOME": "/root"}) is None


@pytest.mark.parametrize(
    ("value", "threshold"), [("off", None), ("OFF", None), ("none", None), ("0", 0), ("12", 12)]
)
def test_prepared_statements_can_be_turned_off_for_poolers(
    value: str, threshold: int | None
) -> None:
    settings = Settings.from_env(environ={"PGJOBS_PREPARE_THRESHOLD": value})
    assert settings.prepare_threshold == threshold


def test_prepare_threshold_defaults_to_psycopgs_and_refuses_nonsense() -> None:
    assert Settings.from_env(environ={}).prepare_threshold == 5
    with pytest.raises(ConfigError, match=r"PGJOBS_PREPARE_THRESHOLD must be .* got 'sometimes'"):
        Settings.from_env(environ={"PGJOBS_PREPARE_THRESHOLD": "sometimes"})
    with pytest.raises(ConfigError, match="got '-1'"):
        Settings.from_env(environ={"PGJOBS_PREPARE_THRESHOLD": "-1"})


def test_an_app_takes_the_setting_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    import pgjobs

    monkeypatch.setenv("PGJOBS_PREPARE_THRESHOLD", "off")
    assert pgjobs.App("host=nowhere").prepare_threshold is None
    assert pgjobs.App("host=nowhere", prepare_threshold=3).prepare_threshold == 3


def test_listen_dsn_is_a_dsn_or_off() -> None:
    assert Settings.from_env(environ={}).listen_dsn is None
    direct = Settings.from_env(environ={"PGJOBS_LISTEN_DSN": "host=db port=5432"})
    assert direct.listen_dsn == "host=db port=5432" and not direct.listen_off
    assert Settings.from_env(environ={"PGJOBS_LISTEN_DSN": "OFF"}).listen_off


def test_a_start_that_outlived_pg_ctls_timeout_is_waited_for(tmp_path: Path) -> None:
    """pgjobs.embedded._wait_ready reads postmaster.pid as PostgreSQL writes it."""
    import os

    from pgjobs.embedded import _wait_ready

    pid_file = tmp_path / "postmaster.pid"
    assert not _wait_ready(tmp_path, 0.05), "no file: not ready"
    lines = [str(os.getpid()), str(tmp_path), "0", "5432", "/tmp", "", "0"]
    pid_file.write_text("\n".join([*lines, "starting"]) + "\n")
    assert not _wait_ready(tmp_path, 0.05), "still starting"
    pid_file.write_text("\n".join([*lines, "ready   "]) + "\n")
    assert _wait_ready(tmp_path, 5)
    pid_file.write_text("\n".join(["999999999", *lines[1:], "ready"]) + "\n")
    assert not _wait_ready(tmp_path, 0.05), "a dead process is not a ready server"
