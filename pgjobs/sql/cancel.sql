-- cancel: a queued job ends cancelled at once; a running job is asked to stop (its worker
-- hears it on the control channel and at its next heartbeat) and ends cancelled when the
-- handler stops. Returns every id found with what happened to it.
WITH target AS MATERIALIZED (
    SELECT j.id, j.status, j.cancel_requested_at
      FROM {schema}.jobs AS j
     WHERE j.id = ANY (%(ids)s::bigint[])
       FOR UPDATE
),
dropped AS (
    UPDATE {schema}.jobs AS j
       SET status = 'cancelled', finished_at = now(), error = %(reason)s,
           version = j.version + 1
      FROM target AS t
     WHERE j.id = t.id AND t.status = 'queued'
 RETURNING j.id, j.status, j.version
),
asked AS (
    UPDATE {schema}.jobs AS j
       SET cancel_requested_at = now(), version = j.version + 1
      FROM target AS t
     WHERE j.id = t.id AND t.status = 'running' AND t.cancel_requested_at IS NULL
 RETURNING j.id, j.worker_id
),
told AS (
    SELECT pg_notify(%(events_channel)s,
                     json_build_object('jobs', json_agg(json_build_array(d.id, d.status, d.version)))::text)
      FROM dropped AS d
    HAVING count(*) > 0
),
signalled AS (
    SELECT pg_notify(%(control_channel)s,
                     json_build_object('cancel', json_agg(a.id))::text)
      FROM asked AS a
    HAVING count(*) > 0
)
SELECT t.id, t.status AS previous_status,
       CASE WHEN d.id IS NOT NULL THEN 'cancelled'
            WHEN a.id IS NOT NULL THEN 'cancel_requested'
            WHEN t.status = 'running' THEN 'already_requested'
            ELSE 'finished'
       END AS outcome
  FROM target AS t
  LEFT JOIN dropped AS d ON d.id = t.id
  LEFT JOIN asked AS a ON a.id = t.id
 WHERE (SELECT count(*) FROM told) >= 0
   AND (SELECT count(*) FROM signalled) >= 0
