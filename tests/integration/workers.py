"""A worker running in a background thread of the test process (see conftest.py's
``start`` fixture)."""

from __future__ import annotations

import threading

from pgjobs.testing import wait_for
from pgjobs.worker.runtime import Worker


class Running:
    """A worker in a background thread, stopped (gracefully) at the end of the test."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.worker.run()

    def stop(self, timeout: float = 30) -> int | None:
        wait_for(lambda: self.worker._kick is not None, message="worker never started")
        self.worker.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        return self.code

    def join(self, timeout: float = 30) -> int | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not exit by itself"
        return self.code


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) spans open at one instant; touching spans do not overlap (at
    equal instants the end sorts first)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    best = running = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best
