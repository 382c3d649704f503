"""The SQL that KEDA's ``postgresql`` scaler runs (``pgjobs keda-query``).

KEDA runs the trigger's query every polling interval and reads one number from it. These
functions exist in the schema since the first migration and stay cheap whatever the size
of the table (they walk the ready part of the queue index, not the rows): ``demand`` (ready
plus running under a live lease: what a ScaledObject of long-lived pods should follow, so
that busy pods are not scaled away), ``backlog`` (ready only: what a ScaledJob starts one pod
per job for) and ``oldest_ready_age`` (seconds the oldest ready job has waited, for a
latency objective, read as an absolute ``Value`` metric).
"""

from __future__ import annotations

from collections.abc import Sequence

from pgjobs import validation
from pgjobs.callbacks import INTERNAL_QUEUE
from pgjobs.config import validate_schema
from pgjobs.errors import InvalidInput

#: Metric name (as the CLI takes it) → SQL function.
METRICS = {"demand": "demand", "backlog": "backlog", "oldest-ready-age": "oldest_ready_age"}


def trigger_query(schema: str, queues: Sequence[str] | None, metric: str = "demand") -> str:
    """The one-line query for a KEDA ``postgresql`` trigger. Queue names are validated
    (their characters never need escaping in a literal); no queues means all of them, and
    ``demand`` of named queues counts pgjobs' internal queue too."""
    function = METRICS.get(metric)
    if function is None:
        raise InvalidInput(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    validate_schema(schema)
    names = [validation.queue_name(q) for q in queues or ()]
    if names and metric == "demand" and INTERNAL_QUEUE not in names:
        # Workers serve the internal queue (callback deliveries) whatever their -q: the pods
        # a ScaledObject keeps must stay up while deliveries are due. Not for backlog: a
        # ScaledJob pod with -q spends its one job on a job of its queues, never on these.
        names.append(INTERNAL_QUEUE)
    argument = "ARRAY[" + ", ".join(f"'{q}'" for q in names) + "]" if names else ""
    return f"SELECT {schema}.{function}({argument})"
