"""The worker daemon: claims jobs, runs their handlers, records their outcomes.

A worker process is a few small services with one owner each (docs/architecture.md):
the notifier (one LISTEN connection), the producer (claims as many jobs as there are free
slots), the executor (runs handlers), the completer (writes outcomes in batches with their
lease tokens), and the keeper (heartbeats, rescue of expired leases, the workers row).
:mod:`pgjobs.worker.runtime` builds and stops them.
"""

from __future__ import annotations

from pgjobs.worker.context import JobContext, current_job

__all__ = ["JobContext", "current_job"]
