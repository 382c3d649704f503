"""claim() announces the jobs it starts on the events channel, while someone watches.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Before, a job's start (``queued`` -> ``running``) was the one status change nobody announced:
an SSE stream (``GET /jobs/{id}/events``) or ``Job.wait(on_update=...)`` saw it only at its
next safety-net recheck or with the job's first progress report. Now the claim statement
itself can send ``{"jobs": [[id, "running", version], ...]}`` on ``<schema>_events``, the
payload every other status change already uses: a hundred jobs to a notification, one
notification per claim statement, never one per job, none for a claim that started nothing.

**Only while someone watches.** ``NOTIFY`` serialises the commits that carry one, across the
cluster: announcing every claim cost a drain of no-op jobs 3.5 % with one worker process and
10 % with two (``pgjobs bench --only drain``, interleaved), to tell nobody in the common
case. So watchers say they are there: ``pgjobs.watch_starts(seconds)`` (SECURITY DEFINER, so a
producer role may call it; it writes only when less than half of the time is left) keeps
the settings row ``starts_watched_until`` (epoch seconds, a JSON number) ahead of the clock; the API's SSE
hub calls it while it has open streams, ``Job.wait(on_update=...)`` while it waits. claim()
reads the row (a primary-key lookup, in the statement that already chose between its lean
and full statements) and runs its announcing statements only before that time; otherwise
it runs 0003's own.

Each of the two ``RETURN QUERY`` statements gets an announcing twin, run instead of it while
watched: its ``RETURNING`` also yields ``version``, and a ``told`` CTE (referenced from the
final ``WHERE`` so that PostgreSQL runs it) sends the notifications. The payload is built by concatenating integers, not with
``json_build_array`` per row (about a point cheaper). The function keeps its signature and
result columns, so code that knows only 0001-0004 calls it unchanged. Additive; the
downgrade restores 0003's function and drops the rest.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
#: See script.py.mako: code older than a breaking revision refuses to run against it.
breaking = False

#: What 0003's claim() returns (both branches), and what it returns now.
RETURNING_0003 = "j.parent_id, j.meta\n"
RETURNING_0005 = "j.parent_id, j.meta, j.version\n"
FINAL_0003 = "SELECT * FROM started ORDER BY priority DESC, not_before, id;"
FINAL_0005 = """,
told AS (
    SELECT pg_notify('__S___events',
                     '{"jobs":[' || string_agg('[' || c.id || ',"running",' || c.version || ']', ',') || ']}')
      FROM (SELECT s.id, s.version, (row_number() OVER () - 1) / 100 AS chunk
              FROM started AS s) AS c
     GROUP BY c.chunk
)
SELECT s.id, s.queue, s.task, s.args, s.priority, s.attempts, s.max_attempts,
       s.lease_token, s.lease_expires_at, s.not_before, s.created_at, s.parent_id, s.meta
  FROM started AS s
 WHERE (SELECT count(*) FROM told) >= 0
 ORDER BY s.priority DESC, s.not_before, s.id;"""


#: The variables, and where they are read: the guard that chooses the lean statement reads
#: the flag too, in the same statement. Every PL/pgSQL statement that is not a simple
#: expression starts the executor, which cost every claim about 20 µs when the flag had a
#: statement of its own (measured).
DECLARE_0003 = "DECLARE\n    locked_queues text[];\nBEGIN"
DECLARE_0005 = "DECLARE\n    locked_queues text[];\n    lean boolean;\n    announce boolean;\nBEGIN"
GUARD_0003 = """    IF NOT EXISTS (SELECT 1 FROM __S__.queues AS q
                    WHERE (q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL)
                      AND (served_queues IS NULL OR q.name = ANY (served_queues))) THEN"""
GUARD_0005 = """    -- Announce the starts only while someone watches (see watch_starts()).
    SELECT NOT EXISTS (SELECT 1 FROM __S__.queues AS q
                        WHERE (q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL)
                          AND (served_queues IS NULL OR q.name = ANY (served_queues))),
           EXISTS (SELECT 1 FROM __S__.settings AS w
                    WHERE w.name = 'starts_watched_until'
                      AND w.value::double precision > extract(epoch FROM now()))
      INTO lean, announce;
    IF lean THEN"""

UPGRADE = r"""
INSERT INTO __S__.settings (name, value) VALUES ('starts_watched_until', '0')
    ON CONFLICT (name) DO NOTHING;
CREATE FUNCTION __S__.watch_starts(seconds double precision DEFAULT 60) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    UPDATE __S__.settings
       SET value = to_jsonb(extract(epoch FROM now()) + least(greatest(seconds, 0), 3600))
     WHERE name = 'starts_watched_until'
       AND value::double precision < extract(epoch FROM now()) + least(greatest(seconds, 0), 3600) / 2;
$fn$;
COMMENT ON FUNCTION __S__.watch_starts(double precision) IS
    'pgjobs: have claims announce the jobs they start for the next SECONDS (at most 3600): called by whoever follows jobs live (SSE, wait)';
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS __S__.watch_starts(double precision);
DELETE FROM __S__.settings WHERE name = 'starts_watched_until';
"""


def _announced(statement: str) -> str:
    """One of 0003's claim statements, with its starts announced."""
    return statement.replace(RETURNING_0003, RETURNING_0005).replace(FINAL_0003, FINAL_0005)


def _claim_0005(claim_0003: str) -> str:
    """0003's claim() with its starts announced while watched. Each of its two statements
    becomes ``IF announce THEN <statement, announcing> ELSE <statement, as in 0003> END IF``:
    a CTE cut by a one-time filter still cost an unwatched claim about 35 µs (+9 % for one
    job, measured), where an ``IF`` costs nothing."""
    for old in (RETURNING_0003, FINAL_0003):
        assert claim_0003.count(old) == 2, f"0003's claim() is not what 0005 expects: {old!r}"
    for old in (DECLARE_0003, GUARD_0003):
        assert claim_0003.count(old) == 1, f"0003's claim() is not what 0005 expects: {old!r}"
    assert claim_0003.count("RETURN QUERY") == 2
    text = claim_0003.replace(DECLARE_0003, DECLARE_0005).replace(GUARD_0003, GUARD_0005)
    out, rest = [], text
    while "RETURN QUERY" in rest:
        before, after = rest.split("RETURN QUERY", 1)
        statement, rest = after.split(FINAL_0003, 1)
        statement += FINAL_0003
        out.append(
            f"{before}IF announce THEN\nRETURN QUERY{_announced(statement)}\n"
            f"ELSE\nRETURN QUERY{statement}\nEND IF;"
        )
    return "".join(out) + rest


def _load(filename: str, name: str) -> ModuleType:
    """An earlier migration's frozen file (migrations never import runtime code)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _claim_0003() -> str:
    """0003's ``CREATE OR REPLACE FUNCTION __S__.claim(...)``, built as 0003 builds it."""
    module = _load("0003_dependencies_and_lock_keys.py", "pgjobs_migration_0003")
    text: str = module._claim_0003(module._claim_0002())
    return text


def _render(template: str) -> str:
    schema = op.get_context().version_table_schema
    assert schema, "pgjobs migrations run with version_table_schema set to the pgjobs schema"
    return template.replace("__S__", schema)


def upgrade() -> None:
    op.execute(_render(UPGRADE))
    op.execute(_render(_claim_0005(_claim_0003())))


def downgrade() -> None:
    op.execute(_render(_claim_0003()))
    op.execute(_render(DOWNGRADE))
