"""OpenTelemetry trace context carried from the enqueuer through the job, when the user has
``opentelemetry-api`` installed (``pip install 'pgjobs[otel]'``); nothing otherwise.

- At enqueue, when a span is current, the propagator's fields (W3C ``traceparent`` and
  ``tracestate`` by default) go into the job's ``meta`` under :data:`META_KEY`, unless the
  caller put something there already. A job row is the only thing that travels from the
  producer to the worker, and ``meta`` is the column meant for such things.
- A worker runs each handler inside a span ``pgjobs.job <task>`` (kind CONSUMER) whose
  parent is that context: the handler's own spans, and the follow-up jobs it enqueues, belong
  to the same trace.
- A callback delivery (a job inserted by a trigger, which copies nothing from ``meta``) takes
  the context of the job it reports on, and sends its span's ``traceparent`` to the receiver.

Cost: :data:`ENABLED` is decided once, at import; callers test it before calling anything
here, so without OpenTelemetry an enqueue pays one attribute read. With it but no span
current, an enqueue pays a context-variable read.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgjobs.db import ClaimedJob, NewJob

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by installations without OpenTelemetry
    ENABLED = False
else:
    ENABLED = True

#: The key of ``meta`` holding the propagated context (a JSON object of text fields).
META_KEY = "otel"
SPAN_PREFIX = "pgjobs.job "
#: Outcomes (see :func:`pgjobs.worker.metrics.outcome_label`) that mark a span as failed.
ERROR_OUTCOMES = frozenset({"failed", "retried", "lease_lost"})


def carrier(meta: Mapping[str, Any] | None) -> dict[str, str]:
    """The propagated fields kept in a job's ``meta`` (empty when there are none, or when
    they are not a JSON object of text: a producer may write anything in ``meta``)."""
    found = meta.get(META_KEY) if isinstance(meta, Mapping) else None
    if not isinstance(found, Mapping):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


def with_trace(job: NewJob) -> NewJob:
    """``job`` with the current span's context in its ``meta``, if a span is current and
    ``meta`` has no :data:`META_KEY` yet (a context the caller gave wins)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return job
    fields: dict[str, str] = {}
    propagate.inject(fields)
    if not fields:
        return job
    meta = json.loads(job.meta) if job.meta else {}
    if META_KEY in meta:
        return job
    meta[META_KEY] = fields
    # meta was validated and encoded already; the added fields are plain text.
    return job._replace(meta=json.dumps(meta, separators=(",", ":"), ensure_ascii=False))


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's context to outgoing HTTP headers."""
    propagate.inject(headers)


def active() -> bool:
    """True when the application installed a tracer provider (an SDK). Without one, every
    span would be a no-op that still costs a context extraction, a span object and two
    context switches per job: the worker skips them (enqueue's check is already cheap: no
    valid span can be current then)."""
    if not ENABLED:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


@functools.cache
def _tracer() -> Any:
    """pgjobs' tracer, made once: a proxy that follows the provider the application sets,
    even later than this call."""
    from pgjobs import __version__  # here: pgjobs/__init__ imports this module's importers

    return trace.get_tracer("pgjobs", __version__)


@contextlib.contextmanager
def job_span(job: ClaimedJob, parent: Mapping[str, str] | None = None) -> Iterator[Any]:
    """Run the block inside a span ``pgjobs.job <task>``, child of ``parent`` (propagated
    fields; by default those in the job's own ``meta``), current for the block: context
    variables follow the job into a sync handler's thread (the executor copies the
    context). An exception leaving the block marks the span as an error; otherwise the
    caller reports the outcome with :func:`ended`."""
    fields = parent if parent is not None else carrier(job.meta)
    # An empty carrier extracts an empty context: a root span, not a child of whatever
    # happens to be current in the worker.
    extracted = propagate.extract(fields)
    span = _tracer().start_span(
        SPAN_PREFIX + job.task,
        context=extracted,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "pgjobs",
            "messaging.destination.name": job.queue,
            "messaging.message.id": str(job.id),
            "pgjobs.job.id": job.id,
            "pgjobs.job.task": job.task,
            "pgjobs.job.queue": job.queue,
            "pgjobs.job.attempt": job.attempts,
        },
    )
    token = otel_context.attach(trace.set_span_in_context(span, extracted))
    try:
        yield span
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        otel_context.detach(token)
        span.end()


def ended(span: Any, outcome: str, error: str | None) -> None:
    """Record how the job's run ended on its span: the outcome as an attribute, and an
    error status (with the error's last line) for failures and retries."""
    span.set_attribute("pgjobs.job.outcome", outcome)
    if outcome in ERROR_OUTCOMES:
        lines = (error or "").strip().splitlines()
        span.set_status(Status(StatusCode.ERROR, lines[-1] if lines else outcome))
