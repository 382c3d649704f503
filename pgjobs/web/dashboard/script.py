"""The one script of the dashboard: the job page follows its job live.

Served from ``/ui/static/live.js`` (same origin: the content security policy of the job
page allows ``script-src 'self'`` and nothing inline). It opens an ``EventSource`` on the
API's ``/jobs/{id}/events`` (the browser sends the session cookie along, which is why the
dashboard needs one) and writes what arrives into the page with ``textContent`` only, so
job data is never parsed as HTML. When the job ends, the page reloads once to show the
result or the error, rendered by the server.
"""

from __future__ import annotations

LIVE_JS = """\
// pgjobs dashboard: follow a job's server-sent events and update its page.
(function () {
  "use strict";
  var box = document.querySelector("[data-events]");
  if (!box || !window.EventSource) { return; }
  var statusEl = document.getElementById("job-status");
  var bar = document.getElementById("job-progress");
  var text = document.getElementById("job-progress-text");
  var attempts = document.getElementById("job-attempts");
  var live = document.getElementById("job-live");
  var source = new EventSource(box.getAttribute("data-events"));

  function show(job) {
    statusEl.textContent = job.status;
    statusEl.className = "s-" + job.status;
    if (job.progress !== null && job.progress !== undefined) {
      bar.value = job.progress;
      text.textContent = job.progress + "%" +
        (job.progress_message ? " " + job.progress_message : "");
    }
    attempts.textContent = job.attempts + " / " + job.max_attempts;
  }

  source.onmessage = function (event) {
    show(JSON.parse(event.data));
    live.textContent = "live";
  };
  source.addEventListener("end", function (event) {
    source.close();
    show(JSON.parse(event.data));
    live.textContent = "ended";
    window.location.reload();
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      live.textContent = "live updates stopped (reload the page)";
    } else {
      live.textContent = "reconnecting…";
    }
  };
})();
"""
