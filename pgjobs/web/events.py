"""Server-sent events: one LISTEN connection per server process, fanned out to every stream.

Workers and admin statements announce status and progress changes on the schema's events
channel (``<schema>_events``, payload ``{"jobs": [[id, status, version], ...]}``, at most a
hundred jobs per notification). A stream does not listen itself, which would cost one
database connection per open browser tab: it registers its job with the :class:`EventHub`,
which holds the only listening connection of the process and wakes the streams whose job
a notification names. A woken stream re-reads its job (by primary key) and sends an event
if the job's ``version`` moved.

Two safety nets, because a notification can be missed: after the listening connection
comes back from a failure every stream is woken, and every ``recheck_seconds`` the hub
reads the versions of all watched jobs in one statement and wakes the streams whose job
changed. Job starts are announced too (migration 0005): a claim statement sends the ids it
started (``[id, "running", version]``, one notification per hundred jobs) while someone
watches. The hub says it watches (``watch_starts()``) before a stream's first read, so that
any start after that read is announced, and renews it while streams are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgjobs import db
from pgjobs.app import App, StartsWatch
from pgjobs.connection import one_line, resolve_dsn
from pgjobs.log import get_logger
from pgjobs.types import FINISHED_STATUSES, JobRecord, JobStatus

log = get_logger("pgjobs.web.events")

#: Reconnection of the listening connection: first wait, then doubled up to the maximum.
RECONNECT_DELAY_FIRST = 0.5
RECONNECT_DELAY_MAX = 10.0
#: What a browser's EventSource waits before reconnecting after a dropped stream (ms).
CLIENT_RETRY_MS = 3000
#: The comment sent when a stream has been quiet for a heartbeat interval.
HEARTBEAT = b": keep-alive\n\n"

_FINISHED = frozenset(s.value for s in FINISHED_STATUSES)
_VERSIONS = "SELECT j.id, j.version FROM {schema}.jobs AS j WHERE j.id = ANY (%(ids)s::bigint[])"


@dataclass(eq=False)
class Subscription:
    """One stream's interest in one job. ``version`` is the last version the stream sent
    (-1: none yet); the hub wakes the stream only for another one."""

    job_id: int
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    version: int = -1


class EventHub:
    """The listening connection of the process, the streams it wakes, and the counts of
    job endings it heard (exported by ``/metrics``)."""

    def __init__(self, app: App, *, recheck_seconds: float) -> None:
        self.app = app
        self.recheck_seconds = recheck_seconds
        self.channel = db.events_channel(app.schema)
        self._watched: dict[int, set[Subscription]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: Whether the listening connection is up (a gauge of /metrics).
        self.listening = False
        self.closing = False
        #: Jobs announced as ended, by status, since this process started.
        self.ended: Counter[str] = Counter()
        #: Jobs announced as put back in their queue (retry, backoff, rescue, hand-back).
        self.requeued = 0
        #: Keeps claims announcing starts while streams are open; the lock makes the
        #: streams that open at once share one renewal.
        self._starts = StartsWatch(app)
        self._watch_lock = asyncio.Lock()

    # --- subscriptions --------------------------------------------------------------

    def subscribe(self, job_id: int) -> Subscription:
        subscription = Subscription(job_id)
        self._watched.setdefault(job_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._watched.get(subscription.job_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._watched[subscription.job_id]

    async def watch_starts(self) -> None:
        """Make sure claims announce the jobs they start: awaited by a stream before its
        first read (a start after the read is then announced), and renewed while streams
        are open. One statement per process every :data:`db.WATCH_STARTS_RENEW` seconds at
        most, shared by all streams. A failure (a role without EXECUTE on the function) is
        logged; starts then show at the recheck."""
        if self._starts.due:
            async with self._watch_lock:
                await self._starts.keep_async()

    @property
    def streams(self) -> int:
        return sum(len(s) for s in self._watched.values())

    def _wake_all(self) -> None:
        for subscribers in self._watched.values():
            for subscription in subscribers:
                subscription.changed.set()

    def dispatch(self, payload: str) -> None:
        """Handle one notification of the events channel."""
        try:
            entries = json.loads(payload)["jobs"]
            changes = [(int(e[0]), str(e[1]), int(e[2])) for e in entries]
        except (ValueError, TypeError, KeyError, IndexError):
            log.warning("unexpected events payload: waking every stream", payload=payload[:200])
            self._wake_all()
            return
        for job_id, status, version in changes:
            if status in _FINISHED:
                self.ended[status] += 1
            elif status == JobStatus.QUEUED.value:
                self.requeued += 1
            for subscription in self._watched.get(job_id, ()):
                if subscription.version != version:
                    subscription.changed.set()

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening (again after :meth:`stop`). Idempotent: the application's
        lifespan calls it, and so does the first stream, because an application mounted
        inside another one does not get lifespan events."""
        if self._tasks:
            return
        self.closing = False
        self._tasks = [
            asyncio.create_task(self._listen(), name="pgjobs-events-listen"),
            asyncio.create_task(self._recheck(), name="pgjobs-events-recheck"),
            asyncio.create_task(self._keep_watching(), name="pgjobs-events-watch"),
        ]

    async def stop(self) -> None:
        """End every stream (without a final event: clients reconnect elsewhere) and close
        the listening connection."""
        self.closing = True
        self._wake_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _listen(self) -> None:
        delay = RECONNECT_DELAY_FIRST
        settings = self.app.settings
        while True:
            try:
                dsn = await asyncio.to_thread(resolve_dsn, settings)
                # Autocommit: in a transaction, notifications would wait for its end.
                conn = await psycopg.AsyncConnection.connect(
                    dsn,
                    autocommit=True,
                    connect_timeout=settings.connect_timeout,
                    application_name="pgjobs-api-events",
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.listening = True
                    delay = RECONNECT_DELAY_FIRST
                    self._wake_all()  # whatever changed while nobody listened
                    async for notice in conn.notifies():
                        self.dispatch(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "events listener lost; reconnecting", error=one_line(exc), retry_in=delay
                )
            finally:
                self.listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_DELAY_MAX)

    async def _keep_watching(self) -> None:
        while True:
            await asyncio.sleep(db.WATCH_STARTS_RENEW / 2)
            if self._watched:
                await self.watch_starts()

    async def _recheck(self) -> None:
        query = sql.SQL(_VERSIONS).format(schema=sql.Identifier(self.app.schema))
        while True:
            await asyncio.sleep(self.recheck_seconds)
            if not self._watched:
                continue
            try:
                async with self.app.connection_async() as conn:
                    cursor = await conn.execute(query, {"ids": list(self._watched)})
                    versions = dict(await cursor.fetchall())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("events recheck failed", error=one_line(exc))
                continue
            for job_id, subscribers in list(self._watched.items()):
                current = versions.get(job_id)  # None: pruned meanwhile
                for subscription in subscribers:
                    if current is None or current != subscription.version:
                        subscription.changed.set()


def event(data: str, *, name: str | None = None, event_id: str | None = None) -> bytes:
    """One event in the ``text/event-stream`` format (``data`` is one line of JSON)."""
    lines = []
    if name is not None:
        lines.append(f"event: {name}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {data}")
    return ("\n".join(lines) + "\n\n").encode()


async def job_stream(
    hub: EventHub,
    subscription: Subscription,
    first: JobRecord,
    *,
    read: Callable[[int], Awaitable[JobRecord | None]],
    render: Callable[[JobRecord], str],
    heartbeat_seconds: float,
) -> AsyncIterator[bytes]:
    """The events of one job: its state now, one at each change, ``end`` with the final
    state, then the end of the stream. Unsubscribes however the stream ends (the client
    leaving cancels the generator)."""
    try:
        yield f"retry: {CLIENT_RETRY_MS}\n\n".encode()
        record: JobRecord | None = first
        while not hub.closing:
            if record is None:
                gone = json.dumps({"error": "not_found", "message": "the job was deleted"})
                yield event(gone, name="error")
                return
            if record.status.finished:
                yield event(render(record), name="end", event_id=str(record.version))
                return
            if record.version != subscription.version:
                yield event(render(record), event_id=str(record.version))
                subscription.version = record.version
            try:
                await asyncio.wait_for(subscription.changed.wait(), heartbeat_seconds)
            except asyncio.TimeoutError:
                yield HEARTBEAT
                continue
            subscription.changed.clear()  # before the read: a change during it wakes again
            record = await read(subscription.job_id)
    finally:
        hub.unsubscribe(subscription)


def last_event_id(value: str | None) -> int | None:
    """The version a reconnecting client last received (``Last-Event-ID``), if readable."""
    if value is None:
        return None
    text = value.strip()
    return int(text) if text.isdigit() and len(text) < 19 else None
