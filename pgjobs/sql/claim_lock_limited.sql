-- claim_lock_limited: the first statement of a claim transaction. Locks the rows of the
-- served queues that have a concurrency or rate limit, waiting for a claim of those queues
-- in progress to commit, so that the claim statement that follows takes its snapshot after
-- the previous claimer committed and counts its jobs as running (and its starts in the rate
-- window). Skipping a locked row instead would let the claim statement lock it a moment
-- later with a snapshot from before that commit, and start too many jobs. The wait is one
-- claim transaction (about a millisecond); rows are locked in name order (no deadlock
-- between two claimers of several limited queues). Unlimited queues are not touched.
-- Parameters: queues text[] (NULL: every queue).
SELECT q.name
  FROM {schema}.queues AS q
 WHERE (%(queues)s::text[] IS NULL OR q.name = ANY (%(queues)s::text[]))
   AND NOT q.paused
   AND (q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL)
 ORDER BY q.name
   FOR UPDATE
