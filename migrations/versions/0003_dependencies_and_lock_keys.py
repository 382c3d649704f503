"""Dependencies between jobs, per-key serialisation (lock_key), dedupe windows and replace.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

A job counts in ``blockers`` the things it waits for; only jobs with ``blockers = 0`` are
claimable (the ready index says so since 0001). Two kinds of blockers:

- **Dependencies** (``pgjobs.job_dependencies``, filled at enqueue with ``depends_on``): one
  per unfinished dependency. When a dependency succeeds, its dependents lose a blocker; when
  it ends failed or cancelled, its queued dependents are cancelled with the reason, and
  theirs in turn (the trigger fires again for each).
- **Lock keys**: a job enqueued with a ``lock_key`` that an unfinished job holds waits
  (``lock_waiting``, one blocker) until the job before it with that key ends; then the oldest
  waiting job of the key is released. Enqueues and releases of one key are serialised by a
  transaction-level advisory lock (safe behind pgbouncer in transaction mode), so two jobs of
  one key never run at once and they run in enqueue order.

Both act when a job *ends*, whatever ends it (a worker's completion, a cancel, the rescue of
an expired lease, plain SQL): an ``AFTER UPDATE OF status`` trigger whose ``WHEN`` clause,
evaluated in C, lets every other job through at no cost. ``has_dependents`` marks the jobs
that have dependents, so the trigger does not look them up for every job.

**Dedupe windows and replace** (``dedupe_for``, ``dedupe_mode="replace"``): ``dedupe_holder``
returns the job holding a dedupe key (unfinished, or created within a window), after taking
a transaction-level advisory lock on the key, so that two producers of one key are
serialised and the second sees the first's job; an index on every job with a key serves the
window lookup.

**Limited queues without waiting**: claim() first locks the rows of the served queues that
have a limit, skipping those another claim holds, in a statement of its own; the claim
statement that follows (a fresh snapshot, after those locks) serves only the limited queues
it locked, and counts their running jobs and recent starts as committed by the previous
claimer. Before, the lock was taken inside the claim statement (whose snapshot could predate
the previous claimer's commit: two claims could exceed a limit), and workers sent a locking
statement first, which had to wait for other claims to stay correct. Now no claim waits and
none exceeds a limit; a worker whose claim found a limited queue busy claims from the
others.

**The claim's lean branch** (0002) now looks only at the served queues: a worker given
``-q emails`` runs the lean statement unless ``emails`` itself is paused or limited, instead
of running the full statement as soon as any queue anywhere is. (A worker serving every
queue still runs the full statement while any queue is controlled: a drain of an unlimited
queue, with another queue limited, ran at 17,956 jobs/s against 22,006 without the limit.)

Additive: code that knows only 0001/0002 never sets the new columns and sees no change.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
#: See script.py.mako: code older than a breaking revision refuses to run against it.
breaking = False

UPGRADE = r"""
ALTER TABLE __S__.jobs
    ADD COLUMN lock_waiting boolean NOT NULL DEFAULT false,
    ADD COLUMN has_dependents boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN __S__.jobs.lock_waiting IS
    'pgjobs: waits for the job before it with the same lock_key to end (counted in blockers)';
COMMENT ON COLUMN __S__.jobs.has_dependents IS
    'pgjobs: some job depends on this one (job_dependencies): its end updates them';

-- Jobs with a dedupe key, finished or not, newest first: the dedupe window looks here.
CREATE INDEX jobs_dedupe_recent_idx ON __S__.jobs (dedupe_key, id) WHERE dedupe_key IS NOT NULL;

-- The job holding a dedupe key: unfinished, or created less than `within` ago. The advisory
-- lock serialises producers of the key; the query (a fresh snapshot, this function being
-- volatile) then sees every job of the key committed before the lock was granted.
CREATE FUNCTION __S__.dedupe_holder(key text, within interval) RETURNS SETOF __S__.jobs
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('__S__.dedupe:' || key, 0));
    RETURN QUERY
    SELECT j.* FROM __S__.jobs AS j
     WHERE j.dedupe_key = key
       AND (j.status IN ('queued', 'running') OR j.created_at > now() - within)
     ORDER BY j.id DESC
     LIMIT 1;
END
$fn$;

-- Waiting jobs of a lock key, oldest first: the release takes the first.
CREATE INDEX jobs_lock_waiting_idx ON __S__.jobs (lock_key, id)
    WHERE lock_waiting AND status = 'queued';

CREATE FUNCTION __S__.lock_key_id(key text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT hashtextextended('__S__.lock_key:' || key, 0)
$fn$;

-- A job enqueued behind an unfinished job of the same key waits for it. The advisory lock
-- (transaction-level) serialises this check with other enqueues and releases of the key;
-- each statement of this volatile function takes a fresh snapshot, so the check sees every
-- job of the key committed before the lock was granted, and rows inserted earlier by the
-- same command (a bulk enqueue).
CREATE FUNCTION __S__.jobs_lock_key_wait() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock(__S__.lock_key_id(NEW.lock_key));
    IF EXISTS (SELECT 1 FROM __S__.jobs AS j
                WHERE j.lock_key = NEW.lock_key AND j.status IN ('queued', 'running')) THEN
        NEW.lock_waiting := true;
        NEW.blockers := NEW.blockers + 1;
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER jobs_lock_key_wait BEFORE INSERT ON __S__.jobs
    FOR EACH ROW
    WHEN (NEW.lock_key IS NOT NULL AND NEW.status = 'queued')
    EXECUTE FUNCTION __S__.jobs_lock_key_wait();

-- A job ended: release the next job of its lock key, and settle its dependents.
CREATE FUNCTION __S__.jobs_ended() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    told integer;
    ended json[];
BEGIN
    IF NEW.lock_key IS NOT NULL AND NOT OLD.lock_waiting THEN
        -- This job held the key (or was first in line): the oldest waiting job goes next.
        PERFORM pg_advisory_xact_lock(__S__.lock_key_id(NEW.lock_key));
        WITH released AS (
            UPDATE __S__.jobs AS j
               SET lock_waiting = false, blockers = j.blockers - 1
             WHERE j.id = (SELECT w.id FROM __S__.jobs AS w
                            WHERE w.lock_key = NEW.lock_key AND w.lock_waiting
                              AND w.status = 'queued'
                            ORDER BY w.id LIMIT 1)
            RETURNING j.queue, j.blockers
        )
        SELECT count(pg_notify('__S___jobs', json_build_object('queue', r.queue)::text))
          INTO told
          FROM released AS r
         WHERE r.blockers = 0;
    END IF;
    IF NEW.has_dependents THEN
        IF NEW.status = 'succeeded' THEN
            WITH freed AS (
                UPDATE __S__.jobs AS j
                   SET blockers = j.blockers - 1
                  FROM __S__.job_dependencies AS e
                 WHERE e.depends_on = NEW.id AND j.id = e.job_id AND j.status = 'queued'
             RETURNING j.queue, j.blockers
            )
            SELECT count(pg_notify('__S___jobs', json_build_object('queue', f.queue)::text))
              INTO told
              FROM (SELECT DISTINCT r.queue FROM freed AS r WHERE r.blockers = 0) AS f;
        ELSE
            -- Each cancelled dependent fires this trigger in turn: the cancel runs down the
            -- whole chain, and releases the lock keys those dependents held.
            WITH cancelled AS (
                UPDATE __S__.jobs AS j
                   SET status = 'cancelled',
                       error = format('cancelled: dependency %s ended %s', NEW.id, NEW.status),
                       finished_at = now(),
                       version = j.version + 1
                  FROM __S__.job_dependencies AS e
                 WHERE e.depends_on = NEW.id AND j.id = e.job_id AND j.status = 'queued'
             RETURNING j.id, j.status, j.version
            )
            SELECT array_agg(json_build_array(c.id, c.status, c.version))
              INTO ended
              FROM cancelled AS c;
            -- Announced 100 jobs per notification (payloads stay under 8000 bytes).
            FOR chunk_start IN 1 .. coalesce(cardinality(ended), 0) BY 100 LOOP
                PERFORM pg_notify('__S___events',
                                  json_build_object('jobs', to_json(ended[chunk_start:chunk_start + 99]))::text);
            END LOOP;
        END IF;
        DELETE FROM __S__.job_dependencies AS e WHERE e.depends_on = NEW.id;
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER jobs_ended AFTER UPDATE OF status ON __S__.jobs
    FOR EACH ROW
    WHEN (OLD.status IN ('queued', 'running')
          AND NEW.status IN ('succeeded', 'failed', 'cancelled')
          AND (NEW.lock_key IS NOT NULL OR NEW.has_dependents))
    EXECUTE FUNCTION __S__.jobs_ended();
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS jobs_ended ON __S__.jobs;
DROP FUNCTION IF EXISTS __S__.jobs_ended();
DROP TRIGGER IF EXISTS jobs_lock_key_wait ON __S__.jobs;
DROP FUNCTION IF EXISTS __S__.jobs_lock_key_wait();
DROP FUNCTION IF EXISTS __S__.lock_key_id(text);
DROP FUNCTION IF EXISTS __S__.dedupe_holder(text, interval);
DROP INDEX IF EXISTS __S__.jobs_dedupe_recent_idx;
DROP INDEX IF EXISTS __S__.jobs_lock_waiting_idx;
ALTER TABLE __S__.jobs DROP COLUMN IF EXISTS lock_waiting, DROP COLUMN IF EXISTS has_dependents;
"""


#: 0002's guard of the lean branch, and the same restricted to the served queues.
GUARD_0002 = """    IF NOT EXISTS (SELECT 1 FROM __S__.queues AS q
                    WHERE q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL) THEN"""
GUARD_0003 = """    IF NOT EXISTS (SELECT 1 FROM __S__.queues AS q
                    WHERE (q.paused OR q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL)
                      AND (served_queues IS NULL OR q.name = ANY (served_queues))) THEN"""


#: 0001's in-statement lock of limited queues, and 0003's: the rows locked just before.
LOCK_0001 = """       FOR UPDATE SKIP LOCKED
),
budgets AS ("""
LOCK_0003 = """       AND q.name = ANY (locked_queues)
),
budgets AS ("""
#: Where 0001's full statement starts (after 0002's lean branch): the locking goes first.
FULL_START = "    RETURN QUERY\nWITH RECURSIVE"
PRE_LOCK = """    -- Served queues with a limit: lock their rows, skipping those another claim holds (it
    -- is starting their jobs now; this claim serves the others). The statement below takes
    -- its snapshot after these locks, so it counts what the previous claimer committed.
    SELECT array_agg(l.name) INTO locked_queues
      FROM (SELECT q.name FROM __S__.queues AS q
             WHERE (served_queues IS NULL OR q.name = ANY (served_queues))
               AND NOT q.paused
               AND (q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL)
             ORDER BY q.name
               FOR UPDATE SKIP LOCKED) AS l;
"""
DECLARE_AT = "#variable_conflict use_column\nBEGIN"
DECLARE_NEW = "#variable_conflict use_column\nDECLARE\n    locked_queues text[];\nBEGIN"


def _claim_0003(claim_0002: str) -> str:
    """0002's claim() with the served-queue guard and the lock taken before the statement."""
    for old in (GUARD_0002, LOCK_0001, FULL_START, DECLARE_AT):
        assert claim_0002.count(old) == 1, f"0002's claim() is not what 0003 expects: {old[:40]!r}"
    return (
        claim_0002.replace(GUARD_0002, GUARD_0003)
        .replace(LOCK_0001, LOCK_0003)
        .replace(FULL_START, PRE_LOCK + FULL_START)
        .replace(DECLARE_AT, DECLARE_NEW)
    )


def _claim_0002() -> str:
    """0002's ``CREATE OR REPLACE FUNCTION __S__.claim(...)``, built as 0002 builds it (from
    its frozen file and 0001's)."""
    path = Path(__file__).with_name("0002_claim_fast_branch.py")
    spec = importlib.util.spec_from_file_location("pgjobs_migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    initial: str = module._initial_claim()
    start: str = module.FULL_STATEMENT_START
    return initial.replace(start, module.FAST_BRANCH + start)


def _render(template: str) -> str:
    schema = op.get_context().version_table_schema
    assert schema, "pgjobs migrations run with version_table_schema set to the pgjobs schema"
    return template.replace("__S__", schema)


def upgrade() -> None:
    op.execute(_render(UPGRADE))
    op.execute(_render(_claim_0003(_claim_0002())))


def downgrade() -> None:
    op.execute(_render(_claim_0002()))
    op.execute(_render(DOWNGRADE))
