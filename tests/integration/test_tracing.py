"""OpenTelemetry: the enqueuer's trace context travels in the job's ``meta`` to the worker,
whose span ``pgjobs.job <task>`` is its child; follow-ups and callback deliveries stay in
the trace. Spans are read from the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from receiver import Receiver
from workers import Running

import pgjobs
from pgjobs import tracing
from pgjobs.testing import wait_for

pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk is not installed")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def provider() -> Iterator[TracerProvider]:
    """A tracer provider for this module only. OpenTelemetry lets a process set its global
    provider once; left set, every later test of the session would run its jobs in real
    spans and its enqueues would carry trace context (a test of the HTTP API compares a
    job's meta exactly). So the global is put back as it was afterwards, as OpenTelemetry's
    own test utilities do."""
    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done)
    created = TracerProvider()
    trace._TRACER_PROVIDER_SET_ONCE._done = False
    trace.set_tracer_provider(created)
    yield created
    created.shutdown()
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done = saved


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    exporter.clear()
    processor.shutdown()  # the exporter refuses spans from now on


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def job_span(exporter: InMemorySpanExporter, job_id: int) -> ReadableSpan:
    def found() -> ReadableSpan | None:
        for span in exporter.get_finished_spans():
            attributes = span.attributes or {}
            if (
                span.name.startswith(tracing.SPAN_PREFIX)
                and attributes.get("pgjobs.job.id") == job_id
            ):
                return span
        return None

    span = wait_for(found, message=f"no span for job {job_id}")
    assert span is not None
    return span


def meta(conn: Conn, job_id: int) -> Any:
    row = conn.execute("SELECT meta FROM pgjobs.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row[0]


def test_the_job_span_is_a_child_of_the_enqueuers_span(
    app: pgjobs.App, start: Callable[..., Running], spans: InMemorySpanExporter, pgjobs_conn: Conn
) -> None:
    @app.task(name="traced.ok")
    def ok() -> int:
        return 1

    with trace.get_tracer("test").start_as_current_span("request") as parent:
        job = app.enqueue("traced.ok")
    assert "traceparent" in meta(pgjobs_conn, job.id)[tracing.META_KEY]
    start()
    span = job_span(spans, job.id)
    assert span.name == "pgjobs.job traced.ok"
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.attributes is not None
    assert span.attributes["pgjobs.job.task"] == "traced.ok"
    assert span.attributes["pgjobs.job.queue"] == "default"
    assert span.attributes["pgjobs.job.attempt"] == 1
    assert span.attributes["pgjobs.job.outcome"] == "succeeded"
    assert span.status.status_code is not StatusCode.ERROR


def test_no_span_no_context_and_a_given_context_is_kept(
    app: pgjobs.App, spans: InMemorySpanExporter, pgjobs_conn: Conn
) -> None:
    plain = app.enqueue("traced.any")
    assert meta(pgjobs_conn, plain.id) is None
    given = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with trace.get_tracer("test").start_as_current_span("request"):
        kept = app.enqueue("traced.any", meta={"otel": given, "who": "me"})
        (first, second) = app.enqueue_many([{"task": "traced.any"}, {"task": "traced.any"}])
    assert meta(pgjobs_conn, kept.id) == {"otel": given, "who": "me"}
    assert "traceparent" in meta(pgjobs_conn, first.id)["otel"]
    assert meta(pgjobs_conn, first.id) == meta(pgjobs_conn, second.id)


def test_enqueue_async_carries_the_context(
    app: pgjobs.App, spans: InMemorySpanExporter, pgjobs_conn: Conn
) -> None:
    async def enqueue() -> pgjobs.Job:
        return await app.enqueue_async("traced.any")

    with trace.get_tracer("test").start_as_current_span("request") as parent:
        job = asyncio.run(enqueue())  # the task copies the context, span included
    traceparent = meta(pgjobs_conn, job.id)["otel"]["traceparent"]
    assert traceparent.split("-")[1] == format(parent.get_span_context().trace_id, "032x")


def test_follow_ups_are_children_of_the_jobs_span(
    app: pgjobs.App, start: Callable[..., Running], spans: InMemorySpanExporter, pgjobs_conn: Conn
) -> None:
    @app.task(name="traced.first")
    def first() -> None:  # a sync handler: the context follows it into its thread
        pgjobs.current_job().enqueue("traced.second")

    @app.task(name="traced.second")
    async def second() -> None:
        pgjobs.current_job().enqueue("traced.third")

    @app.task(name="traced.third")
    async def third() -> None:
        return None

    with trace.get_tracer("test").start_as_current_span("request"):
        job = app.enqueue("traced.first")
    start()
    chain = [job.id]
    for _ in range(2):
        row = wait_for(
            lambda: pgjobs_conn.execute(
                "SELECT id FROM pgjobs.jobs WHERE parent_id = %s", (chain[-1],)
            ).fetchone(),
            message="no follow-up",
        )
        assert row is not None
        chain.append(row[0])
    found = [job_span(spans, job_id) for job_id in chain]
    for parent, child in itertools.pairwise(found):
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
        assert child.context.trace_id == parent.context.trace_id


def test_a_failing_job_has_an_error_status(
    app: pgjobs.App, start: Callable[..., Running], spans: InMemorySpanExporter
) -> None:
    @app.task(name="traced.boom", max_attempts=1)
    def boom() -> None:
        raise ValueError("no luck")

    with trace.get_tracer("test").start_as_current_span("request"):
        job = app.enqueue("traced.boom")
    start()
    span = job_span(spans, job.id)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: no luck"
    assert span.attributes is not None and span.attributes["pgjobs.job.outcome"] == "failed"


def test_the_callback_request_carries_the_trace(
    app: pgjobs.App,
    start: Callable[..., Running],
    spans: InMemorySpanExporter,
    receiver: Receiver,
    pgjobs_conn: Conn,
) -> None:
    @app.task(name="traced.ok")
    def ok() -> int:
        return 1

    with trace.get_tracer("test").start_as_current_span("request") as parent:
        job = app.enqueue("traced.ok", callback_url=receiver.url("/ok"))
    trace_id = format(parent.get_span_context().trace_id, "032x")
    start()
    (got,) = receiver.wait_for(1, "/ok")
    version, received_trace, span_id, _ = got.headers["traceparent"].split("-")
    assert version == "00" and received_trace == trace_id
    delivery = pgjobs_conn.execute(
        "SELECT id FROM pgjobs.jobs WHERE parent_id = %s AND task = 'pgjobs.callback'", (job.id,)
    ).fetchone()
    assert delivery is not None
    span = job_span(spans, delivery[0])
    assert format(span.context.span_id, "016x") == span_id
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert json.loads(got.body)["id"] == job.id


def test_a_pgjobs_http_request_carries_the_trace_unless_it_sets_its_own(
    app: pgjobs.App,
    start: Callable[..., Running],
    spans: InMemorySpanExporter,
    receiver: Receiver,
) -> None:
    """The built-in task sends its job span's traceparent, as callbacks do; a traceparent
    the job's own headers carry (any case) is sent as given."""
    own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with trace.get_tracer("test").start_as_current_span("request") as parent:
        traced = app.enqueue("pgjobs.http", {"url": receiver.url("/traced")})
        chosen = app.enqueue(
            "pgjobs.http", {"url": receiver.url("/chosen"), "headers": {"TraceParent": own}}
        )
    start()
    (got,) = receiver.wait_for(1, "/traced")
    _, received_trace, span_id, _ = got.headers["traceparent"].split("-")
    assert received_trace == format(parent.get_span_context().trace_id, "032x")
    assert format(job_span(spans, traced.id).context.span_id, "016x") == span_id
    (given,) = receiver.wait_for(1, "/chosen")
    assert [v for k, v in given.lines if k.lower() == "traceparent"] == [own]
    assert job_span(spans, chosen.id) is not None
