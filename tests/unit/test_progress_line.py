"""The progress line ``pgjobs wait`` draws on a terminal."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from decimal import Decimal

from pgjobs.cli.output import ProgressLine

from pgjobs.types import JobRecord, JobStatus

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def record(**changes: object) -> JobRecord:
    values: dict[str, object] = {
        "id": 7, "queue": "default", "task": "images.resize", "args": {}, "priority": 0,
        "not_before": NOW, "status": JobStatus.RUNNING, "attempts": 1, "max_attempts": 3,
        "created_at": NOW,
    }  # fmt: skip
    values.update(changes)
    return JobRecord(**values)  # type: ignore[arg-type]


def test_describes_status_progress_and_retries() -> None:
    assert ProgressLine.describe(record()) == "job 7 (images.resize) · running"
    assert (
        ProgressLine.describe(record(progress=Decimal("42.5"), progress_message="frames"))
        == "job 7 (images.resize) · running · 42.5% frames"
    )
    assert (
        ProgressLine.describe(record(attempts=2)) == "job 7 (images.resize) · running · attempt 2/3"
    )
    assert (
        ProgressLine.describe(record(status=JobStatus.QUEUED, attempts=1))
        == "job 7 (images.resize) · queued · attempt 1/3"
    )


def test_redraws_in_place_only_on_change_and_clears() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream)
    line.update(record(progress=Decimal(10)))
    line.update(record(progress=Decimal(10)))
    line.update(record(progress=Decimal(20)))
    assert stream.getvalue().count("\r\x1b[K") == 2
    line.clear()
    assert stream.getvalue().endswith("20% \r\x1b[K".replace("% ", "%"))
    line.clear()  # nothing drawn: nothing written
    assert stream.getvalue().count("\r\x1b[K") == 3
