"""Completion callbacks: one delivery job per ending, inserted by the ending itself; the
checks of the built-in ``pgjobs.http`` task at enqueue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

**One callback per ending, whatever ends the job.** An ``AFTER UPDATE OF status`` trigger
(``jobs_callback``) fires for a job that has a ``callback_url`` and moves from
``queued``/``running`` to ``succeeded``, ``failed`` or ``cancelled``: a worker's (batched)
completion, ``pgjobs jobs cancel``, the rescue of an expired lease, the cancel of a dependent
by ``jobs_ended``, plain SQL. It inserts the delivery as a job of task ``pgjobs.callback`` in
the internal queue ``pgjobs.internal``, with ``parent_id`` = the job, in the transaction that
records the ending: if that transaction rolls back, so does the callback; if it commits, the
callback exists. Its ``WHEN`` clause is evaluated in C, so jobs without a callback URL pay
nothing more than that test.

Exactly one per ending:

- PostgreSQL queues one row event per row update, and the clause lets through only a move
  from unfinished to ended. Two sessions ending the same job are serialised by the row lock:
  the second one re-reads the row, sees it ended, and its update (if it still happens) is not
  a move from unfinished, so it fires nothing.
- The ending is named by the job's ``version`` (bumped by every pgjobs statement that changes
  a status; the trigger bumps it itself for a plain-SQL writer that did not). The delivery
  carries the dedupe key ``pgjobs.callback:<job id>@<version>``, held by the unique index of
  unfinished keys: a second insert for the same ending is refused by the database
  (``ON CONFLICT DO NOTHING``) however it came about. A job retried after it ended
  (``pgjobs jobs retry``) ends again with a higher version, hence gets its own callback.

The delivery job's arguments are small and fixed in size (the job id, the URL, and the
ending's status, attempts, version and timestamps): the worker builds the payload from the
job's row when it delivers it, so that large results and errors are never copied, and a
callback insert can never exceed the argument size limit and make the ending fail.

**Delivery state on the job.** ``callback_attempts``, ``callback_error`` and
``callback_delivered_at`` (columns since 0001) are written by a second trigger
(``jobs_callback_attempt``) each time an attempt of the latest delivery of a job ends
(delivered, retried, failed, cancelled): visible from SQL, whatever ended the attempt. The
parent's row is taken with ``SKIP LOCKED``: a handler holding its job's row in a long
transaction (``current_job().transaction()``) never stalls the completion of a callback; that
attempt is then only visible on the delivery job itself (``pgjobs.callbacks.delivery``).

**pgjobs.http at enqueue.** A ``BEFORE INSERT`` trigger whose ``WHEN`` clause lets through only
jobs of task ``pgjobs.http`` checks their arguments (an http/https URL, a known method,
``json`` or ``body`` but not both, ...) with a one-line message, for every producer: SQL,
COPY, the Python API, the CLI, the HTTP API. The worker's handler applies the same rules.

Additive: code that knows only 0001–0003 never reads the new triggers; its workers see
``pgjobs.callback`` jobs in a queue they may serve and treat them as an unknown task (retried
with backoff until a worker of this version takes them), which is why the upgrade notes say
to migrate first, then roll the workers.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
#: See script.py.mako: code older than a breaking revision refuses to run against it.
breaking = False

#: Kept equal to pgjobs.callbacks (a test checks): migrations never import runtime code.
CALLBACK_TASK = "pgjobs.callback"
INTERNAL_QUEUE = "pgjobs.internal"
CALLBACK_PRIORITY = 100
CALLBACK_MAX_ATTEMPTS = 12
HTTP_TASK = "pgjobs.http"

UPGRADE = r"""
-- A job with a callback URL ended: insert its delivery, in this transaction.
CREATE FUNCTION __S__.jobs_callback() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    ending integer := NEW.version;
BEGIN
    IF NEW.version <= OLD.version THEN
        -- A writer that did not bump the version (plain SQL): bump it, so that the version
        -- names this ending alone (and SSE clients see the change).
        ending := OLD.version + 1;
        UPDATE __S__.jobs AS j SET version = ending WHERE j.id = NEW.id;
    END IF;
    INSERT INTO __S__.jobs AS c (task, queue, priority, max_attempts, args, parent_id, dedupe_key)
    VALUES ('__CALLBACK_TASK__', '__INTERNAL_QUEUE__', __CALLBACK_PRIORITY__, __CALLBACK_MAX_ATTEMPTS__,
            jsonb_build_object(
                'job_id', NEW.id,
                'url', NEW.callback_url,
                'ending', jsonb_build_object(
                    'status', NEW.status,
                    'version', ending,
                    'attempts', NEW.attempts,
                    'max_attempts', NEW.max_attempts,
                    'started_at', NEW.started_at,
                    'finished_at', NEW.finished_at)),
            NEW.id,
            '__CALLBACK_TASK__:' || NEW.id || '@' || ending)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running')
    DO NOTHING;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION __S__.jobs_callback() IS
    'pgjobs: a job with a callback_url ended: insert its delivery job (one per ending)';
CREATE TRIGGER jobs_callback AFTER UPDATE OF status ON __S__.jobs
    FOR EACH ROW
    WHEN (NEW.callback_url IS NOT NULL
          AND OLD.status IN ('queued', 'running')
          AND NEW.status IN ('succeeded', 'failed', 'cancelled'))
    EXECUTE FUNCTION __S__.jobs_callback();

-- An attempt of a delivery ended: show it on the job it reports, if it is the latest
-- delivery of that job.
CREATE FUNCTION __S__.jobs_callback_attempt() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE __S__.jobs AS j
       SET callback_attempts = NEW.attempts,
           callback_error = CASE WHEN NEW.status = 'succeeded' THEN NULL ELSE NEW.error END,
           callback_delivered_at = CASE WHEN NEW.status = 'succeeded'
                                        THEN coalesce(NEW.finished_at, now()) END
     WHERE j.id = (SELECT p.id FROM __S__.jobs AS p
                    WHERE p.id = NEW.parent_id
                      FOR NO KEY UPDATE SKIP LOCKED)
       AND NOT EXISTS (SELECT 1 FROM __S__.jobs AS later
                        WHERE later.parent_id = NEW.parent_id
                          AND later.task = '__CALLBACK_TASK__'
                          AND later.id > NEW.id);
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION __S__.jobs_callback_attempt() IS
    'pgjobs: an attempt of a callback delivery ended: record it on the job it reports';
CREATE TRIGGER jobs_callback_attempt AFTER UPDATE OF status ON __S__.jobs
    FOR EACH ROW
    WHEN (NEW.parent_id IS NOT NULL
          AND NEW.task = '__CALLBACK_TASK__'
          AND NEW.status <> 'running'
          AND OLD.status <> NEW.status)
    EXECUTE FUNCTION __S__.jobs_callback_attempt();

-- The built-in task pgjobs.http: refuse arguments its handler would refuse, at enqueue,
-- with one line naming the argument (the handler applies the same rules).
CREATE FUNCTION __S__.jobs_http_check() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    a jsonb := NEW.args;
    unknown text;
BEGIN
    SELECT string_agg(quote_literal(k), ', ' ORDER BY k) INTO unknown
      FROM jsonb_object_keys(a) AS k
     WHERE k NOT IN ('method', 'url', 'headers', 'json', 'body', 'timeout',
                     'expected_statuses', 'follow_redirects');
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: unknown argument(s) %: known are method, url, headers, json, body, timeout, expected_statuses, follow_redirects', unknown;
    END IF;
    IF jsonb_typeof(a -> 'url') IS DISTINCT FROM 'string'
       OR length(a ->> 'url') > 2048
       OR (a ->> 'url') !~* '^https?://[^\s/?#]+([/?#]\S*)?$' THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: url must be an http:// or https:// URL with a host, of at most 2048 characters, got %',
            coalesce(a -> 'url', 'null'::jsonb);
    END IF;
    IF a ? 'method' AND (jsonb_typeof(a -> 'method') IS DISTINCT FROM 'string'
       OR upper(a ->> 'method') NOT IN ('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS')) THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: method must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, got %',
            a -> 'method';
    END IF;
    IF a ? 'json' AND a ? 'body' THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: give json or body, not both';
    END IF;
    IF a ? 'body' AND jsonb_typeof(a -> 'body') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: body must be a string (use json for a JSON value)';
    END IF;
    -- CASE, not OR: the element functions below raise on a value of the wrong type, and OR
    -- does not promise to evaluate its left side first. (In parentheses: PL/pgSQL ends an IF
    -- condition at the first THEN it meets.)
    IF a ? 'headers' AND (CASE WHEN jsonb_typeof(a -> 'headers') = 'object'
                               THEN EXISTS (SELECT 1 FROM jsonb_each(a -> 'headers') AS h
                                             WHERE jsonb_typeof(h.value) <> 'string')
                               ELSE true END) THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: headers must be an object of strings';
    END IF;
    IF a ? 'timeout' AND (CASE WHEN jsonb_typeof(a -> 'timeout') = 'number'
                               THEN (a ->> 'timeout')::numeric <= 0 OR (a ->> 'timeout')::numeric > 3600
                               ELSE true END) THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: timeout must be a number of seconds, more than 0 and at most 3600, got %',
            a -> 'timeout';
    END IF;
    IF a ? 'expected_statuses' AND (CASE WHEN jsonb_typeof(a -> 'expected_statuses') = 'array'
                                         THEN jsonb_array_length(a -> 'expected_statuses') = 0
                                           OR EXISTS (SELECT 1 FROM jsonb_array_elements(a -> 'expected_statuses') AS s
                                                       WHERE s::text !~ '^[1-5][0-9][0-9]$')
                                         ELSE true END) THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: expected_statuses must be a non-empty list of HTTP status codes (100-599), got %',
            a -> 'expected_statuses';
    END IF;
    IF a ? 'follow_redirects' AND jsonb_typeof(a -> 'follow_redirects') IS DISTINCT FROM 'boolean' THEN
        RAISE EXCEPTION 'pgjobs: __HTTP_TASK__: follow_redirects must be true or false';
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION __S__.jobs_http_check() IS
    'pgjobs: refuse arguments of the built-in task pgjobs.http that its handler would refuse';
CREATE TRIGGER jobs_http_check BEFORE INSERT ON __S__.jobs
    FOR EACH ROW
    WHEN (NEW.task = '__HTTP_TASK__')
    EXECUTE FUNCTION __S__.jobs_http_check();
"""

DOWNGRADE = r"""
DROP TRIGGER IF EXISTS jobs_http_check ON __S__.jobs;
DROP FUNCTION IF EXISTS __S__.jobs_http_check();
DROP TRIGGER IF EXISTS jobs_callback_attempt ON __S__.jobs;
DROP FUNCTION IF EXISTS __S__.jobs_callback_attempt();
DROP TRIGGER IF EXISTS jobs_callback ON __S__.jobs;
DROP FUNCTION IF EXISTS __S__.jobs_callback();
"""


def _render(template: str) -> str:
    schema = op.get_context().version_table_schema
    assert schema, "pgjobs migrations run with version_table_schema set to the pgjobs schema"
    return (
        template.replace("__CALLBACK_TASK__", CALLBACK_TASK)
        .replace("__INTERNAL_QUEUE__", INTERNAL_QUEUE)
        .replace("__CALLBACK_PRIORITY__", str(CALLBACK_PRIORITY))
        .replace("__CALLBACK_MAX_ATTEMPTS__", str(CALLBACK_MAX_ATTEMPTS))
        .replace("__HTTP_TASK__", HTTP_TASK)
        .replace("__S__", schema)
    )


def upgrade() -> None:
    op.execute(_render(UPGRADE))


def downgrade() -> None:
    op.execute(_render(DOWNGRADE))
