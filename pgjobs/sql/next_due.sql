-- next_due: when the next queued job of the served queues becomes due (NULL: none).
SELECT {schema}.next_due(%(queues)s::text[]) AS next_due
