"""A retried job waits again for what it must wait for.

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

Now the retry statement (``pgjobs/sql/retry.sql``, behind the CLI, the API and the
dashboard) sets them with ``revival_blockers(id, lock_key)``, as an enqueue would: one
blocker per dependency still unfinished (the edges of ended dependencies are deleted when
they end), plus one, with ``lock_waiting``, if another unfinished job holds its lock key
(checked under the key's advisory lock, as enqueues and releases are): the job then waits in
line like a new job of the key. The holder is the unfinished job of the key that is not
itself waiting; the function is volatile, so it sees the rows the same statement revived
before it: a bulk retry of two jobs of one key leaves exactly one of them runnable.

A function the retry calls, not a trigger: a trigger on status updates is evaluated for
every claim and every completion. Measured on drains: a ``BEFORE UPDATE`` row trigger cost
2-5 % (PostgreSQL fetches and locks each row again before testing its ``WHEN``), an
``AFTER`` one 3-4 %, for an event as rare as a retry. A job revived by hand-written SQL
(``UPDATE ... SET status = 'queued'``) does not get this; ``pgjobs jobs retry`` does.
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
CREATE FUNCTION __S__.revival_blockers(job bigint, key text, OUT waiting boolean, OUT blockers integer)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    SELECT count(*)::integer INTO blockers
      FROM __S__.job_dependencies AS e
      JOIN __S__.jobs AS d ON d.id = e.depends_on
     WHERE e.job_id = job AND d.status IN ('queued', 'running');
    waiting := false;
    IF key IS NOT NULL THEN
        -- As the enqueue trigger: serialised with enqueues and releases of the key, and
        -- the check below (a new statement) sees every job of it committed before the lock.
        PERFORM pg_advisory_xact_lock(__S__.lock_key_id(key));
        waiting := EXISTS (SELECT 1 FROM __S__.jobs AS j
                            WHERE j.lock_key = key AND j.status IN ('queued', 'running')
                              AND NOT j.lock_waiting AND j.id <> job);
        IF waiting THEN
            blockers := blockers + 1;
        END IF;
    END IF;
END
$fn$;
COMMENT ON FUNCTION __S__.revival_blockers(bigint, text) IS
    'pgjobs: what a job brought back from an ending must wait for (unfinished dependencies, its lock key): called by the retry';
"""

DOWNGRADE = r"""
DROP FUNCTION IF EXISTS __S__.revival_blockers(bigint, text);
"""


def _render(template: str) -> str:
    schema = op.get_context().version_table_schema
    assert schema, "pgjobs migrations run with version_table_schema set to the pgjobs schema"
    return template.replace("__S__", schema)


def upgrade() -> None:
    op.execute(_render(UPGRADE))


def downgrade() -> None:
    op.execute(_render(DOWNGRADE))
