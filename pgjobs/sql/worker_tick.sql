-- worker_tick: one statement every tick of an idle or busy worker. Records the worker as
-- alive (its row, created on first tick), removes rows of workers silent for too long, and
-- says whether any served queue has a concurrency or rate limit (the claim then serialises
-- those queues' claims in its own transaction) and which kind, and when the next cron
-- schedule fires.
WITH alive AS (
    INSERT INTO {schema}.workers AS w (id, hostname, pid, queues, concurrency, version, info)
    VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(concurrency)s, %(version)s, %(info)s::jsonb)
    ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now()
    RETURNING w.id
),
forgotten AS (
    DELETE FROM {schema}.workers AS w
     WHERE w.last_heartbeat_at < now() - make_interval(secs => %(forget_after)s)
       AND w.id <> %(id)s
    RETURNING w.id
)
SELECT (SELECT count(*) FROM alive) AS alive,
       (SELECT count(*) FROM forgotten) AS forgotten,
       EXISTS (SELECT 1 FROM {schema}.queues AS q
                WHERE (q.concurrency_limit IS NOT NULL OR q.rate_limit IS NOT NULL)
                  AND (%(queues)s::text[] IS NULL OR q.name = ANY (%(queues)s::text[]))) AS limited,
       EXISTS (SELECT 1 FROM {schema}.queues AS q
                WHERE q.rate_limit IS NOT NULL
                  AND (%(queues)s::text[] IS NULL OR q.name = ANY (%(queues)s::text[]))) AS rate_limited,
       (SELECT min(s.next_fire_at) FROM {schema}.schedules AS s WHERE NOT s.paused) AS next_fire_at
