"""Completion callbacks: what is sent, how it is signed, and where a delivery stands.

A job enqueued with a ``callback_url`` gets one POST of its final JSON per ending (succeeded,
failed, cancelled). The delivery is itself a job: migration 0004's trigger inserts a job of
task :data:`CALLBACK_TASK` in the internal queue :data:`INTERNAL_QUEUE`, with ``parent_id``
set to the job, in the very transaction that records the ending, whatever ended it (a worker,
``pgjobs jobs cancel``, the rescue of an expired lease, plain SQL). Every worker serves that
queue and runs the delivery (``pgjobs/worker/builtins.py``) with pgjobs' own retries and
backoff, so no ending is missed, and none is sent twice.

This module is light on purpose (no httpx): receivers import :func:`verify_signature` from
``pgjobs``, and the HTTP API reads :func:`delivery`.

The signature (``Pgjobs-Signature`` header)::

    t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed by PGJOBS_WEBHOOK_SECRET>

The timestamp is signed with the body, so a captured request cannot be replayed once it is
older than the receiver's tolerance; each attempt is signed afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgjobs.backoff import RetryPolicy
from pgjobs.types import JobRecord

#: The task of a delivery job, and the queue every worker serves whatever its ``-q``. Kept
#: equal to the literals of migration 0004 (a test checks).
CALLBACK_TASK = "pgjobs.callback"
INTERNAL_QUEUE = "pgjobs.internal"
#: Above the default priority 0: a backlog of ordinary jobs must not delay the notice that
#: a job ended; below the top of the range, so that urgent work can still go first.
CALLBACK_PRIORITY = 100
#: With :data:`RETRY_POLICY`: about two and a half hours of retries before giving up.
CALLBACK_MAX_ATTEMPTS = 12
#: Backoff between attempts (5 s, 10 s, 20 s ... capped at an hour, jittered).
RETRY_POLICY = RetryPolicy.of(base="5s", maximum="1h")
#: One attempt: connect, send, and read the answer within this many seconds.
TIMEOUT = 10.0

WEBHOOK_SECRET_ENV = "PGJOBS_WEBHOOK_SECRET"
SIGNATURE_HEADER = "Pgjobs-Signature"
#: The delivery job's id: the same for every attempt of one delivery, different for every
#: ending. Receivers use it to drop a repeated attempt (delivery is at least once: an answer
#: lost on the way back makes the worker try again).
DELIVERY_HEADER = "Pgjobs-Delivery"
SIGNATURE_TOLERANCE_DEFAULT = 300
#: Fields of the job's JSON left out of the payload: they describe the delivery itself and
#: change from one attempt to the next.
PAYLOAD_OMITS = frozenset({"callback_attempts", "callback_error", "callback_delivered_at"})
#: Fields of the ending recorded by the trigger, used when the job has moved on since (it was
#: retried, or even ended again) so that each delivery reports its own ending.
ENDING_FIELDS = ("status", "version", "attempts", "max_attempts", "started_at", "finished_at")


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Pgjobs-Signature`` header value for ``body`` sent at ``timestamp`` (now)."""
    at = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={at},v1={_mac(secret, at, body)}"


def verify_signature(
    secret: str | bytes,
    header: str | None,
    body: bytes | str,
    *,
    tolerance: float = SIGNATURE_TOLERANCE_DEFAULT,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (the ``Pgjobs-Signature`` value) signs ``body`` with ``secret``,
    at a time within ``tolerance`` seconds of ``now`` (either side: clocks drift).

    ``body`` must be the raw bytes received, before any JSON parsing: a re-encoded body
    differs by a space and fails. A missing or malformed header, a wrong secret, a tampered
    body and a stale timestamp all return False; the comparison takes constant time. During a
    secret rotation, accept either: ``verify_signature(new, ...) or verify_signature(old, ...)``.

    ::

        raw = await request.body()
        if not pgjobs.verify_signature(SECRET, request.headers.get("Pgjobs-Signature"), raw):
            return Response(status_code=401)
        job = json.loads(raw)
    """
    if not header or not isinstance(header, str):
        return False
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                return False
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, raw)
    # compare_digest on every candidate (no early exit): the time taken says nothing about
    # which one, if any, matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.lower().encode())
    return matched


def payload(record: JobRecord, ending: Mapping[str, Any] | None = None) -> bytes:
    """The body POSTed for one ending: the job's JSON as ``pgjobs status --json`` and the
    HTTP API show it, minus the delivery's own fields, as UTF-8 bytes (what is signed).

    It is built from the row when the delivery runs: the row is final then, and large
    results and errors are never copied into the delivery's arguments. If the job has moved
    on since this ending (``version`` changed: it was retried), the ending's own status,
    attempts, version and timestamps, recorded by the trigger, take precedence; the error and
    result are then the row's (a retry leaves the error in place and a failed job has no
    result, so this differs only if the job has already ended again)."""
    data = {k: v for k, v in record.to_json().items() if k not in PAYLOAD_OMITS}
    if ending is not None and ending.get("version") != record.version:
        for name in ENDING_FIELDS:
            if name in ending:
                data[name] = ending[name]
        data["lease_expires_at"] = None
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- where a job's callbacks stand --------------------------------------------------------

DeliveryState = Literal["pending", "sending", "retrying", "delivered", "failed", "cancelled"]


@dataclass(frozen=True)
class Delivery:
    """One callback: the POST of one ending of a job, retried until delivered or out of
    attempts. ``id`` is the delivery job's id (sent as the ``Pgjobs-Delivery`` header)."""

    id: int
    #: The ending it reports: succeeded, failed or cancelled.
    ending: str
    #: pending (not tried yet), sending (an attempt is under way), retrying (an attempt
    #: failed, another is due at ``next_attempt_at``), delivered, failed (out of attempts, or
    #: refused by the receiver with a 4xx), cancelled (someone cancelled the delivery job).
    state: DeliveryState
    attempts: int
    max_attempts: int
    #: The error of the last failed attempt, if any (kept after a later success).
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ending": self.ending,
            "state": self.state,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "last_error": self.last_error,
            "next_attempt_at": _iso(self.next_attempt_at),
            "delivered_at": _iso(self.delivered_at),
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True)
class CallbackState:
    """The callbacks of one job: its URL and one :class:`Delivery` per ending, oldest first
    (none while the job has not ended; two after it was retried and ended again)."""

    job_id: int
    url: str | None
    deliveries: tuple[Delivery, ...]

    @property
    def latest(self) -> Delivery | None:
        return self.deliveries[-1] if self.deliveries else None

    def to_json(self) -> dict[str, Any]:
        """A stable JSON form: what ``pgjobs status --json`` shows as ``callback_delivery``
        and what the HTTP API is meant to show in ``GET /jobs/{id}`` under the same key."""
        latest = self.latest
        return {
            "url": self.url,
            "state": latest.state if latest is not None else "waiting",
            "deliveries": [d.to_json() for d in self.deliveries],
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


_DELIVERY_QUERY = """
SELECT j.callback_url, c.id, c.status, c.attempts, c.max_attempts, c.error, c.not_before,
       c.finished_at, c.created_at, c.args #>> '{{ending,status}}' AS ending
  FROM {schema}.jobs AS j
  LEFT JOIN {schema}.jobs AS c ON c.parent_id = j.id AND c.task = %(task)s
 WHERE j.id = %(id)s
 ORDER BY c.id
"""


def _query(schema: str) -> sql.Composed:
    # jobs_parent_idx finds the deliveries: a handful of rows whatever the table's size.
    return sql.SQL(_DELIVERY_QUERY).format(schema=sql.Identifier(schema))


def _state(status: str, attempts: int) -> DeliveryState:
    if status == "queued":
        return "retrying" if attempts > 0 else "pending"
    if status == "running":
        return "sending"
    if status == "succeeded":
        return "delivered"
    return "failed" if status == "failed" else "cancelled"


def _shape(job_id: int, rows: list[dict[str, Any]]) -> CallbackState | None:
    if not rows:
        return None
    deliveries = tuple(
        Delivery(
            id=r["id"],
            ending=r["ending"] or "?",
            state=_state(r["status"], r["attempts"]),
            attempts=r["attempts"],
            max_attempts=r["max_attempts"],
            last_error=r["error"],
            next_attempt_at=r["not_before"] if r["status"] == "queued" else None,
            delivered_at=r["finished_at"] if r["status"] == "succeeded" else None,
            created_at=r["created_at"],
        )
        for r in rows
        if r["id"] is not None
    )
    url = rows[0]["callback_url"]
    if url is None and not deliveries:
        return None
    return CallbackState(job_id, url, deliveries)


def delivery(conn: psycopg.Connection[Any], schema: str, job_id: int) -> CallbackState | None:
    """Where the callbacks of job ``job_id`` stand; None when there is no such job or it has
    no callback URL. One indexed query; runs in ``conn``'s current transaction."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(_query(schema), {"id": job_id, "task": CALLBACK_TASK})
        return _shape(job_id, cursor.fetchall())


async def delivery_async(
    conn: psycopg.AsyncConnection[Any], schema: str, job_id: int
) -> CallbackState | None:
    """The async form of :func:`delivery`."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_query(schema), {"id": job_id, "task": CALLBACK_TASK})
        return _shape(job_id, await cursor.fetchall())
