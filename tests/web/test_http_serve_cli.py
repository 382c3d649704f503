"""``pgjobs serve`` as a user runs it: a process listening on a TCP port; refusals before
it starts (unsafe bind, bad options, missing extra) in one line."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from web_support import TOKEN, free_port, pgjobs_executable, wait_http

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_non_loopback_bind_without_tokens_is_refused(run_cli: Run, pgjobs_dsn: str) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        done = run_cli("serve", "--host", host, "--dsn", pgjobs_dsn, timeout=30)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pgjobs: error: refusing to listen on")
        assert "PGJOBS_API_TOKENS" in lines[0] and "--insecure" in lines[0]
        assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "env", "reason"),
    [
        (["--max-body", "lots"], {}, "invalid max_body"),
        (["--port", "70000"], {}, "70000"),
        (["--workers", "0"], {}, "--workers"),
        ([], {"PGJOBS_API_TOKENS": "short"}, "token #1 is 5 characters long"),
        (["--api-tokens-file", "/nonexistent/tokens"], {}, "cannot read"),
    ],
)
def test_bad_options_are_usage_errors(
    run_cli: Run, pgjobs_dsn: str, args: list[str], env: dict[str, str], reason: str
) -> None:
    done = run_cli("serve", *args, "--dsn", pgjobs_dsn, env=env, timeout=30)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and reason in done.stderr, done.stderr


def test_missing_web_extra_is_one_line(run_cli: Run, tmp_path: Path, pgjobs_dsn: str) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "fastapi.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'fastapi'\", name='fastapi')\n"
    )
    done = run_cli("serve", "--dsn", pgjobs_dsn, env={"PYTHONPATH": str(shadow)}, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "pgjobs: error: the HTTP API needs the web extra: pip install 'pgjobs[web]'"
    )


def test_help_has_examples(run_cli: Run) -> None:
    done = run_cli("serve", "--help")
    assert done.returncode == 0
    for text in ("--host", "--port", "--workers", "--insecure", "--max-body", "Examples:", "curl"):
        assert text in done.stdout


@pytest.fixture
def served(tmp_path: Path, pgjobs_dsn: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGJOBS_")}
    env.update(PGJOBS_HOME=str(tmp_path / "home"), PGJOBS_API_TOKENS=TOKEN)
    process = subprocess.Popen(
        [pgjobs_executable(), "serve", "--host", "0.0.0.0", "--port", str(port),
         "--workers", "2", "--dsn", pgjobs_dsn],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_serve_answers_over_tcp_and_stops_on_sigterm(
    served: tuple[subprocess.Popen[str], str],
) -> None:
    process, url = served
    health = wait_http(f"{url}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert httpx.post(f"{url}/jobs", json={"task": "e2e.job"}).status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    created = httpx.post(f"{url}/jobs", json={"task": "e2e.job"}, headers=headers)
    assert created.status_code == 202 and created.headers["location"].startswith("/jobs/")
    job = httpx.get(f"{url}{created.headers['location']}", headers=headers)
    assert job.json()["status"] == "queued"
    assert "pgjobs_up 1" in httpx.get(f"{url}/metrics", headers=headers).text
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")
