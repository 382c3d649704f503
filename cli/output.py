"""Output of the commands: stable JSON with ``--json``, aligned tables on a terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import click

from pgjobs.admin import TreeNode
from pgjobs.durations import format_duration
from pgjobs.types import JobRecord, JobStatus


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned columns separated by two spaces (numbers right-aligned)."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str], header: bool = False) -> str:
        parts = [
            v.rjust(w) if numeric[i] and not header else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    click.echo(line(list(headers), header=True))
    for row in cells:
        click.echo(line(row))


def ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    delta = datetime.now(timezone.utc) - moment
    text = format_duration(abs(delta))
    return f"{text} ago" if delta.total_seconds() >= 0 else f"in {text}"


def job_summary(job: JobRecord) -> list[tuple[str, Any]]:
    """The fields ``pgjobs status`` shows, in reading order."""
    fields: list[tuple[str, Any]] = [
        ("id", job.id),
        ("task", job.task),
        (
            "status",
            job.status.value
            + (
                " (cancel requested)" if job.cancel_requested_at and not job.status.finished else ""
            ),
        ),
        ("queue", job.queue),
        ("priority", job.priority),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("args", json.dumps(job.args, sort_keys=True)),
        ("created", f"{job.created_at.isoformat()} ({ago(job.created_at)})"),
        ("not before", f"{job.not_before.isoformat()} ({ago(job.not_before)})"),
    ]
    if job.started_at:
        fields.append(("started", f"{job.started_at.isoformat()} ({ago(job.started_at)})"))
    if job.finished_at:
        fields.append(("finished", f"{job.finished_at.isoformat()} ({ago(job.finished_at)})"))
    if job.progress is not None:
        fields.append(
            (
                "progress",
                f"{float(job.progress):g}%"
                + (f" {job.progress_message}" if job.progress_message else ""),
            )
        )
    if job.dedupe_key:
        fields.append(("dedupe key", job.dedupe_key))
    if job.parent_id:
        fields.append(("parent", job.parent_id))
    if job.callback_url:
        fields.append(("callback", job.callback_url))
    if job.result is not None:
        fields.append(("result", json.dumps(job.result, sort_keys=True)))
    if job.error:
        fields.append(("error", job.error))
    return fields


class ProgressLine:
    """One status line on a terminal, redrawn in place while a job runs (``pgjobs wait``).

    Drawn on stderr so that stdout keeps only the result for scripts, and only when stderr is
    a terminal: in a log file, carriage returns would be noise.
    """

    def __init__(self, stream: Any, width: int = 100) -> None:
        self.stream = stream
        self.width = width
        self.drawn = ""

    @staticmethod
    def describe(job: JobRecord) -> str:
        parts = [f"job {job.id} ({job.task})", job.status.value]
        if job.attempts > 1 or (job.status.value == "queued" and job.attempts > 0):
            parts.append(f"attempt {job.attempts}/{job.max_attempts}")
        if job.progress is not None:
            progress = f"{float(job.progress):g}%"
            if job.progress_message:
                progress += f" {job.progress_message}"
            parts.append(progress)
        return " · ".join(parts)

    def update(self, job: JobRecord) -> None:
        text = self.describe(job)[: self.width]
        if text != self.drawn:
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()
            self.drawn = text

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = ""


def _duration(job: JobRecord) -> str:
    if job.started_at is None:
        return ""
    end = job.finished_at or datetime.now(timezone.utc)
    return format_duration(end - job.started_at)


def _tree_line(job: JobRecord, marked: bool) -> str:
    parts = [f"#{job.id}", job.task, job.status.value]
    duration = _duration(job)
    if duration:
        parts.append(duration)
    waits = (job.meta or {}).get("depends_on")
    if waits:
        parts.append("after " + ", ".join(f"#{i}" for i in waits))
    if job.status is JobStatus.QUEUED and job.blockers:
        parts.append(f"(waiting for {job.blockers})")
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) and job.error:
        parts.append("- " + job.error.strip().splitlines()[-1][:100])
    line = "  ".join(parts)
    return f"{line}   <-" if marked else line


def tree_lines(root: TreeNode, marked: int) -> list[str]:
    """The chain drawn with box characters, the asked-for job marked with ``<-``."""
    lines = [_tree_line(root.job, root.job.id == marked)]

    def walk(node: TreeNode, prefix: str) -> None:
        for index, child in enumerate(node.children):
            last = index == len(node.children) - 1
            lines.append(
                prefix + ("└─ " if last else "├─ ") + _tree_line(child.job, child.job.id == marked)
            )
            walk(child, prefix + ("   " if last else "│  "))

    walk(root, "")
    return lines
