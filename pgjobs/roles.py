"""Least-privilege database roles (``pgjobs grants``): what a worker, a producer and KEDA's
scaler need, and nothing more.

- **worker**: reads and writes pgjobs' tables (claims, outcomes, heartbeats, schedules,
  pruning, its own row), reads the schema revision. It cannot change the schema.
- **producer**: inserts jobs (and their dependency edges), reads them back (status, wait),
  and may update only what an enqueue in replace mode or with dependencies touches (the
  arguments and start of a job not yet started; the dependents flag). It cannot claim,
  complete, cancel or delete a job: ``status`` and the lease columns are not its to write.
- **keda**: runs ``backlog()``, ``demand()`` and ``oldest_ready_age()``, which read only the
  columns granted here: never a job's arguments, result or error (they may hold personal
  data). Its statements time out after a few seconds and it may hold only a few connections
  (KEDA's scaler has been known to leak connections with ScaledJobs).

The functions run with the caller's rights (none is ``SECURITY DEFINER``), so these grants
are the whole story. Run ``pgjobs grants`` again after a ``pgjobs migrate`` that adds a
table (the changelog says when).
"""

from __future__ import annotations

import re

from pgjobs.config import validate_schema
from pgjobs.errors import InvalidInput

KINDS = ("worker", "producer", "keda")

#: Every table of the schema but alembic_version (the worker's, read and write).
WORKER_TABLES = (
    "jobs", "job_dependencies", "queues", "schedules", "settings", "tasks", "workers",
)  # fmt: skip

#: What a producer's enqueue may change on an existing job (see enqueue_dedupe_window.sql
#: and enqueue_dependent.sql).
PRODUCER_UPDATABLE = ("args", "not_before", "version", "has_dependents")

#: The columns the scaler's functions read.
KEDA_JOB_COLUMNS = ("queue", "status", "blockers", "priority", "not_before", "lease_expires_at")
KEDA_QUEUE_COLUMNS = ("name", "paused")
KEDA_FUNCTIONS = ("backlog", "demand", "oldest_ready_age")

#: For the scaler's role: KEDA polls every few seconds; a query stuck longer is a problem to
#: surface, not to wait for, and a leak of connections must hit a wall.
KEDA_STATEMENT_TIMEOUT = "5s"
KEDA_CONNECTION_LIMIT = 5

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def role_name(value: str) -> str:
    """A role name that needs no quoting (lower-case letters, digits, _)."""
    if not _ROLE_NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid role name {value!r}: use up to 63 characters among a-z, 0-9 and _, "
            "not starting with a digit"
        )
    return value


def grant_statements(schema: str, kind: str, role: str) -> list[str]:
    """The SQL that gives ``role`` what a ``kind`` needs on the pgjobs ``schema`` (the role
    must exist; creating it, with its password, is the DBA's part)."""
    validate_schema(schema)
    role_name(role)
    if kind not in KINDS:
        raise InvalidInput(f"unknown role kind {kind!r}: use one of {', '.join(KINDS)}")
    s = schema
    common = [f"GRANT USAGE ON SCHEMA {s} TO {role}"]
    if kind == "worker":
        tables = ", ".join(f"{s}.{t}" for t in WORKER_TABLES)
        return [
            *common,
            f"GRANT SELECT ON {s}.alembic_version TO {role}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO {role}",
            f"GRANT USAGE ON SEQUENCE {s}.jobs_id_seq TO {role}",
            f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {role}",
        ]
    if kind == "producer":
        return [
            *common,
            f"GRANT SELECT ON {s}.alembic_version, {s}.settings, {s}.tasks TO {role}",
            f"GRANT SELECT, INSERT ON {s}.jobs, {s}.job_dependencies TO {role}",
            f"GRANT UPDATE ({', '.join(PRODUCER_UPDATABLE)}) ON {s}.jobs TO {role}",
            f"GRANT USAGE ON SEQUENCE {s}.jobs_id_seq TO {role}",
            f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {role}",
        ]
    functions = ", ".join(f"{s}.{f}(text[])" for f in KEDA_FUNCTIONS)
    return [
        *common,
        f"GRANT SELECT ({', '.join(KEDA_JOB_COLUMNS)}) ON {s}.jobs TO {role}",
        f"GRANT SELECT ({', '.join(KEDA_QUEUE_COLUMNS)}) ON {s}.queues TO {role}",
        f"GRANT EXECUTE ON FUNCTION {functions} TO {role}",
        f"ALTER ROLE {role} SET statement_timeout = '{KEDA_STATEMENT_TIMEOUT}'",
        f"ALTER ROLE {role} CONNECTION LIMIT {KEDA_CONNECTION_LIMIT}",
    ]


def script(schema: str, kind: str, role: str) -> str:
    """The statements as a script for psql, with the role's creation as a comment."""
    statements = grant_statements(schema, kind, role)
    header = [
        f"-- pgjobs grants for a {kind} role (schema {schema}); create the role first, e.g.:",
        f"--   CREATE ROLE {role} LOGIN PASSWORD '...';",
    ]
    return "\n".join([*header, *(f"{s};" for s in statements)]) + "\n"
