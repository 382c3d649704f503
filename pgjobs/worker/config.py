"""Settings of a worker process, with their defaults and the reasons for them."""

from __future__ import annotations

import os
import re
import resource
from dataclasses import dataclass
from datetime import timedelta

from pgjobs.errors import InvalidInput
from pgjobs.retention import KEEP_DEFAULT, KEEP_FAILED_DEFAULT, PRUNE_EVERY_DEFAULT, Policy

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str | int) -> int:
    """``512MB``, ``1G``, ``300MiB`` or a number of bytes (units are powers of 1024)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise InvalidInput(f"invalid size {text!r}: use e.g. 512MB, 1GB or a number of bytes")
    unit = (match.group(2) or "").lower().rstrip("b").rstrip("i")
    return int(float(match.group(1)) * _UNITS[unit])


def resident_memory() -> int:
    """This process's resident memory in bytes (current on Linux, peak elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


CONCURRENCY_DEFAULT = 10
LEASE_DEFAULT = 30.0
GRACE_DEFAULT = 30.0
#: The safety-net poll when notifications are on: rare, because NOTIFY does the waking; it
#: only catches a lost notification. With --no-listen it is the only wake-up, hence faster.
POLL_DEFAULT = 10.0
POLL_NO_LISTEN_DEFAULT = 1.0
#: Worker row heartbeat, rescue of expired leases, forgetting dead workers.
TICK_DEFAULT = 30.0
#: A worker silent for this many ticks is forgotten (its jobs are rescued by lease anyway).
FORGET_AFTER_TICKS = 20
#: Progress is written at most this often per job (and once at the end).
PROGRESS_INTERVAL = 1.0
#: Outcomes written per statement at most.
FINISH_BATCH_MAX = 500
#: Timer slack: a delayed job starts within this of its not_before.
TIMER_SLACK = 0.05


@dataclass
class WorkerConfig:
    """What ``pgjobs worker`` options set (see ``pgjobs worker --help``)."""

    queues: list[str] | None = None
    concurrency: int = CONCURRENCY_DEFAULT
    lease: float = LEASE_DEFAULT
    grace: float = GRACE_DEFAULT
    burst: bool = False
    max_jobs: int | None = None
    listen: bool = True
    listen_dsn: str | None = None
    poll_interval: float | None = None
    tick_interval: float = TICK_DEFAULT
    log_jobs: bool = True
    #: Stop (and let the supervisor or orchestrator start a fresh process) past this RSS.
    max_memory: int | None = None
    #: True in a child of ``--processes``: stuck threads recycle the process.
    supervised: bool = False
    #: Automatic pruning of finished jobs (see pgjobs.retention); None keeps them for ever.
    prune: bool = True
    keep: float | None = KEEP_DEFAULT.total_seconds()
    keep_failed: float | None = KEEP_FAILED_DEFAULT.total_seconds()
    prune_every: float = PRUNE_EVERY_DEFAULT.total_seconds()
    #: Rewritten as the keeper goes round, for probes (see pgjobs.worker.health).
    health_file: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 10_000:
            raise InvalidInput(f"concurrency {self.concurrency} is out of range: use 1..10000")
        if self.lease < 1:
            raise InvalidInput("lease must be at least 1 second")
        if self.grace < 0:
            raise InvalidInput("grace must not be negative")
        if self.max_jobs is not None and self.max_jobs < 1:
            raise InvalidInput("max-jobs must be at least 1")
        if self.poll_interval is not None and self.poll_interval <= 0:
            raise InvalidInput("poll interval must be positive")
        if self.tick_interval <= 0:
            raise InvalidInput("tick interval must be positive")
        if self.prune_every <= 0:
            raise InvalidInput("prune interval must be positive")

    @property
    def retention(self) -> Policy | None:
        """What this worker prunes, or None when it does not prune."""
        if not self.prune:
            return None
        policy = Policy.of(
            timedelta(seconds=self.keep) if self.keep is not None else None,
            timedelta(seconds=self.keep_failed) if self.keep_failed is not None else None,
        )
        return policy if policy.keep else None

    @property
    def poll(self) -> float:
        if self.poll_interval is not None:
            return self.poll_interval
        return POLL_DEFAULT if self.listen else POLL_NO_LISTEN_DEFAULT

    @property
    def heartbeat_interval(self) -> float:
        """At most a third of the lease: two heartbeats can fail before a lease expires."""
        return self.lease / 3
