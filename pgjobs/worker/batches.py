"""Batch tasks: jobs of a task declared with ``batch_size`` are gathered and handed to its
handler as one list.

A worker hands a batch over as soon as it holds ``batch_size`` jobs of the task, when
``batch_wait`` has passed since the first of them, or when it has no free slot left (the
batch could not grow: give batch workers ``--concurrency`` of at least ``batch_size``).
Every job of a batch keeps its own lease (the heartbeats extend it while it waits), its own
outcome and its own retries: the handler returns one result per job, and may fail some of
them by putting an exception in place of their result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgjobs.registry import Task
    from pgjobs.worker.executor import Run


class Batcher:
    """The batches a worker is gathering, one per batch task."""

    def __init__(self, dispatch: Callable[[Task[Any, Any], list[Run]], None]) -> None:
        self._dispatch = dispatch
        self._pending: dict[str, list[Run]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def waiting(self) -> int:
        return sum(len(runs) for runs in self._pending.values())

    def add(self, run: Run) -> None:
        task = run.task
        assert task is not None and task.batch_size is not None
        runs = self._pending.setdefault(task.name, [])
        runs.append(run)
        if len(runs) >= task.batch_size:
            self.flush(task.name)
        elif len(runs) == 1:
            loop = asyncio.get_running_loop()
            self._timers[task.name] = loop.call_later(
                task.batch_wait.total_seconds(), self.flush, task.name
            )

    def flush(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        runs = self._pending.pop(name, None)
        if runs:
            task = runs[0].task
            assert task is not None
            self._dispatch(task, runs)

    def flush_all(self) -> None:
        for name in list(self._pending):
            self.flush(name)


def per_job(result: Any, count: int, ids: Sequence[int]) -> list[Any]:
    """The handler's return value as one result (or exception) per job, in order.

    ``None``: every job succeeded with no result. A list or tuple of ``count`` items: one per
    job, in the order received. A mapping: job id to result; jobs it leaves out succeeded
    with no result. An exception instance in place of a result fails that job (its retry
    policy applies)."""
    if result is None:
        return [None] * count
    if isinstance(result, Mapping):
        unknown = set(result) - set(ids)
        if unknown:
            raise TypeError(
                f"the batch handler returned results for jobs it did not get: {sorted(unknown)}"
            )
        return [result.get(job_id) for job_id in ids]
    if isinstance(result, list | tuple):
        if len(result) != count:
            raise TypeError(
                f"the batch handler returned {len(result)} results for {count} jobs: return one per job, "
                "a mapping of job id to result, or None"
            )
        return list(result)
    raise TypeError(
        f"a batch handler returns None, a list with one result per job or a mapping of job id to "
        f"result, not {type(result).__name__}"
    )
