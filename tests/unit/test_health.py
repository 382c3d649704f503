"""The worker's health file and the verdicts of ``pgjobs health`` (no database: the file's
times are set by hand)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from click.testing import CliRunner
from pgjobs.cli.main import cli

from pgjobs.worker.health import HealthFile, check


def age_file(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_missing_file_is_neither_live_nor_ready(tmp_path: Path) -> None:
    verdict = check(tmp_path / "health", max_age=60, ready=False)
    assert not verdict.healthy
    assert "not running" in verdict.message


def test_a_fresh_file_is_live_but_not_ready_before_the_database_answered(tmp_path: Path) -> None:
    health = HealthFile(tmp_path / "health", "w1")
    health.beat()
    assert check(health.path, max_age=60, ready=False).healthy
    verdict = check(health.path, max_age=60, ready=True)
    assert not verdict.healthy
    assert "has not reached the database" in verdict.message


def test_ready_once_the_database_answered(tmp_path: Path) -> None:
    health = HealthFile(tmp_path / "health", "w1")
    health.database_ok()
    assert check(health.path, max_age=60, ready=True).healthy
    assert json.loads(health.path.read_text())["worker_id"] == "w1"


def test_a_stale_file_is_not_live(tmp_path: Path) -> None:
    health = HealthFile(tmp_path / "health", "w1")
    health.database_ok()
    age_file(health.path, 120)
    verdict = check(health.path, max_age=60, ready=False)
    assert not verdict.healthy
    assert "120s ago (over 60s)" in verdict.message


def test_live_but_not_ready_when_the_database_stopped_answering(tmp_path: Path) -> None:
    path = tmp_path / "health"
    path.write_text(json.dumps({"worker_id": "w1", "pid": 1, "database_ok_at": time.time() - 300}))
    assert check(path, max_age=60, ready=False).healthy
    verdict = check(path, max_age=60, ready=True)
    assert not verdict.healthy
    assert "the database last answered 300s ago" in verdict.message


def test_a_garbled_file_is_unhealthy_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "health"
    path.write_text("{not json")
    verdict = check(path, max_age=60, ready=True)
    assert not verdict.healthy
    assert "unreadable health file" in verdict.message


def test_beats_are_coalesced_but_database_rounds_always_written(tmp_path: Path) -> None:
    health = HealthFile(tmp_path / "health", "w1")
    health.beat()
    age_file(health.path, 30)
    health.beat()  # within MIN_WRITE_INTERVAL of the first: not rewritten
    assert not check(health.path, max_age=10, ready=False).healthy
    health.database_ok()
    assert check(health.path, max_age=10, ready=True).healthy


def test_remove_makes_the_worker_not_live(tmp_path: Path) -> None:
    health = HealthFile(tmp_path / "health", "w1")
    health.database_ok()
    health.remove()
    health.remove()  # twice is fine
    assert not check(health.path, max_age=60, ready=False).healthy


def test_the_probe_command_exits_0_or_1_with_one_line(tmp_path: Path) -> None:
    health = HealthFile(tmp_path / "health", "w1")
    health.database_ok()
    runner = CliRunner()
    ok = runner.invoke(cli, ["health", "--file", str(health.path), "--ready"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("ready:")
    age_file(health.path, 200)
    stale = runner.invoke(cli, ["health", "--file", str(health.path), "--max-age", "1m"])
    assert stale.exit_code == 1
    assert "over 60s" in stale.output
