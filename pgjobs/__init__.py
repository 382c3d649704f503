"""pgjobs: background jobs, schedules and an HTTP submission API, with PostgreSQL as the only
moving part.

A job is a row of ``pgjobs.jobs``; workers claim rows with ``FOR UPDATE SKIP LOCKED``, are
woken by ``LISTEN/NOTIFY`` and hold each job under a lease token. See the README and
``docs/`` for the tour.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pgjobs.app import App, Job
from pgjobs.backoff import RetryPolicy
from pgjobs.callbacks import verify_signature
from pgjobs.client import Enqueued, EnqueueOptions
from pgjobs.config import Settings
from pgjobs.control import Cancel, Fail, Retry, Snooze
from pgjobs.errors import (
    ConfigError,
    DatabaseUnavailable,
    InvalidInput,
    JobCancelled,
    JobFailed,
    NotFound,
    PgjobsError,
    SchemaError,
    WaitTimeout,
)
from pgjobs.registry import JobSpec, Task
from pgjobs.types import JobStatus
from pgjobs.worker.context import JobContext, current_job

try:
    __version__ = version("pgjobs")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "App",
    "Cancel",
    "ConfigError",
    "DatabaseUnavailable",
    "EnqueueOptions",
    "Enqueued",
    "Fail",
    "InvalidInput",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobSpec",
    "JobStatus",
    "NotFound",
    "PgjobsError",
    "Retry",
    "RetryPolicy",
    "SchemaError",
    "Settings",
    "Snooze",
    "Task",
    "WaitTimeout",
    "__version__",
    "current_job",
    "verify_signature",
]
