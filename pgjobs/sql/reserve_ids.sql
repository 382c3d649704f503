-- reserve_ids: take n ids from the jobs id sequence (in ascending order, as one array: a
-- single row is far cheaper to ship than n), for a bulk COPY that must return them; and the
-- database's clock, from which delayed bulk rows start.
WITH s AS MATERIALIZED (
    SELECT pg_get_serial_sequence(%(table)s, 'id')::regclass AS seq
)
SELECT array_agg(nextval(s.seq)) AS ids, now() AS now
  FROM s, generate_series(1, %(n)s)
