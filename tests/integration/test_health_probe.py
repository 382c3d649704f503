"""A running worker keeps its --health-file fresh; the file goes when it stops."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from workers import Running

from pgjobs.testing import wait_for
from pgjobs.worker.health import check


def test_a_worker_is_ready_while_it_runs_and_gone_once_stopped(
    start: Callable[..., Running], tmp_path: Path
) -> None:
    path = tmp_path / "run" / "health"
    path.parent.mkdir()
    running = start(health_file=str(path))
    wait_for(path.exists, message=f"the worker never wrote {path}")
    verdict = check(path, max_age=60, ready=True)
    assert verdict.healthy, verdict.message
    assert json.loads(path.read_text())["worker_id"] == str(running.worker.id)
    assert running.stop() == 0
    assert not path.exists()
    assert list(path.parent.iterdir()) == []  # no temporary file left behind
