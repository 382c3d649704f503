-- enqueue_dependent: insert one job that waits for others (depends_on), in one statement.
-- The dependencies are locked FOR SHARE first: one that is ending at this moment either ends
-- before (its status is read after its commit) or waits for this insert to commit (and its
-- end trigger then sees the new edges). The job waits for each unfinished dependency (one
-- blocker each); if one has already failed or been cancelled, the job is stored cancelled,
-- with the reason. No row comes back when a dependency does not exist: nothing is inserted
-- and the caller names the missing ids.
WITH deps AS MATERIALIZED (
    SELECT d.id, d.status
      FROM {schema}.jobs AS d
     WHERE d.id = ANY (%(depends_on)s::bigint[])
       FOR SHARE
),
verdict AS (
    SELECT count(*) AS found,
           count(*) FILTER (WHERE v.status IN ('queued', 'running')) AS pending,
           min(v.id) FILTER (WHERE v.status IN ('failed', 'cancelled')) AS broken,
           min(v.status) FILTER (WHERE v.status IN ('failed', 'cancelled')) AS broken_status
      FROM deps AS v
),
inserted AS (
    INSERT INTO {schema}.jobs AS j
           (task, args, queue, priority, not_before, max_attempts, lock_key, callback_url,
            parent_id, meta, blockers, status, error, finished_at)
    SELECT %(task)s, %(args)s::jsonb, %(queue)s, %(priority)s,
           coalesce(%(not_before)s::timestamptz, now() + %(delay)s::interval), %(max_attempts)s,
           %(lock_key)s, %(callback_url)s, %(parent_id)s,
           -- kept for `pgjobs jobs tree` (the edges go once each dependency ends)
           coalesce(%(meta)s::jsonb, '{{}}') || jsonb_build_object('depends_on', %(depends_on)s::bigint[]),
           CASE WHEN v.broken IS NULL THEN v.pending ELSE 0 END,
           CASE WHEN v.broken IS NULL THEN 'queued' ELSE 'cancelled' END,
           CASE WHEN v.broken IS NOT NULL
                THEN format('cancelled: dependency %%s ended %%s before this job was enqueued',
                            v.broken, v.broken_status)
           END,
           CASE WHEN v.broken IS NOT NULL THEN now() END
      FROM verdict AS v
     WHERE v.found = cardinality(%(depends_on)s::bigint[])
 RETURNING j.*
),
edges AS (
    INSERT INTO {schema}.job_dependencies (depends_on, job_id)
    SELECT d.id, i.id
      FROM deps AS d, inserted AS i
     WHERE d.status IN ('queued', 'running') AND i.status = 'queued'
),
marked AS (
    UPDATE {schema}.jobs AS j
       SET has_dependents = true
      FROM deps AS d, inserted AS i
     WHERE j.id = d.id AND d.status IN ('queued', 'running') AND i.status = 'queued'
       AND NOT j.has_dependents
)
SELECT i.*, false AS existing FROM inserted AS i
