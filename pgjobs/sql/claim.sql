-- claim: take up to %(limit)s due jobs of the served queues (NULL: every queue), in order
-- priority DESC, not_before, id, each under a fresh lease token. The statement itself is the
-- schema's claim() function (migrations/versions/0001_initial.py, explained in
-- docs/design.md): it runs with JIT off, which a statement sent from here could not ask for
-- without a transaction or session state.
SELECT c.* FROM {schema}.claim(%(queues)s::text[], %(limit)s::integer, %(worker_id)s::uuid, %(lease_seconds)s::double precision) AS c
