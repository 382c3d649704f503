"""The composition root of a worker process: builds the services, runs the producer loop,
handles signals and the two-phase shutdown.

Only the producer loop changes the set of running jobs; the notifier, the keeper and the
executor reach it through :meth:`Worker.kick` (a wake-up) and the slots they free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg import sql

from pgjobs import __version__, db, retention
from pgjobs.app import App
from pgjobs.callbacks import INTERNAL_QUEUE
from pgjobs.compat import ensure_compatible
from pgjobs.connection import connect, one_line, resolve_dsn
from pgjobs.errors import ConfigError
from pgjobs.log import get_logger
from pgjobs.registry import Task
from pgjobs.worker.batches import Batcher
from pgjobs.worker.builtins import Builtins
from pgjobs.worker.completer import Completer
from pgjobs.worker.config import (
    FORGET_AFTER_TICKS,
    PROGRESS_INTERVAL,
    TIMER_SLACK,
    WorkerConfig,
    resident_memory,
)
from pgjobs.worker.connections import Reconnecting
from pgjobs.worker.context import JobContext, LeaseLost
from pgjobs.worker.executor import Executor, Run
from pgjobs.worker.health import HealthFile
from pgjobs.worker.metrics import MetricsServer, WorkerMetrics
from pgjobs.worker.scheduler import Scheduler

EXIT_OK = 0
EXIT_FORCED = 130
PR_SET_PDEATHSIG = 1


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def served_queues(queues: list[str] | None) -> list[str] | None:
    """The queues a worker claims from: those of ``-q`` plus pgjobs' internal queue (callback
    deliveries), which every worker serves whatever ``-q`` says; None (every queue, the
    internal one included) without ``-q``."""
    if queues is None or INTERNAL_QUEUE in queues:
        return queues
    return [*queues, INTERNAL_QUEUE]


def die_with_parent() -> None:
    """Linux: be sent SIGTERM (a graceful stop) if the supervising parent dies, even by
    SIGKILL. Elsewhere the orphan check of every tick does the same, more slowly."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Worker:
    """One worker process. ``Worker(app, config).run()`` blocks until it stops and returns
    the exit status."""

    def __init__(
        self,
        app: App,
        config: WorkerConfig,
        *,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
    ) -> None:
        self.app = app
        self.config = config
        self.schema = app.schema
        self.id = uuid.uuid4()  # fresh at every start: never inherit a dead process's identity
        self.log = get_logger("pgjobs.worker", worker_id=str(self.id)[:8])
        self.running: dict[int, Run] = {}
        self.claimed_total = 0
        #: What claims ask for: -q's queues and the internal queue (see served_queues).
        self.queues = served_queues(config.queues)
        #: Internal jobs claimed on top of the -q queues: --max-jobs does not count them, so
        #: that a ScaledJob pod (-q long --max-jobs 1) never spends its one job on a callback.
        #: Without -q they count: every queue is the pod's business then (and KEDA's backlog()
        #: counts them too).
        self._uncounted = 0
        #: pgjobs' own tasks next to the App's (set up in _main, when the DSN is known).
        self.tasks: dict[str, Task[Any, Any]] = dict(app.tasks)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._kick: asyncio.Event | None = None
        self._kick_waiter: asyncio.Future[None] | None = None
        self._stopping = False
        self._signals = 0
        self._woken = True
        self._more_likely = False
        self._timer_at: float | None = None
        self._limited = False
        self._rate_limited = False
        #: A claim took fewer jobs than it could while a rate-limited queue is served: ask
        #: when the rate lets the next start in (see rate_window.sql).
        self._check_rate = False
        #: Claims are serialised (free slots are counted once), whichever connection runs them.
        self._claiming = asyncio.Lock()
        #: Set by a notification that the listener answers itself with a claim (see _listen).
        self._claim_on_listener = False
        self._dsn: str | None = None
        self._listen_dsn: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._job_tasks: set[asyncio.Task[None]] = set()
        self._keeper_wake: asyncio.Event | None = None
        self.scheduler = Scheduler(self.schema, list(app.schedules.values()))
        #: First pruning attempt at start, then one per interval (the fleet-wide gate in
        #: pgjobs.settings makes most attempts a single cheap statement).
        self._next_prune = time.monotonic()
        self._pruning: asyncio.Task[None] | None = None
        self._stop_requested_at: float | None = None
        self._abandoned_threads = 0
        self._parent_pid = os.getppid()
        self.health = (
            HealthFile(config.health_file, str(self.id)) if config.health_file is not None else None
        )
        #: Counted always (plain increments on the loop); served only with a metrics port.
        self.metrics = WorkerMetrics(str(self.id), self.tasks, config.concurrency)
        self.metrics_server = (
            MetricsServer(
                metrics_host, metrics_port, lambda: self.metrics.render(len(self.running))
            )
            if metrics_port is not None
            else None
        )

    # --- life cycle -------------------------------------------------------------------

    def run(self) -> int:
        """Check the database, then serve until stopped; returns the exit status."""
        if self.config.supervised:
            die_with_parent()
        self._dsn = resolve_dsn(self.app.settings)
        with connect(self.app.settings, dsn=self._dsn) as conn:
            ensure_compatible(conn, self.schema)
        self._listen_dsn = self.config.listen_dsn or self._dsn
        code = asyncio.run(self._main())
        if self._abandoned_threads:
            # Handler threads that outlived the grace period would keep the interpreter
            # alive; their jobs were handed back and fenced, so leaving now is safe.
            self.log.warning("worker.abandoning_threads", threads=self._abandoned_threads)
            os._exit(code)
        return code

    def _connection(self, name: str, listen: bool = False) -> Reconnecting:
        settings = self.app.settings
        dsn = self._listen_dsn if listen else self._dsn
        assert dsn is not None
        return Reconnecting(
            name, lambda: dsn, connect_timeout=settings.connect_timeout,
            prepare_threshold=self.app.prepare_threshold,
        )  # fmt: skip

    async def _main(self) -> int:
        self.loop = asyncio.get_running_loop()
        if self.metrics_server is not None:
            try:
                await self.metrics_server.start()
            except OSError as exc:
                raise ConfigError(
                    f"--metrics-port: cannot listen on {self.metrics_server.host}:"
                    f"{self.metrics_server.port}: {exc.strerror or exc}"
                ) from None
        self._kick = asyncio.Event()
        self._keeper_wake = asyncio.Event()
        self.claimer = self._connection("claim")
        self.keeper_conn = self._connection("keeper")
        self.completer = Completer(
            self.schema, self._connection("complete"), on_fenced=self._fenced,
            on_written=self._slots_freed, batch_sizes=self.metrics.batch_sizes,
        )  # fmt: skip
        self.executor = Executor(
            self.config.concurrency, self.completer.submit, log_jobs=self.config.log_jobs,
            metrics=self.metrics,
        )  # fmt: skip
        self.batcher = Batcher(self._start_batch)
        self.builtins = Builtins(self.app, self._connection("builtins"))
        self.tasks = {**self.builtins.tasks, **self.app.tasks}
        self.metrics.tasks = self.tasks
        self._install_signals()
        self.completer.start()
        if self.config.listen:
            # Listen before the first claim: a job inserted in between would otherwise wait
            # for the safety-net poll.
            listening = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._listen(listening), name="pgjobs-notifier"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listening.wait(), self.app.settings.connect_timeout * 2)
        await self._announce()
        self._tasks.append(asyncio.create_task(self._keep(), name="pgjobs-keeper"))
        await self._arm_next_due()
        self.log.info(
            "worker.started", queues=self.config.queues or "all", concurrency=self.config.concurrency,
            tasks=sorted(self.app.tasks), listen=self.config.listen, pid=os.getpid(),
            metrics=f"http://{self.metrics_server.host}:{self.metrics_server.port}/metrics"
            if self.metrics_server is not None else None,
        )  # fmt: skip
        try:
            await self._produce()
        finally:
            code = await self._shutdown()
        return code

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self.loop.add_signal_handler(signum, self._on_signal, signum)
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
            self.loop.add_signal_handler(signal.SIGUSR1, self._dump_state)

    def _dump_state(self) -> None:
        """SIGUSR1: log what every task of this worker is waiting on (diagnosing a stall)."""
        tasks = []
        for task in asyncio.all_tasks(self.loop):
            frames = task.get_stack(limit=8)
            where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
            tasks.append(f"{task.get_name()}: {where}")
        self.log.warning(
            "worker.state", running=sorted(self.running), completer_backlog=self.completer.backlog,
            stopping=self._stopping, tasks=sorted(tasks),
        )  # fmt: skip

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            self.log.warning(
                "worker.forced_exit", signal=signal.Signals(signum).name, running=len(self.running)
            )
            os._exit(EXIT_FORCED)
        self.log.info(
            "worker.stopping",
            signal=signal.Signals(signum).name,
            running=len(self.running),
            grace_s=self.config.grace,
        )
        self.stop()

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period to finish."""
        self._stopping = True
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self.kick()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def kick(self) -> None:
        if self._kick is not None:
            self._kick.set()
        waiter = self._kick_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_for_kick(self, timeout: float) -> None:
        """Sleep until kicked or ``timeout`` seconds pass. A bare future and a timer rather
        than ``wait_for(event.wait())``, which creates a task per wait: this is on the path
        from a notification to the claim."""
        assert self._kick is not None
        if self._kick.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(timeout, _settle, waiter)
        self._kick_waiter = waiter
        try:
            await waiter
        finally:
            timer.cancel()
            self._kick_waiter = None

    async def _announce(self) -> None:
        """Publish task defaults and the worker row; learn whether queues are limited."""
        async with self.keeper_conn.use() as conn:
            rows = [(t.name, t.queue, t.priority, t.max_attempts) for t in self.tasks.values()]
            if rows:
                await db.run_async(conn, db.publish_tasks(self.schema, self.id, rows))
        await self._tick()
        await self._rescue()  # a worker starting after a crash picks up its jobs at once

    # --- producer -----------------------------------------------------------------------

    @property
    def _counted(self) -> int:
        """Jobs claimed that --max-jobs counts (see _uncounted)."""
        return self.claimed_total - self._uncounted

    def _free_slots(self) -> int:
        free = self.config.concurrency - len(self.running)
        if self.config.max_jobs is not None:
            free = min(free, self.config.max_jobs - self._counted)
        return free

    async def _produce(self) -> None:
        assert self._kick is not None
        next_poll = time.monotonic()
        while not self._stopping:
            if self.config.max_jobs is not None and self._counted >= self.config.max_jobs:
                break
            if self._check_rate:
                await self._arm_rate_window()
            now = time.monotonic()
            timer_due = self._timer_at is not None and now >= self._timer_at
            free = self._free_slots()
            if free > 0 and (self._woken or self._more_likely or timer_due or now >= next_poll):
                polled = not (self._woken or self._more_likely or timer_due)
                self._woken = False
                if timer_due:
                    self._timer_at = None
                next_poll = now + self.config.poll
                jobs = await self._claim(free)
                if polled:
                    self.metrics.poll(len(jobs))
                self._more_likely = len(jobs) == free
                for job in jobs:
                    self._start(job)
                if self._free_slots() <= 0:
                    self.batcher.flush_all()  # full: the batches being gathered cannot grow
                if self._check_rate:
                    await self._arm_rate_window()
                if timer_due:
                    await self._arm_next_due()
                if not jobs and self.config.burst and not self.running:
                    # Outcomes still being written may carry follow-up jobs: write them, then
                    # look once more before leaving.
                    await self.completer.drained()
                    if self._more_likely or await self._claim_and_start(self._free_slots()):
                        continue
                    self.log.info("worker.burst_done", jobs=self.claimed_total)
                    break
                if jobs:
                    continue
            wait = next_poll - time.monotonic()
            if self._timer_at is not None:
                wait = min(wait, self._timer_at - time.monotonic())
            self._kick.clear()
            if self._stopping or (self._woken and self._free_slots() > 0):
                continue  # something to do now; with no free slot, wait for one (never spin)
            await self._wait_for_kick(max(wait, 0.0))

    async def _claim_and_start(self, limit: int) -> int:
        jobs = await self._claim(limit) if limit > 0 else []
        for job in jobs:
            self._start(job)
        return len(jobs)

    async def _claim(self, limit: int) -> list[db.ClaimedJob]:
        delay = 0.1
        while not self._stopping:
            try:
                async with self._claiming, self.claimer.use() as conn:
                    return await self._claim_on(conn, limit)
            except psycopg.OperationalError as exc:
                self.log.warning("claim.failed", error=one_line(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return []

    async def _claim_on(
        self, conn: psycopg.AsyncConnection[Any], limit: int
    ) -> list[db.ClaimedJob]:
        """One claim of up to ``limit`` jobs on ``conn`` (the caller holds ``_claiming``)."""
        args: dict[str, Any] = {
            "queues": self.queues, "limit": limit, "worker_id": self.id,
            "lease_seconds": self.config.lease,
        }  # fmt: skip
        jobs = await db.run_async(conn, db.claim_call(self.schema, **args))
        if self._rate_limited and len(jobs) < limit:
            self._check_rate = True
        self.claimed_total += len(jobs)
        self.metrics.claim(len(jobs))
        if self.queues is not self.config.queues:  # the internal queue was added to -q's
            self._uncounted += sum(1 for job in jobs if job.queue == INTERNAL_QUEUE)
        return jobs

    def _slots_freed(self) -> None:
        """Outcomes were written: a limited queue's jobs held back by its concurrency limit
        may start now (nothing else would tell, the finish notifies only requeued jobs)."""
        if self._limited:
            self._woken = True
            self.kick()

    async def _arm_rate_window(self) -> None:
        self._check_rate = False
        await self._arm_from("rate_window", db.rate_window(self.schema, self.queues))

    def _start(self, job: db.ClaimedJob) -> None:
        run = Run(JobContext(job, self.app, self), self.tasks.get(job.task))
        self.running[job.id] = run
        self.metrics.job_started(job.task)
        if run.task is not None and run.task.batch_size is not None:
            self.batcher.add(run)  # it starts with its batch (_start_batch)
            return
        self._launch([run], f"pgjobs-job-{job.id}", self.executor.run, run)

    def _start_batch(self, task: Task[Any, Any], runs: list[Run]) -> None:
        self._launch(runs, f"pgjobs-batch-{task.name}", self.executor.run_batch, runs, task)

    def _launch(
        self, runs: list[Run], name: str, work: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        """Run ``work(*args)`` for these runs in a task of their own."""
        task = asyncio.create_task(self._execute(runs, work, *args), name=name)
        for run in runs:
            run.own_task = task
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)

    async def _execute(
        self, runs: list[Run], work: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        try:
            await work(*args)
        except asyncio.CancelledError:
            pass
        except Exception:  # pragma: no cover - the executor turns errors into outcomes
            self.log.exception("job.crashed", job_ids=[r.context.job.id for r in runs])
        finally:
            for run in runs:
                self.running.pop(run.context.job.id, None)
            if self.config.burst and not self.running:
                self._woken = True  # burst: look once more, then leave if nothing is ready
            self.kick()

    def _fenced(self, outcome: db.Outcome) -> None:
        self.metrics.lease_lost += 1
        self.log.warning(
            "job.fenced", job_id=outcome.job_id, wanted=outcome.status.value,
            reason="the lease was lost (expired or taken over): this outcome was not recorded",
        )  # fmt: skip

    # --- wake-ups -----------------------------------------------------------------------

    def arm_timer(self, epoch: float) -> None:
        """Claim again when a job becomes due at ``epoch`` (seconds since 1970)."""
        at = time.monotonic() + max(0.0, epoch - time.time()) + TIMER_SLACK
        if self._timer_at is None or at < self._timer_at:
            self._timer_at = at
            self.kick()

    async def _arm_next_due(self) -> None:
        await self._arm_from("next_due", db.next_due(self.schema, self.queues))

    async def _arm_from(self, name: str, call: db.Call[Any]) -> None:
        """Arm the timer at the time ``call`` returns (a datetime or epoch seconds), if any."""
        try:
            async with self.claimer.use() as conn:
                at = await db.run_async(conn, call)
        except psycopg.OperationalError as exc:
            self.log.warning(f"{name}.failed", error=one_line(exc))
            return
        if at is not None:
            self.arm_timer(at.timestamp() if isinstance(at, datetime) else float(at))

    def _serves(self, queue: str | None) -> bool:
        return self.queues is None or queue in self.queues

    async def _listen(self, listening: asyncio.Event) -> None:
        connection = self._connection("listen", listen=True)
        channels = [db.jobs_channel(self.schema), db.control_channel(self.schema)]
        first = True
        while not self._stopping:
            try:
                conn = await connection.get(lambda: self._stopping)
                for channel in channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                listening.set()
                if not first:
                    # Notifications sent while we were away are lost: look for work now.
                    self._woken = True
                    self.kick()
                    await self._arm_next_due()
                first = False
                while not self._stopping:
                    # aclosing: leaving notifies() must release the connection at once
                    async with contextlib.aclosing(conn.notifies()) as notices:
                        async for notice in notices:
                            self._on_notify(notice.channel, notice.payload)
                            if self._claim_on_listener:
                                break
                    if self._claim_on_listener:
                        self._claim_on_listener = False
                        await self._answer_on_listener(conn)
            except psycopg.OperationalError as exc:
                if self.stopping:
                    break
                self.log.warning("listen.lost", error=one_line(exc))
                await connection.discard()
            except asyncio.CancelledError:
                break
        await connection.close()

    def _on_notify(self, channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            data = {}
        if channel == db.control_channel(self.schema):
            for job_id in data.get("cancel", ()):
                self._cancel(job_id)
            if data.get("limited"):
                # A queue gained a limit: watch for freed slots (and the rate window) now,
                # not at the next tick.
                self._limited = True
                self._rate_limited = self._rate_limited or bool(data.get("rate"))
            if data.get("schedules"):
                self.scheduler.changed()
                if self._keeper_wake is not None:
                    self._keeper_wake.set()
            return
        self.metrics.notifications += 1
        if not self._serves(data.get("queue")):
            return
        at = data.get("at")
        if isinstance(at, int | float) and at > time.time():
            self.arm_timer(at)
        elif (
            self._kick_waiter is not None  # the producer sleeps: nothing is being claimed
            and not self._claiming.locked()
            and not self._stopping
            and self._free_slots() > 0
        ):
            self._claim_on_listener = True  # answered by the listener itself (_listen)
        else:
            self._woken = True
            self.kick()

    async def _answer_on_listener(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Claim on the listening connection, for a notification that found the worker
        idle: that backend was just woken to deliver the notification, while the claimer's
        has been asleep (waking it costs tenths of a millisecond on a small machine), and
        the hop to the producer task is saved too. Notifications that arrive meanwhile wait
        in psycopg's backlog for the next notifies(). The producer is kicked afterwards to
        re-read its state (more jobs likely, --max-jobs reached); if the claim did not
        happen, it claims instead."""
        claimed = False
        try:
            async with self._claiming:
                free = self._free_slots()
                if free <= 0 or self._stopping:
                    return
                jobs = await self._claim_on(conn, free)
                claimed = True
            self._more_likely = len(jobs) == free
            for job in jobs:
                self._start(job)
            await asyncio.sleep(0)  # the jobs start before the listener listens again
        finally:
            if not claimed or self._more_likely:
                self._woken = True
            self.kick()

    def _cancel(self, job_id: int) -> None:
        run = self.running.get(job_id)
        if run is None or run.context.cancelled:
            return
        run.context.request_cancel()
        self.log.info("job.cancel_requested", job_id=job_id, task=run.context.job.task)
        if run.handler is not None and not run.handler.done():
            run.handler.cancel()

    # --- keeper: heartbeats, tick, rescue, progress ------------------------------------------

    async def _keep(self) -> None:
        next_heartbeat = time.monotonic() + self.config.heartbeat_interval
        next_tick = time.monotonic() + self.config.tick_interval
        while True:
            try:
                now = time.monotonic()
                if now >= next_heartbeat:
                    next_heartbeat = now + self.config.heartbeat_interval
                    await self._heartbeat()
                if now >= next_tick:
                    next_tick = now + self.config.tick_interval
                    await self._tick()
                    await self._rescue()
                    self._check_health()
                if self._prune_due(now):
                    self._pruning = asyncio.create_task(self._prune(), name="pgjobs-pruner")
                    self._tasks.append(self._pruning)
                if self.scheduler.seconds_until_due() == 0.0 and not self._stopping:
                    async with self.keeper_conn.use() as conn:
                        await self.scheduler.run_pass(conn)
                await self._write_progress()
            except psycopg.OperationalError as exc:
                self.log.warning("keeper.db_error", error=one_line(exc))
                await self.keeper_conn.discard()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The keeper must outlive any surprise: without it, leases expire.
                self.log.exception("keeper.failed")
                await asyncio.sleep(1)
            if self.health is not None:
                self.health.beat()
            wake = min(next_heartbeat, next_tick) - time.monotonic()
            if (fire_in := self.scheduler.seconds_until_due()) is not None:
                wake = min(wake, fire_in)
            if any(r.context.progress != r.context.progress_written for r in self.running.values()):
                wake = min(wake, PROGRESS_INTERVAL)
            assert self._keeper_wake is not None
            self._keeper_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._keeper_wake.wait(), max(wake, 0.05))
            if self._keeper_wake.is_set() and not self.scheduler.dirty:
                # Fresh progress: write it after a short pause that coalesces a burst of calls.
                await asyncio.sleep(PROGRESS_INTERVAL)

    def _check_health(self) -> None:
        """Recycle this process when a leaky handler grew it past --max-memory, or (under a
        supervisor) when handler threads are stuck past their timeout."""
        if self._stopping:
            return
        if (
            self.config.max_memory is not None
            and (rss := resident_memory()) > self.config.max_memory
        ):
            self.log.warning(
                "worker.recycling",
                reason="memory",
                rss_mb=rss // 2**20,
                max_mb=self.config.max_memory // 2**20,
            )
            self.stop()
        elif self.config.supervised and self.executor.stuck_threads:
            self.log.warning(
                "worker.recycling", reason="stuck threads", threads=self.executor.stuck_threads
            )
            self.stop()

    async def _heartbeat(self) -> None:
        leases = {i: r.context.job.lease_token for i, r in self.running.items() if not r.submitted}
        if not leases:
            return
        async with self.keeper_conn.use() as conn:
            extended = await db.run_async(
                conn, db.heartbeat(self.schema, leases, self.config.lease)
            )
        for job_id, cancel_requested in extended.items():
            if cancel_requested:
                self._cancel(job_id)

    async def _tick(self) -> None:
        async with self.keeper_conn.use() as conn:
            tick = await db.run_async(
                conn,
                db.worker_tick(
                    self.schema, worker_id=self.id, hostname=socket.gethostname(), pid=os.getpid(),
                    queues=self.queues, concurrency=self.config.concurrency,
                    version=__version__, info=json.dumps({"tasks": sorted(self.app.tasks)}),
                    forget_after=self.config.tick_interval * FORGET_AFTER_TICKS,
                ),
            )  # fmt: skip
        self._limited = tick.limited
        self._rate_limited = tick.rate_limited
        if self.health is not None:
            self.health.database_ok()
        self.scheduler.learn(tick.next_fire_at)

    def _prune_due(self, now: float) -> bool:
        if self.config.retention is None or self._stopping or now < self._next_prune:
            return False
        if self._pruning is not None and not self._pruning.done():
            return False
        if self._pruning is not None:
            self._tasks.remove(self._pruning)
        self._next_prune = now + self.config.prune_every
        return True

    async def _prune(self) -> None:
        """Prune finished jobs on a connection of its own (a long run must not hold up the
        keeper's heartbeats), if no other worker did within the interval."""
        policy = self.config.retention
        assert policy is not None
        connection = self._connection("prune")
        try:
            async with connection.use() as conn:
                every = timedelta(seconds=self.config.prune_every)
                if not await retention.claim_run(conn, self.schema, every, self.id):
                    return
                started = time.monotonic()
                deleted = await retention.prune_async(
                    conn, self.schema, policy, stop=lambda: self._stopping
                )
            if any(deleted.values()):
                self.log.info(
                    "jobs.pruned", seconds=round(time.monotonic() - started, 1),
                    **{status.value: n for status, n in deleted.items()},
                )  # fmt: skip
        except psycopg.Error as exc:
            self.log.warning("prune.failed", error=one_line(exc))
        finally:
            await connection.close()

    async def _rescue(self) -> None:
        async with self.keeper_conn.use() as conn:
            rescued = await db.run_async(conn, db.rescue(self.schema))
        if rescued:
            self.log.warning("jobs.rescued", jobs=len(rescued), ids=sorted(rescued)[:20])

    async def _write_progress(self) -> None:
        for run in list(self.running.values()):
            context = run.context
            if (
                context.progress is None
                or context.progress == context.progress_written
                or run.submitted
            ):
                continue
            percent, message = context.progress
            async with self.keeper_conn.use() as conn:
                held = await db.run_async(
                    conn,
                    db.set_progress(
                        self.schema, context.job.id, context.job.lease_token, percent, message
                    ),
                )
            context.progress_written = (percent, message)
            if not held:
                self.metrics.lease_lost += 1
                self.log.warning("job.lease_lost", job_id=context.job.id)

    # --- services offered to running jobs (JobContext) ---------------------------------

    @property
    def lease_seconds(self) -> float:
        return self.config.lease

    def dsn(self) -> str:
        assert self._dsn is not None
        return self._dsn

    def progress_changed(self, context: JobContext) -> None:
        """Wake the keeper, which writes progress at most about once a second (safe to call
        from a handler thread)."""
        if self._keeper_wake is not None and not self._keeper_wake.is_set():
            self.loop.call_soon_threadsafe(self._keeper_wake.set)

    async def touch(self, context: JobContext, seconds: float | None) -> datetime:
        async with self.keeper_conn.use() as conn:
            touched = await db.run_async(
                conn,
                db.touch(
                    self.schema,
                    context.job.id,
                    context.job.lease_token,
                    seconds or self.config.lease,
                ),
            )
        if touched is None:
            raise LeaseLost(
                f"job {context.job.id}: the lease was lost; this run's outcome will not be recorded"
            )
        if touched.cancel_requested:
            self._cancel(context.job.id)
        context.lease_expires_at = touched.lease_expires_at
        return touched.lease_expires_at

    # --- shutdown -------------------------------------------------------------------------

    async def _shutdown(self) -> int:
        """Let running jobs end: without a deadline when the worker stops on its own (burst,
        max-jobs: a ScaledJob pod's long job must finish), within the grace period once a
        signal asked it to stop. Then hand back what still runs, flush, leave."""
        self._stopping = True
        self.batcher.flush_all()  # gathered jobs run now (or are handed back at the grace)
        assert self._kick is not None
        while self.running:
            left = None
            if self._stop_requested_at is not None:
                left = self._stop_requested_at + self.config.grace - time.monotonic()
                if left <= 0:
                    break
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), left)
        self._abandoned_threads = sum(
            1 for r in self.running.values() if r.task is not None and not r.task.is_async
        )
        for run in list(self.running.values()):
            self.executor.hand_back(
                run,
                f"handed back: the worker stopped and the job did not end within the grace period ({self.config.grace:g}s)",
            )
        await asyncio.sleep(0)
        await self.completer.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(psycopg.Error):
            async with self.keeper_conn.use() as conn:
                await db.run_async(conn, db.worker_leave(self.schema, self.id))
        for connection in (self.claimer, self.keeper_conn, self.completer.connection):
            await connection.close()
        await self.builtins.close()
        self.executor.close()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        if self.health is not None:
            self.health.remove()
        self.log.info(
            "worker.stopped",
            jobs=self.claimed_total,
            written=self.completer.written,
            at=datetime.now(timezone.utc).isoformat(),
        )
        return EXIT_OK
