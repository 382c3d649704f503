"""Listing and statistics for operators (CLI, HTTP API, dashboard). Not the hot path: these
queries favour clarity, and say in their docstrings what they cost on a big table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgjobs import validation
from pgjobs.errors import InvalidInput
from pgjobs.types import JobRecord, JobStatus

LIST_LIMIT_DEFAULT = 20
LIST_LIMIT_MAX = 10_000


@dataclass(frozen=True)
class JobFilter:
    """Which jobs: every given field must match."""

    statuses: Sequence[JobStatus] = ()
    queue: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if self.queue is not None:
            validation.queue_name(self.queue)
        if self.task is not None:
            validation.task_name(self.task)

    def where(self) -> sql.Composable:
        clauses: list[sql.Composable] = [sql.SQL("true")]
        if self.statuses:
            clauses.append(
                sql.SQL("j.status = ANY({})").format(sql.Literal([s.value for s in self.statuses]))
            )
        if self.queue is not None:
            clauses.append(sql.SQL("j.queue = {}").format(sql.Literal(self.queue)))
        if self.task is not None:
            clauses.append(sql.SQL("j.task = {}").format(sql.Literal(self.task)))
        return sql.SQL(" AND ").join(clauses)


def parse_statuses(text: str | None) -> tuple[JobStatus, ...]:
    """``"failed,cancelled"`` -> statuses; a clear error for an unknown one."""
    if not text:
        return ()
    out = []
    for part in text.split(","):
        try:
            out.append(JobStatus(part.strip()))
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise InvalidInput(f"unknown status {part.strip()!r}: use one of {known}") from None
    return tuple(out)


def list_jobs(
    conn: psycopg.Connection[Any],
    schema: str,
    where: JobFilter,
    *,
    limit: int = LIST_LIMIT_DEFAULT,
    before_id: int | None = None,
) -> list[JobRecord]:
    """Newest first, keyset-paged by id (``before_id``): walks the primary key backwards, so
    a page costs about ``limit`` rows when the filter is not too selective."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidInput(f"limit {limit} is out of range: use 1..{LIST_LIMIT_MAX}")
    query = sql.SQL(
        "SELECT j.* FROM {}.jobs AS j WHERE {} AND j.id < {} ORDER BY j.id DESC LIMIT {}"
    ).format(
        sql.Identifier(schema),
        where.where(),
        sql.Literal(before_id if before_id is not None else 2**63 - 1),
        sql.Literal(limit),
    )
    with conn.cursor(row_factory=dict_row) as cursor:
        return [JobRecord.from_row(row) for row in cursor.execute(query)]


def matching_ids(conn: psycopg.Connection[Any], schema: str, where: JobFilter) -> list[int]:
    query = sql.SQL("SELECT j.id FROM {}.jobs AS j WHERE {} ORDER BY j.id").format(
        sql.Identifier(schema), where.where()
    )
    return [row[0] for row in conn.execute(query)]


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int
    scheduled: int
    blocked: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    oldest_ready_age: float | None
    paused: bool
    concurrency_limit: int | None
    rate_limit: int | None
    rate_period_seconds: float | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


QUEUE_STATS = """
WITH counts AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.status = 'queued' AND j.blockers = 0 AND j.not_before <= now()) AS ready,
           count(*) FILTER (WHERE j.status = 'queued' AND j.blockers = 0 AND j.not_before > now()) AS scheduled,
           count(*) FILTER (WHERE j.status = 'queued' AND j.blockers > 0) AS blocked,
           count(*) FILTER (WHERE j.status = 'running') AS running,
           count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE j.status = 'failed') AS failed,
           count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled,
           extract(epoch FROM now() - min(j.not_before) FILTER (
               WHERE j.status = 'queued' AND j.blockers = 0 AND j.not_before <= now()))::float AS oldest_ready_age
      FROM {schema}.jobs AS j
     GROUP BY j.queue
)
SELECT coalesce(c.queue, q.name) AS name,
       coalesce(c.ready, 0) AS ready, coalesce(c.scheduled, 0) AS scheduled,
       coalesce(c.blocked, 0) AS blocked, coalesce(c.running, 0) AS running,
       coalesce(c.succeeded, 0) AS succeeded, coalesce(c.failed, 0) AS failed,
       coalesce(c.cancelled, 0) AS cancelled, c.oldest_ready_age,
       coalesce(q.paused, false) AS paused, q.concurrency_limit, q.rate_limit,
       extract(epoch FROM q.rate_period)::float AS rate_period_seconds
  FROM counts AS c
  FULL JOIN {schema}.queues AS q ON q.name = c.queue
 ORDER BY 1
"""


def queue_stats(conn: psycopg.Connection[Any], schema: str) -> list[QueueStats]:
    """Per queue: counts by state, age of the oldest ready job, pause and limits.

    One pass over the jobs table (a few hundred milliseconds per million rows kept): fine for
    a command, not for something polled every second (use ``backlog()`` for that).
    """
    query = sql.SQL(QUEUE_STATS).format(schema=sql.Identifier(schema))
    with conn.cursor(row_factory=dict_row) as cursor:
        return [QueueStats(**row) for row in cursor.execute(query)]


TREE_DEPTH_MAX = 100
TREE_SIZE_MAX = 1000

_TREE = """
WITH RECURSIVE up(id, parent_id, depth) AS (
    SELECT j.id, j.parent_id, 0 FROM {schema}.jobs AS j WHERE j.id = %(id)s
    UNION ALL
    SELECT p.id, p.parent_id, u.depth + 1
      FROM up AS u JOIN {schema}.jobs AS p ON p.id = u.parent_id
     WHERE u.depth < %(depth)s
),
root AS (SELECT u.id FROM up AS u ORDER BY u.depth DESC LIMIT 1),
down(id, depth) AS (
    SELECT r.id, 0 FROM root AS r
    UNION ALL
    SELECT c.id, d.depth + 1
      FROM down AS d JOIN {schema}.jobs AS c ON c.parent_id = d.id
     WHERE d.depth < %(depth)s
)
SELECT j.*, d.depth FROM (SELECT DISTINCT ON (id) id, depth FROM down ORDER BY id, depth) AS d
  JOIN {schema}.jobs AS j ON j.id = d.id
 ORDER BY j.id
 LIMIT %(size)s
"""


@dataclass(frozen=True)
class TreeNode:
    job: JobRecord
    depth: int
    children: list[TreeNode]


def job_tree(conn: psycopg.Connection[Any], schema: str, job_id: int) -> TreeNode | None:
    """The chain of ``job_id``: its oldest ancestor (by ``parent_id``) and every descendant,
    at most :data:`TREE_SIZE_MAX` jobs. Index lookups on the primary key and on parent_id."""
    query = sql.SQL(_TREE).format(schema=sql.Identifier(schema))
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            query, {"id": job_id, "depth": TREE_DEPTH_MAX, "size": TREE_SIZE_MAX}
        ).fetchall()
    if not rows:
        return None
    nodes = {row["id"]: TreeNode(JobRecord.from_row(row), row["depth"], []) for row in rows}
    root = min(nodes.values(), key=lambda n: n.depth)
    for node in nodes.values():
        parent = nodes.get(node.job.parent_id or 0)
        if parent is not None and node is not root:
            parent.children.append(node)
    return root
