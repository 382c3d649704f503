-- progress: record a running job's progress (percent and message), only with the current
-- lease token, and announce it on the events channel. No row means the lease was lost.
WITH changed AS (
    UPDATE {schema}.jobs AS j
       SET progress = %(progress)s, progress_message = %(message)s, version = j.version + 1
     WHERE j.id = %(id)s AND j.lease_token = %(token)s  -- a token exists only while running
    RETURNING j.id, j.status, j.version
)
SELECT c.id, pg_notify(%(events_channel)s,
                       json_build_object('jobs', json_build_array(json_build_array(c.id, c.status, c.version)))::text)
  FROM changed AS c
