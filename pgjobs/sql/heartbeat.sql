-- heartbeat: extend the leases a worker still holds, in one statement. SKIP LOCKED: a job
-- whose row is locked by its handler's own transaction is skipped this round rather than
-- stalling every other lease behind it (that transaction extends the lease itself).
-- Returns the extended ids, and whether a cancel was requested for each.
WITH held AS (
    SELECT j.id
      FROM {schema}.jobs AS j
      JOIN unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS h(id, token)
        ON h.id = j.id AND h.token = j.lease_token
     WHERE j.id = ANY (%(ids)s::bigint[])  -- the token matches only while running
       FOR UPDATE OF j SKIP LOCKED
)
UPDATE {schema}.jobs AS j
   SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
 WHERE j.id = ANY (ARRAY(SELECT held.id FROM held))  -- one index scan, whatever the plan
RETURNING j.id, j.cancel_requested_at IS NOT NULL AS cancel_requested
