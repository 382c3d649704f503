-- enqueue: insert one job. NULL queue, priority or max_attempts are filled by the defaults
-- trigger from pgjobs.tasks. The insert trigger notifies listening workers.
--
-- The RETURNING clause is added by pgjobs/db.py: only what the client cannot know (the id,
-- the database's clock, and the defaults the trigger filled when the client sent NULL).
-- Every returned column costs on both sides: RETURNING j.* made a single enqueue a third
-- slower than a bare INSERT.
INSERT INTO {schema}.jobs AS j
       (task, args, queue, priority, not_before, max_attempts, callback_url, parent_id, meta)
VALUES (%(task)s, %(args)s::jsonb, %(queue)s, %(priority)s,
        coalesce(%(not_before)s::timestamptz, now() + %(delay)s::interval), %(max_attempts)s, %(callback_url)s,
        %(parent_id)s, %(meta)s::jsonb)
