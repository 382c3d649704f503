-- enqueue_staged: move bulk rows with dedupe keys from the temporary staging table into
-- jobs. Rows whose key is held by an unfinished job (or by an earlier row of the same batch)
-- are skipped; the caller then looks up the holders.
INSERT INTO {schema}.jobs AS j
       (id, task, args, queue, priority, not_before, max_attempts, dedupe_key, callback_url,
        parent_id, meta)
SELECT s.id, s.task, s.args, s.queue, s.priority, s.not_before, s.max_attempts, s.dedupe_key,
       s.callback_url, s.parent_id, s.meta
  FROM pgjobs_staging AS s
 ORDER BY s.id
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running')
DO NOTHING
RETURNING j.id
