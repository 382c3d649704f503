"""The dashboard's routes: pages (GET), buttons (POST, CSRF-checked), login and logout.

URLs live under ``/ui/`` (the overview is ``/``), apart from the API's: ``/jobs`` is the
API's list, ``/ui/jobs`` the page. Every state change is a POST to ``/ui/actions/<verb>``
whose form carries the CSRF token (see :mod:`~pgjobs.web.dashboard.security`); it answers
with a redirect back to the page it came from (post/redirect/get, so that reloading a page
never repeats an action) and leaves a one-line report in a short-lived cookie that the next
page shows once. Bulk actions ("retry all", "cancel all") first answer with a confirmation
page saying how many jobs they will change; one press changes a bounded number of jobs, and
when more may match, its answer is the confirmation of the next part.

Routes read through :mod:`~pgjobs.web.dashboard.queries` (bounded, index-driven) and change
through the statements every other client uses (:func:`pgjobs.db.retry`,
:func:`pgjobs.db.cancel`, :mod:`pgjobs.queue_control`, :mod:`pgjobs.schedules`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from urllib.parse import parse_qs, quote, unquote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pgjobs import admin, db, queue_control, validation
from pgjobs import schedules as schedule_store
from pgjobs.app import App
from pgjobs.errors import InvalidInput, NotFound
from pgjobs.log import get_logger
from pgjobs.types import JobStatus
from pgjobs.web.auth import PRINCIPAL_SCOPE_KEY, Principal, route_path
from pgjobs.web.dashboard import queries, views
from pgjobs.web.dashboard.script import LIVE_JS
from pgjobs.web.dashboard.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    SessionCookies,
    new_csrf_cookie,
    safe_next,
)
from pgjobs.web.pages import CONTENT_SECURITY_POLICY, LIVE_PAGE_POLICY

log = get_logger("pgjobs.web.dashboard")

#: The one-time report of the last action.
FLASH_COOKIE = "pgjobs_flash"
FLASH_SECONDS = 60
FLASH_MAX = 1500
#: A bulk action changes at most this many jobs, and reads at most this many index
#: entries, per press; when more may match, it asks to go on.
BULK_MAX = 10_000
BULK_SCAN_MAX = 200_000
#: Jobs changed per statement by a bulk action.
BULK_BATCH = 500
#: Refused jobs a report names one by one.
REPORT_NAMED = 5
#: Paths reachable without credentials: the login form itself.
PUBLIC_PATHS = ("/ui/login",)
MAX_ID = queries.MAX_ID


@dataclass(frozen=True)
class Targets:
    """What an action applies to: the ids, and for a bulk action its filter and where the
    next part starts (None: nothing left)."""

    ids: list[int]
    where: queries.JobFilter | None = None
    following: queries.Cursor | None = None


class PageError(Exception):
    """A page or action that cannot be served: rendered as an HTML error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _principal(request: Request) -> Principal:
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)
    return principal if isinstance(principal, Principal) else Principal(name="anonymous")


def _here(request: Request) -> str:
    """This request's path and query, relative to where the application is mounted."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    return route_path(request.scope) + (f"?{query}" if query else "")


def _cookie_path(request: Request) -> str:
    return _root(request) or "/"


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


# --- query strings and forms ----------------------------------------------------------------


def _text(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _status(value: str | None) -> JobStatus | None:
    value = _text(value)
    if value is None:
        return None
    try:
        return JobStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidInput(f"unknown status {value!r}: use one of {known}") from None


def _job_filter(
    values: dict[str, str], *, status: JobStatus | None = None, retrying: bool = False
) -> queries.JobFilter:
    queue = _text(values.get("queue"))
    task = _text(values.get("task"))
    if queue is not None:
        validation.queue_name(queue)
    if task is not None:
        validation.task_name(task)
    chosen = status if status is not None else _status(values.get("status"))
    return queries.JobFilter(chosen, queue, task, retrying=retrying)


def _job_id(value: str | None, field: str = "id") -> int:
    text = (value or "").strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise InvalidInput(f"invalid {field} {value!r}: a job id is a positive whole number")
    return int(text)


def _cursor(values: dict[str, str]) -> queries.Cursor:
    before = _text(values.get("before"))
    before_at = _text(values.get("before_at"))
    moment = None
    if before_at is not None:
        try:
            moment = datetime.fromisoformat(before_at)
        except ValueError:
            raise InvalidInput(f"invalid before_at {before_at!r}: an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise InvalidInput(f"invalid before_at {before_at!r}: give its UTC offset")
    return queries.Cursor(_job_id(before, "before") if before else MAX_ID, moment)


def _same_origin(request: Request) -> None:
    """Refuse a POST the browser says another site's page (``cross-site``) or a page of
    a sibling host (``same-site``: it could plant cookies for the parent domain) sent; the
    dashboard's own forms are ``same-origin``. Clients that do not send the header (scripts,
    old browsers) are left to the CSRF check."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise PageError(403, "refused: this request came from another site")


async def _form(request: Request) -> dict[str, str]:
    """A URL-encoded form (the only kind the dashboard's pages send; no multipart parser
    needed). The body size is already capped by the server's body limit."""
    body = await request.body()
    if not body:  # a form without fields
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise PageError(415, "send the form as application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "malformed form") from None
    return {name: values[0] for name, values in parsed.items()}


# --- the dashboard --------------------------------------------------------------------------


class Dashboard:
    """The routes, with what they share: the application and the session reader (None
    when the server has no tokens)."""

    def __init__(self, app: App, sessions: SessionCookies | None) -> None:
        self.app = app
        self.sessions = sessions

    # --- CSRF ---------------------------------------------------------------------------

    def _expected_csrf(self, request: Request) -> str | None:
        """The CSRF token this request must carry; ``""`` when it needs none (a bearer
        token, which a form of another site cannot send); None when no valid one exists."""
        principal = _principal(request)
        if self.sessions is None:  # no tokens: the double-submit cookie
            return request.cookies.get(CSRF_COOKIE) or None
        if principal.ambient:
            return principal.csrf_token
        return ""

    def check_csrf(self, request: Request, form: dict[str, str]) -> None:
        _same_origin(request)
        expected = self._expected_csrf(request)
        if expected == "":
            return
        offered = form.get(CSRF_FIELD, "")
        if (
            not expected
            or not offered
            or not hmac.compare_digest(
                hashlib.sha256(expected.encode()).digest(),
                hashlib.sha256(offered.encode()).digest(),
            )
        ):
            raise PageError(
                403,
                "refused: the form's CSRF token is missing or wrong (reload the page and try "
                "again); nothing was changed",
            )

    # --- pages --------------------------------------------------------------------------

    def context(self, request: Request) -> tuple[views.Context, str | None]:
        """The page context, and a CSRF cookie to set (no tokens, first visit)."""
        principal = _principal(request)
        new_cookie = None
        if self.sessions is None:
            csrf = request.cookies.get(CSRF_COOKIE) or ""
            if not csrf:
                csrf = new_cookie = new_csrf_cookie()
        else:
            csrf = principal.csrf_token or ""
        flash_text = request.cookies.get(FLASH_COOKIE)
        flash = [line for line in unquote(flash_text).split("\n") if line] if flash_text else []
        ctx = views.Context(root=_root(request), csrf=csrf, session=principal.ambient, flash=flash)
        return ctx, new_cookie

    def page(
        self,
        request: Request,
        render: Callable[[views.Context], str],
        *,
        status: int = 200,
        policy: str = CONTENT_SECURITY_POLICY,
    ) -> HTMLResponse:
        ctx, new_cookie = self.context(request)
        response = HTMLResponse(
            render(ctx),
            status_code=status,
            headers={"Content-Security-Policy": policy, "Cache-Control": "no-store"},
        )
        if new_cookie is not None:
            response.set_cookie(
                CSRF_COOKIE,
                new_cookie,
                httponly=True,
                samesite="strict",
                secure=_https(request),
                path=_cookie_path(request),
            )
        if ctx.flash:
            response.delete_cookie(FLASH_COOKIE, path=_cookie_path(request))
        return response

    def error(self, request: Request, error: PageError) -> HTMLResponse:
        return self.page(
            request,
            lambda ctx: views.error_page(ctx, error.status, error.message),
            status=error.status,
        )

    async def guarded(
        self, request: Request, handler: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Run a route; its refusals become HTML error pages (the API's are JSON)."""
        try:
            return await handler()
        except PageError as exc:
            return self.error(request, exc)
        except InvalidInput as exc:
            return self.error(request, PageError(422, str(exc)))
        except NotFound as exc:
            return self.error(request, PageError(404, str(exc)))

    def redirect(self, request: Request, back: str | None, report: Sequence[str]) -> Response:
        """Back to the page the button was on, with the action's report."""
        response = RedirectResponse(_root(request) + safe_next(back), status_code=303)
        text = "\n".join(report)
        if len(text) > FLASH_MAX:
            text = text[: FLASH_MAX - 1] + "…"
        response.set_cookie(
            FLASH_COOKIE,
            quote(text, safe=""),
            max_age=FLASH_SECONDS,
            httponly=True,
            samesite="strict",
            secure=_https(request),
            path=_cookie_path(request),
        )
        return response

    async def overview(self, request: Request) -> Response:
        async with self.app.connection_async() as conn:
            data = await queries.overview(conn, self.app.schema)
        return self.page(request, lambda ctx: views.overview(ctx, data))

    async def jobs(self, request: Request) -> Response:
        values = dict(request.query_params)
        where = _job_filter(values)
        cursor = _cursor(values)
        async with self.app.connection_async() as conn:
            page = await queries.list_jobs(conn, self.app.schema, where, cursor)
        first = cursor == queries.Cursor()
        back = _here(request)
        return self.page(
            request, lambda ctx: views.jobs_page(ctx, where, page, first=first, back=back)
        )

    async def failed(self, request: Request) -> Response:
        values = dict(request.query_params)
        retrying = values.get("tab") == "retrying"
        status = JobStatus.QUEUED if retrying else JobStatus.FAILED
        where = _job_filter(values, status=status, retrying=retrying)
        cursor = _cursor(values)
        async with self.app.connection_async() as conn:
            page = await queries.list_jobs(conn, self.app.schema, where, cursor)
        first = cursor == queries.Cursor()
        back = _here(request)
        return self.page(
            request,
            lambda ctx: views.failed_page(
                ctx, where, page, first=first, back=back, retrying=retrying
            ),
        )

    async def job(self, request: Request, job_id: int) -> Response:
        async with self.app.connection_async() as conn:
            detail = await queries.job_detail(conn, self.app.schema, job_id)
        if detail is None:
            raise NotFound(f"no job with id {job_id} (it may have been pruned)")

        def chain() -> admin.TreeNode | None:
            with self.app.connection() as conn:
                return admin.job_tree(conn, self.app.schema, job_id)

        tree = await asyncio.to_thread(chain)
        back = safe_next(request.query_params.get("back") or "/ui/jobs")
        return self.page(
            request,
            lambda ctx: views.job_page(ctx, detail, tree, back=back),
            policy=LIVE_PAGE_POLICY if not detail.job.status.finished else CONTENT_SECURITY_POLICY,
        )

    async def schedules(self, request: Request) -> Response:
        async with self.app.connection_async() as conn:
            rows = await queries.schedules(conn, self.app.schema)
        return self.page(request, lambda ctx: views.schedules_page(ctx, rows))

    async def workers(self, request: Request) -> Response:
        async with self.app.connection_async() as conn:
            rows = await queries.workers(conn, self.app.schema)
        return self.page(request, lambda ctx: views.workers_page(ctx, rows))

    # --- actions ------------------------------------------------------------------------

    async def act(self, request: Request, verb: str) -> Response:
        form = await _form(request)
        self.check_csrf(request, form)
        handler = self.actions.get(verb)
        if handler is None:
            raise PageError(404, f"no action {verb!r}")
        return await handler(self, request, form)

    async def _pause(self, request: Request, form: dict[str, str], paused: bool) -> Response:
        name = validation.queue_name(_text(form.get("queue")) or "")

        def store() -> None:
            with self.app.connection() as conn:
                queue_control.set_paused(conn, self.app.schema, name, paused)

        await asyncio.to_thread(store)
        log.info(
            "dashboard.queue_paused" if paused else "dashboard.queue_resumed",
            queue=name,
            by=_principal(request).name,
        )
        word = "paused: its jobs wait" if paused else "resumed"
        return self.redirect(request, form.get("back"), [f"Queue {name} {word}."])

    async def pause(self, request: Request, form: dict[str, str]) -> Response:
        return await self._pause(request, form, True)

    async def resume(self, request: Request, form: dict[str, str]) -> Response:
        return await self._pause(request, form, False)

    async def _schedule(self, request: Request, form: dict[str, str], paused: bool) -> Response:
        name = _text(form.get("name")) or ""

        def store() -> None:
            with self.app.connection() as conn:
                schedule_store.set_paused(conn, self.app.schema, name, paused)

        await asyncio.to_thread(store)
        word = "paused" if paused else "resumed (from its next fire time)"
        return self.redirect(request, form.get("back"), [f"Schedule {name} {word}."])

    async def schedule_pause(self, request: Request, form: dict[str, str]) -> Response:
        return await self._schedule(request, form, True)

    async def schedule_resume(self, request: Request, form: dict[str, str]) -> Response:
        return await self._schedule(request, form, False)

    def _bulk_fields(
        self, form: dict[str, str], where: queries.JobFilter, cursor: queries.Cursor
    ) -> dict[str, object]:
        """The fields of a bulk action's confirmation: its filter, and where it starts."""
        return {
            "all": 1,
            "status": where.status.value if where.status else None,
            "queue": where.queue,
            "task": where.task,
            "retrying": 1 if where.retrying else None,
            "before": cursor.before_id,
            "before_at": cursor.before_at.isoformat() if cursor.before_at else None,
            "back": form.get("back"),
        }

    async def _targets(
        self, request: Request, form: dict[str, str], verb: str, allowed: Sequence[JobStatus]
    ) -> Targets | Response:
        """The jobs an action applies to: one (``id``), or every job of a filter (``all``),
        which first answers with a confirmation page. A bulk action takes at most
        :data:`BULK_MAX` jobs and reads at most :data:`BULK_SCAN_MAX` index entries per
        press; ``following`` says where the next press goes on."""
        if form.get("all") != "1":
            return Targets([_job_id(form.get("id"))])
        where = _job_filter(form, retrying=form.get("retrying") == "1")
        if where.status not in allowed:
            names = " or ".join(s.value for s in allowed)
            raise InvalidInput(f"{verb} all: choose jobs by status first ({names})")
        async with self.app.connection_async() as conn:
            confirmed = form.get("confirm") == "1"
            start = (
                _cursor(form) if confirmed else await queries.start_cursor(conn, self.app.schema)
            )
            ids, following = await queries.matching_ids(
                conn, self.app.schema, where, start, at_most=BULK_MAX, scan_max=BULK_SCAN_MAX
            )
        if not confirmed:
            fields = self._bulk_fields(form, where, start)
            back = safe_next(form.get("back"))
            return self.page(
                request,
                lambda ctx: views.confirm_page(
                    ctx, verb, len(ids), following is not None, fields, back
                ),
            )
        return Targets(ids, where, following)

    def _done(
        self,
        request: Request,
        form: dict[str, str],
        verb: str,
        targets: Targets,
        report: list[str],
    ) -> Response:
        """After an action: back to the page, or, when a bulk action stopped at its bounds,
        the confirmation of the next part (with this part's report)."""
        if targets.following is None or targets.where is None:
            return self.redirect(request, form.get("back"), report)
        fields = self._bulk_fields(form, targets.where, targets.following)
        back = safe_next(form.get("back"))
        return self.page(
            request,
            lambda ctx: views.confirm_page(ctx, verb, None, True, fields, back, done=report),
        )

    async def retry(self, request: Request, form: dict[str, str]) -> Response:
        targets = await self._targets(
            request, form, "retry", (JobStatus.FAILED, JobStatus.CANCELLED)
        )
        if isinstance(targets, Response):
            return targets
        ids = targets.ids
        results: list[db.RetryResult] = []
        async with self.app.connection_async() as conn:
            for start in range(0, len(ids), BULK_BATCH):
                chunk = ids[start : start + BULK_BATCH]
                batch: list[db.RetryResult] = await db.run_async(
                    conn, db.retry(self.app.schema, chunk)
                )
                results.extend(batch)
        found = {r.job_id for r in results}
        retried = [r for r in results if r.retried]
        refused = [
            f"#{r.job_id} (its dedupe key is held by job #{r.dedupe_holder})"
            if r.dedupe_holder is not None
            else f"#{r.job_id} (it is {r.previous_status.value})"
            for r in results
            if not r.retried
        ] + [f"#{i} (no such job)" for i in ids if i not in found]
        report = [f"Retried {len(retried)} job(s): back in their queue, due now."]
        report += self._refusals("not retried", refused)
        log.info(
            "dashboard.retry",
            retried=len(retried),
            refused=len(refused),
            by=_principal(request).name,
        )
        return self._done(request, form, "retry", targets, report)

    async def cancel(self, request: Request, form: dict[str, str]) -> Response:
        targets = await self._targets(
            request, form, "cancel", (JobStatus.QUEUED, JobStatus.RUNNING)
        )
        if isinstance(targets, Response):
            return targets
        ids = targets.ids
        reason = f"cancelled from the dashboard ({_principal(request).name})"
        results: list[db.CancelResult] = []
        async with self.app.connection_async() as conn:
            for start in range(0, len(ids), BULK_BATCH):
                chunk = ids[start : start + BULK_BATCH]
                asked: list[db.CancelResult] = await db.run_async(
                    conn, db.cancel(self.app.schema, chunk, reason)
                )
                results.extend(asked)
        found = {r.job_id for r in results}
        outcomes = [r.outcome for r in results]
        report = [
            f"Cancelled {outcomes.count('cancelled')} job(s); asked "
            f"{outcomes.count('cancel_requested') + outcomes.count('already_requested')} "
            "running job(s) to stop."
        ]
        refused = [
            f"#{r.job_id} (it already ended {r.previous_status.value})"
            for r in results
            if r.outcome == "finished"
        ] + [f"#{i} (no such job)" for i in ids if i not in found]
        report += self._refusals("not cancelled", refused)
        log.info("dashboard.cancel", jobs=len(results), by=_principal(request).name)
        return self._done(request, form, "cancel", targets, report)

    @staticmethod
    def _refusals(what: str, refused: Sequence[str]) -> list[str]:
        if not refused:
            return []
        named = ", ".join(refused[:REPORT_NAMED])
        rest = len(refused) - REPORT_NAMED
        return [f"{len(refused)} {what}: {named}" + (f" and {rest} more" if rest > 0 else "")]

    actions: ClassVar[
        dict[str, Callable[[Dashboard, Request, dict[str, str]], Awaitable[Response]]]
    ] = {
        "pause": pause,
        "resume": resume,
        "schedule-pause": schedule_pause,
        "schedule-resume": schedule_resume,
        "retry": retry,
        "cancel": cancel,
    }

    # --- login --------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        wanted = safe_next(request.query_params.get("next"))
        if self.sessions is None:
            return RedirectResponse(_root(request) + wanted, status_code=303)
        return self.login_page(request, wanted)

    def login_page(self, request: Request, wanted: str, error: str | None = None) -> Response:
        return HTMLResponse(
            views.login_page(_root(request), wanted, error),
            status_code=401 if error else 200,
            headers={
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "Cache-Control": "no-store",
                **({"WWW-Authenticate": 'Bearer realm="pgjobs"'} if error else {}),
            },
        )

    async def login(self, request: Request) -> Response:
        _same_origin(request)
        form = await _form(request)
        wanted = safe_next(form.get("next"))
        if self.sessions is None:
            return RedirectResponse(_root(request) + wanted, status_code=303)
        position = self.sessions.position(form.get("token", "").strip())
        if position is None:
            log.warning("dashboard.login_refused")
            return self.login_page(
                request, wanted, "That is not one of the server's tokens (PGJOBS_API_TOKENS)."
            )
        response = RedirectResponse(_root(request) + wanted, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.issue(position),
            max_age=self.sessions.lifetime,
            httponly=True,
            samesite="strict",
            secure=_https(request),
            path=_cookie_path(request),
        )
        log.info("dashboard.login", token=f"token#{position}")
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        self.check_csrf(request, form)
        response = RedirectResponse(_root(request) + "/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))
        return response


def router(app: App, sessions: SessionCookies | None) -> APIRouter:
    """The dashboard's routes, for :func:`pgjobs.web.create_app` to include."""
    board = Dashboard(app, sessions)
    routes = APIRouter(include_in_schema=False)

    @routes.get("/", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        return await board.guarded(request, lambda: board.overview(request))

    @routes.get("/ui/jobs", response_class=HTMLResponse)
    async def jobs(request: Request) -> Response:
        return await board.guarded(request, lambda: board.jobs(request))

    @routes.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
    async def job(request: Request, job_id: str) -> Response:
        return await board.guarded(request, lambda: board.job(request, _job_id(job_id)))

    @routes.get("/ui/failed", response_class=HTMLResponse)
    async def failed(request: Request) -> Response:
        return await board.guarded(request, lambda: board.failed(request))

    @routes.get("/ui/schedules", response_class=HTMLResponse)
    async def schedules(request: Request) -> Response:
        return await board.guarded(request, lambda: board.schedules(request))

    @routes.get("/ui/workers", response_class=HTMLResponse)
    async def workers(request: Request) -> Response:
        return await board.guarded(request, lambda: board.workers(request))

    @routes.post("/ui/actions/{verb}")
    async def act(request: Request, verb: str) -> Response:
        return await board.guarded(request, lambda: board.act(request, verb))

    @routes.get("/ui/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return await board.guarded(request, lambda: board.login_form(request))

    @routes.post("/ui/login")
    async def login(request: Request) -> Response:
        return await board.guarded(request, lambda: board.login(request))

    @routes.post("/ui/logout")
    async def logout(request: Request) -> Response:
        return await board.guarded(request, lambda: board.logout(request))

    @routes.get("/ui/static/live.js")
    async def script() -> Response:
        return Response(
            LIVE_JS,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    return routes
