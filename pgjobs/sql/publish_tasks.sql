-- publish_tasks: a worker records the defaults of the tasks it runs, so that jobs enqueued
-- from SQL, the CLI or HTTP get the task's queue, priority and max_attempts too.
INSERT INTO {schema}.tasks AS t (name, queue, priority, max_attempts, updated_at, updated_by)
SELECT p.name, p.queue, p.priority, p.max_attempts, now(), %(worker_id)s
  FROM unnest(%(names)s::text[], %(queues)s::text[], %(priorities)s::integer[],
              %(max_attempts)s::integer[]) AS p(name, queue, priority, max_attempts)
ON CONFLICT (name) DO UPDATE
   SET queue = excluded.queue, priority = excluded.priority,
       max_attempts = excluded.max_attempts, updated_at = excluded.updated_at,
       updated_by = excluded.updated_by
 WHERE (t.queue, t.priority, t.max_attempts) IS DISTINCT FROM
       (excluded.queue, excluded.priority, excluded.max_attempts)
RETURNING t.name
