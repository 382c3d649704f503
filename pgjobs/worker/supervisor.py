"""``pgjobs worker --processes N``: one supervising parent, N worker processes.

The parent runs no jobs. It starts the children, each in its own process group (so that a
Ctrl-C on the terminal reaches the parent only, which then decides: children would otherwise
get the signal twice, from the terminal and from the parent, and take the second as "exit
now"), forwards stop signals, and starts a new child when one exits while the supervisor is
not stopping: a crash, a recycling after ``--max-tasks-per-child`` jobs or past the memory
ceiling. A child that keeps crashing is restarted with a growing pause. In ``--burst`` mode a
child that finishes is not replaced, and the parent exits when all have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pgjobs.log import get_logger

#: Environment variable marking a child started by the supervisor (never set it yourself).
CHILD_ENV = "PGJOBS_WORKER_CHILD"
RESTART_BACKOFF_MAX = 30.0
#: A child that lived longer than this is considered healthy: its restart has no pause.
HEALTHY_AFTER = 10.0


@dataclass
class Child:
    slot: int
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(
        self, command: Sequence[str], processes: int, *, burst: bool, grace: float
    ) -> None:
        self.command = list(command)
        self.processes = processes
        self.burst = burst
        self.grace = grace
        self.children: dict[int, Child] = {}
        self.failures: dict[int, int] = {}
        self.stopping = False
        self.signals = 0
        self.log = get_logger("pgjobs.supervisor", pid=os.getpid())

    def _spawn(self, slot: int) -> None:
        env = {**os.environ, CHILD_ENV: str(slot)}
        process = subprocess.Popen(self.command, env=env, start_new_session=True)
        self.children[slot] = Child(slot, process)
        self.log.info("child.started", slot=slot, child_pid=process.pid)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1
        self.stopping = True
        forward = signal.SIGTERM if self.signals == 1 else signal.SIGINT
        self.log.info(
            "supervisor.stopping",
            signal=signal.Signals(signum).name,
            forwarded=forward.name,
            children=len(self.children),
        )
        for child in self.children.values():
            for _ in range(
                1 if self.signals == 1 else 2
            ):  # a second signal: "exit now" in each child
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, forward)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.processes):
            self._spawn(slot)
        restart_at: dict[int, float] = {}
        worst = 0
        while self.children or restart_at:
            for slot, child in list(self.children.items()):
                code = child.process.poll()
                if code is None:
                    continue
                del self.children[slot]
                lived = time.monotonic() - child.started
                worst = max(worst, code) if code > 0 else worst
                if self.stopping or (self.burst and code == 0):
                    self.log.info("child.exited", slot=slot, child_pid=child.process.pid, code=code)
                    continue
                failures = (
                    0 if code == 0 or lived > HEALTHY_AFTER else self.failures.get(slot, 0) + 1
                )
                self.failures[slot] = failures
                pause = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** (failures - 1)) if failures else 0.0
                level = self.log.info if code == 0 else self.log.warning
                level("child.exited", slot=slot, child_pid=child.process.pid, code=code, restart_in=pause,
                      reason="recycled" if code == 0 else "crashed")  # fmt: skip
                restart_at[slot] = time.monotonic() + pause
            for slot, at in list(restart_at.items()):
                if self.stopping:
                    restart_at.clear()
                    break
                if time.monotonic() >= at:
                    del restart_at[slot]
                    self._spawn(slot)
            time.sleep(0.05)
        self.log.info("supervisor.stopped")
        return 0 if self.stopping or worst == 0 else 1


def child_command(argv: Sequence[str]) -> list[str]:
    """The command line of a child: this same ``pgjobs worker`` invocation, minus the
    ``--processes`` option (the environment variable says it is a child)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "pgjobs.cli.main", *out]
