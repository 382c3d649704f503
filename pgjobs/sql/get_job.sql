-- get_job: one job by id.
SELECT j.* FROM {schema}.jobs AS j WHERE j.id = %(id)s
