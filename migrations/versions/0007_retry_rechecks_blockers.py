"""A job brought back from an ending waits again for what it must wait for.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

A retry (``pgjobs jobs retry``, the API, the dashboard, plain SQL) moves a failed or
cancelled job back to ``queued``. Its ``blockers`` and ``lock_waiting`` were left as its
ending found them, which went wrong three ways:

- a job of a ``lock_key`` retried while another job of that key was queued or running was
  runnable at once: two jobs of one key could run together;
- a job cancelled while it waited for its key kept ``lock_waiting`` and its blocker: once
  the key's holder had ended, nothing would ever release it;
- a job cancelled because a dependency failed kept that dependency's blocker, whose edge
  is gone: it would wait forever.

Now a ``BEFORE UPDATE OF status`` trigger, for a move from an ending back to ``queued``,
recomputes them as an enqueue would: one blocker per dependency still unfinished (the
edges of ended dependencies are deleted when they end), plus one if another unfinished job
holds its lock key (checked under the key's advisory lock, as enqueues and releases are);
it then waits in line like a new job of the key. Its ``WHEN`` clause, evaluated in C, lets
through only jobs that have a lock key or blockers, so a plain retry pays nothing.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
#: See script.py.mako: code older than a breaking revision refuses to run against it.
breaking = False

UPGRADE = r"""
CREATE FUNCTION __S__.jobs_revived() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.lock_waiting := false;
    NEW.blockers := (SELECT count(*) FROM __S__.job_dependencies AS e
                      JOIN __S__.jobs AS d ON d.id = e.depends_on
                     WHERE e.job_id = NEW.id AND d.status IN ('queued', 'running'));
    IF NEW.lock_key IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(__S__.lock_key_id(NEW.lock_key));
        IF EXISTS (SELECT 1 FROM __S__.jobs AS j
                    WHERE j.lock_key = NEW.lock_key AND j.status IN ('queued', 'running')
                      AND j.id <> NEW.id) THEN
            NEW.lock_waiting := true;
            NEW.blockers := NEW.blockers + 1;
        END IF;
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION __S__.jobs_revived() IS
    'pgjobs: a job moved from an ending back to queued waits again for its unfinished dependencies and its lock key';
CREATE TRIGGER jobs_revived BEFORE UPDATE OF status ON __S__.jobs
    FOR EACH ROW
    WHEN (OLD.status IN ('succeeded', 'failed', 'cancelled') AND NEW.status = 'queued'
          AND (NEW.lock_key IS NOT NULL OR OLD.blockers > 0 OR OLD.lock_waiting))
    EXECUTE FUNCTION __S__.jobs_revived();
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS jobs_revived ON __S__.jobs;
DROP FUNCTION IF EXISTS __S__.jobs_revived();
"""


def _render(template: str) -> str:
    schema = op.get_context().version_table_schema
    assert schema, "pgjobs migrations run with version_table_schema set to the pgjobs schema"
    return template.replace("__S__", schema)


def upgrade() -> None:
    op.execute(_render(UPGRADE))


def downgrade() -> None:
    op.execute(_render(DOWNGRADE))
