"""Dedupe windows (dedupe_for) and debounce (dedupe_mode="replace"), including their races:
producers racing each other, and a replace racing the claim of the job it would replace."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import pgjobs
from pgjobs import db
from pgjobs.errors import InvalidInput
from pgjobs.types import JobStatus

Conn = psycopg.Connection[Any]


def finish(conn: Conn, job_id: int) -> None:
    conn.execute(
        "UPDATE pgjobs.jobs SET status = 'succeeded', attempts = 1, finished_at = now()"
        " WHERE id = %s",
        (job_id,),
    )


def test_a_window_holds_the_key_after_the_job_finished(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    first = app.enqueue("report", {"n": 1}, dedupe_key="daily", dedupe_for="1h")
    finish(pgjobs_conn, first.id)
    again = app.enqueue("report", {"n": 2}, dedupe_key="daily", dedupe_for="1h")
    assert again.existing and again.id == first.id and again.status is JobStatus.SUCCEEDED
    plain = app.enqueue("report", {"n": 3}, dedupe_key="daily")  # no window: key is free
    assert not plain.existing
    finish(pgjobs_conn, plain.id)
    pgjobs_conn.execute("UPDATE pgjobs.jobs SET created_at = now() - interval '2 hours'")
    later = app.enqueue("report", {"n": 4}, dedupe_key="daily", dedupe_for="1h")
    assert not later.existing and later.args == {"n": 4}


def test_replace_debounces_a_job_that_has_not_started(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    first = app.enqueue("reindex", {"rev": 1}, dedupe_key="doc:7", delay="10s")
    second = app.enqueue(
        "reindex", {"rev": 2}, dedupe_key="doc:7", delay="30s", dedupe_mode="replace"
    )
    assert second.existing and second.id == first.id
    assert second.args == {"rev": 2}
    assert second.not_before > first.not_before + timedelta(seconds=15)
    assert pgjobs_conn.execute(
        "SELECT count(*), min(args->>'rev') FROM pgjobs.jobs"
    ).fetchone() == (1, "2")
    skipped = app.enqueue("reindex", {"rev": 3}, dedupe_key="doc:7")
    assert skipped.existing and skipped.args == {"rev": 2}, "skip mode leaves the holder as it is"


def test_replace_leaves_a_running_holder_alone(app: pgjobs.App, pgjobs_conn: Conn) -> None:
    first = app.enqueue("reindex", {"rev": 1}, dedupe_key="doc:8")
    (claimed,) = db.claim(
        pgjobs_conn, "pgjobs", queues=None, limit=1, worker_id=uuid.uuid4(), lease_seconds=30
    )
    assert claimed.id == first.id
    second = app.enqueue("reindex", {"rev": 2}, dedupe_key="doc:8", dedupe_mode="replace")
    assert second.existing and second.id == first.id and second.status is JobStatus.RUNNING
    assert second.args == {"rev": 1}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dedupe_for": "1h"}, "need a dedupe_key"),
        ({"dedupe_key": "k", "dedupe_mode": "merge"}, "invalid dedupe_mode 'merge'"),
        ({"dedupe_key": "k", "dedupe_for": "soon"}, "invalid dedupe_for 'soon'"),
    ],
)
def test_bad_dedupe_options_change_nothing(
    app: pgjobs.App, pgjobs_conn: Conn, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        app.enqueue("t", **options)
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (0,)


def test_racing_producers_in_a_window_make_one_job_while_it_runs_and_ends(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn
) -> None:
    """Twelve producers, three rounds each, while a claimer takes and finishes every job at
    once: within the window there is only ever one job of the key, finished or not."""
    barrier = threading.Barrier(13)
    stop = threading.Event()

    def produce() -> None:
        with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
            barrier.wait()
            for _ in range(3):
                app.enqueue("sync", connection=conn, dedupe_key="tenant:1", dedupe_for="1h")

    def consume() -> None:
        with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
            barrier.wait()
            while not stop.is_set():
                for job in db.claim(
                    conn, "pgjobs", queues=None, limit=10, worker_id=uuid.uuid4(), lease_seconds=30
                ):
                    db.run(
                        conn,
                        db.finish(
                            "pgjobs", [db.Outcome(job.id, job.lease_token, JobStatus.SUCCEEDED)]
                        ),
                    )

    threads = [threading.Thread(target=produce) for _ in range(12)]
    consumer = threading.Thread(target=consume)
    for thread in [*threads, consumer]:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    consumer.join()
    assert pgjobs_conn.execute("SELECT count(*) FROM pgjobs.jobs").fetchone() == (1,)


def test_replace_racing_the_claim_either_changes_the_args_the_worker_reads_or_none(
    app: pgjobs.App, pgjobs_dsn: str, pgjobs_conn: Conn
) -> None:
    """A replace that returns a queued holder has written its args before any claim of it;
    one that returns a running holder changed nothing. Checked over 60 races."""
    for round_ in range(60):
        key = f"doc:{round_}"
        app.enqueue("reindex", {"rev": 0}, dedupe_key=key)
        outcome: dict[str, Any] = {}
        barrier = threading.Barrier(2)

        def replace(
            key: str = key, outcome: dict[str, Any] = outcome, barrier: threading.Barrier = barrier
        ) -> None:
            with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
                barrier.wait()
                outcome["job"] = app.enqueue(
                    "reindex", {"rev": 1}, connection=conn, dedupe_key=key, dedupe_mode="replace"
                )

        def claim(outcome: dict[str, Any] = outcome, barrier: threading.Barrier = barrier) -> None:
            with psycopg.connect(pgjobs_dsn, autocommit=True) as conn:
                barrier.wait()
                outcome["claimed"] = db.claim(
                    conn, "pgjobs", queues=None, limit=1, worker_id=uuid.uuid4(), lease_seconds=30
                )

        threads = [threading.Thread(target=replace), threading.Thread(target=claim)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        job = outcome["job"]
        claimed = outcome["claimed"]
        assert job.existing
        if job.status is JobStatus.QUEUED:
            assert job.args == {"rev": 1}
            if claimed:  # claimed after the replace committed: it read the new args
                assert claimed[0].args == {"rev": 1}
        else:
            assert job.args == {"rev": 0} and claimed and claimed[0].args == {"rev": 0}
        stored = pgjobs_conn.execute(
            "SELECT count(*) FROM pgjobs.jobs WHERE dedupe_key = %s", (key,)
        ).fetchone()
        assert stored == (1,)
        for job_row in claimed:
            db.run(
                pgjobs_conn,
                db.finish(
                    "pgjobs", [db.Outcome(job_row.id, job_row.lease_token, JobStatus.SUCCEEDED)]
                ),
            )
