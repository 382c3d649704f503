"""The ASGI application of ``pgjobs serve``: :func:`create_app`.

Routes are thin: producing goes through :meth:`pgjobs.App.enqueue_async` (the same
validation and encoding as every other producer), managing through the statements of
:mod:`pgjobs.db` (cancel, retry) and the listings of :mod:`pgjobs.admin`, which are sync
functions run in worker threads so that the event loop never blocks. Errors become the
JSON of :mod:`pgjobs.web.errors`; authentication and the body limit are middlewares that
run before any route (:mod:`pgjobs.web.auth`, :mod:`pgjobs.web.limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Header, Path, Query, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgjobs import admin, callbacks, db
from pgjobs.app import App
from pgjobs.config import Settings
from pgjobs.connection import one_line
from pgjobs.errors import InvalidInput, NotFound
from pgjobs.log import get_logger
from pgjobs.types import JobRecord
from pgjobs.web import dashboard, errors, events
from pgjobs.web.auth import (
    PRINCIPAL_SCOPE_KEY,
    Authenticator,
    AuthMiddleware,
    BearerTokens,
    Principal,
)
from pgjobs.web.limits import BodySizeLimit
from pgjobs.web.metrics import CONTENT_TYPE, Collector
from pgjobs.web.models import (
    Error,
    Health,
    Job,
    JobCreate,
    JobCreated,
    JobId,
    JobPage,
    Queue,
    QueueList,
)
from pgjobs.web.options import (
    HEARTBEAT_SECONDS_DEFAULT,
    MAX_BODY_DEFAULT,
    RECHECK_SECONDS_DEFAULT,
    WebOptions,
    tokens_from_env,
)

log = get_logger("pgjobs.web")

#: Paths served without a token: probes carry none.
PUBLIC_PATHS = ("/healthz",)
#: A replayed Idempotency-Key returns the first job for this long after its creation.
IDEMPOTENCY_WINDOW = timedelta(days=1)
#: Idempotency keys live among dedupe keys under this prefix, which request bodies may not use.
IDEMPOTENCY_PREFIX = "idempotency:"
IDEMPOTENCY_KEY_MAX = 255
_IDEMPOTENCY_KEY = re.compile(r"^[\x20-\x7e]+$")
#: Where the HTTP API keeps its own bookkeeping in a job's ``meta``.
META_KEY = "http"
#: Page sizes of GET /jobs (the CLI allows more; a page is one JSON document in memory).
LIST_LIMIT_MAX = 1000
#: /healthz gives up on the database after this long.
HEALTH_TIMEOUT_SECONDS = 3.0

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No valid API token (PGJOBS_API_TOKENS is set)."},
    422: {"model": Error, "description": "Malformed input; nothing was changed."},
    503: {"model": Error, "description": "The database cannot be reached."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Error, "description": "No such job."}}


class SecurityHeaders:
    """Headers every answer carries: browsers must not guess a JSON body's type (an error
    message quoting ``<script>`` stays text), nor frame the pages, nor leak URLs."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _principal(request: Request) -> Principal:
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    return principal if isinstance(principal, Principal) else Principal(name="anonymous")


def _idempotency_key(value: str) -> str:
    """The key of an ``Idempotency-Key`` header: visible ASCII, 1-255 characters. A quoted
    value (the structured-field form of the IETF draft) counts without its quotes."""
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not _IDEMPOTENCY_KEY.match(key):
        raise InvalidInput(
            f"invalid Idempotency-Key header: use 1-{IDEMPOTENCY_KEY_MAX} printable ASCII "
            "characters (a UUID is a good key)"
        )
    return key


def _fingerprint(body: JobCreate) -> str:
    """What a replay must repeat: the request as validated, in a canonical JSON form."""
    canonical = json.dumps(
        body.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _with_idempotency(body: JobCreate, key: str, options: dict[str, Any]) -> str:
    """Turn an Idempotency-Key into a dedupe key with a one-day window (the machinery of
    ``dedupe_for``: a replay within the window returns the first job, finished or not),
    and record the request's fingerprint in the job's meta. Returns the fingerprint."""
    clashing = [
        name
        for name in ("dedupe_key", "dedupe_for", "dedupe_mode", "depends_on")
        if name in options
    ]
    if clashing:
        raise InvalidInput(
            f"an Idempotency-Key header cannot be combined with {', '.join(clashing)} "
            "(it is a dedupe key itself)"
        )
    meta = dict(options.get("meta") or {})
    if META_KEY in meta:
        raise InvalidInput(f"meta.{META_KEY} is reserved when an Idempotency-Key is given")
    fingerprint = _fingerprint(body)
    meta[META_KEY] = {"idempotency_key": key, "request_sha256": fingerprint}
    options.update(dedupe_key=IDEMPOTENCY_PREFIX + key, dedupe_for=IDEMPOTENCY_WINDOW, meta=meta)
    return fingerprint


def _replayed_fingerprint(record: JobRecord) -> str | None:
    recorded = (record.meta or {}).get(META_KEY)
    return recorded.get("request_sha256") if isinstance(recorded, Mapping) else None


# --- callbacks ----------------------------------------------------------------------------


async def _callback_delivery(app: App, record: JobRecord) -> dict[str, Any] | None:
    """Where the callbacks of a job stand (:func:`pgjobs.callbacks.delivery_async`, one
    indexed query), for jobs that have a callback URL; ``None`` for the others."""
    if record.callback_url is None:
        return None
    async with app.connection_async() as conn:
        state = await callbacks.delivery_async(conn, app.schema, record.id)
    return state.to_json() if state is not None else None


# --- the application ------------------------------------------------------------------------


def create_app(
    source: App | Settings | None = None,
    *,
    tokens: tuple[str, ...] | list[str] | None = None,
    max_body: int = MAX_BODY_DEFAULT,
    heartbeat_seconds: float = HEARTBEAT_SECONDS_DEFAULT,
    recheck_seconds: float = RECHECK_SECONDS_DEFAULT,
) -> FastAPI:
    """The HTTP API as an ASGI application, for ``pgjobs serve`` or any ASGI server::

        from pgjobs.web import create_app
        api = create_app(pgjobs.App("postgresql://..."), tokens=["..."])
        # uvicorn.run(api, host="127.0.0.1", port=8000)

    ``source``: the :class:`pgjobs.App` to serve (its pools are closed when the
    application shuts down; they reopen on next use), or settings to build one from
    (default: the environment, as every pgjobs command). ``tokens``: the accepted bearer
    tokens; ``None`` reads ``PGJOBS_API_TOKENS``, empty means no authentication.
    ``max_body``: the largest request body in bytes. ``heartbeat_seconds``: how often a
    quiet SSE stream sends a comment. ``recheck_seconds``: how often SSE streams re-read
    their jobs without a notification (see :mod:`pgjobs.web.events`).
    """
    if isinstance(source, App):
        app = source
    else:
        settings = source if source is not None else Settings.from_env()
        app = App(settings.dsn, schema=settings.schema, home=settings.home)
    options = WebOptions(
        tokens=tuple(tokens) if tokens is not None else tokens_from_env(),
        max_body=max_body,
        heartbeat_seconds=heartbeat_seconds,
        recheck_seconds=recheck_seconds,
    )
    hub = events.EventHub(app, recheck_seconds=options.recheck_seconds)
    collector = Collector(app, hub)

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            await app.close_async()

    api = FastAPI(
        title="pgjobs",
        summary="Submit jobs, follow them, manage queues: PostgreSQL is the only moving part.",
        version=_version(),
        lifespan=lifespan,
        redoc_url=None,
        responses={},
    )
    api.state.pgjobs = app
    api.state.hub = hub
    api.state.options = options
    errors.install(api)
    # Outermost first, once built: security headers, authentication, body limit, routes.
    api.add_middleware(BodySizeLimit, max_body=options.max_body)
    # With tokens, the dashboard's session cookie is a second way in (after the bearer one).
    sessions = dashboard.SessionCookies(options.tokens) if options.tokens else None
    api.add_middleware(
        AuthMiddleware,
        authenticator=Authenticator([BearerTokens(options.tokens), sessions])
        if sessions is not None
        else Authenticator(),
        public=(*PUBLIC_PATHS, *dashboard.PUBLIC_PATHS),
        login_redirect=dashboard.login_redirect,
        ambient_writes=dashboard.is_dashboard_path,
    )
    api.add_middleware(SecurityHeaders)
    _document_security(api, enabled=bool(options.tokens))

    async def read_job(job_id: int) -> JobRecord | None:
        async with app.connection_async() as conn:
            return await db.run_async(conn, db.get_job(app.schema, job_id))

    def render(record: JobRecord) -> str:
        return Job.of(record).model_dump_json()

    @api.post(
        "/jobs",
        status_code=202,
        response_model=JobCreated,
        responses={
            200: {
                "model": JobCreated,
                "description": "Nothing enqueued: the job of this Idempotency-Key (within a "
                "day), or the unfinished job holding this dedupe_key.",
            },
            202: {"description": "Enqueued. Location: /jobs/{id}."},
            413: {"model": Error, "description": "The body is over the size limit."},
            **ERRORS,
        },
        tags=["jobs"],
    )
    async def enqueue(
        body: JobCreate,
        request: Request,
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(
                description="Retry-safe submission: the same key within a day returns the "
                "first job (200) instead of enqueuing another."
            ),
        ] = None,
    ) -> JobCreated:
        """Enqueue a job. 202 and `Location: /jobs/{id}` when enqueued; 200 with the
        existing job when an Idempotency-Key or a dedupe key says it already exists."""
        values = body.model_dump(exclude={"task", "args"}, exclude_none=True)
        if str(values.get("dedupe_key", "")).startswith(IDEMPOTENCY_PREFIX):
            raise InvalidInput(
                f"dedupe keys starting with {IDEMPOTENCY_PREFIX!r} are reserved for the "
                "Idempotency-Key header"
            )
        fingerprint = None
        if idempotency_key is not None:
            key = _idempotency_key(idempotency_key)
            fingerprint = _with_idempotency(body, key, values)
        job = await app.enqueue_async(body.task, body.args, **values)
        if fingerprint is not None and job.existing and _replayed_fingerprint(job) != fingerprint:
            raise InvalidInput(
                f"this Idempotency-Key was used within the last day for another request "
                f"(job {job.id}): use a new key for a new job"
            )
        response.status_code = 200 if job.existing else 202
        response.headers["Location"] = f"{_root(request)}/jobs/{job.id}"
        return JobCreated.of(job, existing=job.existing)

    @api.get("/jobs/{job_id}", response_model=Job, responses={**NOT_FOUND, **ERRORS}, tags=["jobs"])
    async def get_job(job_id: Annotated[JobId, Path()]) -> Job:
        """A job: status, attempts, progress, result or error, timestamps."""
        record = await read_job(job_id)
        if record is None:
            raise NotFound(f"no job with id {job_id}")
        return Job.of(record, callback_delivery=await _callback_delivery(app, record))

    @api.get(
        "/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "An event with the job now, one at each status or progress "
                "change, `end` with the final state; then the stream closes.",
            },
            204: {"description": "The client already has the final state (Last-Event-ID)."},
            **NOT_FOUND,
            **ERRORS,
        },
        tags=["jobs"],
    )
    async def job_events(
        job_id: Annotated[JobId, Path()],
        last_event_id: Annotated[
            str | None,
            Header(description="Sent by a reconnecting EventSource: the last version it got."),
        ] = None,
    ) -> Response:
        """Server-sent events of a job (see docs/http.md)."""
        await hub.start()
        subscription = hub.subscribe(job_id)  # before the read: no change falls in between
        try:
            await hub.watch_starts()  # before the read too: a later start is announced
            first = await read_job(job_id)
        except BaseException:
            hub.unsubscribe(subscription)
            raise
        seen = events.last_event_id(last_event_id)
        if first is None or (first.status.finished and seen == first.version):
            hub.unsubscribe(subscription)
            if first is None:
                raise NotFound(f"no job with id {job_id}")
            return Response(status_code=204)  # an EventSource stops reconnecting on 204
        return StreamingResponse(
            events.job_stream(
                hub,
                subscription,
                first,
                read=read_job,
                render=render,
                heartbeat_seconds=options.heartbeat_seconds,
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @api.post(
        "/jobs/{job_id}/cancel",
        response_model=Job,
        responses={
            409: {"model": Error, "description": "The job has already ended."},
            **NOT_FOUND,
            **ERRORS,
        },
        tags=["jobs"],
    )
    async def cancel(job_id: Annotated[JobId, Path()], request: Request) -> Job:
        """Cancel a job: a queued job ends `cancelled` at once; a running one is asked to
        stop (its `cancel_requested_at` is set; it ends `cancelled` when its handler stops)."""
        reason = f"cancelled through the HTTP API ({_principal(request).name})"
        async with app.connection_async() as conn:
            results = await db.run_async(conn, db.cancel(app.schema, [job_id], reason))
            if not results:
                raise NotFound(f"no job with id {job_id}")
            if results[0].outcome == "finished":
                status = results[0].previous_status.value
                raise errors.ApiError(
                    409,
                    f"job {job_id} has already ended ({status}): only queued or running jobs "
                    "can be cancelled",
                )
            record = await db.run_async(conn, db.get_job(app.schema, job_id))
        if record is None:  # pruned in between
            raise NotFound(f"no job with id {job_id}")
        return Job.of(record)

    @api.post(
        "/jobs/{job_id}/retry",
        response_model=Job,
        responses={
            409: {
                "model": Error,
                "description": "The job is not failed or cancelled, or another unfinished "
                "job holds its dedupe key.",
            },
            **NOT_FOUND,
            **ERRORS,
        },
        tags=["jobs"],
    )
    async def retry(job_id: Annotated[JobId, Path()]) -> Job:
        """Put a failed or cancelled job back in its queue, due now, with at least one more
        attempt than it used."""
        async with app.connection_async() as conn:
            results = await db.run_async(conn, db.retry(app.schema, [job_id]))
            if not results:
                raise NotFound(f"no job with id {job_id}")
            result = results[0]
            if not result.retried:
                if result.dedupe_holder is not None:
                    message = (
                        f"job {job_id} was not retried: its dedupe key is held by unfinished "
                        f"job {result.dedupe_holder}"
                    )
                else:
                    message = (
                        f"job {job_id} is {result.previous_status.value}: only failed or "
                        "cancelled jobs can be retried"
                    )
                raise errors.ApiError(409, message)
            record = await db.run_async(conn, db.get_job(app.schema, job_id))
        if record is None:
            raise NotFound(f"no job with id {job_id}")
        return Job.of(record)

    @api.get("/jobs", response_model=JobPage, responses=ERRORS, tags=["jobs"])
    async def list_jobs(
        request: Request,
        status: Annotated[
            str | None,
            Query(
                description="queued, running, succeeded, failed, cancelled; "
                "several separated by commas."
            ),
        ] = None,
        queue: str | None = None,
        task: str | None = None,
        limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = admin.LIST_LIMIT_DEFAULT,
        before: Annotated[
            int | None, Query(ge=1, le=2**63 - 1, description="Next page: jobs older than this id.")
        ] = None,
    ) -> JobPage:
        """Jobs, newest first, keyset-paged: follow `next` for older ones."""
        where = admin.JobFilter(admin.parse_statuses(status), queue, task)

        def page() -> list[JobRecord]:
            with app.connection() as conn:
                return admin.list_jobs(conn, app.schema, where, limit=limit, before_id=before)

        records = await asyncio.to_thread(page)
        following = None
        if len(records) == limit:
            query = {"status": status, "queue": queue, "task": task, "limit": limit}
            query = {k: v for k, v in query.items() if v is not None}
            following = f"{_root(request)}/jobs?{urlencode({**query, 'before': records[-1].id})}"
        return JobPage(jobs=[Job.of(r) for r in records], next=following)

    @api.get("/queues", response_model=QueueList, responses=ERRORS, tags=["queues"])
    async def list_queues() -> QueueList:
        """Per queue: jobs by state, the oldest ready job's wait, pause and limits. Reads the
        whole jobs table (a few hundred ms per million rows kept): /metrics is the cheap
        view for frequent polling."""

        def stats() -> list[admin.QueueStats]:
            with app.connection() as conn:
                return admin.queue_stats(conn, app.schema)

        return QueueList(queues=[Queue(**s.to_json()) for s in await asyncio.to_thread(stats)])

    @api.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "The database did not answer."}},
        tags=["operations"],
    )
    async def healthz() -> JSONResponse:
        """Liveness and readiness without a token: 200 when the database answers a trivial
        query within a few seconds, 503 otherwise (no detail: the caller is anonymous)."""

        async def ping() -> None:
            async with app.connection_async() as conn:
                await conn.execute("SELECT 1")

        try:
            await asyncio.wait_for(ping(), HEALTH_TIMEOUT_SECONDS)
        except Exception as exc:
            log.warning("health check: database unavailable", error=one_line(exc))
            body = Health(status="unavailable", database="unavailable")
            return JSONResponse(body.model_dump(), status_code=503)
        return JSONResponse(Health(status="ok", database="ok").model_dump())

    @api.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text."},
            401: ERRORS[401],
        },
        tags=["operations"],
    )
    async def metrics() -> Response:
        """Prometheus metrics (the list is in docs/http.md)."""
        return Response(await collector.collect(), media_type=CONTENT_TYPE)

    board = dashboard.router(app, sessions)
    api.include_router(board)
    errors.index_methods(api, [*api.routes, *board.routes])

    return api


def _version() -> str:
    import pgjobs

    return pgjobs.__version__


def _document_security(api: FastAPI, *, enabled: bool) -> None:
    """Declare the bearer scheme in /openapi.json (the middleware enforces it; routes do
    not declare it one by one). /healthz is marked as needing nothing."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title,
                version=api.version,
                summary=api.summary,
                routes=api.routes,
            )
            if enabled:
                components = schema.setdefault("components", {})
                components.setdefault("securitySchemes", {})["bearer"] = {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the tokens of PGJOBS_API_TOKENS.",
                }
                schema["security"] = [{"bearer": []}]
                for path in PUBLIC_PATHS:
                    for operation in schema.get("paths", {}).get(path, {}).values():
                        operation["security"] = []
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
