"""Shared test setup. The database fixtures come from pgjobs' own pytest plugin
(pgjobs.testing.plugin), exactly as users get them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pgjobs_executable() -> str:
    """The installed ``pgjobs`` script next to the running interpreter."""
    candidate = Path(sys.executable).with_name("pgjobs")
    found = str(candidate) if candidate.exists() else shutil.which("pgjobs")
    assert found, "the pgjobs command is not installed: pip install -e '.[dev]'"
    return found


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``pgjobs ARGS`` as a subprocess, as a user would, with a controlled environment."""

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
        base["PGJOBS_HOME"] = str(tmp_path / "home")
        base.update(env or {})
        return subprocess.run(
            [pgjobs_executable(), *args],
            env=base,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )

    return run
