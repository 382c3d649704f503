"""docs/testing.md as a new user follows it: its ``# file: NAME`` blocks written to a fresh
directory, then each of its other Python and shell blocks run there in page order, on their
own (a process each), with ``PGJOBS_DSN`` naming a migrated database and the plugin's tests on
this session's server. Blocks marked ``<!-- docs-test: skip -->`` are left out."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgjobs.testing import TestServer

PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b[^>]*-->\s*\n$")
FILE_LINE = re.compile(r"^#\s*file:\s*(\S+)\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    source: str
    skipped: bool

    @property
    def file_name(self) -> str | None:
        match = FILE_LINE.match(self.source.split("\n", 1)[0])
        return match.group(1) if match else None


def blocks(text: str) -> list[Block]:
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        found.append(
            Block(
                line=before.count("\n") + 1,
                lang=match.group(1),
                source=match.group(2),
                skipped=bool(SKIP.search(before)),
            )
        )
    return found


def test_the_page_has_the_blocks_this_test_expects() -> None:
    found = blocks(PAGE.read_text(encoding="utf-8"))
    assert [b.file_name for b in found if b.file_name] == [
        "tasks.py",
        "conftest.py",
        "test_tasks.py",
    ]
    runnable = [b for b in found if b.lang in ("python", "bash") and not b.skipped]
    assert sum(1 for b in runnable if b.lang == "bash") == 2
    assert sum(1 for b in runnable if b.lang == "python" and not b.file_name) >= 5


def test_every_block_of_the_page_runs(
    tmp_path: Path, pgjobs_dsn: str, pgjobs_server: TestServer
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGJOBS_", "PYTEST_"))}
    env.update(
        PGJOBS_DSN=pgjobs_dsn,
        PGJOBS_TEST_DSN=pgjobs_server.dsn,
        PGJOBS_HOME=str(tmp_path / "home"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")]),
    )
    ran = 0
    for block in blocks(PAGE.read_text(encoding="utf-8")):
        if block.skipped or block.lang not in ("python", "bash"):
            continue
        if block.file_name:
            (work / block.file_name).write_text(block.source, encoding="utf-8")
            continue
        command = [sys.executable, "-c", block.source] if block.lang == "python" else ["bash", "-euo", "pipefail", "-c", block.source]  # fmt: skip
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            pytest.fail(
                f"docs/testing.md:{block.line} ({block.lang}) exited {done.returncode}\n"
                f"--- block ---\n{block.source}--- output ---\n{done.stdout}{done.stderr}"
            )
        ran += 1
    assert ran >= 7
