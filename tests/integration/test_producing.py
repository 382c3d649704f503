"""Producing jobs from Python: the App, task defaults, dedupe, bulk enqueue, waiting, and
enqueue inside the caller's own transaction (psycopg and SQLAlchemy, sync and async): the
job exists if and only if that transaction commits."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import pgjobs
from pgjobs import db
from pgjobs.testing import wait_for
from pgjobs.types import JobStatus

Conn = psycopg.Connection[Any]


@pytest.fixture
def app(pgjobs_dsn: str) -> Iterator[pgjobs.App]:
    app = pgjobs.App(pgjobs_dsn)

    @app.task(name="emails.send", queue="emails", priority=3, max_attempts=5)
    def send_email(to: str, subject: str = "hello") -> dict[str, bool]:
        return {"sent": True}

    yield app
    app.close()


def count(conn: Conn, where: str = "true") -> int:
    row = conn.execute(f"SELECT count(*) FROM pgjobs.jobs WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def test_task_enqueue_applies_the_task_defaults(app: pgjobs.App) -> None:
    job = app.tasks["emails.send"].enqueue(to="a@example.com")
    assert (job.task, job.queue, job.priority, job.max_attempts) == ("emails.send", "emails", 3, 5)
    assert (
        job.args == {"to": "a@example.com"} and job.status is JobStatus.QUEUED and not job.existing
    )
    assert app.get(job.id).id == job.id


def test_explicit_options_override_task_defaults(app: pgjobs.App) -> None:
    job = (
        app.tasks["emails.send"]
        .options(queue="urgent", priority=9, delay="1h")
        .enqueue(to="b@example.com")
    )
    assert (job.queue, job.priority) == ("urgent", 9)
    assert 3590 < (job.not_before - job.created_at).total_seconds() <= 3600, (
        "delay counted from the database's clock"
    )


def test_unknown_task_names_get_database_defaults(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.tasks (name, queue, priority) VALUES ('reports.build', 'reports', 7)"
    )
    job = app.enqueue("reports.build", {"month": "2026-11"})
    assert (job.queue, job.priority, job.max_attempts) == ("reports", 7, 3)


def test_args_are_checked_against_the_handler_before_anything_is_stored(
    app: pgjobs.App, pgjobs_conn: Conn
) -> None:
    with pytest.raises(pgjobs.InvalidInput, match="unexpected keyword argument 'too'"):
        app.tasks["emails.send"].enqueue(to="a", too="b")
    with pytest.raises(pgjobs.InvalidInput, match="missing a required argument: 'to'"):
        app.enqueue("emails.send", {})
    with pytest.raises(pgjobs.InvalidInput, match=r"cannot encode args\.when"):
        app.enqueue("other", {"when": object()})
    assert count(pgjobs_conn) == 0


def test_dedupe_returns_the_existing_job(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    first = app.enqueue("t", {"n": 1}, dedupe_key="k")
    second = app.enqueue("t", {"n": 2}, dedupe_key="k")
    assert second.existing and second.id == first.id and second.args == {"n": 1}
    assert count(pgjobs_conn) == 1


def test_concurrent_dedupe_enqueues_make_one_job(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    ids: list[int] = []
    barrier = threading.Barrier(8)

    def produce() -> None:
        barrier.wait()
        ids.append(app.enqueue("t", dedupe_key="same").id)

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(set(ids)) == 1 and len(ids) == 8
    assert count(pgjobs_conn) == 1


class CountingCursor(psycopg.Cursor[Any]):
    """Counts statements sent by a connection (execute and COPY each count once)."""

    calls = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        CountingCursor.calls += 1
        return super().execute(*args, **kwargs)

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        CountingCursor.calls += 1
        return super().copy(*args, **kwargs)


def test_bulk_enqueue_of_100k_jobs_takes_a_handful_of_statements(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn
) -> None:
    task = app.tasks["emails.send"]
    specs = [task.spec(to=f"user{i}@example.com") for i in range(100_000)]
    specs += [
        pgjobs.JobSpec("digest", {"n": i}, pgjobs.EnqueueOptions(dedupe_key=f"d{i % 10}"))
        for i in range(50)
    ]
    CountingCursor.calls = 0
    with psycopg.connect(pgjobs_dsn, cursor_factory=CountingCursor) as conn:
        result = app.enqueue_many(specs, connection=conn)
        conn.commit()
    assert CountingCursor.calls <= 8, f"{CountingCursor.calls} statements for 100,050 jobs"
    assert len(result) == 100_050
    fresh = [r for r in result if not r.existing]
    assert len(fresh) == 100_010, "one digest per dedupe key, the rest point at it"
    assert count(pgjobs_conn) == 100_010
    holders = {r.id for r in result[100_000:]}
    assert len(holders) == 10
    assert count(pgjobs_conn, "queue = 'emails' AND priority = 3 AND max_attempts = 5") == 100_000


def test_bulk_enqueue_with_a_bad_spec_stores_nothing(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    # Specs are validated while they stream into the COPY: far enough in, rows have already
    # reached the server, and the whole batch must still roll back.
    specs: list[Any] = [{"task": "ok", "args": {"i": i}} for i in range(20_000)]
    specs.insert(15_000, {"task": "bad name"})
    with pytest.raises(pgjobs.InvalidInput, match=r"^job #15000: invalid task name"):
        app.enqueue_many(specs)
    assert count(pgjobs_conn) == 0
    specs[15_000] = {"task": "ok", "args": {"x": float("nan")}}
    with pytest.raises(pgjobs.InvalidInput, match=r"^job #15000: cannot encode args"):
        app.enqueue_many(iter(specs))
    assert count(pgjobs_conn) == 0

    async def main() -> None:
        with pytest.raises(pgjobs.InvalidInput, match=r"^job #15000: cannot encode args"):
            await app.enqueue_many_async(specs)
        await app.close_async()

    asyncio.run(main())
    assert count(pgjobs_conn) == 0


def test_bulk_enqueue_with_a_bad_spec_leaves_the_callers_transaction_usable(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn
) -> None:
    with psycopg.connect(pgjobs_dsn) as conn:
        app.enqueue("before", connection=conn)
        with pytest.raises(pgjobs.InvalidInput, match=r"^job #3000: "):
            app.enqueue_many(
                [{"task": "ok"}] * 3000 + [{"task": "ok", "priority": 5000}], connection=conn
            )
        app.enqueue("after", connection=conn)
        conn.commit()
    assert [r[0] for r in pgjobs_conn.execute("SELECT task FROM pgjobs.jobs ORDER BY id")] == [
        "before",
        "after",
    ]


def test_bulk_enqueue_keeps_input_order_and_delays(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    result = app.enqueue_many([
        {"task": "a", "args": {"i": 0}},
        {"task": "b", "args": {"i": 1}, "delay": "10m", "priority": 4},
        {"task": "c", "args": {"i": 2}, "not_before": "2030-01-01T00:00:00Z"},
    ])  # fmt: skip
    rows = {r[0]: r[1:] for r in pgjobs_conn.execute(
        "SELECT id, task, priority, (not_before - created_at) > interval '9 minutes', extract(year FROM not_before) FROM pgjobs.jobs"
    ).fetchall()}  # fmt: skip
    assert [rows[r.id][0] for r in result] == ["a", "b", "c"]
    assert rows[result[1].id][1:3] == (4, True)
    assert rows[result[2].id][3] == 2030


def test_async_twins(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    async def main() -> None:
        job = await app.tasks["emails.send"].enqueue_async(to="x@example.com")
        many = await app.enqueue_many_async([{"task": "t", "args": {"i": i}} for i in range(100)])
        fetched = await app.get_async(job.id)
        assert fetched.queue == "emails" and len(many) == 100
        await app.close_async()

    asyncio.run(main())
    assert count(pgjobs_conn) == 101


def finish_later(
    dsn: str, status: JobStatus, result: str | None = None, error: str | None = None
) -> threading.Thread:
    """A stand-in worker: claims the job once it is there and records an outcome."""

    def work() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            jobs = wait_for(
                lambda: db.claim(
                    conn, "pgjobs", queues=None, limit=1, worker_id=uuid.uuid4(), lease_seconds=30
                ),
                message="no job to claim",
            )
            db.run(
                conn,
                db.finish(
                    "pgjobs",
                    [
                        db.Outcome(
                            jobs[0].id, jobs[0].lease_token, status, result=result, error=error
                        )
                    ],
                ),
            )

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_wait_returns_the_result(app: pgjobs.App, pgjobs_dsn: str) -> None:
    job = app.enqueue("t")
    worker = finish_later(pgjobs_dsn, JobStatus.SUCCEEDED, result='{"answer": 42}')
    assert job.wait(timeout=30) == {"answer": 42}
    worker.join()
    assert job.status is JobStatus.SUCCEEDED


def test_wait_raises_when_the_job_fails(app: pgjobs.App, pgjobs_dsn: str) -> None:
    job = app.enqueue("t")
    worker = finish_later(pgjobs_dsn, JobStatus.FAILED, error="Traceback...\nValueError: nope")
    with pytest.raises(pgjobs.JobFailed, match="ValueError: nope"):
        job.wait(timeout=30)
    worker.join()


def test_wait_times_out(app: pgjobs.App) -> None:
    job = app.enqueue("t")
    with pytest.raises(pgjobs.WaitTimeout):
        job.wait(timeout=0.3)


def test_wait_async(app: pgjobs.App, pgjobs_dsn: str) -> None:
    job = app.enqueue("t")
    worker = finish_later(pgjobs_dsn, JobStatus.SUCCEEDED, result="7")

    async def main() -> Any:
        try:
            return await job.wait_async(timeout=30)
        finally:
            await app.close_async()

    assert asyncio.run(main()) == 7
    worker.join()


# --- the caller's transaction ------------------------------------------------------------


@pytest.mark.parametrize("commit", [True, False])
def test_psycopg_transaction(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn, commit: bool
) -> None:
    with psycopg.connect(pgjobs_dsn) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (1)")
        job = app.tasks["emails.send"].options(connection=conn).enqueue(to="a@example.com")
        app.enqueue_many([{"task": "t"}] * 3, connection=conn)
        assert job.id > 0
        conn.commit() if commit else conn.rollback()
    assert count(pgjobs_conn) == (4 if commit else 0)


@pytest.mark.parametrize("commit", [True, False])
def test_psycopg_async_transaction(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn, commit: bool
) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(pgjobs_dsn) as conn:
            await app.enqueue_async("t", {"n": 1}, connection=conn)
            await app.enqueue_many_async([{"task": "t"}] * 2, connection=conn)
            await (conn.commit() if commit else conn.rollback())

    asyncio.run(main())
    assert count(pgjobs_conn) == (3 if commit else 0)


def sync_engine(dsn: str) -> sa.Engine:
    return sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn))


@pytest.mark.parametrize("commit", [True, False])
def test_sqlalchemy_connection(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn, commit: bool
) -> None:
    engine = sync_engine(pgjobs_dsn)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
        app.enqueue("t", {"n": 1}, connection=conn)
        app.enqueue_many([{"task": "t"}] * 2, connection=conn)
        conn.commit() if commit else conn.rollback()
    engine.dispose()
    assert count(pgjobs_conn) == (3 if commit else 0)


@pytest.mark.parametrize("commit", [True, False])
def test_sqlalchemy_session_without_prior_statement(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn, commit: bool
) -> None:
    engine = sync_engine(pgjobs_dsn)
    with Session(engine) as session:
        app.tasks["emails.send"].options(connection=session).enqueue(to="s@example.com")
        app.enqueue_many([{"task": "t"}] * 2, connection=session)
        session.commit() if commit else session.rollback()
    engine.dispose()
    assert count(pgjobs_conn) == (3 if commit else 0)


@pytest.mark.parametrize("commit", [True, False])
def test_sqlalchemy_async_session_and_connection(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn, commit: bool
) -> None:
    async def main() -> None:
        engine = create_async_engine(
            "postgresql+psycopg://",
            async_creator=lambda: psycopg.AsyncConnection.connect(pgjobs_dsn),
        )
        async with AsyncSession(engine) as session:
            await app.enqueue_async("t", {"n": 1}, connection=session)
            await app.enqueue_many_async([{"task": "t"}] * 2, connection=session)
            await (session.commit() if commit else session.rollback())
        async with engine.connect() as conn:
            await app.enqueue_async("t", {"n": 2}, connection=conn)
            await (conn.commit() if commit else conn.rollback())
        await engine.dispose()

    asyncio.run(main())
    assert count(pgjobs_conn) == (4 if commit else 0)


def test_wrong_connection_kinds_are_refused(app: pgjobs.App, pgjobs_dsn: str) -> None:
    with pytest.raises(pgjobs.InvalidInput, match="cannot enqueue through a str"):
        app.enqueue("t", connection="not a connection")

    async def main() -> None:
        with psycopg.connect(pgjobs_dsn) as conn:
            await app.enqueue_async("t", connection=conn)

    with pytest.raises(pgjobs.InvalidInput, match="from async code"):
        asyncio.run(main())


def test_an_unmigrated_database_names_the_fix(pgjobs_databases: Any) -> None:
    dsn = pgjobs_databases.create(migrated=False)
    try:
        with pytest.raises(pgjobs.SchemaError, match="pgjobs migrate"):
            pgjobs.App(dsn).enqueue("t")
        with (
            psycopg.connect(dsn) as conn,
            pytest.raises(pgjobs.SchemaError, match="pgjobs migrate"),
        ):
            pgjobs.App(dsn).enqueue("t", connection=conn)
    finally:
        pgjobs_databases.drop(dsn)


def test_an_unreachable_database_is_one_line() -> None:
    with pytest.raises(pgjobs.DatabaseUnavailable, match="cannot connect") as info:
        pgjobs.App("host=127.0.0.1 port=1 connect_timeout=2").enqueue("t")
    assert "\n" not in str(info.value)


def test_published_task_defaults_reach_sql_producers(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    assert app.publish_tasks() == 1
    assert app.publish_tasks() == 0, "unchanged defaults are not rewritten"
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.jobs (task, args) VALUES ('emails.send', '{\"to\": \"x\"}')"
    )
    pgjobs_conn.execute("SELECT pgjobs.enqueue('emails.send', '{\"to\": \"y\"}')")
    assert count(pgjobs_conn, "queue = 'emails' AND priority = 3 AND max_attempts = 5") == 2


def test_wait_reports_the_start_and_progress_of_the_job(app: pgjobs.App, pgjobs_dsn: str) -> None:
    job = app.enqueue("t")
    seen: list[tuple[str, float | None, str | None]] = []
    progressed = threading.Event()

    def on_update(current: pgjobs.Job) -> None:
        progress = float(current.progress) if current.progress is not None else None
        seen.append((current.status.value, progress, current.progress_message))
        if progress == 40.0:
            progressed.set()

    def work() -> None:
        with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
            [claimed] = wait_for(
                lambda: db.claim(
                    conn, "pgjobs", queues=None, limit=1, worker_id=uuid.uuid4(), lease_seconds=30
                ),
                message="no job to claim",
            )
            db.run(conn, db.set_progress("pgjobs", claimed.id, claimed.lease_token, 40, "resizing"))
            assert progressed.wait(30), "wait() never reported the progress"
            db.run(
                conn,
                db.finish(
                    "pgjobs",
                    [db.Outcome(claimed.id, claimed.lease_token, JobStatus.SUCCEEDED, result="1")],
                ),
            )

    worker = threading.Thread(target=work)
    worker.start()
    assert job.wait(timeout=30, on_update=on_update) == 1
    worker.join()
    assert ("running", 40.0, "resizing") in seen
    assert all(status != "succeeded" for status, _, _ in seen)  # only called while unfinished


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"delay": "90s", "meta": {"source": "test"}},
        {
            "not_before": "2031-05-06T07:08:09.123456+02:00",
            "callback_url": "https://example.com/cb",
        },
        {"queue": "q", "priority": -4, "max_attempts": 9},
    ],
)
def test_the_enqueued_job_is_the_stored_row(
    app: pgjobs.App, pgjobs_conn: Conn, options: dict[str, Any]
) -> None:
    """enqueue returns few columns and fills the rest from what it sent: the Job must equal
    what the database stored, defaults of the tasks table included."""
    pgjobs_conn.execute(
        "INSERT INTO pgjobs.tasks (name, queue, priority, max_attempts) VALUES ('db.defaults', 'dq', 6, 4)"
    )
    for task, args in [
        ("emails.send", {"to": "a@example.com"}),
        ("db.defaults", {"when": date(2030, 1, 2)}),
    ]:
        job = app.enqueue(task, args, **options)
        stored = app.get(job.id)
        assert job.to_json() == stored.to_json(), task


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_wait_hears_the_start_without_rechecking(
    app: pgjobs.App, pgjobs_dsn: str, monkeypatch: pytest.MonkeyPatch, flavour: str
) -> None:
    """With on_update, wait() has claims announce the jobs they start (watch_starts), so the
    start arrives by notification: the re-check is pushed out of the test's reach."""
    monkeypatch.setattr(pgjobs.app, "WAIT_RECHECK_SECONDS", 3600.0)
    job = app.enqueue("t")
    started = threading.Event()

    def on_update(current: pgjobs.Job) -> None:
        if current.status is JobStatus.RUNNING:
            started.set()

    def work() -> None:
        with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
            wait_for(
                lambda: (
                    conn.execute(
                        "SELECT value::float8 > extract(epoch FROM now()) FROM pgjobs.settings"
                        " WHERE name = 'starts_watched_until'"
                    ).fetchone()
                    == (True,)
                ),
                message="wait() did not ask claims to announce starts",
            )
            [claimed] = db.claim(
                conn, "pgjobs", queues=None, limit=1, worker_id=uuid.uuid4(), lease_seconds=30
            )
            assert started.wait(30), "wait() did not hear the start"
            outcome = db.Outcome(claimed.id, claimed.lease_token, JobStatus.SUCCEEDED, result="2")
            db.run(conn, db.finish("pgjobs", [outcome]))

    worker = threading.Thread(target=work)
    worker.start()
    if flavour == "sync":
        assert job.wait(timeout=60, on_update=on_update) == 2
    else:
        assert asyncio.run(job.wait_async(timeout=60, on_update=on_update)) == 2
    worker.join()
