"""The dashboard of ``pgjobs serve``: server-rendered pages at ``/`` and under ``/ui/``.

What it shows (docs/dashboard.md has the tour): queues with their depth, running and
failed jobs, rate, oldest wait, pause and limits; jobs by status with filters and keyset
paging; a job with its arguments, result, error, progress followed live and its chain;
failed jobs to retry and retrying ones to cancel, one or all; schedules with their next
fire times; the live workers.

HTML is built in Python (:mod:`~pgjobs.web.dashboard.html` escapes by construction), the
one script is served from a route (:mod:`~pgjobs.web.dashboard.script`), queries are
bounded and index-driven (:mod:`~pgjobs.web.dashboard.queries`), and logging in, sessions
and CSRF are in :mod:`~pgjobs.web.dashboard.security`.
"""

from __future__ import annotations

from pgjobs.web.dashboard.routes import PUBLIC_PATHS, router
from pgjobs.web.dashboard.security import SessionCookies, is_dashboard_path, login_redirect

__all__ = ["PUBLIC_PATHS", "SessionCookies", "is_dashboard_path", "login_redirect", "router"]
