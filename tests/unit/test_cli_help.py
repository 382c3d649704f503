"""Every command's --help teaches by example (issue: first impressions)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from pgjobs.cli.main import cli


def commands() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in cli.commands.items():
        found.append((name,))
        if isinstance(command, click.Group):
            found.extend((name, sub) for sub in command.commands)
    return found


#: Subcommands whose group's help holds the examples (one line of usage each).
EXAMPLES_IN_GROUP = {
    ("jobs", "ls"), ("jobs", "retry"), ("jobs", "cancel"), ("jobs", "tree"),
    ("queues", "pause"), ("queues", "resume"), ("schedules", "ls"), ("schedules", "rm"),
    ("schedules", "pause"), ("schedules", "resume"), ("schedules", "add"),
    ("embedded", "status"), ("embedded", "stop"),
}  # fmt: skip


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_help_shows_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    if path in EXAMPLES_IN_GROUP:
        result = CliRunner().invoke(cli, [path[0], "--help"])
    assert "Examples:" in result.output, f"pgjobs {' '.join(path)} --help has no examples"


def test_the_top_level_help_lists_examples() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "Examples:" in result.output and "pgjobs worker" in result.output
