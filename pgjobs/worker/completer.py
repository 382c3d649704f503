"""The completer: writes finished runs' outcomes, many per statement when load is high.

Outcomes wait in a list; one flush task writes everything that has accumulated, then looks
again. When the worker is idle a finished job is written at once (a batch of one); under load,
the outcomes that finish while a flush is in flight ride together in the next one. Each flush
is one transaction: the finish statement (fenced by lease token) and the follow-up jobs of the
runs it actually recorded as succeeded.

A flush that fails because the connection broke keeps its outcomes and tries again after
reconnecting: dropping them would run those jobs again. A flush refused for its data is split
in halves until the offending outcome is found, which is then recorded as a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from pgjobs import client, db
from pgjobs.connection import one_line
from pgjobs.log import get_logger
from pgjobs.types import JobStatus
from pgjobs.worker.config import FINISH_BATCH_MAX
from pgjobs.worker.connections import Reconnecting

if TYPE_CHECKING:
    from pgjobs.worker.metrics import Histogram


@dataclass
class Finished:
    """One run to record: its outcome, its follow-up jobs, and who to tell when written."""

    outcome: db.Outcome
    follow_ups: list[db.NewJob] = field(default_factory=list)
    done: asyncio.Future[JobStatus | None] | None = None


class Completer:
    def __init__(
        self,
        schema: str,
        connection: Reconnecting,
        *,
        on_fenced: Callable[[db.Outcome], None],
        on_written: Callable[[], None] = lambda: None,
        batch_sizes: Histogram | None = None,
    ) -> None:
        self.schema = schema
        self.connection = connection
        self.on_fenced = on_fenced
        #: Called after each batch is committed (slots of limited queues are free from then).
        self.on_written = on_written
        #: Outcomes per committed statement (the worker's metrics), if given.
        self.batch_sizes = batch_sizes
        self._pending: list[Finished] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._log = get_logger("pgjobs.worker.completer")
        self.flushes = 0
        self.written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pgjobs-completer")

    def submit(self, item: Finished) -> None:
        self._pending.append(item)
        self._idle.clear()
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def drained(self) -> None:
        """Wait until everything submitted so far is written (or refused as fenced)."""
        await self._idle.wait()

    async def stop(self) -> None:
        """Write everything still pending, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._pending = (
                self._pending[:FINISH_BATCH_MAX],
                self._pending[FINISH_BATCH_MAX:],
            )
            await self._write(batch)

    async def _write(self, batch: list[Finished]) -> None:
        delay = 0.1
        while True:
            try:
                statuses = await self._flush(batch)
                break
            except psycopg.OperationalError as exc:
                self._log.warning("finish.retrying", error=one_line(exc), jobs=len(batch))
                await self.connection.discard()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
                if len(batch) == 1:
                    statuses = await self._record_unwritable(batch[0], exc)
                    break
                half = len(batch) // 2
                await self._write(batch[:half])
                await self._write(batch[half:])
                return
        self.flushes += 1
        self.written += len(statuses)
        if self.batch_sizes is not None:
            self.batch_sizes.observe(len(batch))
        for item in batch:
            status = statuses.get(item.outcome.job_id)
            if status is None:
                self.on_fenced(item.outcome)
            if item.done is not None and not item.done.done():
                item.done.set_result(status)
        self.on_written()

    async def _flush(self, batch: list[Finished]) -> dict[int, JobStatus]:
        if not any(item.follow_ups for item in batch):
            # One statement is atomic on its own: BEGIN and COMMIT would be two more round
            # trips per batch.
            async with self.connection.use() as conn:
                return await db.run_async(conn, db.finish(self.schema, [i.outcome for i in batch]))
        async with self.connection.use() as conn, conn.transaction():
            statuses = await db.run_async(conn, db.finish(self.schema, [i.outcome for i in batch]))
            follow_ups = [
                job
                for item in batch
                if statuses.get(item.outcome.job_id) is JobStatus.SUCCEEDED
                for job in item.follow_ups
            ]
            if follow_ups:
                await client.enqueue_many_async(
                    client.AsyncPsycopgTarget(conn), self.schema, follow_ups
                )
        return statuses

    async def _record_unwritable(self, item: Finished, exc: Exception) -> dict[int, JobStatus]:
        """The database refused this outcome (a result it cannot store): record a failure."""
        self._log.error("finish.refused", job_id=item.outcome.job_id, error=one_line(exc))
        failed = db.Outcome(
            item.outcome.job_id, item.outcome.lease_token, JobStatus.FAILED,
            error=f"the outcome could not be recorded: {one_line(exc)}",
        )  # fmt: skip
        with contextlib.suppress(psycopg.Error):
            return await self._flush([Finished(failed)])
        return {}


def fenced_message(outcome: db.Outcome) -> dict[str, Any]:
    return {"job_id": outcome.job_id, "wanted": outcome.status.value}
