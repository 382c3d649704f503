"""The testing kit's own tests. They use the kit as a user would: directly (its fixtures come
from pgjobs' pytest plugin) and through ``pytester``, which runs a sample user project's
tests in a subprocess where the plugin is loaded from its entry point."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pgjobs.testing import TestServer

pytest_plugins = ["pytester"]

#: A sample user project, run by test_user_project.py (not collected here).
collect_ignore = ["sample"]
SAMPLE = Path(__file__).with_name("sample")


@pytest.fixture
def user_project(
    pytester: pytest.Pytester, pgjobs_server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., pytest.RunResult]:
    """Run pytest in a subprocess in a fresh directory holding the given files (name ->
    text; default: the sample project). The subprocess uses this session's server through
    ``PGJOBS_TEST_DSN``, as a CI job would, rather than starting an embedded one of its own."""
    for name in [n for n in os.environ if n.startswith("PGJOBS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PGJOBS_TEST_DSN", pgjobs_server.dsn)

    def run(files: dict[str, str] | None = None, *args: str) -> pytest.RunResult:
        if files is None:
            for source in SAMPLE.glob("*.py"):
                shutil.copy(source, pytester.path / source.name)
        else:
            for name, text in files.items():
                (pytester.path / name).write_text(text, encoding="utf-8")
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=300)

    return run
