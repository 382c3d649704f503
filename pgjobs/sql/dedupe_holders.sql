-- dedupe_holders: the unfinished jobs holding these dedupe keys.
SELECT j.dedupe_key, j.id
  FROM {schema}.jobs AS j
 WHERE j.dedupe_key = ANY (%(keys)s::text[]) AND j.status IN ('queued', 'running')
