-- enqueue_dedupe: insert one job unless an unfinished job holds its dedupe_key; then return
-- that job (existing = true) and change nothing. No row at all means the holder finished
-- between the conflict and the lookup (or is not visible to this snapshot yet): the caller
-- tries again.
WITH inserted AS (
    INSERT INTO {schema}.jobs AS j
           (task, args, queue, priority, not_before, max_attempts, dedupe_key, callback_url,
            parent_id, meta, lock_key)
    VALUES (%(task)s, %(args)s::jsonb, %(queue)s, %(priority)s,
            coalesce(%(not_before)s::timestamptz, now() + %(delay)s::interval), %(max_attempts)s, %(dedupe_key)s,
            %(callback_url)s, %(parent_id)s, %(meta)s::jsonb, %(lock_key)s)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running')
    DO NOTHING
    RETURNING j.*
)
SELECT i.*, false AS existing FROM inserted AS i
UNION ALL
SELECT h.*, true AS existing
  FROM {schema}.jobs AS h
 WHERE h.dedupe_key = %(dedupe_key)s AND h.status IN ('queued', 'running')
   AND NOT EXISTS (SELECT 1 FROM inserted)
