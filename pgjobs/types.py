"""Job states and the job row as Python sees it."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any


class JobStatus(str, Enum):
    """The five states of a job (``docs/architecture.md`` draws the machine)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES

    def __str__(self) -> str:
        return self.value


FINISHED_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
UNFINISHED_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


@dataclass
class JobRecord:
    """One row of ``pgjobs.jobs``. Built from a dict row, ignoring columns this code does not
    know, so that a database migrated by a newer pgjobs (additive changes) still reads."""

    id: int
    queue: str
    task: str
    args: dict[str, Any]
    priority: int
    not_before: datetime
    status: JobStatus
    attempts: int
    max_attempts: int
    created_at: datetime
    lease_token: uuid.UUID | None = field(default=None, repr=False)
    lease_expires_at: datetime | None = None
    worker_id: uuid.UUID | None = None
    result: Any = None
    error: str | None = None
    progress: Decimal | None = None
    progress_message: str | None = None
    dedupe_key: str | None = None
    lock_key: str | None = None
    callback_url: str | None = None
    parent_id: int | None = None
    blockers: int = 0
    cancel_requested_at: datetime | None = None
    version: int = 0
    meta: dict[str, Any] | None = None
    callback_attempts: int = 0
    callback_error: str | None = None
    callback_delivered_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobRecord:
        known = cls.__dataclass_fields__
        values = {k: v for k, v in row.items() if k in known}
        values["status"] = JobStatus(values["status"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """A stable JSON form (ISO timestamps), as ``--json`` and the HTTP API show it."""
        out: dict[str, Any] = {}
        # The record's own fields, not a subclass's (a Job's App and dedupe flag are not the
        # job's data).
        for f in dataclasses.fields(JobRecord):
            if f.name == "lease_token":
                continue
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, uuid.UUID):
                value = str(value)
            elif isinstance(value, Decimal):
                value = float(value)
            elif isinstance(value, JobStatus):
                value = value.value
            out[f.name] = value
        return out
