-- rescue: put back jobs whose lease expired (their worker died, hung or lost its
-- connection). Back to queued after a short backoff, or failed when that was the last
-- attempt. SKIP LOCKED and a batch limit: several workers rescuing at once never fight, and
-- a huge pile is handled a batch at a time.
WITH expired AS MATERIALIZED (
    SELECT j.id
      FROM {schema}.jobs AS j
     WHERE j.status = 'running' AND j.lease_expires_at < now()
     ORDER BY j.lease_expires_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED
),
moved AS (
    UPDATE {schema}.jobs AS j
       SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'queued' END,
           not_before = CASE WHEN j.attempts >= j.max_attempts THEN j.not_before
                             ELSE now() + make_interval(secs => least(power(2, j.attempts), 60) * (0.75 + random() / 2))
                        END,
           error = 'lease expired: worker ' || coalesce(j.worker_id::text, '?')
                   || ' stopped renewing it during attempt ' || j.attempts
                   || coalesce(E'\nprevious error: ' || j.error, ''),
           finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
           lease_token = NULL,
           lease_expires_at = NULL,
           version = j.version + 1
      FROM expired AS e
     WHERE j.id = e.id
 RETURNING j.id, j.queue, j.status, j.not_before, j.version
),
woken AS (
    SELECT pg_notify(%(jobs_channel)s,
                     json_build_object('queue', m.queue, 'at', extract(epoch FROM min(m.not_before)))::text)
      FROM moved AS m
     WHERE m.status = 'queued'
     GROUP BY m.queue
),
told AS (
    SELECT pg_notify(%(events_channel)s,
                     json_build_object('jobs', json_agg(json_build_array(c.id, c.status, c.version)))::text)
      FROM (SELECT m.id, m.status, m.version, (row_number() OVER () - 1) / 100 AS chunk
              FROM moved AS m) AS c
     GROUP BY c.chunk
)
SELECT m.id, m.status
  FROM moved AS m
 WHERE (SELECT count(*) FROM woken) >= 0
   AND (SELECT count(*) FROM told) >= 0
