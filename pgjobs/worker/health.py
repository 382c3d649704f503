"""The worker's health file (``pgjobs worker --health-file PATH``), read by ``pgjobs health``.

An orchestrator's probe needs a cheap answer that means something. The worker's keeper
task, which extends leases and registers the worker, rewrites the file as it goes round: its
modification time says the event loop is turning (liveness), and the time it records of the
last successful round trip to the database says the worker can work (readiness). A probe
reads a file instead of opening a database connection every few seconds per pod. The file
is written to a temporary name and renamed, so a reader never sees half of it; in
``--processes`` mode every child writes the same file, so it stays fresh while any lives.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

#: The keeper goes round at least every heartbeat interval (a third of the lease); writing
#: more often than this would only cost disk writes.
MIN_WRITE_INTERVAL = 1.0


class HealthFile:
    """What the keeper writes: ``beat()`` each round, ``database_ok()`` after each
    successful tick, ``remove()`` at exit (a stopped worker is neither live nor ready)."""

    def __init__(self, path: str | os.PathLike[str], worker_id: str) -> None:
        self.path = Path(path)
        self.worker_id = worker_id
        self._database_ok_at: float | None = None
        self._written_at = 0.0

    def database_ok(self) -> None:
        self._database_ok_at = time.time()
        self._write()

    def beat(self) -> None:
        if time.monotonic() - self._written_at >= MIN_WRITE_INTERVAL:
            self._write()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _write(self) -> None:
        self._written_at = time.monotonic()
        body = {
            "worker_id": self.worker_id,
            "pid": os.getpid(),
            "database_ok_at": self._database_ok_at,
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(body))
        temporary.replace(self.path)


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    message: str


def check(path: str | os.PathLike[str], *, max_age: float, ready: bool) -> Verdict:
    """Whether the worker that writes ``path`` is live (the file changed within
    ``max_age`` seconds) and, with ``ready``, also reached the database within it."""
    target = Path(path)
    try:
        age = time.time() - target.stat().st_mtime
        body = json.loads(target.read_text())
    except FileNotFoundError:
        return Verdict(False, f"no health file at {target}: the worker is not running (yet)")
    except (OSError, ValueError) as exc:
        return Verdict(False, f"unreadable health file {target}: {exc}")
    if age > max_age:
        return Verdict(
            False, f"the worker's last sign of life was {age:.0f}s ago (over {max_age:g}s)"
        )
    if not ready:
        return Verdict(True, f"live: last sign of life {age:.0f}s ago")
    database_ok_at = body.get("database_ok_at") if isinstance(body, dict) else None
    if not isinstance(database_ok_at, int | float):
        return Verdict(False, "not ready: the worker has not reached the database yet")
    since = time.time() - database_ok_at
    if since > max_age:
        return Verdict(
            False, f"not ready: the database last answered {since:.0f}s ago (over {max_age:g}s)"
        )
    return Verdict(True, f"ready: the database answered {since:.0f}s ago")
