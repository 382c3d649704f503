"""The content security policies of the HTML pages (the dashboard, :mod:`pgjobs.web.dashboard`).

Pages load nothing from anywhere else: inline styles, no framing, forms that post only to
this origin. Only the page of an unfinished job runs a script, served by this application
(``script-src 'self'``), which opens an event stream on this origin (``connect-src 'self'``);
no page has inline scripts or event handlers, so an injected ``<script>`` could not run even
if escaping ever failed.
"""

from __future__ import annotations

#: Every HTML page but the live job page: no script at all.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: The page of an unfinished job: its script, and the event stream it reads.
LIVE_PAGE_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
