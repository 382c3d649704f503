"""Log configuration: JSON lines off a terminal, console on one, clear errors for bad values."""

from __future__ import annotations

import io
import json
import re

import pytest

from pgjobs import log
from pgjobs.errors import ConfigError


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_json_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    assert log.configure("auto", "info", stream=out) == "json"
    log.get_logger("pgjobs.test", job_id=7).info("job.succeeded", duration=0.5)
    log.get_logger("pgjobs.test").debug("hidden at info level")
    [line] = out.getvalue().splitlines()
    event = json.loads(line)
    assert event["event"] == "job.succeeded" and event["job_id"] == 7 and event["level"] == "info"
    assert event["logger"] == "pgjobs.test" and event["timestamp"].endswith("Z")


def test_auto_is_console_on_a_terminal() -> None:
    out = Terminal()
    assert log.configure(None, "debug", stream=out) == "console"
    log.get_logger().debug("hello", n=1)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert "hello" in plain and "n=1" in plain and "debug" in plain


def test_environment_chooses_when_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGJOBS_LOG_FORMAT", "json")
    assert log.configure(stream=Terminal()) == "json"


@pytest.mark.parametrize(
    ("fmt", "level", "message"),
    [("xml", None, "invalid log format"), (None, "loud", "invalid log level")],
)
def test_bad_values_are_refused(fmt: str | None, level: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        log.configure(fmt, level, stream=io.StringIO())
