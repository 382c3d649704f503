-- rate_window: when the next start becomes possible in a served, rate-limited queue that has
-- due jobs held back by its rate (NULL: none is held back). recent_starts is sorted newest
-- first, so its rate_limit-th entry is the oldest start still counted: the window lets a
-- new start in once that entry is rate_period old. Run by a worker after a claim that took
-- fewer jobs than it could while such a queue is served, to arm a timer instead of polling.
SELECT extract(epoch FROM min(q.recent_starts[q.rate_limit] + q.rate_period))::float8 AS at
  FROM {schema}.queues AS q
 WHERE q.rate_limit IS NOT NULL AND NOT q.paused
   AND (%(queues)s::text[] IS NULL OR q.name = ANY (%(queues)s::text[]))
   AND cardinality(q.recent_starts) >= q.rate_limit
   AND q.recent_starts[q.rate_limit] + q.rate_period > now()
   AND EXISTS (SELECT 1 FROM {schema}.jobs AS j
                WHERE j.queue = q.name AND j.status = 'queued' AND j.blockers = 0
                  AND j.not_before <= now())
