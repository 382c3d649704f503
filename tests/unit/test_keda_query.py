"""``pgjobs keda-query``: the trigger query text (run against a database in
tests/integration/test_keda.py and tests/deploy)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pgjobs.cli.main import cli

from pgjobs.errors import ConfigError, InvalidInput
from pgjobs.keda import trigger_query


@pytest.mark.parametrize(
    ("queues", "metric", "query"),
    [
        (None, "demand", "SELECT pgjobs.demand()"),
        (["emails"], "demand", "SELECT pgjobs.demand(ARRAY['emails', 'pgjobs.internal'])"),
        (["a", "b.c"], "backlog", "SELECT pgjobs.backlog(ARRAY['a', 'b.c'])"),
        (["long"], "oldest-ready-age", "SELECT pgjobs.oldest_ready_age(ARRAY['long'])"),
    ],
)
def test_queries(queues: list[str] | None, metric: str, query: str) -> None:
    assert trigger_query("pgjobs", queues, metric) == query


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match="invalid queue name"):
        trigger_query("pgjobs", ["x'); DROP TABLE jobs; --"])
    with pytest.raises(InvalidInput, match="unknown metric"):
        trigger_query("pgjobs", None, "depth")
    with pytest.raises(ConfigError, match="invalid schema name"):
        trigger_query('pgjobs"; --', None)


def test_the_command_prints_one_line_and_honours_the_schema_variable() -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["keda-query", "-q", "emails,sms", "--metric", "backlog"],
        env={"PGJOBS_SCHEMA": "jobs2"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == "SELECT jobs2.backlog(ARRAY['emails', 'sms'])\n"
