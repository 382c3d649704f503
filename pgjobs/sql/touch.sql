-- touch: extend one job's lease (a handler asking for more time). Accepted only with the
-- current lease token; no row means the lease was lost.
UPDATE {schema}.jobs AS j
   SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
 WHERE j.id = %(id)s AND j.lease_token = %(token)s  -- a token exists only while running
RETURNING j.lease_expires_at, j.cancel_requested_at IS NOT NULL AS cancel_requested
