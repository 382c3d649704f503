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
