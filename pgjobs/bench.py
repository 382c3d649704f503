"""``pgjobs bench``: throughput and latency of pgjobs against the configured database.

Every scenario runs in its own throwaway schema (``pgjobs_bench``, dropped afterwards), so a
benchmark never touches real jobs. Rates come from the database's own timestamps (first
``started_at`` to last ``finished_at``), not from the client's wall clock around process
start-up. Figures vary with the machine and what else runs on it: compare runs made side by
side, and read ``docs/benchmarks.md`` for the method.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgjobs import db, queue_control
from pgjobs.app import App
from pgjobs.config import Settings
from pgjobs.connection import connect, resolve_dsn
from pgjobs.migrate import upgrade
from pgjobs.types import JobStatus

BENCH_SCHEMA = "pgjobs_bench"

#: Runs n operations and returns the seconds they took.
Step = Callable[[int], float]

# The benchmark's own tasks: a worker started by the benchmark imports this module.
bench_app = App(schema=BENCH_SCHEMA)


@bench_app.task(name="bench.noop")
async def noop() -> None:
    """An async no-op: measures pgjobs, not the handler."""


@bench_app.task(name="bench.noop_sync")
def noop_sync() -> None:
    """A sync no-op: the thread-pool path."""


@bench_app.task(name="bench.stamp")
async def stamp() -> float:
    """Returns when the handler started (pickup latency)."""
    return time.time()


@dataclass
class Result:
    scenario: str
    value: float
    unit: str
    runs: list[float] = field(default_factory=list)
    note: str = ""

    def line(self) -> str:
        spread = (
            f" (runs: {', '.join(f'{r:,.1f}' for r in self.runs)})" if len(self.runs) > 1 else ""
        )
        note = f"  [{self.note}]" if self.note else ""
        return f"{self.scenario:<48} {self.value:>12,.1f} {self.unit}{spread}{note}"


def _plain_claim() -> sql.Composed:
    """The plainest claim there is (one queue, no pause, limits or priority levels), the
    reference a job queue is measured against; ``%s`` is the number of jobs."""
    return sql.SQL(
        "WITH picked AS MATERIALIZED (SELECT id FROM {s}.jobs WHERE status = 'queued' AND blockers = 0"
        " AND queue = 'default' AND not_before <= now() ORDER BY priority DESC, not_before, id"
        " LIMIT %s FOR UPDATE SKIP LOCKED)"
        " UPDATE {s}.jobs AS j SET status = 'running', attempts = j.attempts + 1, lease_token = gen_random_uuid(),"
        " lease_expires_at = now() + interval '30 seconds', started_at = now()"
        " WHERE j.id = ANY (ARRAY(SELECT id FROM picked)) RETURNING j.id"
    ).format(s=sql.Identifier(BENCH_SCHEMA))


def _percentiles(gaps: list[float]) -> dict[str, float]:
    ordered = sorted(gaps)
    if not ordered:
        raise RuntimeError("no pickup was measured")

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "samples": float(len(ordered))}


def bare_consumer() -> None:
    """The process of :meth:`Bench.bare_latency`: LISTEN on one connection; at each
    notification claim with :func:`_plain_claim` on another and note the clock; at the end
    write the noted times as the jobs' results (outside the measured path)."""
    dsn = os.environ["PGJOBS_DSN"]
    samples = int(os.environ["PGJOBS_BENCH_SAMPLES"])
    claim = _plain_claim()
    stamps: dict[int, float] = {}
    with (
        psycopg.connect(dsn, autocommit=True) as listener,
        psycopg.connect(dsn, autocommit=True) as worker,
    ):
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(db.jobs_channel(BENCH_SCHEMA))))
        print("listening", flush=True)
        while len(stamps) < samples:
            for _notice in listener.notifies(timeout=10, stop_after=1):
                break
            else:
                break  # the producer stopped
            for (job_id,) in worker.execute(claim, (10,)).fetchall():
                stamps[job_id] = time.time()
        with worker.cursor() as cursor:
            cursor.executemany(
                sql.SQL("UPDATE {}.jobs SET result = to_jsonb(%s::float8) WHERE id = %s").format(
                    sql.Identifier(BENCH_SCHEMA)
                ),
                [(at, job_id) for job_id, at in stamps.items()],
            )


class Bench:
    def __init__(
        self, settings: Settings, *, repeat: int = 3, log: Callable[[str], None] = print
    ) -> None:
        self.settings = Settings(dsn=settings.dsn, schema=BENCH_SCHEMA, home=settings.home)
        self.dsn = resolve_dsn(self.settings)
        self.repeat = repeat
        self.log = log

    # --- schema -----------------------------------------------------------------------

    def fresh_schema(self) -> None:
        with connect(self.settings, dsn=self.dsn) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(BENCH_SCHEMA))
            )
        upgrade(self.settings)

    def drop_schema(self) -> None:
        with connect(self.settings, dsn=self.dsn) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(BENCH_SCHEMA))
            )

    def conn(self) -> psycopg.Connection[Any]:
        return connect(self.settings, dsn=self.dsn)

    def median(
        self, scenario: str, unit: str, measure: Callable[[], float], note: str = ""
    ) -> Result:
        runs = []
        for _ in range(self.repeat):
            self.fresh_schema()
            runs.append(measure())
        result = Result(scenario, statistics.median(runs), unit, runs, note)
        self.log(result.line())
        return result

    def paired(
        self,
        scenario: tuple[str, Callable[[], float]],
        baseline: tuple[str, Callable[[], float]],
        unit: str,
    ) -> list[Result]:
        """A figure and its baseline, their runs interleaved, in alternating order (figure
        first, then baseline first...): the machine's drift over a few seconds then weighs on
        both alike, and the ratio of the two, which is what the targets are about, stays
        honest."""
        runs: dict[str, list[float]] = {scenario[0]: [], baseline[0]: []}
        for repeat in range(self.repeat):
            for name, measure in (scenario, baseline)[:: 1 if repeat % 2 == 0 else -1]:
                self.fresh_schema()
                runs[name].append(measure())
        return self._results(runs, unit)

    def alternating(
        self,
        scenario: tuple[str, Callable[[], contextlib.AbstractContextManager[Step]]],
        baseline: tuple[str, Callable[[], contextlib.AbstractContextManager[Step]]],
        count: int,
        unit: str,
        rounds: int,
    ) -> list[Result]:
        """A figure and its baseline made of many operations (single enqueues, or bulk
        batches): both sides stay open on one fresh schema and take turns in ``rounds``
        rounds (AB BA AB...). A commit waits for the disk, whose speed drifts by 2x within
        seconds on shared machines; runs one after the other measure that drift more than
        the difference between the two. Single enqueues take turns one by one: the finest
        grain cancels the drift best (two bare sides measured so: 100 % ± 1 per run), and
        each side then runs as in a program that enqueues between other work, with cold
        CPU caches. A run's figure is its operations over its time."""
        runs: dict[str, list[float]] = {scenario[0]: [], baseline[0]: []}
        per_round = max(count // rounds, 1)
        for _ in range(self.repeat):
            self.fresh_schema()
            with scenario[1]() as figure_step, baseline[1]() as baseline_step:
                spent = {scenario[0]: 0.0, baseline[0]: 0.0}
                sides = [(scenario[0], figure_step), (baseline[0], baseline_step)]
                for turn in range(rounds):
                    for name, step in sides[:: 1 if turn % 2 == 0 else -1]:
                        spent[name] += step(per_round)
            for name, seconds in spent.items():
                runs[name].append(per_round * rounds / seconds)
        return self._results(runs, unit)

    def _results(self, runs: dict[str, list[float]], unit: str) -> list[Result]:
        """Each side's median, then the figure as a share of its baseline: the median of
        the per-run ratios. Both sides of one run were measured interleaved, so a run's
        ratio cancels what the machine was doing then; the ratio of the two medians would
        compare runs made at different moments (a ±10 % spread per run here)."""
        (figure, figure_runs), (_, baseline_runs) = runs.items()
        ratios = [100 * f / b for f, b in zip(figure_runs, baseline_runs, strict=True)]
        share = Result(
            f"  = {figure.strip().split(' (')[0]} / baseline",
            statistics.median(ratios),
            "%",
            ratios,
        )
        results = [Result(name, statistics.median(r), unit, r) for name, r in runs.items()]
        results.append(share)
        for result in results:
            self.log(result.line())
        return results

    # --- enqueue ----------------------------------------------------------------------

    @contextlib.contextmanager
    def single_enqueuer(self) -> Iterator[Step]:
        """``step(n)``: n enqueues through the Python API, one transaction each; seconds."""
        with App(self.dsn, schema=BENCH_SCHEMA, pool_size=1) as app:
            app.enqueue("bench.noop")  # open the pool outside the measurement

            def step(count: int) -> float:
                started = time.perf_counter()
                for _ in range(count):
                    app.enqueue("bench.noop", queue="default", priority=0, max_attempts=3)
                return time.perf_counter() - started

            yield step

    @contextlib.contextmanager
    def bare_inserter(self) -> Iterator[Step]:
        """``step(n)``: n hand-written INSERTs of the same row from psycopg, autocommit."""
        with self.conn() as conn:
            query = sql.SQL(
                "INSERT INTO {}.jobs (task, args, queue, priority, max_attempts) VALUES (%s, %s::jsonb, %s, %s, %s) RETURNING id"
            ).format(sql.Identifier(BENCH_SCHEMA))

            def step(count: int) -> float:
                started = time.perf_counter()
                for _ in range(count):
                    conn.execute(query, ("bench.noop", "{}", "default", 0, 3)).fetchone()
                return time.perf_counter() - started

            yield step

    @contextlib.contextmanager
    def bulk_enqueuer(self) -> Iterator[Step]:
        """``step(n)``: one ``enqueue_many`` of n jobs (their specs built before the clock
        starts: they are the caller's data); seconds."""
        with App(self.dsn, schema=BENCH_SCHEMA, pool_size=1) as app:
            app.enqueue("bench.noop")  # open the pool outside the measurement

            def step(count: int) -> float:
                specs = [
                    {
                        "task": "bench.noop",
                        "args": {"i": i},
                        "queue": "default",
                        "priority": 0,
                        "max_attempts": 3,
                    }
                    for i in range(count)
                ]
                started = time.perf_counter()
                app.enqueue_many(specs)
                return time.perf_counter() - started

            yield step

    @contextlib.contextmanager
    def bare_copier(self) -> Iterator[Step]:
        """``step(n)``: one hand-written COPY of the same n rows, their JSON encoded before
        the clock starts (stricter than pgjobs' side, which encodes inside it); seconds."""
        with self.conn() as conn:
            statement = sql.SQL(
                "COPY {}.jobs (task, args, queue, priority, max_attempts) FROM STDIN"
            ).format(sql.Identifier(BENCH_SCHEMA))

            def step(count: int) -> float:
                rows = [("bench.noop", json.dumps({"i": i}), "default", 0, 3) for i in range(count)]
                started = time.perf_counter()
                with conn.transaction(), conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
                return time.perf_counter() - started

            yield step

    # --- drain ------------------------------------------------------------------------

    def load(
        self, count: int, task: str = "bench.noop", *, status: str = "queued", delay: str = "0"
    ) -> None:
        with self.conn() as conn:
            extra = ", finished_at, started_at, attempts" if status != "queued" else ""
            values = (
                ", now() - interval '1 day', now() - interval '1 day', 1"
                if status != "queued"
                else ""
            )
            conn.execute(
                sql.SQL(
                    "INSERT INTO {s}.jobs (task, queue, priority, max_attempts, status, not_before{extra})"
                    " SELECT %s, 'default', 0, 3, %s, now() + %s::interval{values} FROM generate_series(1, %s)"
                ).format(
                    s=sql.Identifier(BENCH_SCHEMA), extra=sql.SQL(extra), values=sql.SQL(values)
                ),
                (task, status, delay, count),
            )
            conn.execute(sql.SQL("VACUUM ANALYZE {}.jobs").format(sql.Identifier(BENCH_SCHEMA)))
            self.settle(conn)

    def limit_queue(self, queue: str, **limits: Any) -> None:
        """Give a queue a limit (the benchmark's own, with a limit it never reaches: what the
        limit itself costs; or another one, to see what it costs the others)."""
        with self.conn() as conn:
            queue_control.set_limits(conn, BENCH_SCHEMA, queue, **limits)

    def settle(self, conn: psycopg.Connection[Any]) -> None:
        """Flush what loading the fixture wrote, so that the checkpoint it would trigger does
        not land in the measurement (needs superuser or pg_checkpoint; skipped otherwise)."""
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")

    def rate_of(self, task: str) -> float:
        with self.conn() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))"
                    " FROM {}.jobs WHERE task = %s AND status = 'succeeded' AND started_at > now() - interval '1 hour'"
                ).format(sql.Identifier(BENCH_SCHEMA)),
                (task,),
            ).fetchone()
        assert row is not None and row[1]
        return float(row[0]) / float(row[1])

    def _worker(self, *args: str) -> tuple[list[str], dict[str, str]]:
        """The command and environment of a benchmark worker process. Workers start in a
        neutral directory: from a source checkout, ``python -m`` would import the checkout's
        ``pgjobs`` (which has no ``pgjobs.cli``) instead of the installed package."""
        env = {
            **os.environ,
            "PGJOBS_DSN": self.dsn,
            "PGJOBS_SCHEMA": BENCH_SCHEMA,
            "PGJOBS_LOG_LEVEL": "warning",
        }
        command = [
            sys.executable,
            "-m",
            "pgjobs.cli.main",
            "worker",
            "--app",
            "pgjobs.bench:bench_app",
            "--quiet-jobs",
            *args,
        ]
        return command, env

    def run_worker(self, *args: str) -> None:
        """A ``--burst`` worker: returns once it has drained what is ready."""
        command, env = self._worker("--burst", *args)
        subprocess.run(command, env=env, check=True, cwd=tempfile.gettempdir())

    def drain(
        self,
        count: int,
        task: str = "bench.noop",
        *args: str,
        setup: Callable[[], None] | None = None,
    ) -> float:
        if setup is not None:
            setup()
        self.load(count, task)
        self.run_worker(*args)
        return self.rate_of(task)

    def bare_loop(self, count: int, batch: int, *, simple: bool = True) -> float:
        """The limit line: claim ``batch`` jobs and complete them at once, one statement each,
        no handler, no worker machinery. ``simple`` uses the plainest claim there is (one
        queue, no pause, limits or priority levels), the reference a job queue is measured
        against; otherwise pgjobs' own claim function."""
        self.load(count)
        worker = uuid.uuid4()
        schema = sql.Identifier(BENCH_SCHEMA)
        plain_claim = _plain_claim()
        plain_complete = sql.SQL(
            "UPDATE {s}.jobs SET status = 'succeeded', finished_at = now(), lease_token = NULL WHERE id = ANY (%s)"
        ).format(s=schema)
        with self.conn() as conn:
            started = time.perf_counter()
            done = 0
            while True:
                if simple:
                    ids = [r[0] for r in conn.execute(plain_claim, (batch,)).fetchall()]
                    if not ids:
                        break
                    conn.execute(plain_complete, (ids,))
                    done += len(ids)
                    continue
                jobs = db.run(
                    conn,
                    db.claim_call(
                        BENCH_SCHEMA, queues=None, limit=batch, worker_id=worker, lease_seconds=30
                    ),
                )
                if not jobs:
                    break
                db.run(
                    conn,
                    db.finish(
                        BENCH_SCHEMA,
                        [
                            db.Outcome(j.id, j.lease_token, JobStatus.SUCCEEDED, result="null")
                            for j in jobs
                        ],
                    ),
                )
                done += len(jobs)
            return done / (time.perf_counter() - started)

    # --- latency ------------------------------------------------------------------------

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A long-running benchmark worker (latency and idle scenarios)."""
        command, env = self._worker()
        return subprocess.Popen(command, env=env, cwd=tempfile.gettempdir())

    def latency(self, samples: int) -> dict[str, float]:
        """Commit of an INSERT to the start of its handler on an idle ``-c 10`` worker."""
        worker = self.start_worker()
        gaps: list[float] = []
        try:
            with self.conn() as conn, psycopg.connect(self.dsn, autocommit=True) as listener:
                listener.execute(
                    sql.SQL("LISTEN {}").format(sql.Identifier(db.events_channel(BENCH_SCHEMA)))
                )
                self._wait_for_worker(conn)
                for _ in range(samples):
                    job_id, committed = self._insert_stamp_job(conn)
                    for _notice in listener.notifies(timeout=10, stop_after=1):
                        break
                    started = self._stamps(conn, [job_id]).get(job_id)
                    if started is not None:
                        gaps.append((started - committed) * 1000)
        finally:
            worker.terminate()
            worker.wait(30)
        return _percentiles(gaps)

    def bare_latency(self, samples: int) -> dict[str, float]:
        """The limit line of pickup latency: a process that LISTENs and, at each
        notification, claims with the plainest UPDATE ... SKIP LOCKED on a second connection
        (:func:`bare_consumer`). Same table, trigger and producer as :meth:`latency`."""
        command = [sys.executable, "-c", "from pgjobs.bench import bare_consumer; bare_consumer()"]
        env = {**os.environ, "PGJOBS_DSN": self.dsn, "PGJOBS_BENCH_SAMPLES": str(samples)}
        consumer = subprocess.Popen(
            command, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.PIPE
        )
        committed: dict[int, float] = {}
        try:
            assert consumer.stdout is not None
            if consumer.stdout.readline().strip() != b"listening":
                raise RuntimeError("the bare consumer did not start")
            with self.conn() as conn:
                for _ in range(samples):
                    job_id, at = self._insert_stamp_job(conn)
                    committed[job_id] = at
                consumer.wait(30)
                started = self._stamps(conn, list(committed))
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait()
        return _percentiles(
            [(started[i] - at) * 1000 for i, at in committed.items() if i in started]
        )

    def _insert_stamp_job(self, conn: psycopg.Connection[Any]) -> tuple[int, float]:
        """After 20 ms of quiet (the consumer is idle again: this measures an idle pickup),
        one job; its id and the client's clock right after its commit."""
        time.sleep(0.02)
        row = conn.execute(
            sql.SQL(
                "INSERT INTO {}.jobs (task, queue, priority, max_attempts) VALUES ('bench.stamp', 'default', 0, 3) RETURNING id"
            ).format(sql.Identifier(BENCH_SCHEMA))
        ).fetchone()
        committed = time.time()
        assert row is not None
        return int(row[0]), committed

    def _stamps(self, conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, float]:
        """The start times the handlers (or the bare consumer) wrote as the jobs' results."""
        rows = conn.execute(
            sql.SQL(
                "SELECT id, result FROM {}.jobs WHERE id = ANY (%s) AND jsonb_typeof(result) = 'number'"
            ).format(sql.Identifier(BENCH_SCHEMA)),
            (ids,),
        ).fetchall()
        return {int(i): float(r) for i, r in rows}

    def _wait_for_worker(self, conn: psycopg.Connection[Any]) -> None:
        deadline = time.monotonic() + 30
        query = sql.SQL("SELECT count(*) FROM {}.workers").format(sql.Identifier(BENCH_SCHEMA))
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
        raise RuntimeError("the benchmark worker did not start")

    # --- idle -----------------------------------------------------------------------------

    def idle_statements(self, seconds: float) -> tuple[float, str]:
        """Statements per second of one idle worker, from pg_stat_statements when the server
        has it loaded, else from committed transactions of this database (autocommit: one per
        statement; other activity on the database would count too)."""
        with self.conn() as conn:
            has_pss = bool(conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
                " AND current_setting('shared_preload_libraries') LIKE '%%pg_stat_statements%%'"
            ).fetchone()[0])  # type: ignore[index]  # fmt: skip
            worker = self.start_worker()
            try:
                self._wait_for_worker(conn)
                # Start-up statements are not idle ones; without pg_stat_statements, wait out
                # the 10 s a backend may take to publish its counters.
                time.sleep(2 if has_pss else 11)
                before = self._statements(conn, has_pss)
                time.sleep(seconds)
                after = self._statements(conn, has_pss)
            finally:
                worker.terminate()
                worker.wait(30)
        source = "pg_stat_statements" if has_pss else "xact_commit (upper bound)"
        return (after - before) / seconds, source

    def _statements(self, conn: psycopg.Connection[Any], has_pss: bool) -> float:
        if has_pss:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                " WHERE d.datname = current_database() AND s.query LIKE %s",
                (f"%{BENCH_SCHEMA}%",),
            ).fetchone()
        else:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        return float(row[0])


def run(
    settings: Settings,
    *,
    jobs: int,
    repeat: int,
    scenarios: list[str],
    idle_seconds: float,
    big: int,
    log: Callable[[str], None] = print,
) -> list[Result]:
    bench = Bench(settings, repeat=repeat, log=log)
    results: list[Result] = []
    try:
        if "enqueue" in scenarios:
            single = max(jobs // 10, 1000)
            results += bench.alternating(
                (f"enqueue: single, one transaction each ({single:,})", bench.single_enqueuer),
                (f"  baseline: bare INSERT + commit ({single:,})", bench.bare_inserter),
                single,
                "jobs/s",
                rounds=single,
            )
            bulk = jobs * 2
            results += bench.alternating(
                (f"enqueue: bulk enqueue_many ({bulk:,})", bench.bulk_enqueuer),
                (f"  baseline: bare COPY ({bulk:,})", bench.bare_copier),
                bulk,
                "jobs/s",
                rounds=10,
            )
        if "drain" in scenarios:
            results.append(
                bench.median(
                    f"drain: async no-op, 1 process, -c 100 ({jobs:,})",
                    "jobs/s",
                    lambda: bench.drain(jobs, "bench.noop", "-c", "100"),
                )
            )
            results.append(
                bench.median(
                    f"drain: sync no-op, 1 process, -c 20 ({jobs:,})",
                    "jobs/s",
                    lambda: bench.drain(jobs, "bench.noop_sync", "-c", "20"),
                )
            )
            results.append(
                bench.median(
                    f"drain: async no-op, 2 processes, -c 100 ({jobs:,})",
                    "jobs/s",
                    lambda: bench.drain(jobs, "bench.noop", "--processes", "2", "-c", "100"),
                )
            )
            results.append(
                bench.median(
                    f"limit: bare claim+complete, 100/statement ({jobs:,})",
                    "jobs/s",
                    lambda: bench.bare_loop(jobs, 100),
                )
            )
            results.append(
                bench.median(
                    f"limit: bare claim+complete, 10/statement ({jobs:,})",
                    "jobs/s",
                    lambda: bench.bare_loop(jobs, 10),
                )
            )
            results.append(
                bench.median(
                    f"pgjobs claim()+finish loop, 100/statement ({jobs:,})",
                    "jobs/s",
                    lambda: bench.bare_loop(jobs, 100, simple=False),
                )
            )
        if "limits" in scenarios:
            results += bench.paired(
                (f"drain, queue limited to 1,000 running, -c 100 ({jobs:,})",
                 lambda: bench.drain(jobs, "bench.noop", "-c", "100", setup=lambda: bench.limit_queue("default", concurrency=1000))),
                (f"  baseline: same drain, no limit ({jobs:,})",
                 lambda: bench.drain(jobs, "bench.noop", "-c", "100")),
                "jobs/s",
            )  # fmt: skip
            results.append(bench.median(
                f"drain of an unlimited queue, another queue limited to 2 running ({jobs:,})", "jobs/s",
                lambda: bench.drain(jobs, "bench.noop", "-c", "100", setup=lambda: bench.limit_queue("other", concurrency=2)),
            ))  # fmt: skip
            results.append(bench.median(
                f"drain, queue limited to 1,000,000 starts/s, -c 100 ({jobs:,})", "jobs/s",
                lambda: bench.drain(jobs, "bench.noop", "-c", "100", setup=lambda: bench.limit_queue("default", rate=queue_control.parse_rate("1000000/s"))),
            ))  # fmt: skip
        if "big" in scenarios:
            results.append(bench.median(
                f"drain with {big:,} jobs waiting (drain {jobs:,})", "jobs/s",
                lambda: bench.drain(jobs, "bench.noop", "-c", "100", setup=lambda: bench.load(big, "bench.later", delay="1 day")),
            ))  # fmt: skip
            results.append(bench.median(
                f"drain with {big:,} finished rows kept (drain {jobs:,})", "jobs/s",
                lambda: bench.drain(jobs, "bench.noop", "-c", "100", setup=lambda: bench.load(big, "bench.done", status="succeeded")),
            ))  # fmt: skip
        if "latency" in scenarios:
            bench.fresh_schema()
            figures = bench.latency(200)
            bench.fresh_schema()
            limits = bench.bare_latency(200)
            for label, values in (
                ("pickup latency {} (idle worker, commit to start)", figures),
                ("limit: bare LISTEN + UPDATE pickup latency {}", limits),
            ):
                for name in ("p50", "p95", "p99"):
                    result = Result(label.format(name), values[name], "ms")
                    log(result.line())
                    results.append(result)
        if "idle" in scenarios:
            bench.fresh_schema()
            rate, source = bench.idle_statements(idle_seconds)
            result = Result(
                f"idle worker over {idle_seconds:g}s", rate, "statements/s", note=source
            )
            log(result.line())
            results.append(result)
    finally:
        bench.drop_schema()
    return results
