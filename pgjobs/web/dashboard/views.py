"""The dashboard's pages, as pure functions from what the queries read to HTML.

Nothing here touches the database or the request: :mod:`pgjobs.web.dashboard.routes`
reads, then calls a view with the rows and a :class:`Context` (where the application is
mounted, the CSRF token the forms carry, the message left by the last action). Every value
goes through :mod:`pgjobs.web.dashboard.html`, which escapes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from pgjobs import cron as cron_rules
from pgjobs.admin import TreeNode
from pgjobs.durations import format_duration
from pgjobs.errors import InvalidInput
from pgjobs.queue_control import Rate
from pgjobs.types import JobRecord, JobStatus
from pgjobs.web.dashboard.html import EMPTY, Child, Html, document, el, join
from pgjobs.web.dashboard.queries import (
    DEPTH_COUNT_MAX,
    FAILED_RECENT,
    Cursor,
    JobDetail,
    JobFilter,
    Overview,
    Page,
    QueueRow,
    Related,
)
from pgjobs.web.dashboard.security import CSRF_FIELD

#: JSON (arguments, results) longer than this is cut on the page (the API has it whole).
JSON_SHOWN_MAX = 64 * 1024
#: Characters of an error's last line shown in a table cell.
ERROR_LINE_MAX = 200
#: How many upcoming fire times a schedule shows.
NEXT_FIRES = 3
#: The overview and the workers page reload themselves this often.
REFRESH_SECONDS = 15

NAV = (
    ("/", "Overview"),
    ("/ui/jobs", "Jobs"),
    ("/ui/failed", "Failed"),
    ("/ui/schedules", "Schedules"),
    ("/ui/workers", "Workers"),
)


@dataclass(frozen=True)
class Context:
    """What every page needs besides its data."""

    #: The prefix the application is mounted at ("" at the root).
    root: str
    #: The value state-changing forms carry (see :mod:`~pgjobs.web.dashboard.security`).
    csrf: str
    #: Whether the viewer came with a session cookie (a logout button is shown).
    session: bool = False
    #: Lines left by the last action (shown once).
    flash: Sequence[str] = ()
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def url(self, path: str, **query: object) -> str:
        """A URL of this application; ``None`` query values are left out."""
        shown = {k: str(v) for k, v in query.items() if v is not None and v != ""}
        return f"{self.root}{path}" + (f"?{urlencode(shown)}" if shown else "")


# --- small pieces -------------------------------------------------------------------------


def when(ctx: Context, moment: datetime | None) -> Html:
    """A time as "3m05s ago" (or "in 2h00m"), the exact UTC time on hover."""
    if moment is None:
        return el("span", "—", class_="muted")
    delta = (ctx.now - moment).total_seconds()
    words = f"{format_duration(abs(delta))} ago" if delta >= 0 else f"in {format_duration(-delta)}"
    exact = moment.astimezone(timezone.utc).isoformat(timespec="seconds")
    return el("time", words, datetime=exact, title=exact)


def exact_time(moment: datetime | None) -> Html:
    if moment is None:
        return el("span", "—", class_="muted")
    exact = moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return el("time", exact, datetime=exact)


def status(value: JobStatus | str | None) -> Html:
    if value is None:
        return el("span", "pruned", class_="muted")
    name = value.value if isinstance(value, JobStatus) else str(value)
    return el("span", name, class_=f"s-{name}")


def number(value: float | int) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def job_link(ctx: Context, job_id: int) -> Html:
    return el("a", f"#{job_id}", href=ctx.url(f"/ui/jobs/{job_id}"))


def last_line(text: str | None, limit: int = ERROR_LINE_MAX) -> str:
    lines = (text or "").strip().splitlines()
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def pretty_json(value: Any) -> str:
    shown = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(shown) > JSON_SHOWN_MAX:
        shown = shown[:JSON_SHOWN_MAX] + f"\n… ({len(shown):,} characters: see the API for all)"
    return shown


def csrf_input(ctx: Context) -> Html:
    return el("input", type="hidden", name=CSRF_FIELD, value=ctx.csrf)


def action(
    ctx: Context,
    name: str,
    label: str,
    fields: Mapping[str, object],
    *,
    danger: bool = False,
    title: str | None = None,
) -> Html:
    """A button that POSTs to ``/ui/actions/<name>`` with the CSRF token and ``fields``."""
    hidden = [
        el("input", type="hidden", name=key, value=str(value))
        for key, value in fields.items()
        if value is not None
    ]
    return el(
        "form",
        csrf_input(ctx),
        hidden,
        el("button", label, type="submit", class_="danger" if danger else None, title=title),
        method="post",
        action=ctx.url(f"/ui/actions/{name}"),
        class_="inline",
    )


def table(headers: Sequence[str | tuple[str, str]], rows: Sequence[Sequence[Child]]) -> Html:
    """``headers``: names, or (name, css class) pairs (``"n"`` aligns numbers right)."""
    head = []
    classes = []
    for header in headers:
        name, css = header if isinstance(header, tuple) else (header, None)
        head.append(el("th", name, class_=css))
        classes.append(css)
    body = [
        el("tr", [el("td", cell, class_=classes[i]) for i, cell in enumerate(row)]) for row in rows
    ]
    return el("table", el("thead", el("tr", head)), el("tbody", body))


def layout(ctx: Context, title: str, active: str, *content: Child, **options: Any) -> str:
    nav = el(
        "nav",
        [
            el("a", label, href=ctx.url(path), aria_current="page" if path == active else None)
            for path, label in NAV
        ],
    )
    logout = (
        el(
            "form",
            csrf_input(ctx),
            el("button", "Log out", type="submit"),
            method="post",
            action=ctx.url("/ui/logout"),
        )
        if ctx.session
        else None
    )
    flash = (
        el("div", join([el("div", line) for line in ctx.flash]), class_="flash", role="status")
        if ctx.flash
        else None
    )
    header = el("header", el("strong", "pgjobs"), nav, logout)
    body = header + el("main", el("h1", title), flash, list(content))
    return document(f"{title} · pgjobs", body, **options)


# --- overview -----------------------------------------------------------------------------


def limits(row: QueueRow) -> Html:
    parts: list[str] = []
    if row.concurrency_limit is not None:
        parts.append(f"{row.concurrency_limit} at once")
    if row.rate_limit is not None and row.rate_period_seconds is not None:
        parts.append(str(Rate(row.rate_limit, timedelta(seconds=row.rate_period_seconds))))
    return join(parts, ", ") if parts else el("span", "—", class_="muted")


def overview(ctx: Context, data: Overview) -> str:
    cap = number(DEPTH_COUNT_MAX)
    rows: list[list[Child]] = []
    for q in data.queues:
        ready: Child = number(q.ready) + ("+" if q.ready_capped else "")
        if q.ready_capped:
            ready = el("span", ready, title=f"counted up to {cap} per priority level")
        running: Child = number(q.running)
        if q.expired:
            running = [
                number(q.running),
                " ",
                el("span", f"({q.expired} lease expired)", class_="warn"),
            ]
        failed: Child = (
            el("a", number(q.failed_recent), href=ctx.url("/ui/failed", queue=q.name), class_="bad")
            if q.failed_recent
            else "0"
        )
        oldest = format_duration(q.oldest_ready_age) if q.oldest_ready_age is not None else None
        toggle = (
            action(ctx, "resume", "Resume", {"queue": q.name, "back": "/"})
            if q.paused
            else action(ctx, "pause", "Pause", {"queue": q.name, "back": "/"})
        )
        rows.append(
            [
                el("a", q.name, href=ctx.url("/ui/jobs", queue=q.name)),
                ready,
                oldest or el("span", "—", class_="muted"),
                running,
                failed,
                number(q.per_minute),
                el("span", "paused", class_="warn") if q.paused else "no",
                limits(q),
                toggle,
            ]
        )
    queues = (
        table(
            [
                "queue",
                ("ready", "n"),
                ("oldest ready", "n"),
                ("running", "n"),
                ("failed (1h)", "n"),
                ("ended/min", "n"),
                "paused",
                "limits",
                "",
            ],
            rows,
        )
        if rows
        else el("p", "No queues yet: enqueue a job, and its queue appears here.")
    )
    summary = el(
        "p",
        f"{data.workers_alive} worker(s) alive",
        f" ({data.workers_known} known)" if data.workers_known != data.workers_alive else "",
        " · ",
        el("a", "failed jobs kept", href=ctx.url("/ui/failed")),
        f": about {number(data.failed_estimate or 0)}",
        f" · about {number(data.rows_estimate or 0)} rows in the jobs table",
        class_="muted",
    )
    failures = (
        table(
            ["job", "task", "queue", "failed", "last error"],
            [
                [
                    job_link(ctx, job.id),
                    job.task,
                    job.queue,
                    when(ctx, job.finished_at),
                    el("code", last_line(job.error)),
                ]
                for job in data.recent_failures
            ],
        )
        if data.recent_failures
        else el("p", "No failed jobs.")
    )
    notes = el(
        "p",
        f"Ready: due jobs waiting to start (counted up to {cap} per priority level, paused "
        f"queues included). Failed: ended failed within the last {format_duration(FAILED_RECENT)}"
        + (" (at least: the count stopped at its cap)" if data.failed_capped else "")
        + ". Ended/min: jobs that ended in the last minute.",
        class_="muted",
    )
    return layout(
        ctx,
        "Overview",
        "/",
        summary,
        el("h2", "Queues"),
        queues,
        notes,
        el("h2", "Newest failures"),
        failures,
        refresh_seconds=REFRESH_SECONDS,
    )


# --- job lists ----------------------------------------------------------------------------

STATUS_CHOICES = ("", *(s.value for s in JobStatus))


def _filters_form(
    ctx: Context,
    path: str,
    where: JobFilter,
    *,
    with_status: bool,
    hidden: Mapping[str, str] | None = None,
) -> Html:
    fields: list[Child] = [
        el("input", type="hidden", name=name, value=value) for name, value in (hidden or {}).items()
    ]
    if with_status:
        current = where.status.value if where.status is not None else ""
        fields.append(
            el(
                "label",
                "status",
                el(
                    "select",
                    [
                        el("option", choice or "any", value=choice, selected=choice == current)
                        for choice in STATUS_CHOICES
                    ],
                    name="status",
                ),
            )
        )
    fields.append(el("label", "queue", el("input", name="queue", value=where.queue or "")))
    fields.append(el("label", "task", el("input", name="task", value=where.task or "")))
    return el(
        "form",
        fields,
        el("button", "Filter", type="submit"),
        el("a", "clear", href=ctx.url(path, **(hidden or {}))),
        method="get",
        action=ctx.url(path),
        class_="filters",
    )


def _cursor_query(cursor: Cursor) -> dict[str, object]:
    return {
        "before": cursor.before_id,
        "before_at": cursor.before_at.isoformat() if cursor.before_at is not None else None,
    }


def _filter_query(where: JobFilter) -> dict[str, object]:
    return {
        "status": where.status.value if where.status is not None else None,
        "queue": where.queue,
        "task": where.task,
    }


def pager(ctx: Context, path: str, query: Mapping[str, object], page: Page, first: bool) -> Html:
    links: list[Child] = []
    if not first:
        links.append(el("a", "← newest", href=ctx.url(path, **query)))
    if page.next is not None:
        label = (
            f"No more matches among the {page.scanned:,} jobs read for this page: look further →"
            if page.window_ended
            else "older →"
        )
        links.append(
            el("a", label, href=ctx.url(path, **query, **_cursor_query(page.next)), rel="next")
        )
    elif page.jobs or not first:
        links.append(el("span", "end of the list", class_="muted"))
    return el("div", links, class_="pager")


def _progress(job: JobRecord) -> Child:
    if job.progress is None:
        return None
    return f"{float(job.progress):g}%"


def _row_actions(ctx: Context, job: JobRecord, back: str) -> Html:
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return action(ctx, "retry", "Retry", {"id": job.id, "back": back})
    if not job.status.finished:
        return action(ctx, "cancel", "Cancel", {"id": job.id, "back": back}, danger=True)
    return EMPTY


def jobs_page(ctx: Context, where: JobFilter, page: Page, *, first: bool, back: str) -> str:
    by_end = where.by_finish_time
    rows = [
        [
            job_link(ctx, job.id),
            job.task,
            job.queue,
            status(job.status),
            f"{job.attempts}/{job.max_attempts}",
            str(job.priority),
            when(ctx, job.finished_at if by_end else job.created_at),
            _progress(job),
            _row_actions(ctx, job, back),
        ]
        for job in page.jobs
    ]
    listing = (
        table(
            [
                "job",
                "task",
                "queue",
                "status",
                ("attempts", "n"),
                ("priority", "n"),
                "ended" if by_end else "created",
                ("progress", "n"),
                "",
            ],
            rows,
        )
        if rows
        else el("p", "No jobs match." if not page.window_ended else "No match on this page.")
    )
    bulk: Child = None
    fields = {**_filter_query(where), "all": 1, "back": back}
    if where.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        bulk = action(ctx, "cancel", "Cancel all matching jobs…", fields, danger=True)
    elif where.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        bulk = action(ctx, "retry", "Retry all matching jobs…", fields)
    order = "newest ending first" if by_end else "newest first"
    return layout(
        ctx,
        "Jobs",
        "/ui/jobs",
        _filters_form(ctx, "/ui/jobs", where, with_status=True),
        el("p", f"{order}; {PAGE_NOTE}", class_="muted"),
        bulk,
        listing,
        pager(ctx, "/ui/jobs", _filter_query(where), page, first),
    )


PAGE_NOTE = "pages follow each other by position (keyset), never by counting rows."


def failed_page(
    ctx: Context, where: JobFilter, page: Page, *, first: bool, back: str, retrying: bool
) -> str:
    tabs = el(
        "p",
        el(
            "a",
            "Failed",
            href=ctx.url("/ui/failed", queue=where.queue, task=where.task),
            aria_current=None if retrying else "page",
        ),
        " (gave up: retry them) · ",
        el(
            "a",
            "Retrying",
            href=ctx.url("/ui/failed", tab="retrying", queue=where.queue, task=where.task),
            aria_current="page" if retrying else None,
        ),
        " (failed an attempt, will run again: cancel them)",
    )
    rows: list[list[Child]] = []
    for job in page.jobs:
        error = el(
            "details",
            el("summary", el("code", last_line(job.error))),
            el("pre", job.error or ""),
        )
        rows.append(
            [
                job_link(ctx, job.id),
                job.task,
                job.queue,
                f"{job.attempts}/{job.max_attempts}",
                when(ctx, job.not_before if retrying else job.finished_at),
                error,
                _row_actions(ctx, job, back),
            ]
        )
    listing = (
        table(
            [
                "job",
                "task",
                "queue",
                ("attempts", "n"),
                "next attempt" if retrying else "failed",
                "error",
                "",
            ],
            rows,
        )
        if rows
        else el("p", "Nothing here." if not page.window_ended else "No match on this page.")
    )
    fields: dict[str, object] = {"queue": where.queue, "task": where.task, "all": 1, "back": back}
    if retrying:
        fields["retrying"] = 1
        fields["status"] = JobStatus.QUEUED.value
        bulk = action(ctx, "cancel", "Cancel all matching jobs…", fields, danger=True)
    else:
        fields["status"] = JobStatus.FAILED.value
        bulk = action(ctx, "retry", "Retry all matching jobs…", fields)
    query = {"tab": "retrying" if retrying else None, "queue": where.queue, "task": where.task}
    form = _filters_form(
        ctx,
        "/ui/failed",
        where,
        with_status=False,
        hidden={"tab": "retrying"} if retrying else None,
    )
    order = "next attempt by id, newest first" if retrying else "newest failure first"
    return layout(
        ctx,
        "Failed jobs",
        "/ui/failed",
        tabs,
        form,
        el("p", f"{order}; {PAGE_NOTE}", class_="muted"),
        bulk if page.jobs or not first else None,
        listing,
        pager(ctx, "/ui/failed", query, page, first),
    )


def confirm_page(
    ctx: Context,
    verb: str,
    count: int | None,
    more: bool,
    fields: Mapping[str, object],
    back: str,
    done: Sequence[str] = (),
) -> str:
    """The confirmation of a bulk action: how many jobs it will change, and the button.
    ``count`` None: the continuation of a bulk action that stopped at its bounds (``done``
    says what it did), for the jobs older than those."""
    if count is None:
        what = f"{verb.capitalize()} the next matching jobs?"
        detail = (
            "One press changes and reads a bounded number of jobs; more may match, older "
            "than the ones done. Jobs created or ended since the first confirmation are "
            "still left alone."
        )
        label = f"Yes, {verb} the next ones"
    else:
        amount = f"the first {count:,}" if more else f"{count:,}"
        what = f"{verb.capitalize()} {amount} matching job(s)?"
        detail = (
            "Only jobs that already matched when this page was made are included; jobs "
            "created or ended from now on are not."
        )
        if more:
            detail += " More match: you will be asked to go on afterwards."
        label = f"Yes, {verb} {count:,} job(s)"
    report = (
        el("div", join([el("div", line) for line in done]), class_="flash", role="status")
        if done
        else None
    )
    button = action(ctx, verb, label, {**fields, "confirm": 1}, danger=verb == "cancel")
    return layout(
        ctx,
        f"{verb.capitalize()} jobs",
        "",
        report,
        el("p", what),
        el("p", detail, class_="muted"),
        button if count != 0 else el("p", "Nothing to do."),
        " ",
        el("a", "Back", href=ctx.url(back)),
    )


# --- a job --------------------------------------------------------------------------------


def _related_list(ctx: Context, related: Sequence[Related]) -> Html:
    return join(
        [
            el("span", job_link(ctx, r.id), " ", r.task or "", " ", status(r.status))
            for r in related
        ],
        ", ",
    )


def _tree(ctx: Context, node: TreeNode, current: int) -> Html:
    job = node.job
    label = el(
        "span",
        job_link(ctx, job.id),
        " ",
        job.task,
        " ",
        status(job.status),
        " (this job)" if job.id == current else "",
    )
    children = (
        el("ul", [_tree(ctx, child, current) for child in node.children], class_="tree")
        if node.children
        else None
    )
    return el("li", label, children, class_="here" if job.id == current else None)


def job_page(ctx: Context, detail: JobDetail, tree: TreeNode | None, *, back: str) -> str:
    job = detail.job
    finished = job.status.finished
    state: list[Child] = [
        el("span", job.status.value, id="job-status", class_=f"s-{job.status.value}")
    ]
    if job.cancel_requested_at is not None and not finished:
        state.append(el("span", " (cancel requested)", class_="warn"))
    progress_value = float(job.progress) if job.progress is not None else None
    progress_text = ""
    if progress_value is not None:
        progress_text = f"{progress_value:g}%" + (
            f" {job.progress_message}" if job.progress_message else ""
        )
    progress: list[Child] = [
        el(
            "progress",
            max="100",
            value=f"{progress_value:g}" if progress_value is not None else None,
            id="job-progress",
        ),
        " ",
        el("span", progress_text, id="job-progress-text"),
    ]
    live = (
        el("span", "connecting…", id="job-live", class_="muted")
        if not finished
        else el("span", "", id="job-live")
    )
    facts: list[tuple[str, Child]] = [
        ("status", [state, " ", live]),
        ("task", el("code", job.task)),
        ("queue", el("a", job.queue, href=ctx.url("/ui/jobs", queue=job.queue))),
        ("priority", str(job.priority)),
        ("attempts", el("span", f"{job.attempts} / {job.max_attempts}", id="job-attempts")),
        ("progress", progress),
        ("created", [exact_time(job.created_at), " (", when(ctx, job.created_at), ")"]),
        ("not before", [exact_time(job.not_before), " (", when(ctx, job.not_before), ")"]),
        (
            "started",
            [exact_time(job.started_at), " (", when(ctx, job.started_at), ")"]
            if job.started_at
            else exact_time(None),
        ),
        (
            "finished",
            [exact_time(job.finished_at), " (", when(ctx, job.finished_at), ")"]
            if job.finished_at
            else exact_time(None),
        ),
    ]
    if job.started_at is not None:
        end = job.finished_at or ctx.now
        facts.append(("duration", format_duration(end - job.started_at)))
    if job.lease_expires_at is not None:
        facts.append(("lease expires", when(ctx, job.lease_expires_at)))
    if job.worker_id is not None:
        facts.append(
            ("worker", el("a", el("code", str(job.worker_id)), href=ctx.url("/ui/workers")))
        )
    for name, value in (
        ("dedupe key", job.dedupe_key),
        ("lock key", job.lock_key),
        ("callback", job.callback_url),
    ):
        if value:
            facts.append((name, el("code", value)))
    if job.parent_id is not None:
        facts.append(("parent", job_link(ctx, job.parent_id)))
    if detail.depends_on:
        facts.append(("depends on", _related_list(ctx, detail.depends_on)))
    if job.status is JobStatus.QUEUED and job.blockers:
        facts.append(("waiting for", f"{job.blockers} job(s) or lock holder(s)"))
    if detail.dependents:
        facts.append(("blocks", _related_list(ctx, detail.dependents)))
    facts_list = el("dl", [[el("dt", name), el("dd", value)] for name, value in facts])

    buttons: list[Child] = []
    back_here = f"/ui/jobs/{job.id}"
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        buttons.append(action(ctx, "retry", "Retry", {"id": job.id, "back": back_here}))
    if not finished:
        buttons.append(
            action(ctx, "cancel", "Cancel", {"id": job.id, "back": back_here}, danger=True)
        )
    sections: list[Child] = [
        el("div", buttons) if buttons else None,
        facts_list,
        el("h2", "Arguments"),
        el("pre", pretty_json(job.args)),
    ]
    if job.status is JobStatus.SUCCEEDED or job.result is not None:
        sections += [el("h2", "Result"), el("pre", pretty_json(job.result))]
    if job.error:
        heading = "Error" if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else "Last error"
        sections += [el("h2", heading), el("pre", job.error, class_="error-box")]
    if job.meta:
        sections += [el("h2", "Meta"), el("pre", pretty_json(job.meta))]
    if tree is not None and (tree.children or tree.job.id != job.id):
        sections += [el("h2", "Chain"), el("ul", _tree(ctx, tree, job.id), class_="tree root")]
    sections.append(
        el(
            "p",
            el("a", "JSON", href=ctx.url(f"/jobs/{job.id}")),
            " · ",
            el("a", "← back", href=ctx.url(back)),
        )
    )
    container = el(
        "div",
        sections,
        id="job",
        data_events=ctx.url(f"/jobs/{job.id}/events") if not finished else None,
    )
    return layout(
        ctx,
        f"Job {job.id}",
        "",
        container,
        script_src=ctx.url("/ui/static/live.js") if not finished else None,
    )


# --- schedules and workers ----------------------------------------------------------------


def _upcoming(row: Mapping[str, Any]) -> list[datetime]:
    """The next fire times after the stored one, from the cron rules."""
    first = row.get("next_fire_at")
    if first is None or row.get("paused"):
        return []
    try:
        rule = cron_rules.Cron(row["cron"], row["timezone"])
    except InvalidInput:
        return []
    times = [first]
    while len(times) < NEXT_FIRES:
        times.append(rule.next_after(times[-1]))
    return times


def schedules_page(ctx: Context, rows: Sequence[Mapping[str, Any]]) -> str:
    body: list[list[Child]] = []
    for row in rows:
        upcoming = _upcoming(row)
        next_fires: Child = (
            join([el("div", exact_time(t), " (", when(ctx, t), ")") for t in upcoming])
            if upcoming
            else el("span", "paused" if row["paused"] else "—", class_="muted")
        )
        last: Child = el("span", "—", class_="muted")
        if row.get("last_job_id") is not None:
            last = [
                job_link(ctx, row["last_job_id"]),
                " ",
                status(row.get("last_job_status")),
                " ",
                when(ctx, row.get("last_fire_at")),
            ]
        toggle = (
            action(ctx, "schedule-resume", "Resume", {"name": row["name"], "back": "/ui/schedules"})
            if row["paused"]
            else action(
                ctx, "schedule-pause", "Pause", {"name": row["name"], "back": "/ui/schedules"}
            )
        )
        body.append(
            [
                row["name"],
                el("code", row["cron"]),
                row["timezone"],
                el("code", row["task"]),
                row.get("queue") or el("span", "task's", class_="muted"),
                next_fires,
                el("span", "paused", class_="warn") if row["paused"] else "no",
                last,
                toggle,
            ]
        )
    listing = (
        table(
            ["name", "cron", "zone", "task", "queue", "next fire times", "paused", "last job", ""],
            body,
        )
        if body
        else el("p", "No schedules (pgjobs schedules add, or @app.periodic in code).")
    )
    return layout(ctx, "Schedules", "/ui/schedules", listing)


def workers_page(ctx: Context, rows: Sequence[Mapping[str, Any]]) -> str:
    body: list[list[Child]] = []
    for row in rows:
        tasks = (row.get("info") or {}).get("tasks") or []
        alive = (
            el("span", "alive", class_="good")
            if row["alive"]
            else el("span", f"silent for {format_duration(row['silent_seconds'])}", class_="bad")
        )
        body.append(
            [
                el("code", str(row["id"])[:8], title=str(row["id"])),
                row["hostname"],
                str(row["pid"]),
                ", ".join(row["queues"])
                if row.get("queues")
                else el("span", "all", class_="muted"),
                f"{row['running']} / {row['concurrency']}",
                el("span", f"{len(tasks)} task(s)", title=", ".join(map(str, tasks))),
                row.get("version") or "",
                when(ctx, row["started_at"]),
                [when(ctx, row["last_heartbeat_at"]), " ", alive],
            ]
        )
    listing = (
        table(
            [
                "worker",
                "host",
                "pid",
                "queues",
                ("running / concurrency", "n"),
                "tasks",
                "version",
                "started",
                "last heartbeat",
            ],
            body,
        )
        if body
        else el(
            "p",
            "No worker has reported lately: jobs wait until one runs (pgjobs worker --app MODULE).",
        )
    )
    return layout(ctx, "Workers", "/ui/workers", listing, refresh_seconds=REFRESH_SECONDS)


# --- login and errors ---------------------------------------------------------------------


def login_page(root: str, next_path: str, error: str | None = None) -> str:
    ctx = Context(root=root, csrf="")
    form = el(
        "form",
        el("input", type="hidden", name="next", value=next_path),
        el(
            "label",
            "API token (one of PGJOBS_API_TOKENS)",
            el(
                "input",
                type="password",
                name="token",
                autocomplete="current-password",
                required=True,
                autofocus=True,
            ),
        ),
        el("p", el("button", "Log in", type="submit")),
        method="post",
        action=ctx.url("/ui/login"),
    )
    message = el("div", error, class_="flash error-box", role="alert") if error else None
    body = el("main", el("h1", "pgjobs"), message, form)
    return document("Log in · pgjobs", body)


def error_page(ctx: Context, status_code: int, message: str) -> str:
    return layout(
        ctx,
        f"Error {status_code}",
        "",
        el("p", message, class_="bad"),
        el("p", el("a", "Overview", href=ctx.url("/"))),
    )
