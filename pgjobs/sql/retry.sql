-- retry: put failed or cancelled jobs back in their queue, due now, with at least one more
-- attempt than they used. A job whose dedupe key is held by another unfinished job stays as
-- it is (two unfinished jobs may not share a key); the holder is reported. A revived job
-- waits again for its unfinished dependencies and for its lock key's holder, as a new job
-- would (revival_blockers(), migration 0007).
WITH target AS MATERIALIZED (
    SELECT j.id, j.status, j.dedupe_key
      FROM {schema}.jobs AS j
     WHERE j.id = ANY (%(ids)s::bigint[])
       FOR UPDATE
),
held AS (
    SELECT t.id, min(o.id) AS holder
      FROM target AS t
      JOIN {schema}.jobs AS o
        ON o.dedupe_key = t.dedupe_key AND o.status IN ('queued', 'running')
     WHERE t.status IN ('failed', 'cancelled')
     GROUP BY t.id
),
revived AS (
    UPDATE {schema}.jobs AS j
       SET status = 'queued', not_before = now(),
           max_attempts = greatest(j.max_attempts, j.attempts + 1),
           finished_at = NULL, result = NULL, cancel_requested_at = NULL,
           lease_token = NULL, lease_expires_at = NULL, version = j.version + 1,
           (lock_waiting, blockers) = (SELECT b.waiting, b.blockers
                                         FROM {schema}.revival_blockers(j.id, j.lock_key) AS b)
      FROM target AS t
     WHERE j.id = t.id AND t.status IN ('failed', 'cancelled')
       AND t.id NOT IN (SELECT h.id FROM held AS h)
 RETURNING j.id, j.queue, j.status, j.version
),
woken AS (
    SELECT pg_notify(%(jobs_channel)s, json_build_object('queue', r.queue)::text)
      FROM revived AS r
     GROUP BY r.queue
),
told AS (
    SELECT pg_notify(%(events_channel)s,
                     json_build_object('jobs', json_agg(json_build_array(c.id, c.status, c.version)))::text)
      FROM (SELECT r.id, r.status, r.version, (row_number() OVER () - 1) / 100 AS chunk
              FROM revived AS r) AS c
     GROUP BY c.chunk
)
SELECT t.id, t.status AS previous_status, r.id IS NOT NULL AS retried, h.holder
  FROM target AS t
  LEFT JOIN revived AS r ON r.id = t.id
  LEFT JOIN held AS h ON h.id = t.id
 WHERE (SELECT count(*) FROM woken) >= 0
   AND (SELECT count(*) FROM told) >= 0
