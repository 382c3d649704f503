-- watch_starts: have claims announce the jobs they start (on the events channel) for the
-- next %(seconds)s seconds: called while someone follows jobs live (SSE streams, Job.wait
-- with on_update). The function (migration 0005) writes only when less than half of that
-- time is left, so callers renewing every third of it write every other call at most.
SELECT {schema}.watch_starts(%(seconds)s::double precision)
