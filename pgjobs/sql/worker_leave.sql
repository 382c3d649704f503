-- worker_leave: a worker that stops cleanly removes its row.
DELETE FROM {schema}.workers WHERE id = %(id)s
