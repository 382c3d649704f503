"""Request and response bodies of the HTTP API.

FastAPI validates requests against these models and derives ``/openapi.json`` from them: one
declaration gives both. Types are strict (``"5"`` is not a priority, ``true`` is not a
number) and unknown fields are refused, so a typo in a field name is a 422 rather than a
silently ignored option. Ranges come from :mod:`pgjobs.validation`; the rules pydantic
cannot express (names, durations, URLs, sizes) are checked by the same code as every other
producer, which raises :class:`pgjobs.InvalidInput` (a 422 as well).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pgjobs import validation
from pgjobs.encoding import string_problem
from pgjobs.types import JobRecord, JobStatus


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


#: Timestamps leave the API in ISO 8601, in UTC (``2026-01-31T08:30:00.123456+00:00``).
Timestamp = Annotated[datetime, PlainSerializer(_iso_utc, return_type=str)]

JobId = Annotated[int, Field(ge=1, le=2**63 - 1)]


#: How deep args and meta may nest (objects and arrays, the field itself being level 1):
#: answers carry them inside the job, and pydantic renders no JSON deeper than ~250 levels.
JSON_DEPTH_MAX = 100
TOO_DEEP = f"nested deeper than {JSON_DEPTH_MAX} levels of objects and arrays"


class JobCreate(BaseModel):
    """``POST /jobs``: a job to enqueue. Only ``task`` is required; what is left out comes
    from the task's defaults published by its workers, else queue ``default``, priority 0,
    3 attempts."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"task": "emails.send", "args": {"to": "a@example.com"}, "queue": "emails"}
            ]
        },
    )

    task: StrictStr = Field(
        description=f"The task name: 1-{validation.TASK_NAME_MAX} characters among "
        f"{validation.NAME_CHARACTERS}."
    )
    args: dict[str, Any] | None = Field(
        default=None,
        description="Keyword arguments of the handler (a JSON object, at most "
        f"{JSON_DEPTH_MAX} levels deep).",
    )
    queue: StrictStr | None = Field(default=None, max_length=validation.QUEUE_NAME_MAX)
    priority: StrictInt | None = Field(
        default=None,
        ge=validation.PRIORITY_MIN,
        le=validation.PRIORITY_MAX,
        description="Higher runs first.",
    )
    delay: StrictStr | StrictInt | StrictFloat | None = Field(
        default=None,
        description='Start after this long: seconds, or "30s", "5m", "2h", "1d". '
        "Counted from the database's clock. Not with not_before.",
    )
    not_before: StrictStr | None = Field(
        default=None,
        description="Earliest start, ISO 8601 (without an offset: UTC). Not with delay.",
        json_schema_extra={"format": "date-time"},
    )
    max_attempts: StrictInt | None = Field(
        default=None, ge=validation.MAX_ATTEMPTS_MIN, le=validation.MAX_ATTEMPTS_MAX
    )
    dedupe_key: StrictStr | None = Field(
        default=None,
        max_length=validation.KEY_MAX,
        description="At most one unfinished job per key: a colliding request gets the job "
        "holding the key (200, existing: true).",
    )
    dedupe_for: StrictStr | StrictInt | StrictFloat | None = Field(
        default=None,
        description="With dedupe_key: no second job of the key within this long, finished or not.",
    )
    dedupe_mode: Literal["skip", "replace"] | None = Field(
        default=None,
        description="With dedupe_key: replace = a holder that has not started takes these "
        "args and start time (debounce).",
    )
    lock_key: StrictStr | None = Field(
        default=None,
        max_length=validation.KEY_MAX,
        description="At most one job with this key runs at a time, in enqueue order.",
    )
    depends_on: list[StrictInt] | None = Field(
        default=None, description="Start only after these jobs succeed (cancelled if one fails)."
    )
    callback_url: StrictStr | None = Field(
        default=None,
        max_length=validation.URL_MAX,
        description="POSTed the job as JSON when it ends (http or https).",
    )
    meta: dict[str, Any] | None = Field(
        default=None,
        description="A JSON object kept with the job (trace context...), at most "
        f"{JSON_DEPTH_MAX} levels deep.",
    )

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """Values the types above accept but a job cannot hold, or an answer cannot carry;
        each was a 500. PostgreSQL's text and jsonb take UTF-8 without NUL, and JSON can
        carry both ``"\\u0000"`` and lone UTF-16 surrogates (``"\\ud800"``, which Python
        decodes into a string with no UTF-8 form): in a dedupe or lock key, args or meta,
        they failed in the database. Args nested past :data:`JSON_DEPTH_MAX` were stored,
        then every answer carrying the job (GET, pages of GET /jobs) failed to render."""
        found = _unstorable(value)
        if found is not None:
            where, reason = found
            raise PydanticCustomError(
                "value_unstorable",
                "{where}{reason}",
                {"where": f"at {_printable(where)}: " if where else "", "reason": reason},
            )
        return value


def _unstorable(value: Any) -> tuple[str, str] | None:
    """Where in a field's value (a path below the field, ``""`` for the field itself) a
    string or an object key cannot be stored, or the value nests too deep, and why; None if
    all is well. A loop, not a recursion: the nesting must not exhaust the stack."""
    pending: list[tuple[str, Any, int]] = [("", value, 1)]
    while pending:
        path, item, depth = pending.pop()
        if isinstance(item, str) and (reason := string_problem(item)):
            return path, reason
        if isinstance(item, dict | list) and depth > JSON_DEPTH_MAX:
            return "", TOO_DEEP
        if isinstance(item, dict):
            for key, child in item.items():
                below = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and (reason := string_problem(key)):
                    return below, reason
                pending.append((below, child, depth + 1))
        elif isinstance(item, list):
            pending.extend((f"{path}[{i}]", child, depth + 1) for i, child in enumerate(item))
    return None


def _printable(path: str) -> str:
    """A path for a one-line message: keys may hold control characters or surrogates."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in path)


J = TypeVar("J", bound="Job")


class Job(BaseModel):
    """A job as the database holds it (``pgjobs.jobs``), timestamps in UTC."""

    id: int
    task: str
    queue: str
    status: JobStatus
    args: dict[str, Any]
    priority: int
    attempts: int
    max_attempts: int
    not_before: Timestamp
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    progress: float | None = Field(default=None, description="Percent done, 0-100.")
    progress_message: str | None = None
    result: Any = Field(default=None, description="The handler's return value (JSON).")
    error: str | None = Field(default=None, description="The last error, with its traceback.")
    dedupe_key: str | None = None
    lock_key: str | None = None
    callback_url: str | None = None
    parent_id: int | None = Field(default=None, description="The job that enqueued this one.")
    meta: dict[str, Any] | None = None
    blockers: int = Field(
        default=0, description="Unfinished dependencies (or lock key holder) it waits for."
    )
    cancel_requested_at: Timestamp | None = None
    lease_expires_at: Timestamp | None = None
    worker_id: str | None = None
    version: int = Field(
        default=0, description="Bumped at each status or progress change (the SSE event id)."
    )
    callback_attempts: int = 0
    callback_error: str | None = None
    callback_delivered_at: Timestamp | None = None
    callback_delivery: dict[str, Any] | None = Field(
        default=None,
        description="For a job with a callback_url: {url, state, deliveries}, where its "
        "callbacks stand (pgjobs.callbacks).",
    )

    @classmethod
    def of(cls: type[J], record: JobRecord, **extra: Any) -> J:
        values = {name: getattr(record, name) for name in cls.model_fields if hasattr(record, name)}
        if isinstance(values.get("progress"), Decimal):
            values["progress"] = float(values["progress"])
        if values.get("worker_id") is not None:
            values["worker_id"] = str(values["worker_id"])
        values.update(extra)
        return cls(**values)


class JobCreated(Job):
    """The answer to ``POST /jobs``: the job, and whether it already existed (an
    Idempotency-Key replay or a dedupe key held: status 200) or was just enqueued (202)."""

    existing: bool = False


class JobPage(BaseModel):
    jobs: list[Job]
    next: str | None = Field(
        default=None,
        description="The URL of the next page (older jobs), absent on the last page.",
    )


class Queue(BaseModel):
    name: str
    ready: int = Field(description="Queued, due now, not blocked.")
    scheduled: int = Field(description="Queued, due later.")
    blocked: int = Field(description="Queued, waiting for dependencies or a lock key.")
    running: int
    succeeded: int
    failed: int
    cancelled: int
    oldest_ready_age: float | None = Field(
        default=None, description="Seconds the oldest ready job has waited."
    )
    paused: bool
    concurrency_limit: int | None = None
    rate_limit: int | None = None
    rate_period_seconds: float | None = None


class QueueList(BaseModel):
    queues: list[Queue]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unavailable"]


class Error(BaseModel):
    """Every error answer (4xx, 5xx)."""

    error: str = Field(description="A stable code: invalid_input, not_found, conflict...")
    message: str = Field(description="One line saying what is wrong.")
    details: list[dict[str, str]] | None = Field(
        default=None, description="For invalid input: one {field, message} per problem."
    )
