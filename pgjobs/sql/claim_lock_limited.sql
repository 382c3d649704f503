-- claim_lock_limited: the first statement of a claim transaction. Locks the rows of the
-- served queues that have a concurrency or rate limit (skipping those another claimer holds),
-- so that the claim statement that follows takes its snapshot after the previous claimer of
-- that queue committed, and counts its jobs as running. Unlimited queues are not touched.
-- Parameters: queues text[] (NULL: every queue).
SELECT q.name
  FROM {schema}.queues AS q
 WHERE (%(queues)s::text[] IS NULL OR q.name = ANY (%(queues)s::text[]))
   AND NOT q.paused
   AND (q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL)
   FOR UPDATE SKIP LOCKED
