"""The documentation site builds with ``mkdocs build --strict``: a broken link, a missing
anchor or a nav entry without its page fails the suite, not only CI's docs job."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from doc_snippets import REPO

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs and mkdocs-material are not installed (pip install -e '.[dev]')",
)


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "index.html").is_file()
    assert (site / "quickstart" / "index.html").is_file()
    # The docs-test directives are HTML comments: invisible on the site, and they do not
    # swallow the code block that follows them.
    page = (site / "kubernetes" / "index.html").read_text(encoding="utf-8")
    visible = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<!--.*?-->", "", page, flags=re.S)))
    assert "kubectl apply -k deploy/k8s/overlays/short-jobs" in visible
    assert "docs-test" not in visible
