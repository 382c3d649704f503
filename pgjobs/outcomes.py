"""The outcomes a run can have, as :class:`~pgjobs.db.Outcome` values ready for the batched
finish statement. The rules of the job state machine live here, in one place:

- a handler returned: ``succeeded``, with its result;
- it raised: retried after the task's backoff while attempts remain, else ``failed``;
- it asked to be retried after a delay (a third party said 429): like an error, with that
  delay instead of the backoff;
- it asked to snooze: back in the queue after the delay, the attempt given back;
- it failed or cancelled on purpose: ended at once, whatever attempts remain;
- the worker shut down before it ended: handed back, due now, the attempt given back.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from pgjobs.backoff import DEFAULT_POLICY, RetryPolicy
from pgjobs.db import ClaimedJob, Outcome
from pgjobs.encoding import dumps
from pgjobs.errors import InvalidInput
from pgjobs.types import JobStatus


def succeeded(job: ClaimedJob, result: Any) -> Outcome:
    """The handler returned ``result`` (encoded as JSON; an unencodable result is an error)."""
    return Outcome(
        job.id, job.lease_token, JobStatus.SUCCEEDED, result=dumps(result, what="result")
    )


def errored(
    job: ClaimedJob,
    error: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    delay: timedelta | None = None,
    rng: random.Random | None = None,
) -> Outcome:
    """The run failed with ``error``: retry after ``delay`` (or the policy's backoff for this
    attempt) while attempts remain, else end ``failed``."""
    if job.attempts >= job.max_attempts:
        return Outcome(job.id, job.lease_token, JobStatus.FAILED, error=error)
    wait = delay if delay is not None else policy.delay(job.attempts, rng)
    return Outcome(job.id, job.lease_token, JobStatus.QUEUED, error=error, delay=wait)


def snoozed(job: ClaimedJob, delay: timedelta) -> Outcome:
    """Run again after ``delay`` without spending an attempt."""
    if delay.total_seconds() < 0:
        raise InvalidInput("snooze delay must not be negative")
    return Outcome(job.id, job.lease_token, JobStatus.QUEUED, delay=delay, refund=True)


def failed(job: ClaimedJob, error: str) -> Outcome:
    """End ``failed`` now: an error that retrying cannot fix."""
    return Outcome(job.id, job.lease_token, JobStatus.FAILED, error=error)


def cancelled(job: ClaimedJob, reason: str) -> Outcome:
    """End ``cancelled`` (a cancel request honoured, or the handler cancelling itself)."""
    return Outcome(job.id, job.lease_token, JobStatus.CANCELLED, error=reason)


def handed_back(
    job: ClaimedJob, reason: str = "handed back: the worker shut down before the job ended"
) -> Outcome:
    """Back to the queue, due now, the attempt not counted (graceful shutdown)."""
    return Outcome(
        job.id, job.lease_token, JobStatus.QUEUED, error=reason, delay=timedelta(0), refund=True
    )
