"""pgjobs' own tasks, which every worker runs whatever its ``--app``:

- ``pgjobs.callback`` delivers a job's completion callback (see :mod:`pgjobs.callbacks`);
- ``pgjobs.http`` makes an outbound HTTP call for producers that have no handler of their
  own (see :mod:`pgjobs.http_task`).

Both are plain tasks as far as the worker is concerned (claimed, leased, retried with
backoff, fenced like any other); this module owns what they share and must not create per
job: one ``httpx.AsyncClient`` (connections to a receiver are reused from one delivery to the
next) and one database connection, to read a job's final row when its callback is sent. Both
are opened on first use, so a worker that never runs a built-in job never opens them (nor
imports httpx), and closed when the worker stops.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pgjobs import __version__, callbacks, db, http_task, tracing
from pgjobs.control import Fail
from pgjobs.log import get_logger
from pgjobs.registry import Task
from pgjobs.worker.connections import Reconnecting
from pgjobs.worker.context import current_job

if TYPE_CHECKING:
    import httpx

    from pgjobs.app import App
    from pgjobs.types import JobRecord

USER_AGENT = f"pgjobs/{__version__}"


class Builtins:
    """The built-in tasks of one worker process, and the resources they share."""

    def __init__(self, app: App, connection: Reconnecting) -> None:
        self.schema = app.schema
        self._connection = connection
        self._client: httpx.AsyncClient | None = None
        # Read once, at start: every delivery of this worker is signed alike.
        self._secret = os.environ.get(callbacks.WEBHOOK_SECRET_ENV) or None
        self._warned_unsigned = False
        self._log = get_logger("pgjobs.worker")
        self.tasks: dict[str, Task[Any, Any]] = {
            callbacks.CALLBACK_TASK: Task(
                app, self.deliver_callback, name=callbacks.CALLBACK_TASK,
                queue=callbacks.INTERNAL_QUEUE, priority=callbacks.CALLBACK_PRIORITY,
                max_attempts=callbacks.CALLBACK_MAX_ATTEMPTS, timeout=None,
                retry=callbacks.RETRY_POLICY, builtin=True,
            ),
            http_task.HTTP_TASK: Task(
                app, self.http, name=http_task.HTTP_TASK, queue=None, priority=None,
                max_attempts=http_task.MAX_ATTEMPTS, timeout=None, retry=http_task.RETRY_POLICY,
                builtin=True,
            ),
        }  # fmt: skip

    def client(self) -> httpx.AsyncClient:
        """The shared HTTP client (created in the worker's event loop on first use).
        Redirects are followed only when a request asks; timeouts are set per request."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                headers={"User-Agent": USER_AGENT}, follow_redirects=False
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await self._connection.close()

    async def http(self, **args: Any) -> dict[str, Any]:
        """``pgjobs.http``: see :mod:`pgjobs.http_task`. Sends the job span's ``traceparent``
        when tracing is on, as callbacks do, so the receiver's spans join the trace."""
        context: dict[str, str] = {}
        if tracing.active():
            tracing.inject(context)
        return await http_task.run(self.client(), args, extra_headers=context)

    async def deliver_callback(self, **args: Any) -> dict[str, Any]:
        """``pgjobs.callback``: POST one ending of a job to its callback URL.

        2xx: delivered. 408, 429, 5xx, a timeout, a connection error: retried with the
        task's backoff (``Retry-After`` honoured). Any other status (a 4xx, a redirect):
        failed at once, since the receiver would answer the same again."""
        job_id, url, ending = args.get("job_id"), args.get("url"), args.get("ending")
        if isinstance(job_id, bool) or not isinstance(job_id, int) or not isinstance(url, str):
            raise Fail(f"not a callback delivery: job_id and url are missing from {args!r}")
        async with self._connection.use() as conn:
            record = await db.run_async(conn, db.get_job(self.schema, job_id))
        if record is None:
            raise Fail(f"job {job_id} no longer exists (pruned?): there is nothing to deliver")
        if tracing.active():
            # The trigger that inserted this delivery copies nothing from meta: the span is
            # a child of the context of the job it reports on (the executor leaves it to us).
            job = current_job().job
            parent = tracing.carrier(job.meta) or tracing.carrier(record.meta)
            with tracing.job_span(job, parent):
                return await self._post(url, record, ending)
        return await self._post(url, record, ending)

    async def _post(self, url: str, record: JobRecord, ending: Any) -> dict[str, Any]:
        body = callbacks.payload(record, ending if isinstance(ending, Mapping) else None)
        headers = {
            "Content-Type": "application/json",
            callbacks.DELIVERY_HEADER: str(current_job().id),
        }
        if tracing.active():
            tracing.inject(headers)  # the receiver's spans join the job's trace
        if self._secret is not None:
            headers[callbacks.SIGNATURE_HEADER] = callbacks.sign(self._secret, body)
        elif not self._warned_unsigned:
            self._warned_unsigned = True
            self._log.warning(
                "callback.unsigned",
                reason=f"{callbacks.WEBHOOK_SECRET_ENV} is not set: callbacks are sent without "
                f"a {callbacks.SIGNATURE_HEADER} header, and receivers cannot tell them from forgeries",
            )  # fmt: skip
        request = http_task.Request(
            url=url, method="POST", headers=headers, content=body, timeout=callbacks.TIMEOUT
        )
        response = await http_task.send(self.client(), request)
        http_task.check_status(request, response)
        return {"status": response.status}
