"""The worker's part in firing cron schedules: when to wake up, and one firing pass.

Every worker runs this; :func:`pgjobs.schedules.fire_due` makes each fire time yield one job
however many do. The keeper task drives it on the keeper's connection, so an idle worker pays
nothing more: the next fire time arrives with each tick (``worker_tick.sql``), a schedule
change with a notification on the control channel, and the worker sleeps until the earliest
of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from pgjobs import schedules
from pgjobs.log import get_logger


class Scheduler:
    def __init__(self, schema: str, declared: Sequence[schedules.Schedule]) -> None:
        self.schema = schema
        self.declared = list(declared)
        self.log = get_logger("pgjobs.schedules")
        #: Earliest fire time of an active schedule, as last read (None: none known).
        self.next_fire_at: datetime | None = None
        #: Schedules changed (or never read): read them at the next keeper turn.
        self.dirty = True
        self._synced = False
        #: The database's clock minus this machine's, as of the last pass: fire times follow
        #: the database (a worker whose clock is behind must not wake, find nothing due, and
        #: wake again at once).
        self._clock_offset = 0.0

    def changed(self) -> None:
        self.dirty = True

    def learn(self, next_fire_at: datetime | None) -> None:
        """The next fire time as the tick saw it (a change this worker missed shows here)."""
        if not self.dirty:
            self.next_fire_at = next_fire_at

    def seconds_until_due(self) -> float | None:
        """Seconds until a pass is due (0: now), or None when nothing is scheduled."""
        if self.dirty:
            return 0.0
        if self.next_fire_at is None:
            return None
        return max(0.0, self.next_fire_at.timestamp() - (time.time() + self._clock_offset))

    async def run_pass(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Store the code's schedules (first pass), fire what is due, learn the next time."""
        self.dirty = False  # a change notified during the pass sets it again
        try:
            if not self._synced:
                await schedules.sync_declared(conn, self.schema, self.declared)
                self._synced = True
            done = await schedules.fire_due(conn, self.schema)
        except BaseException:
            self.dirty = True
            raise
        self.next_fire_at = done.next_fire_at
        self._clock_offset = done.now.timestamp() - time.time()
        for fired in done.fired:
            self.log.info(
                "schedule.fired", schedule=fired.schedule, job_id=fired.job_id,
                fire_at=fired.fire_at.isoformat(),
            )  # fmt: skip
        if done.skipped:
            self.log.info("schedule.skipped", fire_times=done.skipped)
