-- enqueue_dedupe_window: a dedupe key with a window (dedupe_for) or in replace mode. The
-- holder is the job of the key that is unfinished or was created within the window (see
-- dedupe_holder(), which serialises producers of the key). With a holder, nothing is
-- inserted and the holder comes back (existing = true); in replace mode a holder that has not
-- started yet takes the new args and start time first (a holder being claimed at this very
-- moment is locked by the UPDATE, which then sees it running and leaves it). No row at all:
-- a producer outside this path (plain dedupe) holds the key in a transaction not yet
-- committed; the caller tries again.
WITH holder AS MATERIALIZED (
    SELECT h.* FROM {schema}.dedupe_holder(%(dedupe_key)s, %(dedupe_for)s::interval) AS h
),
replaced AS (
    UPDATE {schema}.jobs AS j
       SET args = %(args)s::jsonb,
           not_before = coalesce(%(not_before)s::timestamptz, now() + %(delay)s::interval),
           version = j.version + 1
      FROM holder AS h
     WHERE %(replace)s AND j.id = h.id AND j.status = 'queued'
 RETURNING j.*
),
inserted AS (
    INSERT INTO {schema}.jobs AS j
           (task, args, queue, priority, not_before, max_attempts, dedupe_key, callback_url,
            parent_id, meta, lock_key)
    SELECT %(task)s, %(args)s::jsonb, %(queue)s, %(priority)s,
           coalesce(%(not_before)s::timestamptz, now() + %(delay)s::interval), %(max_attempts)s,
           %(dedupe_key)s, %(callback_url)s, %(parent_id)s, %(meta)s::jsonb, %(lock_key)s
     WHERE NOT EXISTS (SELECT 1 FROM holder)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running')
    DO NOTHING
    RETURNING j.*
)
SELECT i.*, false AS existing, false AS stale FROM inserted AS i
UNION ALL
SELECT r.*, true AS existing, false AS stale FROM replaced AS r
UNION ALL
-- Replace asked for but not done: the holder was claimed (or ended) after the lookup, and
-- this statement's view of it is older than that: the caller reads it again.
SELECT h.*, true AS existing, %(replace)s AND h.status = 'queued' AS stale
  FROM holder AS h
 WHERE NOT EXISTS (SELECT 1 FROM replaced)
