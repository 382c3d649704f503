-- finish: record the outcomes of a batch of runs in one statement. Each outcome is applied
-- only if its lease token is still the job's current one: ids missing from the result were
-- fenced (the lease was lost, another worker may own the job now) and nothing was written.
--
-- status is the new status: succeeded, failed or cancelled (ended; finished_at set), or
-- queued (retry, snooze, hand-back: due at not_before, or delay after the database's now()
-- when not_before is NULL). refund gives the attempt back
-- (snooze, hand-back at shutdown). Jobs put back in a queue wake listening workers; every
-- change is announced on the events channel (for wait and SSE), at most 100 jobs per
-- notification to stay below PostgreSQL's 8000-byte payload limit.
--
-- The outcomes arrive as one JSON array of objects (absent keys are NULL): encoding it is one
-- call to the C JSON encoder, where ten parallel array parameters cost a Python loop each.
WITH outcome AS (
    SELECT o.id, o.token, o.status, o.result, o.error, o.not_before,
           coalesce(o.delay, 0) AS delay, coalesce(o.refund, false) AS refund,
           o.progress, o.message
      FROM json_to_recordset(%(outcomes)s::json)
           AS o(id bigint, token uuid, status text, result text, error text,
                not_before timestamptz, delay double precision, refund boolean,
                progress numeric, message text)
),
done AS (
    UPDATE {schema}.jobs AS j
       SET status = o.status,
           result = CASE WHEN o.status = 'succeeded' THEN o.result::jsonb ELSE j.result END,
           error = coalesce(o.error, j.error),
           not_before = CASE WHEN o.status = 'queued'
                             THEN coalesce(o.not_before, now() + make_interval(secs => o.delay))
                             ELSE j.not_before END,
           attempts = j.attempts - o.refund::integer,
           lease_token = NULL,
           lease_expires_at = NULL,
           finished_at = CASE WHEN o.status = 'queued' THEN NULL ELSE now() END,
           progress = CASE WHEN o.status = 'succeeded' AND coalesce(o.progress, j.progress) IS NOT NULL
                           THEN 100 ELSE coalesce(o.progress, j.progress) END,
           progress_message = coalesce(o.message, j.progress_message),
           version = j.version + 1
      FROM outcome AS o
     WHERE j.id = ANY (ARRAY(SELECT p.id FROM outcome AS p))  -- primary key lookups, whatever
                                                            -- the table's size
       AND j.id = o.id AND j.lease_token = o.token  -- a token exists only while running
 RETURNING j.id, j.queue, j.status, j.not_before, j.version
),
woken AS (
    SELECT pg_notify(%(jobs_channel)s,
                     CASE WHEN min(d.not_before) > now()
                          THEN json_build_object('queue', d.queue,
                                                 'at', extract(epoch FROM min(d.not_before)))::text
                          ELSE json_build_object('queue', d.queue)::text
                     END)
      FROM done AS d
     WHERE d.status = 'queued'
     GROUP BY d.queue
),
told AS (
    SELECT pg_notify(%(events_channel)s,
                     json_build_object('jobs', json_agg(json_build_array(c.id, c.status, c.version)))::text)
      FROM (SELECT d.id, d.status, d.version, (row_number() OVER () - 1) / 100 AS chunk
              FROM done AS d) AS c
     GROUP BY c.chunk
)
SELECT d.id, d.status
  FROM done AS d
 WHERE (SELECT count(*) FROM woken) >= 0
   AND (SELECT count(*) FROM told) >= 0
