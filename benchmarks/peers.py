#!/usr/bin/env python3
"""pgjobs side by side with PgQueuer and Procrastinate, on the same server, in the same run.

Run by hand (never in CI), from a virtualenv holding pgjobs and the peers pinned in
``benchmarks/requirements-peers.txt``; see ``benchmarks/README.md``. The peers are
benchmark-only dependencies: nothing in the ``pgjobs`` package imports them.

Every system runs alone, one after the other, in a scratch database that this script creates
(``pgjobs_peers_bench`` by default), recreates empty before every measurement and drops at
the end. Nothing else in the target server is touched: pgjobs' own figures come from
``pgjobs bench`` pointed at the scratch database, PgQueuer and Procrastinate install their
tables there.

Scenarios (``--scenarios``), each system with its own recommended settings (see
``--help`` and the settings printed with the results):

- enqueue: single enqueues, one transaction each, and one call of the peer's batch API;
- drain: N ready no-op jobs drained by one worker process; the rate is taken from the
  database's own timestamps (first start to last finish of those N jobs);
- big: the same drain with ``--big`` jobs scheduled a day ahead already waiting;
- latency: an idle worker, one job at a time; commit on the client to handler start;
- idle: statements per second of an idle worker (pg_stat_statements when preloaded,
  else committed transactions of the scratch database).

Handlers are async no-ops and per-job log lines are off (loggers at WARNING).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

SYSTEMS = ("pgjobs", "pgqueuer", "procrastinate")
LABELS = {"pgjobs": "pgjobs", "pgqueuer": "PgQueuer", "procrastinate": "Procrastinate"}
SCENARIOS = ("enqueue", "drain", "big", "latency", "idle")
MARKER = "scratch database of pgjobs' benchmarks/peers.py, dropped at the end of each run"
WORKER_ENV = "PGJOBS_PEERS_WORKER"
LATENCY_SAMPLES = 200
LATENCY_GAP = 0.02  # seconds between samples: the worker is idle when each job arrives
LOAD_CHUNK = 10_000  # jobs per batch call when filling a queue before a drain
POLL = 0.05  # seconds between "is the drain over?" checks
FUTURE = dt.timedelta(days=1)
IDLE_SETTLE = 12.0  # seconds between a worker's start-up and the idle measurement
QUIET_LOGGERS = ("pgqueuer", "procrastinate", "asyncpg", "psycopg")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet_logs() -> None:
    """Per-job log lines off: the peers' loggers at WARNING, on stderr."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Procrastinate warns about an App made in ``__main__`` because tasks named after their
    # module would not be found by a worker; the tasks here have explicit names.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --- connection strings ----------------------------------------------------------------------


def normalize_dsn(dsn: str) -> str:
    """Accept the URL forms pgjobs accepts (``postgresql+psycopg://``) as well as libpq's."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres+psycopg://"):
        if dsn.startswith(prefix):
            return "postgresql://" + dsn[len(prefix) :]
    return dsn


def asyncpg_params(dsn: str) -> dict[str, Any]:
    """asyncpg does not read libpq ``key=value`` strings: hand it the parts."""
    info = conninfo_to_dict(dsn)
    params: dict[str, Any] = {}
    for key, name in (("host", "host"), ("user", "user"), ("password", "password")):
        if info.get(key):
            params[name] = info[key]
    if info.get("port"):
        params["port"] = int(str(info["port"]))
    if info.get("dbname"):
        params["database"] = info["dbname"]
    if info.get("sslmode"):
        params["ssl"] = info["sslmode"]
    return params


# --- results ---------------------------------------------------------------------------------


@dataclass
class Figure:
    value: float | None
    unit: str
    runs: list[float] = field(default_factory=list)
    note: str = ""


Measure = Callable[[], Awaitable[tuple[float, str]]]


async def median(measure: Measure, repeat: int) -> Figure:
    runs: list[float] = []
    notes: list[str] = []
    for _ in range(repeat):
        value, note = await measure()
        runs.append(value)
        if note:
            notes.append(note)
    return Figure(statistics.median(runs), "jobs/s", runs, "; ".join(notes))


# --- worker processes ------------------------------------------------------------------------


def emit_stamp(key: str, started: float) -> None:
    """A latency handler's output: which job, and when its handler started."""
    sys.stdout.write(f"STAMP {key} {started!r}\n")
    sys.stdout.flush()


class Worker:
    """One peer worker in its own process (this script, ``_worker`` mode). Stamps printed
    by the latency handler are read from its stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stamps: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: dict[str, Any]) -> Worker:
        env = {**os.environ, WORKER_ENV: json.dumps(config)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "_worker",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            parts = raw.decode(errors="replace").split()
            if len(parts) == 3 and parts[0] == "STAMP":
                self.stamps.put_nowait((parts[1], float(parts[2])))

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            raise RuntimeError(f"the worker process exited early (code {self.process.returncode})")

    async def wait_stamp(self, key: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(key)
            self.check_alive()
            try:
                got, started = await asyncio.wait_for(self.stamps.get(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                continue
            if got == key:
                return started

    async def stop(self) -> None:
        """SIGTERM (each peer's graceful stop), SIGKILL after 60 s."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 60)
            except asyncio.TimeoutError:
                log("    worker did not stop within 60 s after SIGTERM: killed")
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


async def stop_group(process: asyncio.subprocess.Process) -> None:
    """Stop an interrupted ``pgjobs bench`` and the workers it started (its process group):
    SIGINT first, so that it stops its worker and drops its schema itself; then SIGTERM and
    SIGKILL to the group (signalled only while its leader is alive, so the id is still
    theirs). SIGINT alone is not enough when it was inherited as ignored (a background job)."""
    for sig, group in ((signal.SIGINT, False), (signal.SIGTERM, True), (signal.SIGKILL, True)):
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), 15)


def worker_main() -> None:
    """Entry point of a worker process (``peers.py _worker``, config in the environment)."""
    quiet_logs()
    config = json.loads(os.environ[WORKER_ENV])
    if config["system"] == "pgqueuer":
        try:
            import uvloop  # PgQueuer's `pgq run` uses uvloop when it is installed
        except ImportError:
            asyncio.run(pgqueuer_worker(config))
        else:
            uvloop.run(pgqueuer_worker(config))
    elif config["system"] == "procrastinate":
        asyncio.run(procrastinate_worker(config))  # as `procrastinate worker` does
    else:
        raise SystemExit(f"unknown system {config['system']!r}")


# --- PgQueuer --------------------------------------------------------------------------------


async def pgq_noop(job: Any) -> None:
    """The no-op handler."""


async def pgq_stamp(job: Any) -> None:
    emit_stamp(job.payload.decode(), time.time())


async def pgqueuer_worker(config: dict[str, Any]) -> None:
    """``managers`` PgQueuer instances in this process, each on its own asyncpg connection
    (the shape of PgQueuer's own tools/benchmark.py; one instance is what ``pgq run`` starts)."""
    import asyncpg
    from pgqueuer import PgQueuer

    connections = []
    managers = []
    try:
        for _ in range(config["managers"]):
            connection = await asyncpg.connect(**asyncpg_params(config["dsn"]))
            connections.append(connection)
            pgq = PgQueuer.from_asyncpg_connection(connection)
            pgq.entrypoint("noop", accepts_context=False)(pgq_noop)
            pgq.entrypoint("stamp", accepts_context=False)(pgq_stamp)
            managers.append(pgq)

        def stop() -> None:
            for manager in managers:
                manager.shutdown.set()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop)
        loop.add_signal_handler(signal.SIGINT, stop)
        await asyncio.gather(
            *(manager.run(batch_size=config["batch_size"]) for manager in managers)
        )
    finally:
        for connection in connections:
            await connection.close()


class PgQueuerClient:
    def __init__(self, queries: Any) -> None:
        self.queries = queries

    async def enqueue_one(self) -> None:
        await self.queries.enqueue("noop", None)

    def bulk(self, count: int) -> Callable[[], Awaitable[Any]]:
        entrypoints, payloads, priorities = ["noop"] * count, [None] * count, [0] * count
        return lambda: self.queries.enqueue(entrypoints, payloads, priorities)

    async def load(self, count: int, *, future: bool) -> tuple[int, int]:
        ids: list[int] = []
        for start in range(0, count, LOAD_CHUNK):
            size = min(LOAD_CHUNK, count - start)
            delays = [FUTURE] * size if future else None
            ids += await self.queries.enqueue(["noop"] * size, [None] * size, [0] * size, delays)
        return min(ids), max(ids)

    async def stamp(self, key: str) -> None:
        await self.queries.enqueue("stamp", key.encode())


class PgQueuerPeer:
    name = "pgqueuer"
    has_bulk = True

    def __init__(self, args: argparse.Namespace) -> None:
        self.managers = args.pgq_managers
        self.batch_size = args.pgq_batch_size

    def settings(self) -> str:
        return (
            f"asyncpg {version('asyncpg')} driver, uvloop; drain and big: one process running "
            f"{self.managers} PgQueuer instances (one asyncpg connection each) with "
            f"batch_size={self.batch_size}"
            + (
                ", as PgQueuer's own tools/benchmark.py drains; "
                if (self.managers, self.batch_size) == (5, 10)
                else " (--pgq-managers, --pgq-batch-size); "
            )
            + "latency and idle: one PgQueuer instance (what `pgq run` starts), "
            f"batch_size={self.batch_size}, other run() arguments at their defaults; "
            "schema installed with durability 'durable' (the default) and `pgq autovac` applied "
            "(docs/guides/performance-tuning.md)"
        )

    def worker_config(self, dsn: str, purpose: str) -> dict[str, Any]:
        managers = self.managers if purpose == "drain" else 1
        return {
            "system": self.name,
            "dsn": dsn,
            "managers": managers,
            "batch_size": self.batch_size,
        }

    @contextlib.asynccontextmanager
    async def client(self, dsn: str) -> AsyncIterator[PgQueuerClient]:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        connection = await asyncpg.connect(**asyncpg_params(dsn))
        try:
            yield PgQueuerClient(Queries(AsyncpgDriver(connection)))
        finally:
            await connection.close()

    async def install(self, dsn: str) -> None:
        async with self.client(dsn) as client:
            await client.queries.install()
            await client.queries.optimize_autovacuum()

    # Finished jobs leave the queue table (their trace stays in pgqueuer_log).
    remaining_query = "SELECT EXISTS (SELECT 1 FROM pgqueuer WHERE id BETWEEN %s AND %s)"
    window_query = (
        "SELECT count(*) FILTER (WHERE status = 'successful'),"
        " extract(epoch FROM max(created) FILTER (WHERE status = 'successful')"
        "  - min(created) FILTER (WHERE status = 'picked'))"
        " FROM pgqueuer_log WHERE job_id BETWEEN %s AND %s"
    )
    timestamps = "pgqueuer_log.created: first 'picked' to last 'successful'"


async def fetch_remaining(conn: psycopg.AsyncConnection[Any], query: str, lo: int, hi: int) -> bool:
    """Whether a peer still has unfinished jobs among ids lo..hi (``query``: one boolean)."""
    cursor = await conn.execute(query, (lo, hi))
    row = await cursor.fetchone()
    return bool(row and row[0])


async def fetch_window(
    conn: psycopg.AsyncConnection[Any], query: str, lo: int, hi: int
) -> tuple[int, float | None]:
    """(jobs finished, seconds from the first start to the last finish) of ids lo..hi, from
    a peer's own log table: ``query`` returns exactly those two columns."""
    cursor = await conn.execute(query, (lo, hi))
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), (float(row[1]) if row[1] is not None else None)


# --- Procrastinate ---------------------------------------------------------------------------


def procrastinate_app(dsn: str, pool_size: int, *, stamps: bool = False) -> Any:
    import procrastinate

    connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=pool_size, max_size=pool_size)
    app = procrastinate.App(connector=connector)

    async def noop() -> None:
        """The no-op handler."""

    async def stamp(key: str) -> None:
        if stamps:
            emit_stamp(key, time.time())

    app.task(name="noop", queue="default")(noop)
    app.task(name="stamp", queue="default")(stamp)
    return app


async def procrastinate_worker(config: dict[str, Any]) -> None:
    app = procrastinate_app(config["dsn"], config["pool_size"], stamps=True)
    async with app.open_async():
        # Installs its own SIGTERM/SIGINT handlers: a graceful stop.
        await app.run_worker_async(concurrency=config["concurrency"])


class ProcrastinateClient:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.noop = app.tasks["noop"]
        self.stamp_task = app.tasks["stamp"]

    async def enqueue_one(self) -> None:
        await self.noop.defer_async()

    def bulk(self, count: int) -> Callable[[], Awaitable[Any]]:
        arguments: list[dict[str, Any]] = [{} for _ in range(count)]
        return lambda: self.noop.batch_defer_async(*arguments)

    async def load(self, count: int, *, future: bool) -> tuple[int, int]:
        deferrer = self.noop.configure(schedule_in={"days": 1}) if future else self.noop
        ids: list[int] = []
        for start in range(0, count, LOAD_CHUNK):
            size = min(LOAD_CHUNK, count - start)
            ids += await deferrer.batch_defer_async(*({} for _ in range(size)))
        return min(ids), max(ids)

    async def stamp(self, key: str) -> None:
        await self.stamp_task.defer_async(key=key)


class ProcrastinatePeer:
    name = "procrastinate"

    def __init__(self, args: argparse.Namespace) -> None:
        self.concurrency = args.procrastinate_concurrency
        # "The shorter your average job execution time, the more your pool will need to
        # contain as many connections as your concurrency (plus one)" (Procrastinate's
        # discussion "Mind the size of your PostgreSQL pool").
        self.pool_size = self.concurrency + 1
        from procrastinate import tasks

        self.has_bulk = hasattr(tasks.Task, "batch_defer_async")

    def settings(self) -> str:
        return (
            f"psycopg {version('psycopg')} (pool of {self.pool_size} = concurrency + 1, per its "
            "'Mind the size of your PostgreSQL pool' discussion), asyncio loop; "
            f"App.run_worker_async(concurrency={self.concurrency})"
            + (
                " (the value its 'Execute multiple jobs at the same time' how-to shows)"
                if self.concurrency == 30
                else " (--procrastinate-concurrency)"
            )
            + " for every scenario, other worker options at their defaults"
            " (listen_notify on, jobs kept); schema applied with app.schema_manager.apply_schema_async()"
        )

    def worker_config(self, dsn: str, purpose: str) -> dict[str, Any]:
        return {
            "system": self.name,
            "dsn": dsn,
            "concurrency": self.concurrency,
            "pool_size": self.pool_size,
        }

    @contextlib.asynccontextmanager
    async def client(self, dsn: str) -> AsyncIterator[ProcrastinateClient]:
        app = procrastinate_app(dsn, 1)
        async with app.open_async():
            yield ProcrastinateClient(app)

    async def install(self, dsn: str) -> None:
        async with self.client(dsn) as client:
            await client.app.schema_manager.apply_schema_async()

    remaining_query = (
        "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE id BETWEEN %s AND %s"
        " AND status IN ('todo', 'doing'))"
    )
    window_query = (
        "SELECT count(*) FILTER (WHERE type = 'succeeded'),"
        " extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')"
        "  - min(at) FILTER (WHERE type = 'started'))"
        " FROM procrastinate_events WHERE job_id BETWEEN %s AND %s"
    )
    timestamps = "procrastinate_events.at: first 'started' to last 'succeeded'"


class Client(Protocol):
    async def enqueue_one(self) -> None: ...
    def bulk(self, count: int) -> Callable[[], Awaitable[Any]]: ...
    async def load(self, count: int, *, future: bool) -> tuple[int, int]: ...
    async def stamp(self, key: str) -> None: ...


class Peer(Protocol):
    name: str
    has_bulk: bool
    timestamps: str

    def settings(self) -> str: ...
    def worker_config(self, dsn: str, purpose: str) -> dict[str, Any]: ...
    def client(self, dsn: str) -> contextlib.AbstractAsyncContextManager[Client]: ...
    async def install(self, dsn: str) -> None: ...

    #: Whether jobs lo..hi are still unfinished (one boolean column).
    remaining_query: str
    #: (jobs finished, seconds from the first start to the last finish) of jobs lo..hi.
    window_query: str


# --- the run ---------------------------------------------------------------------------------


class Comparison:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dsn = normalize_dsn(args.dsn)
        self.scratch = args.scratch_db
        self.scratch_dsn = make_conninfo(self.dsn, dbname=self.scratch)
        self.single = max(args.jobs // 10, 1000)  # the sizes `pgjobs bench` uses
        self.bulk = args.jobs * 2
        self.figures: dict[str, dict[str, Figure]] = {}
        self.settings: dict[str, str] = {}
        self.notes: dict[str, list[str]] = {}
        self.pgjobs_raw: list[dict[str, Any]] = []
        self.pss = False
        self.server_version = ""
        self.admin: psycopg.AsyncConnection[Any] | None = None
        self.created = False

    # scratch database

    async def open(self) -> None:
        self.admin = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        row = await (
            await self.admin.execute("SELECT current_setting('server_version'), current_database()")
        ).fetchone()
        assert row is not None
        self.server_version = str(row[0])
        if row[1] == self.scratch:
            raise SystemExit(f"--dsn must name another database than the scratch one ({row[1]})")
        row = await (
            await self.admin.execute(
                "SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'"
                " AND EXISTS (SELECT 1 FROM pg_available_extensions"
                "  WHERE name = 'pg_stat_statements')"
            )
        ).fetchone()
        self.pss = bool(row and row[0])
        row = await (
            await self.admin.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (self.scratch,),
            )
        ).fetchone()
        if row is not None and row[0] != MARKER:
            raise SystemExit(
                f"database {self.scratch!r} exists and was not made by this script: "
                "refusing to drop it (choose another --scratch-db)"
            )

    async def fresh(self) -> None:
        """An empty scratch database (dropped first if a previous measurement left one)."""
        assert self.admin is not None
        name = sql.Identifier(self.scratch)
        await self.admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        await self.admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
        self.created = True
        await self.admin.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(MARKER))
        )
        if self.pss:
            async with await psycopg.AsyncConnection.connect(
                self.scratch_dsn, autocommit=True
            ) as conn:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    async def close(self) -> None:
        if self.admin is None:
            return
        if self.created:
            await self.admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.scratch)
                )
            )
            log(f"dropped the scratch database {self.scratch}")
        await self.admin.close()

    async def settle(self) -> None:
        """After loading a queue, as `pgjobs bench` does: VACUUM ANALYZE, then CHECKPOINT so
        that the checkpoint the load would trigger does not land in the measurement (needs
        superuser or pg_checkpoint; skipped otherwise)."""
        async with await psycopg.AsyncConnection.connect(self.scratch_dsn, autocommit=True) as c:
            await c.execute("VACUUM ANALYZE")
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                await c.execute("CHECKPOINT")

    async def statements(self) -> float:
        """Statements run in the scratch database so far (pg_stat_statements), or its
        committed transactions (pg_stat_database), read from outside it."""
        if self.pss:
            async with await psycopg.AsyncConnection.connect(
                self.scratch_dsn, autocommit=True
            ) as conn:
                cursor = await conn.execute(
                    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " AND query NOT LIKE '%pg_stat_statements%'"
                )
                row = await cursor.fetchone()
        else:
            assert self.admin is not None
            await self.admin.execute("SELECT pg_stat_clear_snapshot()")
            cursor = await self.admin.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.scratch,)
            )
            row = await cursor.fetchone()
        assert row is not None
        return float(row[0])

    # pgjobs: its own `pgjobs bench`

    async def run_pgjobs(self, scenarios: list[str]) -> None:
        a = self.args
        await self.fresh()
        command = [
            sys.executable, "-m", "pgjobs.cli.main", "bench", "--json",
            "--jobs", str(a.jobs), "--repeat", str(a.repeat), "--only", ",".join(scenarios),
            "--big", str(a.big), "--idle-seconds", f"{a.idle_seconds:g}",
        ]  # fmt: skip
        env = {**os.environ, "PGJOBS_DSN": self.scratch_dsn}
        env.pop("PGJOBS_SCHEMA", None)
        log(f"  $ pgjobs bench {' '.join(command[5:])}  (PGJOBS_DSN: the scratch database)")
        # Outside the repository: from its root, `-m pgjobs...` (here and in the workers
        # `pgjobs bench` starts) would import the source tree instead of the installed package.
        with tempfile.TemporaryDirectory(prefix="pgjobs-peers-") as cwd:
            lines = await self._pgjobs_bench(command, env, cwd)
        self.pgjobs_raw = json.loads("\n".join(lines)) if lines else []
        figures = self.figures.setdefault("pgjobs", {})
        for item in self.pgjobs_raw:
            key = pgjobs_key(str(item["scenario"]))
            if key:
                figures[key] = Figure(
                    float(item["value"]), str(item["unit"]), list(item["runs"]), str(item["note"])
                )

    async def _pgjobs_bench(self, command: list[str], env: dict[str, str], cwd: str) -> list[str]:
        """Runs `pgjobs bench`, echoing its progress; returns the lines of its JSON."""
        # Its own process group: on an interruption, it and the workers it started are
        # stopped here (SIGINT lets it stop its workers and drop its schema).
        process = await asyncio.create_subprocess_exec(
            *command, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, start_new_session=True
        )
        lines: list[str] = []
        in_json = False
        try:
            assert process.stdout is not None
            async for raw in process.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                in_json = in_json or line in ("[", "[]")
                if in_json:
                    lines.append(line)
                else:
                    log(f"    {line}")
            code = await process.wait()
        finally:
            await stop_group(process)
        if code != 0:
            raise RuntimeError(f"pgjobs bench exited with code {code}")
        return lines

    # the peers

    async def enqueue_single(self, peer: Peer) -> tuple[float, str]:
        await self.fresh()
        await peer.install(self.scratch_dsn)
        async with peer.client(self.scratch_dsn) as client:
            await client.enqueue_one()  # connection and statements warm, outside the clock
            started = time.perf_counter()
            for _ in range(self.single):
                await client.enqueue_one()
            return self.single / (time.perf_counter() - started), ""

    async def enqueue_bulk(self, peer: Peer) -> tuple[float, str]:
        await self.fresh()
        await peer.install(self.scratch_dsn)
        async with peer.client(self.scratch_dsn) as client:
            call = client.bulk(self.bulk)
            started = time.perf_counter()
            await call()
            return self.bulk / (time.perf_counter() - started), ""

    async def drain(self, peer: Peer, waiting: int = 0) -> tuple[float, str]:
        count = self.args.jobs
        await self.fresh()
        await peer.install(self.scratch_dsn)
        async with peer.client(self.scratch_dsn) as client:
            if waiting:
                await client.load(waiting, future=True)
            lo, hi = await client.load(count, future=False)
        await self.settle()
        timed_out = False
        async with await psycopg.AsyncConnection.connect(self.scratch_dsn, autocommit=True) as conn:
            worker = await Worker.start(peer.worker_config(self.scratch_dsn, "drain"))
            try:
                deadline = time.monotonic() + self.args.drain_timeout
                while await fetch_remaining(conn, peer.remaining_query, lo, hi):
                    worker.check_alive()
                    if time.monotonic() > deadline:
                        timed_out = True
                        break
                    await asyncio.sleep(POLL)
            finally:
                await worker.stop()
            done, seconds = await fetch_window(conn, peer.window_query, lo, hi)
        if not done or not seconds:
            raise RuntimeError(f"no job of the drain finished ({done} done)")
        note = (
            f"timed out after {self.args.drain_timeout:g} s: {done:,} of {count:,} done"
            if timed_out
            else ""
        )
        return done / seconds, note

    async def latency(self, peer: Peer) -> dict[str, Figure]:
        await self.fresh()
        await peer.install(self.scratch_dsn)
        gaps: list[float] = []
        missing = 0
        worker = await Worker.start(peer.worker_config(self.scratch_dsn, "serve"))
        try:
            async with peer.client(self.scratch_dsn) as client:
                await client.stamp("warmup")
                await worker.wait_stamp("warmup", 60)  # the worker is up and listening
                for i in range(LATENCY_SAMPLES):
                    await asyncio.sleep(LATENCY_GAP)
                    await client.stamp(str(i))
                    committed = time.time()
                    try:
                        started = await worker.wait_stamp(str(i), 10)
                    except TimeoutError:
                        missing += 1
                        continue
                    gaps.append((started - committed) * 1000)
        finally:
            await worker.stop()
        if not gaps:
            raise RuntimeError("no latency sample arrived")
        gaps.sort()
        note = f"{len(gaps)} samples" + (f", {missing} lost (over 10 s)" if missing else "")
        return {
            f"latency_p{p}": Figure(
                gaps[min(len(gaps) - 1, int(p / 100 * len(gaps)))], "ms", [], note
            )
            for p in (50, 95, 99)
        }

    async def idle(self, peer: Peer) -> tuple[float, str]:
        seconds = self.args.idle_seconds
        await self.fresh()
        await peer.install(self.scratch_dsn)
        worker = await Worker.start(peer.worker_config(self.scratch_dsn, "serve"))
        try:
            async with peer.client(self.scratch_dsn) as client:
                await client.stamp("warmup")
                await worker.wait_stamp("warmup", 60)
            # Start-up statements are not idle ones, and PostgreSQL may hold an idle backend's
            # counters for up to 10 s (PGSTAT_IDLE_INTERVAL) before publishing them.
            await asyncio.sleep(IDLE_SETTLE)
            before = await self.statements()
            await asyncio.sleep(seconds)
            after = await self.statements()
            worker.check_alive()
        finally:
            await worker.stop()
        source = (
            "pg_stat_statements"
            if self.pss
            else "xact_commit of the scratch database (an upper bound)"
        )
        return (after - before) / seconds, source

    async def run_peer(self, peer: Peer, scenarios: list[str]) -> None:
        figures = self.figures.setdefault(peer.name, {})
        notes = self.notes.setdefault(peer.name, [])
        repeat = self.args.repeat

        async def attempt(key: str, measure: Callable[[], Awaitable[None]]) -> None:
            try:
                await measure()
            except Exception as error:  # one failing scenario must not stop the comparison
                traceback.print_exc()
                figures[key] = Figure(None, "", note=f"failed: {error!r}")
            for name, figure in figures.items():
                if name.startswith(key) and figure.value is not None:
                    log(f"  {peer.name} {name}: {figure.value:,.3f} {figure.unit} {figure.runs}")

        if "enqueue" in scenarios:

            async def single() -> None:
                figures["enqueue_single"] = await median(lambda: self.enqueue_single(peer), repeat)

            async def bulk() -> None:
                if not peer.has_bulk:
                    figures["enqueue_bulk"] = Figure(None, "", note="no batch API in this version")
                    return
                figures["enqueue_bulk"] = await median(lambda: self.enqueue_bulk(peer), repeat)

            await attempt("enqueue_single", single)
            await attempt("enqueue_bulk", bulk)
        if "drain" in scenarios:

            async def drain() -> None:
                figures["drain"] = await median(lambda: self.drain(peer), repeat)

            await attempt("drain", drain)
        if "big" in scenarios:

            async def big() -> None:
                figures["big"] = await median(lambda: self.drain(peer, self.args.big), repeat)

            await attempt("big", big)
        if "latency" in scenarios:

            async def latency() -> None:
                figures.update(await self.latency(peer))

            await attempt("latency", latency)
        if "idle" in scenarios:

            async def idle() -> None:
                rate, source = await self.idle(peer)
                figures["idle"] = Figure(rate, "statements/s", [rate], source)

            await attempt("idle", idle)
        if "drain" in scenarios or "big" in scenarios:
            notes.append(f"drain rates from the database's timestamps ({peer.timestamps})")


def pgjobs_key(scenario: str) -> str | None:
    """Which row of the table a line of `pgjobs bench --json` feeds."""
    prefixes = {
        "enqueue: single": "enqueue_single",
        "enqueue: bulk": "enqueue_bulk",
        "drain: async no-op, 1 process": "drain",
        "pickup latency p50": "latency_p50",
        "pickup latency p95": "latency_p95",
        "pickup latency p99": "latency_p99",
        "idle worker": "idle",
    }
    for prefix, key in prefixes.items():
        if scenario.startswith(prefix):
            return key
    if scenario.startswith("drain with") and "waiting" in scenario:
        return "big"
    return None


# --- report ----------------------------------------------------------------------------------


def cell(figures: dict[str, Figure], row: str) -> str:
    def value(key: str) -> float | None:
        figure = figures.get(key)
        return figure.value if figure else None

    if row == "latency":
        p50, p95, p99 = (value(f"latency_p{p}") for p in (50, 95, 99))
        if p50 is None or p95 is None or p99 is None:
            return "n/a" if "latency_p50" in figures else ""
        return f"{p50:.1f} / {p95:.1f} / {p99:.1f} ms"
    if row not in figures:
        return ""
    current = value(row)
    if current is None:
        return "n/a"
    if row == "idle":
        return f"{current:.3f}/s"
    text = f"{current:,.0f} jobs/s"
    empty = value("drain")
    if row == "big" and empty:
        text += f" ({100 * current / empty:.0f} % of empty)"
    return text


def report(cmp: Comparison, systems: list[str]) -> str:
    a = cmp.args
    rows = [
        ("drain", f"drain, async no-op, 1 worker process ({a.jobs:,} jobs)"),
        ("big", f"drain with {a.big:,} jobs scheduled a day ahead waiting"),
        ("latency", "pickup latency p50 / p95 / p99, idle worker"),
        ("idle", "idle worker, statements per second"),
        ("enqueue_single", f"enqueue: single, one transaction each ({cmp.single:,})"),
        ("enqueue_bulk", f"enqueue: bulk, the batch API ({cmp.bulk:,})"),
    ]
    header = ["scenario"] + [f"{LABELS[s]} {version(s)}" for s in systems]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---" + "|---:" * len(systems) + "|",
    ]
    for key, label in rows:
        cells = [cell(cmp.figures.get(s, {}), key) for s in systems]
        if any(cells):
            lines.append("| " + " | ".join([label, *cells]) + " |")
    lines.append("")
    lines.append(
        f"{dt.date.today().isoformat()}; PostgreSQL {cmp.server_version}; Python "
        f"{platform.python_version()}; {os.cpu_count()} CPUs; median of {a.repeat} run(s) for "
        "rates, one run for latency and idle; handlers are async no-ops, per-job logs off."
    )
    for system in systems:
        for key, figure in cmp.figures.get(system, {}).items():
            if figure.note and (figure.value is None or key in ("idle", "drain", "big")):
                lines.append(f"- {LABELS[system]}, {key}: {figure.note}")
        for note in cmp.notes.get(system, []):
            lines.append(f"- {LABELS[system]}: {note}")
        if system in cmp.settings:
            lines.append(f"- {LABELS[system]} settings: {cmp.settings[system]}")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def others_running() -> list[str]:
    """Other benchmark processes on this machine (``pgjobs bench``, another ``peers.py``):
    this machine has 2 cores and benchmarks must never overlap."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    found = []
    mine = {os.getpid(), os.getppid()}
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv if w]
        pgjobs = any(w.endswith("pgjobs") or w == "pgjobs.cli.main" for w in words)
        peers = any(w.endswith("peers.py") for w in words[1:2])
        if (pgjobs and "bench" in words) or (peers and "_worker" not in words):
            found.append(f"{entry.name}: {' '.join(words)}")
    return found


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="pgjobs, PgQueuer and Procrastinate on the same PostgreSQL, one at a time.",
        epilog="Run by hand only (never in CI). See benchmarks/README.md.",
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("PGJOBS_DSN"),
        help="server to measure on (libpq string or URL; env PGJOBS_DSN). Needs CREATEDB: "
        "everything runs in a scratch database that is dropped at the end.",
    )
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs per drain (default 50000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per rate, median reported")
    parser.add_argument(
        "--only", default=",".join(SYSTEMS), help=f"systems among {', '.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"among {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--big", type=int, default=1_000_000, help="future jobs waiting in the 'big' drain"
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="write the raw figures to this file")
    parser.add_argument("--scratch-db", default="pgjobs_peers_bench")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=600.0,
        help="seconds before a peer's drain is cut short (its partial rate is reported)",
    )
    parser.add_argument(
        "--pgq-managers",
        type=int,
        default=5,
        help="PgQueuer instances in the drain process (tools/benchmark.py: --dequeue 5)",
    )
    parser.add_argument(
        "--pgq-batch-size",
        type=int,
        default=10,
        help="PgQueuer batch_size (default of `pgq run` and tools/benchmark.py)",
    )
    parser.add_argument(
        "--procrastinate-concurrency",
        type=int,
        default=30,
        help="Procrastinate worker concurrency (its concurrency how-to's value)",
    )
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn (or PGJOBS_DSN) is required: this never runs on the embedded server")
    if args.jobs < 100 or args.big < 1000 or args.repeat < 1 or args.idle_seconds < 1:
        parser.error("--jobs >= 100, --big >= 1000, --repeat >= 1, --idle-seconds >= 1")
    for option, allowed in (("only", SYSTEMS), ("scenarios", SCENARIOS)):
        chosen = [s.strip() for s in getattr(args, option).split(",") if s.strip()]
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error(f"--{option}: unknown {', '.join(unknown)}")
        setattr(args, option, [s for s in allowed if s in chosen])
    return args


async def main(args: argparse.Namespace) -> int:
    quiet_logs()
    # SIGTERM stops the run like Ctrl+C does: workers stopped, scratch database dropped.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    while busy := others_running():
        log("another benchmark is running; waiting for it to finish:\n  " + "\n  ".join(busy))
        await asyncio.sleep(30)
    systems: list[str] = args.only
    scenarios: list[str] = args.scenarios
    cmp = Comparison(args)
    started = dt.datetime.now().astimezone()
    await cmp.open()
    try:
        for system in systems:
            log(f"== {LABELS[system]} {version(system)}")
            if system == "pgjobs":
                cmp.settings[system] = (
                    "`pgjobs bench` as is: drain with `pgjobs worker --burst -c 100 --quiet-jobs` "
                    "in one process, latency and idle on a `-c 10` worker"
                )
                try:
                    await cmp.run_pgjobs(scenarios)
                except Exception as error:
                    traceback.print_exc()
                    cmp.notes.setdefault(system, []).append(f"pgjobs bench failed: {error!r}")
                continue
            peer: Peer = PgQueuerPeer(args) if system == "pgqueuer" else ProcrastinatePeer(args)
            cmp.settings[system] = peer.settings()
            await cmp.run_peer(peer, scenarios)
    finally:
        await cmp.close()
    table = report(cmp, systems)
    print(table)
    if args.json:
        document = {
            "started": started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "postgresql": cmp.server_version,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "versions": {
                name: version(name)
                for name in ("pgjobs", "pgqueuer", "procrastinate", "psycopg", "asyncpg")
            },
            "parameters": {
                "jobs": args.jobs,
                "repeat": args.repeat,
                "big": args.big,
                "idle_seconds": args.idle_seconds,
                "enqueue_single": cmp.single,
                "enqueue_bulk": cmp.bulk,
                "latency_samples": LATENCY_SAMPLES,
                "idle_source": "pg_stat_statements" if cmp.pss else "xact_commit",
            },
            "settings": cmp.settings,
            "figures": {
                system: {key: asdict(figure) for key, figure in figures.items()}
                for system, figures in cmp.figures.items()
            },
            "notes": cmp.notes,
            "pgjobs_bench": cmp.pgjobs_raw,
            "table": table,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        log(f"raw figures written to {args.json}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_worker"]:
        worker_main()
    else:
        arguments = parse_args(sys.argv[1:])
        try:
            sys.exit(asyncio.run(main(arguments)))
        except (KeyboardInterrupt, asyncio.CancelledError):
            log("interrupted")
            sys.exit(130)
