"""Job states and the job row (pgjobs.types): JobStatus, JobRecord.from_row (unknown columns
ignored) and JobRecord.to_json (ISO timestamps, float progress, no lease token)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pgjobs.types import FINISHED_STATUSES, UNFINISHED_STATUSES, JobRecord, JobStatus

CREATED = datetime(2026, 1, 31, 9, 30, tzinfo=timezone.utc)
LEASE = uuid.UUID("11111111-2222-3333-4444-555555555555")
WORKER = uuid.UUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")


def base_row(**extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 42,
        "queue": "emails",
        "task": "emails.send",
        "args": {"to": "a@example.com"},
        "priority": 5,
        "not_before": CREATED,
        "status": "queued",
        "attempts": 0,
        "max_attempts": 3,
        "created_at": CREATED,
    }
    row.update(extra)
    return row


# --- JobStatus ------------------------------------------------------------------------------------


def test_statuses_and_their_values() -> None:
    assert [s.value for s in JobStatus] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert str(JobStatus.RUNNING) == "running"
    assert f"{JobStatus.FAILED}" == "failed"
    assert JobStatus("cancelled") is JobStatus.CANCELLED
    assert JobStatus.QUEUED == "queued"


@pytest.mark.parametrize(
    ("status", "finished"),
    [
        (JobStatus.QUEUED, False),
        (JobStatus.RUNNING, False),
        (JobStatus.SUCCEEDED, True),
        (JobStatus.FAILED, True),
        (JobStatus.CANCELLED, True),
    ],
)
def test_finished(status: JobStatus, finished: bool) -> None:
    assert status.finished is finished
    assert (status in FINISHED_STATUSES) is finished
    assert (status in UNFINISHED_STATUSES) is not finished


def test_finished_and_unfinished_partition_the_states() -> None:
    assert set(JobStatus) == FINISHED_STATUSES | UNFINISHED_STATUSES
    assert not FINISHED_STATUSES & UNFINISHED_STATUSES


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="'paused' is not a valid JobStatus"):
        JobStatus("paused")


# --- from_row -------------------------------------------------------------------------------------


def test_from_row_builds_a_record_with_defaults() -> None:
    record = JobRecord.from_row(base_row())
    assert record.id == 42
    assert record.task == "emails.send"
    assert record.args == {"to": "a@example.com"}
    assert record.status is JobStatus.QUEUED
    assert record.lease_token is None
    assert (record.blockers, record.version, record.callback_attempts) == (0, 0, 0)
    assert (record.result, record.error, record.progress, record.meta) == (None, None, None, None)


def test_from_row_ignores_unknown_columns() -> None:
    row = base_row(added_by_a_newer_version="x", another_column=[1, 2])
    record = JobRecord.from_row(row)
    assert record == JobRecord.from_row(base_row())
    assert not hasattr(record, "added_by_a_newer_version")
    assert row["added_by_a_newer_version"] == "x"  # the row itself is left alone


def test_from_row_converts_the_status_text() -> None:
    for status in JobStatus:
        assert JobRecord.from_row(base_row(status=status.value)).status is status


def test_from_row_accepts_a_status_enum() -> None:
    assert JobRecord.from_row(base_row(status=JobStatus.FAILED)).status is JobStatus.FAILED


def test_from_row_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="is not a valid JobStatus"):
        JobRecord.from_row(base_row(status="paused"))


def test_from_row_keeps_every_known_column() -> None:
    full = base_row(
        status="running",
        lease_token=LEASE,
        lease_expires_at=CREATED + timedelta(minutes=5),
        worker_id=WORKER,
        result={"ok": True},
        error="boom",
        progress=Decimal("0.5"),
        progress_message="half",
        dedupe_key="d",
        lock_key="l",
        callback_url="https://example.com/h",
        parent_id=7,
        blockers=2,
        cancel_requested_at=CREATED,
        version=3,
        meta={"m": 1},
        callback_attempts=1,
        callback_error="503",
        callback_delivered_at=CREATED,
        started_at=CREATED,
        finished_at=None,
    )
    record = JobRecord.from_row(full)
    for name in (f.name for f in dataclasses.fields(JobRecord)):
        expected = JobStatus.RUNNING if name == "status" else full[name]
        assert getattr(record, name) == expected, name


def test_lease_token_is_not_in_repr() -> None:
    record = JobRecord.from_row(base_row(lease_token=LEASE))
    assert str(LEASE) not in repr(record)
    assert "lease_token" not in repr(record)


# --- to_json --------------------------------------------------------------------------------------


def test_to_json_is_plain_json_without_the_lease_token() -> None:
    record = JobRecord.from_row(
        base_row(
            status="running",
            lease_token=LEASE,
            lease_expires_at=CREATED + timedelta(minutes=5),
            worker_id=WORKER,
            progress=Decimal("0.25"),
            started_at=datetime(2026, 1, 31, 10, 0, tzinfo=timezone(timedelta(hours=1))),
        )
    )
    out = record.to_json()
    assert "lease_token" not in out
    assert str(LEASE) not in json.dumps(out)
    assert set(out) == {f.name for f in dataclasses.fields(JobRecord)} - {"lease_token"}
    assert out["status"] == "running"
    assert type(out["status"]) is str
    assert out["created_at"] == "2026-01-31T09:30:00+00:00"
    assert out["not_before"] == "2026-01-31T09:30:00+00:00"
    assert out["lease_expires_at"] == "2026-01-31T09:35:00+00:00"
    assert out["started_at"] == "2026-01-31T10:00:00+01:00"
    assert out["worker_id"] == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    assert out["progress"] == 0.25
    assert type(out["progress"]) is float
    assert out["finished_at"] is None
    assert out["args"] == {"to": "a@example.com"}
    assert (out["id"], out["priority"], out["attempts"]) == (42, 5, 0)
    # Everything survives a strict JSON round trip.
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_to_json_of_a_fresh_record_keeps_nones() -> None:
    out = JobRecord.from_row(base_row()).to_json()
    assert out["progress"] is None
    assert out["worker_id"] is None
    assert out["result"] is None
    assert out["status"] == "queued"


def test_to_json_leaves_nested_values_alone() -> None:
    out = JobRecord.from_row(base_row(result={"items": [1, 2]}, meta={"k": "v"})).to_json()
    assert out["result"] == {"items": [1, 2]}
    assert out["meta"] == {"k": "v"}


def test_a_jobs_json_is_the_records_fields_only() -> None:
    """A Job (what enqueue and wait return) carries its App and the dedupe flag: neither is
    part of the job's JSON (``pgjobs wait --json`` once printed the App's repr)."""
    import dataclasses

    import pgjobs
    from pgjobs.app import Job
    from pgjobs.types import JobRecord

    record = JobRecord(
        **{
            f.name: None
            for f in dataclasses.fields(JobRecord)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
    )
    job = Job(**{f.name: getattr(record, f.name) for f in dataclasses.fields(JobRecord)})
    job.app = pgjobs.App("host=nowhere")
    job.existing = True
    assert set(job.to_json()) == {f.name for f in dataclasses.fields(JobRecord)} - {"lease_token"}
