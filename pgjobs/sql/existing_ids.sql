-- existing_ids: which of these job ids exist (to name the missing ones in an error).
SELECT j.id FROM {schema}.jobs AS j WHERE j.id = ANY (%(ids)s::bigint[])
