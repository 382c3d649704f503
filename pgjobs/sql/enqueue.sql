-- enqueue: insert one job. NULL queue, priority or max_attempts are filled by the defaults
-- trigger from pgjobs.tasks. The insert trigger notifies listening workers. Returns only the
-- columns a new job can have set: the others are NULL or their defaults, and parsing 31
-- columns was a measurable part of an enqueue.
INSERT INTO {schema}.jobs AS j
       (task, args, queue, priority, not_before, max_attempts, callback_url, parent_id, meta)
VALUES (%(task)s, %(args)s::jsonb, %(queue)s, %(priority)s,
        coalesce(%(not_before)s::timestamptz, now() + %(delay)s::interval), %(max_attempts)s, %(callback_url)s,
        %(parent_id)s, %(meta)s::jsonb)
RETURNING j.id, j.queue, j.task, j.args, j.priority, j.not_before, j.status, j.attempts,
          j.max_attempts, j.created_at, j.blockers, j.callback_url, j.parent_id, j.meta,
          false AS existing
